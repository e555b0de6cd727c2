"""How the write-back forms batches, on looptime's fake clock."""

import asyncio
import math
from typing import Any

import pytest

from controller.decide import Complete
from controller.jobrows import KnownRows, RowFacts
from controller.metrics import Metrics
from controller.model import MediaJob
from controller.status import transition_status
from controller.writeback import Stage, Tables, WriteBack, send_at
from tests.unit.helpers import NOW, job

pytestmark = pytest.mark.looptime


def ended(i: int) -> MediaJob:
    base = job(operation="concatenate")
    raw: dict[str, Any] = {
        "metadata": {
            "name": f"job-{i}",
            "namespace": "media",
            "uid": f"u{i}",
            "resourceVersion": "1",
            "generation": 1,
        },
        "spec": {
            "airtableRecordId": f"recJOB{i:011d}",
            "externalJobId": f"job-{i}",
            "operation": "concatenate",
            "submittedAt": "2026-11-29T11:00:00Z",
            "target": {"table": "Videos", "recordId": f"recVID{i:011d}"},
        },
        "status": transition_status(base, Complete("https://b/x.mp4", "spaces"), now=NOW, checks=1),
    }
    return MediaJob.from_object(raw)


def writeback(**extra: Any) -> WriteBack:
    loop = asyncio.get_running_loop()
    return WriteBack(
        kube=None,
        store=None,
        writer=None,
        metrics=Metrics(),  # type: ignore[arg-type]
        tables=Tables("Jobs", "Segments", "Videos"),
        clock=loop.time,
        **{"airtable": None, "linger": 5.0, "rows": KnownRows(), **extra},
    )


@pytest.mark.parametrize(
    ("ready", "arrivals", "now", "expected"),
    [
        (10, [0.0] * 10, 0.0, 0.0),  # full: at once
        (1, [0.0], 0.0, 0.0),  # one arrival: no rate, a trickle goes at once
        (5, [0.0] * 5, 0.0, 0.0),  # one burst: no more are coming
        (2, [0.0, 50.0], 50.0, 50.0),  # 1 per 50 s: 8 more take 400 s > the 60 s linger
        (2, [0.0, 1.0], 1.0, 2.5),  # 1 per s: wait for more; look again if none comes by 2.5
        (2, [0.0, 10.0], 10.0, 25.0),  # 1 per 10 s: a fuller batch is worth the wait, not a full one
        (3, [0.0, 1.0, 2.0], 3.0, 3.5),  # ...and the stream goes on
        (3, [0.0, 1.0, 2.0], 3.6, 3.6),  # ...or it stopped: send
        (7, [0.0] * 3 + [20.0] * 4, 25.0, 50.0),  # groups 20 s apart: wait for the next group
        (7, [0.0] * 3 + [20.0] * 4, 50.0, 50.0),  # ...which did not come
        (7, [0.0] * 3 + [50.0] * 4, 55.0, 55.0),  # the next group would come after the linger
        (5, [0.0, 1.0, 2.0, 3.0, 4.0], 60.0, 60.0),  # the linger is over
        (3, [-100.0, -90.0, 0.0, 1.0, 2.0], 2.0, 3.5),  # arrivals before the linger do not count
    ],
)
def test_send_at(ready: int, arrivals: list[float], now: float, expected: float) -> None:
    at = send_at(now=now, oldest=0.0, ready=ready, limit=10, arrivals=arrivals, linger=60.0)
    assert at == pytest.approx(expected, abs=0.05)


async def test_a_trickle_goes_at_once() -> None:
    wb = writeback(linger=60.0)
    wb.enqueue(ended(0))
    await asyncio.sleep(90)  # longer than the linger: no stream
    t0 = asyncio.get_running_loop().time()
    wb._pending.clear()  # (the first one was written meanwhile)
    wb.enqueue(ended(1))
    batch = await wb._take(Stage.CHECK, 10, lingers=True)
    assert [b.job.name for b in batch] == ["job-1"]
    assert asyncio.get_running_loop().time() - t0 < 0.01


async def test_a_stream_waits_for_a_full_batch() -> None:
    wb = writeback(linger=60.0)
    t0 = asyncio.get_running_loop().time()

    async def stream() -> None:
        for i in range(30):
            wb.enqueue(ended(i))
            await asyncio.sleep(1)

    task = asyncio.create_task(stream())
    await asyncio.sleep(1.5)  # (the very first one went alone: one arrival gives no rate)
    first = await wb._take(Stage.CHECK, 10, lingers=True)
    assert len(first) == 10
    assert 8.9 <= asyncio.get_running_loop().time() - t0 <= 10.1  # filled at the 10th arrival
    await task


async def test_a_full_batch_goes_at_once() -> None:
    wb = writeback()
    t0 = asyncio.get_running_loop().time()
    for i in range(25):
        wb.enqueue(ended(i))
    batch = await wb._take(Stage.CHECK, 10, lingers=True)
    assert len(batch) == 10
    assert asyncio.get_running_loop().time() - t0 < 0.01


async def test_a_recheck_does_not_wait() -> None:
    wb = writeback()
    t0 = asyncio.get_running_loop().time()
    job0 = ended(0)
    wb.enqueue(job0)
    wb.kick(job0)
    batch = await wb._take(Stage.CHECK, 10, lingers=True)
    assert [b.job.name for b in batch] == ["job-0"]
    assert asyncio.get_running_loop().time() - t0 < 0.01


async def test_items_are_suspect_unless_seen_processing() -> None:
    wb = writeback(linger=0.0)
    wb.note_processing(("media", "job-1"))
    wb.enqueue(ended(0))
    wb.enqueue(ended(1))
    batch = await wb._take(Stage.CHECK, 10, lingers=True)
    assert {b.job.name: b.suspect for b in batch} == {"job-0": True, "job-1": False}


class NextRead:
    """The push source as the row knowledge sees it: a payload read is asked for, and the next one
    starts at once and lands `after` seconds on."""

    def __init__(self, rows: KnownRows, after: float) -> None:
        self.rows = rows
        self.after = after
        self.active = self.vouching = True
        self.reads: list[float] = []
        rows.follow(self)

    def request_read(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if started not in self.reads:
            self.reads.append(started)
            loop.call_later(self.after, self.rows.vouch, started)


async def test_with_push_known_rows_are_decided_without_a_read() -> None:
    rows = KnownRows()
    for i in range(12):
        rows.learn(f"recJOB{i:011d}", RowFacts("processing", f"job-{i}", None))
    rows.learn("recJOB00000000003", RowFacts("failed", "job-3", "2026-11-29 ended by hand"))
    NextRead(rows, after=3)
    wb = writeback(rows=rows)  # airtable=None: any read would raise
    for i in range(12):
        wb.enqueue(ended(i))
    checker = asyncio.create_task(wb._check_loop())
    await asyncio.sleep(1)
    late = ended(12)  # reaches the stage after the read started: not vouched by it
    wb.enqueue(late)
    await asyncio.sleep(2.5)
    stages = {item.job.name: item.stage for item in wb._pending.values()}
    checker.cancel()
    assert stages.pop("job-3") == Stage.STATUS  # ended by someone else: left as it is
    assert stages.pop("job-12") == Stage.CHECK
    assert set(stages.values()) == {Stage.VIDEOS}
    assert wb._pending[late.key].entered > rows.fresh_at
    assert wb._pending[("media", "job-3")].outcome == "EndedInAirtable"


class RowReads:
    def __init__(self) -> None:
        self.reads: list[list[str]] = []

    async def get_records(self, table: str, ids: list[str], **_: Any) -> dict[str, Any]:
        self.reads.append(ids)
        return {rid: {"Status": "processing", "External Job ID": f"job-{int(rid[6:])}"} for rid in ids}


@pytest.mark.parametrize(("busy", "payload_reads", "row_reads"), [(False, 5, 0), (True, 0, 2)])
async def test_a_busy_source_is_not_waited_on(busy: bool, payload_reads: int, row_reads: int) -> None:
    rows = KnownRows()
    for i in range(5):
        rows.learn(f"recJOB{i:011d}", RowFacts("processing", f"job-{i}", None))
    stream = NextRead(rows, after=0.5)
    stream.active = stream.vouching = not busy
    airtable = RowReads()
    wb = writeback(rows=rows, airtable=airtable)  # linger 5 s
    checker = asyncio.create_task(wb._check_loop())
    for i in range(5):  # a result a second
        wb.enqueue(ended(i))
        await asyncio.sleep(1)
    await asyncio.sleep(6)
    checker.cancel()
    # A pinged source reads anyway, so each result waits for its next read at no cost. A busy
    # one reads no payloads (one would cost a call, as a read of the rows does, and vouch for
    # less), so the rows are read as polling reads them: the first result at once (one arrival
    # gives no rate), the four that followed gathered in one read.
    assert (len(stream.reads), len(airtable.reads)) == (payload_reads, row_reads)
    assert {item.stage for item in wb._pending.values()} == {Stage.VIDEOS}


async def test_a_source_going_busy_ends_the_wait_for_its_read() -> None:
    rows = KnownRows()
    rows.learn("recJOB00000000000", RowFacts("processing", "job-0", None))
    stream = NextRead(rows, after=30)  # its read would land after the 5 s linger's wait
    airtable = RowReads()
    wb = writeback(rows=rows, airtable=airtable)
    wb.enqueue(ended(0))
    checker = asyncio.create_task(wb._check_loop())
    await asyncio.sleep(1)
    assert airtable.reads == []
    assert len(stream.reads) == 1
    stream.active = stream.vouching = False  # as PushSource does on going busy
    rows.broken()
    await asyncio.sleep(0.1)
    checker.cancel()
    assert airtable.reads == [["recJOB00000000000"]]
    assert wb._pending[("media", "job-0")].stage == Stage.VIDEOS


async def test_a_recheck_skips_the_linger_but_not_the_fresh_read() -> None:
    rows = KnownRows()
    rows.learn("recJOB00000000000", RowFacts("processing", "job-0", None))
    stream = NextRead(rows, after=2)
    wb = writeback(rows=rows)
    job0 = ended(0)
    wb.enqueue(job0)
    entered = wb._pending[job0.key].entered
    wb.kick(job0)
    checker = asyncio.create_task(wb._check_loop())
    await asyncio.sleep(2.5)
    checker.cancel()
    assert stream.reads == [entered]  # a read asked for after the job's arrival, not before
    assert rows.fresh_at == entered
    assert wb._pending[job0.key].stage == Stage.VIDEOS


async def test_a_row_unknown_to_a_vouching_stream_is_read() -> None:
    reads: list[list[str]] = []

    class Airtable:
        async def get_records(self, table: str, ids: list[str], **_: Any) -> dict[str, Any]:
            reads.append(ids)
            return {rid: {"Status": "processing", "External Job ID": "job-0"} for rid in ids}

    rows = KnownRows()
    NextRead(rows, after=1)
    wb = writeback(rows=rows, airtable=Airtable())
    wb.enqueue(ended(0))
    checker = asyncio.create_task(wb._check_loop())
    await asyncio.sleep(1.5)
    checker.cancel()
    assert reads == [["recJOB00000000000"]]  # vouched for, but not known: read
    assert wb._pending[("media", "job-0")].stage == Stage.VIDEOS
    assert rows.as_of("recJOB00000000000") is not None  # and known from now on


def test_a_broken_stream_vouches_for_nothing() -> None:
    rows = KnownRows()
    rows.learn("recJOB00000000000", RowFacts("processing", "job-0", None))
    rows.vouch(10.0)
    assert rows.as_of("recJOB00000000000", since=9.0) is not None
    assert rows.as_of("recJOB00000000000", since=11.0) is None  # not yet vouched for
    rows.broken()
    assert rows.as_of("recJOB00000000000") is None
    assert rows.fresh_at == -math.inf

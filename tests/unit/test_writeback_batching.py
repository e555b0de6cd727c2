"""How the write-back forms batches, on looptime's fake clock."""

import asyncio
from typing import Any

import pytest

from controller.decide import Complete
from controller.metrics import Metrics
from controller.model import MediaJob
from controller.status import transition_status
from controller.writeback import CHECK, Tables, WriteBack
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


def writeback() -> WriteBack:
    loop = asyncio.get_running_loop()
    return WriteBack(
        airtable=None,
        kube=None,
        store=None,
        writer=None,
        metrics=Metrics(),  # type: ignore[arg-type]
        tables=Tables("Jobs", "Segments", "Videos"),
        linger=5.0,
        clock=loop.time,
    )


async def test_a_trickle_waits_for_the_linger_then_goes_as_one_batch() -> None:
    wb = writeback()
    t0 = asyncio.get_running_loop().time()
    for i in range(3):
        wb.enqueue(ended(i))
        await asyncio.sleep(1)
    batch = await wb._take(CHECK, 10, 5.0)
    assert len(batch) == 3
    assert round(asyncio.get_running_loop().time() - t0) == 5  # the first one's linger


async def test_a_full_batch_goes_at_once() -> None:
    wb = writeback()
    t0 = asyncio.get_running_loop().time()
    for i in range(25):
        wb.enqueue(ended(i))
    batch = await wb._take(CHECK, 10, 5.0)
    assert len(batch) == 10
    assert asyncio.get_running_loop().time() - t0 < 0.01


async def test_a_recheck_does_not_wait() -> None:
    wb = writeback()
    t0 = asyncio.get_running_loop().time()
    job0 = ended(0)
    wb.enqueue(job0)
    wb.kick(job0)
    batch = await wb._take(CHECK, 10, 5.0)
    assert [b.job.name for b in batch] == ["job-0"]
    assert asyncio.get_running_loop().time() - t0 < 0.01


async def test_items_are_suspect_unless_seen_processing() -> None:
    wb = writeback()
    wb.note_processing(("media", "job-1"))
    wb.enqueue(ended(0))
    wb.enqueue(ended(1))
    batch = await wb._take(CHECK, 10, 0.0)
    assert {b.job.name: b.suspect for b in batch} == {"job-0": True, "job-1": False}

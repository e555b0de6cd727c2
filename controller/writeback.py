"""Ended jobs → Airtable, batched, rate limited, and never written twice.

Each ended job's pending item names its `Stage`, passed in order: the check (its Jobs row's current
state, read or known), its target row (Segments or Videos), its Jobs row, then `airtableSynced=true`
on the resource. The target goes first so that `completed` in the Jobs table always means the
output is attached. A stage writes up to 10 records a request: 1,000 completions cost 100 target
and 100 Jobs requests.

Never clobbered: a Jobs row is written only while it is still `processing` or still holds the
controller's own earlier result (its last Notes line is ours); a row someone else ended is left as
it is (`EndedInAirtable`); `WriteBack._judge` alone decides. Notes is appended to, one line a write.
Its state is read, 50 rows a request, unless push is on and a payload read that started after the
job reached the check vouches for what `controller.jobrows.KnownRows` knows: no extra call, as the
reads that discover new rows serve here too. A target row is read first unless this leader saw the
job in `Processing` (nobody can have written it), so that a row holding the result is not rewritten.

Batches: Airtable's quota counts requests, not rows, so a partial batch waits for more when more
are coming (`send_at`), up to `linger`; a trickle goes at once.

A target write rejected for good (a 4xx other than 429) does not hold back the Jobs row: that gets
a Note naming the target and the error, the job gets `TargetRejected`, and only a recheck tries
the target again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import json
import logging
import random
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from itertools import pairwise
from posixpath import basename
from typing import Any, Literal
from urllib.parse import urlsplit

from controller import logs
from controller.backoff import backoff_delay, wait_event
from controller.clients.airtable import (
    IDS_PER_READ,
    MAX_RECORDS_PER_WRITE,
    AirtableClient,
    AirtableError,
    AirtableRejected,
)
from controller.clients.kube import KubeClient, KubeError, NotFound
from controller.jobrows import DELETED, KnownRows, RowFacts, facts_from_rest
from controller.metrics import Metrics
from controller.model import MediaJob, fmt_time, utcnow
from controller.rows import append_note
from controller.status import sync_error_status, synced_status, target_rejected_status
from controller.store import JobStore, Key
from controller.transitions import Event, StatusWriter
from controller.vocabulary import (
    COMPONENT,
    FIELD_EXTERNAL_ID,
    FIELD_NOTES,
    FIELD_RESPONSE,
    FIELD_STATUS,
    OPERATIONS,
    Reason,
)

log = logging.getLogger(__name__)

VIA_TEXT = {
    "spaces": "output file found on Spaces by polling",
    "nca-status": "NCA job-status API said done",
    "webhook": "NCA webhook",
}
PERSISTENT_FAILURES = 3
RETRY_BASE = 2.0  # seconds; the cap comes from the runtime


class Stage(enum.StrEnum):
    CHECK = "check"  # the Jobs row's state is read (or known) before anything is written
    SEGMENTS = "Segments"
    VIDEOS = "Videos"
    JOBS = "Jobs"
    STATUS = "status"  # airtableSynced=true on the resource


_OUR_NOTE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ " + COMPONENT + ": ")
Verdict = Literal["write", "done", "ended"]
Identity = tuple[str, int, str]  # uid, attempt, phase: one transition


@dataclasses.dataclass(frozen=True, slots=True)
class Tables:
    jobs: str
    segments: str
    videos: str

    def physical(self, logical: str) -> str:
        return self.segments if logical == "Segments" else self.videos


@dataclasses.dataclass(frozen=True, slots=True)
class RowWrite:
    table: str  # logical: "Jobs", "Segments" or "Videos"
    record_id: str
    fields: Mapping[str, Any]


def planned_writes(job: MediaJob) -> list[RowWrite]:
    """The Airtable writes an ended job needs, in order (contract section 4). Pure."""
    status = job.status
    spec = job.spec
    writes: list[RowWrite] = []
    if status.phase == "Completed":
        url = status.output_url or ""
        known = OPERATIONS.get(spec.operation)
        if known and spec.target:
            fields: dict[str, Any] = {known.attachment_field: [{"url": url}]}
            if known.target_status is not None:
                fields[FIELD_STATUS] = known.target_status
            writes.append(RowWrite(spec.target.table, spec.target.record_id, fields))
        via = status.completed_via or "unknown"
        payload = {
            "job_id": spec.external_job_id,
            "output_url": url,
            "completed_via": via,
            "completed_at": fmt_time(status.completed_at) if status.completed_at else None,
            "source": "mediajob-controller",
        }
        notes = f"Completed: {VIA_TEXT.get(via, via)}."
        if known and not spec.target:
            notes += " No Segment/Video row was linked, so only this row was updated."
        jobs = {
            FIELD_STATUS: "completed",
            FIELD_RESPONSE: json.dumps(payload, sort_keys=True),
            FIELD_NOTES: notes,
        }
    else:
        label = "Timed out" if status.phase == "TimedOut" else "Failed"
        jobs = {FIELD_STATUS: "failed", FIELD_NOTES: f"{label}: {status.message or status.phase}."}
    writes.append(RowWrite("Jobs", spec.airtable_record_id, jobs))
    return writes


def note_line(moment: datetime, text: str) -> str:
    """One Notes line per write: when, and what happened."""
    return f"{fmt_time(moment)} {COMPONENT}: {' '.join(text.split())}"


def holds_our_result(row: Mapping[str, Any]) -> bool:
    """The row's last Notes line is one the controller wrote: nobody ended it since."""
    notes = row.get(FIELD_NOTES)
    if not isinstance(notes, str) or not notes.strip():
        return False
    return bool(_OUR_NOTE.match(notes.rstrip().splitlines()[-1]))


def jobs_row_verdict(
    write: RowWrite, row: Mapping[str, Any] | None, external_job_id: str | None = None
) -> Verdict:
    """May the Jobs row be written? `done`: it already holds this result. Pure.

    Write only a row still `processing` or still holding our own earlier result; any other row
    was ended by someone else (a person, the old app) and is left as it is. A row that names
    another NCA job than `external_job_id` was re-submitted meanwhile: this attempt's result
    belongs to nobody there, and writing it would end the new attempt before the mirror sees it.
    """
    if row is None:
        return "ended"  # deleted: there is nothing to write to
    named = row.get(FIELD_EXTERNAL_ID)
    if external_job_id and isinstance(named, str) and named.strip() and named.strip() != external_job_id:
        return "ended"
    status = row.get(FIELD_STATUS)
    if status == "processing":
        return "write"
    if holds_our_result(row):
        return "done" if status == write.fields.get(FIELD_STATUS) else "write"
    return "ended"


def already_written(write: RowWrite, current: Mapping[str, Any] | None) -> bool:
    """Does the row already hold what we would write? Then writing again is not allowed. Pure."""
    if current is None:
        return False
    for field, wanted in write.fields.items():
        if field in (FIELD_NOTES, FIELD_RESPONSE):
            continue  # free text: the status field is what decides
        have = current.get(field)
        if isinstance(wanted, list):
            if not _has_attachment(have, wanted[0]["url"]):
                return False
        elif have != wanted:
            return False
    return True


def _has_attachment(have: Any, url: str) -> bool:
    """Airtable re-hosts attachments under its own URL but keeps the file name."""
    if not isinstance(have, list):
        return False
    name = basename(urlsplit(url).path)
    return any(isinstance(a, dict) and (a.get("url") == url or a.get("filename") == name) for a in have)


def identity(job: MediaJob) -> Identity:
    return (job.uid, job.attempt, job.phase)


def send_at(
    *, now: float, oldest: float, ready: int, limit: int, arrivals: Sequence[float], linger: float
) -> float:
    """When a batch of `ready` items (the oldest waiting since `oldest`) should go. Pure.

    A full batch goes now. A partial one waits only while items keep coming: the stage's arrivals
    over the last `linger` seconds give a rate and the longest gap between two of them. It waits
    while that rate brings the next item before its oldest has waited `linger`, and only until no
    item has come for one and a half longest gaps (the stream stopped). A single burst has no gap
    and goes at once; so does a trickle; a stream is written up to ten rows a request; groups
    that arrive together (one per payload read) are joined by the next group.
    """
    deadline = oldest + linger
    if ready >= limit or deadline <= now:
        return now
    recent = sorted(t for t in arrivals if now - linger < t <= now)
    if len(recent) < 2:
        return now  # one arrival gives no rate
    longest = max(b - a for a, b in pairwise(recent))
    stalled_at = recent[-1] + 1.5 * longest
    if longest <= 0 or stalled_at <= now:
        return now  # one burst, or the stream stopped
    rate = (len(recent) - 1) / (recent[-1] - recent[0])
    if now + 1 / rate > deadline:
        return now  # the next one would come too late
    return min(deadline, stalled_at)


@dataclasses.dataclass(slots=True)
class _Pending:
    job: MediaJob
    writes: list[RowWrite]
    suspect: bool
    stage: Stage = Stage.CHECK
    since: float = 0.0  # set by `_add` on enqueueing: its batches together wait at most `linger` from here
    entered: float = 0.0  # when it reached its current stage: what a vouching payload read must follow
    attempts: int = 0
    not_before: float = 0.0
    reported: bool = False
    outcome: str = Reason.AIRTABLE_UPDATED  # the Synced reason once the writes are done
    jobs_notes: Any = None  # the Jobs row's Notes as read, to append to
    target_error: str | None = None

    @property
    def next_stage(self) -> Stage:
        """After the check or a write: the next write's table, or the status."""
        return Stage(self.writes[0].table) if self.writes else Stage.STATUS


class WriteBack:
    def __init__(
        self,
        *,
        airtable: AirtableClient,
        kube: KubeClient,
        store: JobStore,
        writer: StatusWriter,
        metrics: Metrics,
        tables: Tables,
        retry_cap: float = 600.0,
        linger: float | Callable[[], float] = 0.0,
        rows: KnownRows,
        now: Callable[[], datetime] = utcnow,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._airtable = airtable
        self._kube = kube
        self._store = store
        self._writer = writer
        self._metrics = metrics
        self._tables = tables
        self._retry_cap = retry_cap
        self._linger: Callable[[], float] = linger if callable(linger) else (lambda: float(linger))
        self._rows = rows
        self._arrivals: dict[Stage, deque[float]] = {s: deque(maxlen=256) for s in Stage}
        self._rng = random.Random()
        self._now = now
        self._clock = clock
        self._pending: dict[Key, _Pending] = {}
        metrics.writeback_backlog.set_function(lambda: len(self._pending))
        self._seen_processing: set[Key] = set()
        self._synced: dict[Key, Identity] = {}  # so that a late event cannot re-enqueue a transition
        self._wake: dict[Stage, asyncio.Event] = {s: asyncio.Event() for s in Stage}

    # Feeding ------------------------------------------------------------------------------------

    def note_processing(self, key: Key) -> None:
        """Seen in Processing by this leader; a pending write of an earlier attempt is dropped."""
        self._seen_processing.add(key)
        self._pending.pop(key, None)

    def forget(self, key: Key) -> None:
        """The MediaJob is gone: drop everything remembered about it."""
        self._seen_processing.discard(key)
        self._synced.pop(key, None)
        self._pending.pop(key, None)

    @property
    def remembered(self) -> int:
        """Jobs this write-back keeps any memory of (for the clean-up test and metrics)."""
        return len(self._seen_processing | set(self._synced) | set(self._pending))

    def enqueue(self, job: MediaJob) -> None:
        if not job.needs_sync or self._synced.get(job.key) == identity(job):
            return
        pending = self._pending.get(job.key)
        if pending is not None and identity(pending.job) == identity(job):
            pending.job = job
            return
        self._add(_Pending(job=job, writes=planned_writes(job), suspect=job.key not in self._seen_processing))

    def _add(self, item: _Pending) -> None:
        self._pending[item.job.key] = item
        item.since = self._clock()
        self._move(item, item.stage)

    def _move(self, item: _Pending, stage: Stage) -> None:
        """The item enters `stage`, with a clean retry record; the stage's rate counts it."""
        item.stage = stage
        item.attempts = 0
        item.not_before = 0.0
        item.entered = self._clock()
        self._arrivals[stage].append(item.entered)
        self._wake[stage].set()

    def kick(self, job: MediaJob) -> None:
        """A recheck asks for the write now, not after the current backoff; a job whose target row
        was rejected gets its target write tried once more."""
        if (
            job.phase == "Completed"
            and job.status.sync_reason == Reason.TARGET_REJECTED
            and job.key not in self._pending
        ):
            target = [w for w in planned_writes(job) if w.table != "Jobs"]
            if target:
                self._add(_Pending(job=job, writes=target, suspect=True, stage=Stage(target[0].table)))
        self.enqueue(job)
        pending = self._pending.get(job.key)
        if pending is not None:
            pending.not_before = 0.0
            pending.since = float("-inf")
            self._wake[pending.stage].set()

    # Running ------------------------------------------------------------------------------------

    def on_change(self, job: MediaJob, old: MediaJob | None) -> None:
        """Store listener, as the mirror and the reconciler have theirs: an ended job's result is
        queued; a Processing one is remembered (its later write is then not suspect)."""
        if job.ended:
            self.enqueue(job)
        else:
            self.note_processing(job.key)

    async def run(self) -> None:
        self._store.subscribe(self.on_change, self.forget)
        try:
            for job in list(self._store):
                self.on_change(job, None)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._check_loop())
                for stage in (Stage.SEGMENTS, Stage.VIDEOS, Stage.JOBS):
                    group.create_task(self._stage_loop(stage))
                group.create_task(self._status_loop())
        finally:
            self._store.unsubscribe(self.on_change, self.forget)

    async def _take(self, stage: Stage, limit: int, *, lingers: bool = False) -> list[_Pending]:
        """Up to `limit` items ready for the stage: a full batch at once, a partial one when
        `send_at` says waiting for more no longer pays."""
        wake = self._wake[stage]
        while True:
            now = self._clock()
            mine = [item for item in self._pending.values() if item.stage == stage]
            ready = [item for item in mine if item.not_before <= now][:limit]
            if len(ready) == limit:
                return ready
            earliest = min((item.not_before for item in mine if item.not_before > now), default=None)
            if ready:
                at = send_at(
                    now=now,
                    oldest=min(item.since for item in ready),
                    ready=len(ready),
                    limit=limit,
                    arrivals=self._arrivals[stage],
                    linger=self._linger() if lingers else 0.0,
                )
                if at <= now:
                    return ready
                earliest = at if earliest is None else min(earliest, at)
            wake.clear()
            timeout = None if earliest is None else max(earliest - now, 0.0)
            await wait_event(wake, timeout)

    async def _stage_loop(self, stage: Stage) -> None:
        while True:
            batch = await self._take(stage, MAX_RECORDS_PER_WRITE, lingers=True)
            await self._write_batch(stage, batch)

    async def _check_loop(self) -> None:
        rows = self._rows
        while True:
            if not rows.streaming:  # no payloads will vouch: gather a batch to read
                await self._check_batch(await self._take(Stage.CHECK, IDS_PER_READ, lingers=True))
                continue
            # The push source reads payloads at its own spacing (half a polling interval under a
            # stream of pings); waiting for its next read costs no call and gathers a batch.
            batch = await self._take(Stage.CHECK, IDS_PER_READ, lingers=False)
            if not await rows.wait_fresh(max(i.entered for i in batch), self._linger() * 1.25 + 1.0):
                await self._check_batch(batch)
                continue
            now = self._clock()
            unknown = []
            for item in [i for i in self._pending.values() if i.stage is Stage.CHECK and i.not_before <= now]:
                known = rows.as_of(self._jobs_write(item).record_id, item.entered)
                if known is not None:
                    self._judge(item, known.as_row())
                elif item.entered <= rows.fresh_at:
                    unknown.append(item)
            for start in range(0, len(unknown), IDS_PER_READ):
                await self._check_batch(unknown[start : start + IDS_PER_READ])

    @staticmethod
    def _jobs_write(item: _Pending) -> RowWrite:
        return next(w for w in item.writes if w.table == "Jobs")

    async def _check_batch(self, batch: list[_Pending]) -> None:
        """Read the batch's Jobs rows (one request for up to 50) and decide what may be written."""
        ids = [self._jobs_write(i).record_id for i in batch]
        try:
            rows = await self._airtable.get_records(
                self._tables.jobs, ids, fields=(FIELD_STATUS, FIELD_NOTES, FIELD_EXTERNAL_ID)
            )
        except AirtableError as exc:
            for item in batch:
                self._failed(item, exc)
            return
        for rid in ids:
            row = rows.get(rid)
            self._rows.learn(rid, facts_from_rest(row) if row is not None else RowFacts(DELETED, None, None))
        for item in batch:
            self._judge(item, rows.get(self._jobs_write(item).record_id))

    def _judge(self, item: _Pending, row: Mapping[str, Any] | None) -> None:
        """The one decision whether the Jobs row may be written, from its state as now known (read
        by the check, or known just before the write): write it, or leave it as it is (ended by
        someone else, or already holding this result) and go on to the status."""
        write = self._jobs_write(item)
        verdict = jobs_row_verdict(write, row, item.job.spec.external_job_id)
        if verdict == "write":
            item.jobs_notes = (row or {}).get(FIELD_NOTES)
            if item.stage is Stage.CHECK:
                self._move(item, item.next_stage)
            return
        item.writes.clear()
        jlog = logs.for_job(log, item.job)
        if verdict == "ended":
            item.outcome = Reason.ENDED_IN_AIRTABLE
            jlog.info("Jobs row %s was ended in Airtable by someone else: left as it is", write.record_id)
        else:
            jlog.info("Jobs row %s already holds this result; not writing it again", write.record_id)
        self._move(item, Stage.STATUS)

    async def _write_batch(self, stage: Stage, batch: list[_Pending]) -> None:
        table = self._tables.jobs if stage is Stage.JOBS else self._tables.physical(stage)
        suspects = [item for item in batch if item.suspect and stage is not Stage.JOBS]  # Jobs rows: checked
        if suspects:
            try:
                current = await self._airtable.get_records(
                    table,
                    [i.writes[0].record_id for i in suspects],
                    fields=sorted({f for i in suspects for f in i.writes[0].fields}),
                )
            except AirtableError as exc:
                for item in batch:
                    self._failed(item, exc)
                return
            for item in suspects:
                write = item.writes[0]
                if already_written(write, current.get(write.record_id)):
                    logs.for_job(log, item.job).info(
                        "%s row %s already up to date; not writing it again", stage, write.record_id
                    )
                    self._advance(item)
                else:
                    item.suspect = False
        if stage is Stage.JOBS:
            for item in batch:  # a change learned since the check (a payload, say) still counts
                known = self._rows.as_of(item.writes[0].record_id)
                if known is not None:
                    self._judge(item, known.as_row())
        batch = [item for item in batch if item.stage is stage]
        if not batch:
            return
        try:
            answer = await self._airtable.update_records(
                table, [(i.writes[0].record_id, self._fields(i)) for i in batch]
            )
        except AirtableRejected as exc:
            if len(batch) > 1:  # one bad record rejects the whole request: write one by one to isolate it
                for item in batch:
                    await self._write_batch(stage, [item])
            elif stage is Stage.JOBS:
                self._failed(batch[0], exc)
            else:
                self._target_rejected(batch[0], exc)
            return
        except AirtableError as exc:
            for item in batch:
                item.suspect = True  # it may have been applied before the error
                if stage is Stage.JOBS:
                    item.stage, item.entered = Stage.CHECK, self._clock()  # read it again: it may hold it now
                self._failed(item, exc)
            return
        if stage is Stage.JOBS:
            self._rows.learn_rest(answer)  # what the rows hold now: no read before the next write
        for item in batch:
            self._advance(item)

    def _fields(self, item: _Pending) -> Mapping[str, Any]:
        """The Jobs row's Notes get one more line; everything else is written as planned."""
        write = item.writes[0]
        if write.table != "Jobs":
            return write.fields
        text = str(write.fields.get(FIELD_NOTES, ""))
        if item.target_error:
            text += f" {item.target_error}"
        return {**write.fields, FIELD_NOTES: append_note(item.jobs_notes, note_line(self._now(), text))}

    def _target_rejected(self, item: _Pending, error: AirtableRejected) -> None:
        """Rejected for good: the Jobs row goes ahead with a Note; only a recheck retries the target."""
        write = item.writes[0]
        item.target_error = (
            f"The output could not be attached to {write.table} row {write.record_id}: {error}"
        )
        item.outcome = Reason.TARGET_REJECTED
        self._metrics.writeback_errors.labels(kind="rejected").inc()
        logs.for_job(log, item.job).warning("%s", item.target_error)
        self._advance(item)

    def _advance(self, item: _Pending) -> None:
        item.writes.pop(0)
        self._move(item, item.next_stage)

    def _failed(self, item: _Pending, error: Exception) -> None:
        item.attempts += 1
        kind = "rejected" if isinstance(error, AirtableRejected) else "unavailable"
        self._metrics.writeback_errors.labels(kind=kind).inc()
        delay = backoff_delay(item.attempts - 1, base=RETRY_BASE, cap=self._retry_cap, rng=self._rng)
        item.not_before = self._clock() + delay
        self._wake[item.stage].set()  # its stage's loop must learn when the retry is due
        logs.for_job(log, item.job).warning(
            "Airtable write-back failed (attempt %d), retry in %.0f s: %s", item.attempts, delay, error
        )
        if item.attempts >= PERSISTENT_FAILURES and not item.reported:
            item.reported = True
            task = asyncio.create_task(self._report(item.job, str(error)))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _report(self, job: MediaJob, error: str) -> None:
        message = f"Airtable write-back keeps failing (will keep retrying): {error}"
        try:
            await self._writer.write(
                job,
                sync_error_status(job, now=self._now(), error=message),
                guard=False,
                event=Event(Reason.AIRTABLE_WRITE_FAILING, message, warning=True),
            )
        except KubeError as exc:
            logs.for_job(log, job).warning("could not record the write-back error: %s", exc)

    async def _status_loop(self) -> None:
        while True:
            batch = await self._take(Stage.STATUS, 20)
            await asyncio.gather(*(self._mark_synced(item) for item in batch))

    async def _mark_synced(self, item: _Pending) -> None:
        job = self._store.get(item.job.key) or item.job
        if identity(job) != identity(item.job):
            self._done(item)  # the job moved on (a new attempt or transition): its own item follows
            return
        now = self._now()
        event = None
        if item.outcome == Reason.TARGET_REJECTED:
            error = item.target_error or "target rejected"
            patch = target_rejected_status(job, now=now, error=error)
            event = Event(Reason.TARGET_REJECTED, error, warning=True)
        else:
            patch = synced_status(job, now=now, reason=item.outcome)
        try:
            await self._writer.write(job, patch, guard=False, event=event)
        except NotFound:
            self._done(item)
        except KubeError as exc:
            self._failed(item, exc)
        else:
            self._done(item)
            logs.for_job(log, job).info("Airtable write-back done (%s)", item.outcome)

    def _done(self, item: _Pending) -> None:
        self._synced[item.job.key] = identity(item.job)
        if self._pending.get(item.job.key) is item:
            del self._pending[item.job.key]

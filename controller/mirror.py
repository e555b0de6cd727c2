"""Airtable → MediaJobs: one resource per Jobs row in `processing`, created once.

A cycle takes one batch from its change source (controller.changes: incremental polling, or
Airtable's webhooks through controller.airtable_push), which decides what the cycle costs. Rows
already mirrored cost nothing more; a row that cannot be parsed costs one Notes write, once; a row
that left `processing` behind our back costs one read to learn how it ended. `ensure_mediajob` is
the one way a Jobs row becomes a MediaJob: the early webhook (controller.receiver) uses it too.

The spec is patched only for a re-submission (contract section 2): the row's External Job ID
changed, or the row is `processing` again after the controller's result was written. The patch
sets `spec.resubmittedAt`, which makes a new generation and a new attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from controller.changes import ChangeBatch, ChangeSource
from controller.clients.airtable import AirtableClient, AirtableError
from controller.clients.kube import Conflict, KubeClient, KubeError
from controller.decide import EndedInAirtable, decide_airtable_row
from controller.metrics import Metrics
from controller.model import JobSpec, MediaJob, fmt_time, new_object, utcnow
from controller.naming import UnsafeIdError, check_record_id, resource_name
from controller.rows import JobRow, RowError, append_note, parse_job_row
from controller.store import JobStore, Key
from controller.transitions import Transitions
from controller.vocabulary import FIELD_NOTES, FIELD_RESPONSE, FIELD_STATUS, LABEL_EXTERNAL_ID

log = logging.getLogger(__name__)
NOTE_PREFIX = "mediajob-controller cannot track this job:"
CREATE_CONCURRENCY = 8


@dataclasses.dataclass(slots=True)
class CycleReport:
    rows: int = 0
    created: int = 0
    invalid: int = 0
    notes_written: int = 0
    ended_in_airtable: int = 0
    create_attempts: int = 0
    resubmitted: int = 0

    @property
    def api_writes(self) -> int:
        """Writes to the API server this cycle (creates tried, re-submissions, departed rows)."""
        return self.create_attempts + self.ended_in_airtable + self.resubmitted


def is_resubmission(job: MediaJob, row: JobRow, *, written_attempt: int | None) -> bool:
    """Did the app send this job again? Pure.

    `written_attempt`: the attempt whose result had reached the Jobs row before the row was read.
    A row still `processing` only because our own write is pending is not a re-submission, and
    neither is one whose written result belongs to an earlier attempt: an early webhook may have
    started and ended a newer attempt between that snapshot and the listing (found by the soak).
    """
    if job.spec.external_job_id != row.external_job_id:
        return True
    return job.ended and written_attempt == job.attempt


def resubmission_patch(job: MediaJob, row: JobRow, now: datetime) -> dict[str, Any]:
    """The merge patch of a re-submission: the row's spec, a new resubmittedAt, the label."""
    spec: dict[str, Any] = JobSpec.from_row(row).to_dict()
    spec.setdefault("target", None)
    spec["resubmittedAt"] = fmt_time(now)
    return {
        "metadata": {
            "labels": {LABEL_EXTERNAL_ID: row.external_job_id},
            "resourceVersion": job.resource_version,
        },
        "spec": spec,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Ensured:
    """What `ensure_mediajob` did, and the object the API server answered with, if it answered one."""

    action: Literal["created", "kept", "resubmitted", "raced"]
    raw: dict[str, Any] | None = None


async def ensure_mediajob(
    kube: KubeClient,
    namespace: str,
    row: JobRow,
    existing: MediaJob | None,
    *,
    now: datetime,
    written_attempt: int | None = None,
) -> Ensured:
    """The MediaJob of a `processing` Jobs row: created if absent, a new attempt if the row was sent again.

    The mirror and an early webhook both come here, so the two cannot disagree on what a row
    means. A 409 is `raced` (someone was faster: the watch brings their object, the next look
    decides); any other API error is raised, a 400 or 422 included, for the caller to report.
    """
    if existing is None:
        body = new_object(resource_name(row.record_id), namespace, JobSpec.from_row(row))
        try:
            return Ensured("created", await kube.create_mediajob(body))
        except Conflict:
            return Ensured("raced")
    if not existing.managed or not is_resubmission(existing, row, written_attempt=written_attempt):
        return Ensured("kept")
    try:
        patch = resubmission_patch(existing, row, now)
        return Ensured("resubmitted", await kube.patch_mediajob(existing.namespace, existing.name, patch))
    except Conflict:
        return Ensured("raced")


def unreadable(record: Any, exc: Exception) -> RowError:
    """A typed error for a row that failed in a way the parser did not foresee."""
    raw_id = record.get("id") if isinstance(record, dict) else None
    try:
        record_id = check_record_id(raw_id if isinstance(raw_id, str) else "")
    except UnsafeIdError:
        record_id = "<unknown>"
    return RowError(record_id, None, f"the row could not be read ({type(exc).__name__})")


class Mirror:
    def __init__(
        self,
        *,
        airtable: AirtableClient,
        kube: KubeClient,
        store: JobStore,
        transitions: Transitions,
        metrics: Metrics,
        jobs_table: str,
        namespace: str,
        interval: float,
        now: Callable[[], datetime] = utcnow,
        source: ChangeSource,
    ) -> None:
        self._airtable = airtable
        self._source = source
        self._kube = kube
        self._store = store
        self._transitions = transitions
        self._metrics = metrics
        self._table = jobs_table
        self._namespace = namespace
        self._interval = interval
        self._now = now
        self._created: set[Key] = set()
        self._reported: dict[str, str] = {}  # record id → reason already logged
        self.last_report: CycleReport | None = None
        self.cycles = 0

    async def run(self) -> None:
        self._store.subscribe(_ignore_change, self.forget)
        try:
            await self._run()
        finally:
            self._store.unsubscribe(_ignore_change, self.forget)

    def forget(self, key: Key) -> None:
        """The MediaJob is gone (deleted after its TTL, or by hand): forget that we created it."""
        self._created.discard(key)

    async def _run(self) -> None:
        while True:
            try:
                report = await self.cycle()
                self.cycles += 1
                self._metrics.mirror_cycles.labels(result="ok").inc()
                if report.created or report.invalid or report.ended_in_airtable or report.resubmitted:
                    log.info(
                        "mirror: %d processing rows, %d created, %d re-submitted, %d invalid,"
                        " %d ended in Airtable",
                        report.rows,
                        report.created,
                        report.resubmitted,
                        report.invalid,
                        report.ended_in_airtable,
                    )
            except (AirtableError, KubeError) as exc:
                self._metrics.mirror_cycles.labels(result="error").inc()
                log.warning("mirror cycle failed, next one in %.0f s: %s", self._interval, exc)
            except Exception:
                # A bug must not end leader work: that would stop every replica in turn (section 7).
                self._metrics.mirror_cycles.labels(result="error").inc()
                log.exception("mirror cycle failed unexpectedly, next one in %.0f s", self._interval)
            await self._source.wait(self._interval)

    async def cycle(self) -> CycleReport:
        report = CycleReport()
        # Taken before the listing: a result written after it may not show in this listing yet.
        written = {
            job.key: job.attempt for job in self._store if job.ended and job.status.jobs_row_written_at
        }
        batch = await self._source.next_batch()
        report.rows = len(batch.records)
        processing: set[str] = set()
        notes: list[tuple[str, dict[str, Any]]] = []
        missing: list[tuple[Any, JobRow, Key]] = []
        resubmitted: list[tuple[MediaJob, JobRow, int | None]] = []
        for record in batch.records:
            try:
                row = parse_job_row(record)
                key = (self._namespace, resource_name(row.record_id))
            except RowError as exc:
                report.invalid += self._invalid(record, exc, notes)
                continue
            except Exception as exc:  # a row must never end the cycle, whatever is in it
                log.exception("unexpected error reading a Jobs row")
                report.invalid += self._invalid(record, unreadable(record, exc), notes)
                continue
            processing.add(row.record_id)
            existing = self._store.get(key)
            if existing is None:
                if key not in self._created:
                    missing.append((record, row, key))
            elif existing.managed and is_resubmission(existing, row, written_attempt=written.get(key)):
                resubmitted.append((existing, row, written.get(key)))
        slots = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(record: Any, row: JobRow, key: Key) -> None:
            """Create if absent; a MediaJob the API server refuses (400, 422) is reported on the row."""
            async with slots:
                try:
                    ensured = await ensure_mediajob(self._kube, key[0], row, None, now=self._now())
                    if ensured.action == "created":
                        self._metrics.mirror_created.inc()
                    self._created.add(key)
                    error = None
                except KubeError as exc:
                    if exc.status not in (400, 422):
                        raise
                    error = f"the API server refused the MediaJob: {exc}"
                except Exception as exc:
                    log.exception("unexpected error creating the MediaJob for %s", row.record_id)
                    error = f"could not be mirrored ({type(exc).__name__})"
            if error:
                report.invalid += self._invalid(record, RowError(row.record_id, None, error), notes)
            else:
                report.created += 1

        await asyncio.gather(*(create(*item) for item in missing))
        report.create_attempts = len(missing)
        for job, row, written_attempt in resubmitted:
            report.resubmitted += await self._resubmit(job, row, written_attempt)
        if notes:
            await self._airtable.update_records(self._table, notes)
            report.notes_written = len(notes)
        report.ended_in_airtable = await self._end_departed(processing, batch)
        await batch.commit()
        self.last_report = report
        return report

    async def _resubmit(self, job: MediaJob, row: JobRow, written_attempt: int | None) -> int:
        """Patch the spec for a new attempt; a 409 means the job changed: the next cycle decides."""
        try:
            ensured = await ensure_mediajob(
                self._kube, job.namespace, row, job, now=self._now(), written_attempt=written_attempt
            )
            if ensured.action != "resubmitted":
                return 0
        except KubeError as exc:
            if exc.status in (400, 422):
                log.warning("the API server refused the re-submission of %s: %s", row.record_id, exc)
                return 0
            raise
        log.info(
            "Jobs row %s was sent again (NCA job %s): new attempt for %s/%s",
            row.record_id,
            row.external_job_id,
            job.namespace,
            job.name,
        )
        return 1

    def _invalid(self, record: Any, error: RowError, notes: list[tuple[str, dict[str, Any]]]) -> int:
        """Log and count once per row and reason; queue the Notes write if not already there."""
        if self._reported.get(error.record_id) != error.reason:
            self._reported[error.record_id] = error.reason
            self._metrics.mirror_invalid_rows.inc()
            log.warning("skipping %s", error)
        if error.record_id.startswith("rec") and isinstance(record, dict):
            fields = record.get("fields")
            existing = fields.get(FIELD_NOTES) if isinstance(fields, dict) else None
            reason = f"{error.field}: {error.reason}" if error.field else error.reason
            line = f"{NOTE_PREFIX} {reason}"
            if not (isinstance(existing, str) and line in existing):  # unless the Notes already say so
                notes.append((error.record_id, {FIELD_NOTES: append_note(existing, line)}))
        return 1

    async def _end_departed(self, processing: set[str], batch: ChangeBatch) -> int:
        departed = [
            job
            for job in self._store
            if job.phase == "Processing"
            and job.namespace == self._namespace
            and job.spec.airtable_record_id not in processing
            and batch.may_have_departed(job.spec.airtable_record_id)
            and job.managed
        ]
        if not departed:
            return 0
        rows = await self._airtable.get_records(
            self._table,
            [j.spec.airtable_record_id for j in departed],
            fields=(FIELD_STATUS, FIELD_RESPONSE),
        )
        ended = 0
        for job in departed:
            decision = decide_airtable_row(job, rows.get(job.spec.airtable_record_id))
            if not isinstance(decision, EndedInAirtable):
                continue
            if await self._transitions.apply(job, decision, checks=job.status.checks) is not None:
                ended += 1
        return ended


def _ignore_change(job: MediaJob, old: MediaJob | None) -> None:
    """The mirror only needs to hear about removals."""

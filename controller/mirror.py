"""Airtable → MediaJobs: one resource per Jobs row in `processing`, created once, never overwritten.

A cycle costs one Airtable request per 100 processing rows. Rows already mirrored cost nothing
more; a row that cannot be parsed costs one Notes write, once; a row that left `processing`
behind our back costs one read to learn how it ended.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from controller.changes import ChangeBatch, ChangeSource, FullListing
from controller.clients.airtable import AirtableClient, AirtableError
from controller.clients.kube import Conflict, KubeClient, KubeError
from controller.decide import EndedInAirtable, decide_airtable_row
from controller.metrics import Metrics
from controller.model import JobSpec, MediaJob, new_object, utcnow
from controller.naming import resource_name
from controller.rows import (
    FIELD_NOTES,
    FIELD_RESPONSE,
    FIELD_STATUS,
    RowError,
    parse_job_row,
)
from controller.store import JobStore, Key
from controller.transitions import Transitions

log = logging.getLogger(__name__)
PROCESSING_FORMULA = "{Status}='processing'"
MANAGED_BY = ("app.kubernetes.io/managed-by", "mediajob-controller")
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

    @property
    def api_writes(self) -> int:
        """Writes to the API server this cycle (creates tried, and transitions of departed rows)."""
        return self.create_attempts + self.ended_in_airtable


def invalid_note(existing: Any, reason: str) -> str | None:
    """The Notes text to write for a bad row, or None if it already says so. Pure."""
    line = f"{NOTE_PREFIX} {reason}"
    text = existing if isinstance(existing, str) else ""
    if line in text:
        return None
    return f"{text.rstrip()}\n{line}" if text.strip() else line


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
        source: ChangeSource | None = None,
    ) -> None:
        self._airtable = airtable
        self._source = source or FullListing(airtable, jobs_table)
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
        while True:
            try:
                report = await self.cycle()
                self.cycles += 1
                self._metrics.mirror_cycles.labels(result="ok").inc()
                if report.created or report.invalid or report.ended_in_airtable:
                    log.info(
                        "mirror: %d processing rows, %d created, %d invalid, %d ended in Airtable",
                        report.rows,
                        report.created,
                        report.invalid,
                        report.ended_in_airtable,
                    )
            except (AirtableError, KubeError) as exc:
                self._metrics.mirror_cycles.labels(result="error").inc()
                log.warning("mirror cycle failed, next one in %.0f s: %s", self._interval, exc)
            await self._source.wait(self._interval)

    async def cycle(self) -> CycleReport:
        report = CycleReport()
        batch = await self._source.next_batch()
        records = batch.records
        report.rows = len(records)
        processing: set[str] = set()
        notes: list[tuple[str, dict[str, Any]]] = []
        missing: list[tuple[Any, JobSpec, Key]] = []
        for record in records:
            try:
                row = parse_job_row(record)
            except RowError as exc:
                report.invalid += self._invalid(record, exc, notes)
                continue
            processing.add(row.record_id)
            key = (self._namespace, resource_name(row.record_id))
            if key not in self._created and self._store.get(key) is None:
                missing.append((record, JobSpec.from_row(row), key))
        slots = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def create(record: Any, spec: JobSpec, key: Key) -> None:
            async with slots:
                error = await self._create(key, spec)
            if error:
                report.invalid += self._invalid(record, RowError(spec.airtable_record_id, None, error), notes)
            else:
                report.created += 1

        await asyncio.gather(*(create(*item) for item in missing))
        report.create_attempts = len(missing)
        if notes:
            await self._airtable.update_records(self._table, notes)
            report.notes_written = len(notes)
        report.ended_in_airtable = await self._end_departed(processing, batch)
        await batch.commit()
        self.last_report = report
        return report

    async def _create(self, key: Key, spec: JobSpec) -> str | None:
        """Create if absent; returns an error text if the API server refuses the object."""
        body = new_object(key[1], key[0], spec)
        try:
            await self._kube.create_mediajob(body)
            self._metrics.mirror_created.inc()
        except Conflict:
            pass  # created meanwhile (another cycle, a previous leader or by hand): keep it as is
        except KubeError as exc:
            if exc.status in (400, 422):
                return f"the API server refused the MediaJob: {exc}"
            raise
        self._created.add(key)
        return None

    def _invalid(self, record: Any, error: RowError, notes: list[tuple[str, dict[str, Any]]]) -> int:
        """Log and count once per row and reason; queue the Notes write if not already there."""
        first = self._reported.get(error.record_id) != error.reason
        if first:
            self._reported[error.record_id] = error.reason
            self._metrics.mirror_invalid_rows.inc()
            log.warning("skipping %s", error)
        if error.record_id.startswith("rec") and isinstance(record, dict):
            fields = record.get("fields")
            fields = fields if isinstance(fields, dict) else {}
            text = invalid_note(
                fields.get(FIELD_NOTES), error.reason if not error.field else f"{error.field}: {error.reason}"
            )
            if text is not None:
                notes.append((error.record_id, {FIELD_NOTES: text}))
        return 1

    async def _end_departed(self, processing: set[str], batch: ChangeBatch) -> int:
        departed = [
            job
            for job in self._store
            if job.status.phase == "Processing"
            and job.namespace == self._namespace
            and job.spec.airtable_record_id not in processing
            and batch.may_have_departed(job.spec.airtable_record_id)
            and self._managed(job)
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

    def _managed(self, job: MediaJob) -> bool:
        return job.labels.get(MANAGED_BY[0]) == MANAGED_BY[1]

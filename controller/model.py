"""The MediaJob as the controller sees it (the status documents it writes are in status.py).

Raw objects from the API are parsed once into small frozen views, so that the rest of the code
works with typed fields and an invalid resource is reported once with a clear reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from controller.naming import UnsafeIdError, check_external_job_id, check_record_id
from controller.rows import EARLIEST_SUBMITTED, LATEST_SUBMITTED, JobRow, Target, submitted_in_range
from controller.vocabulary import (
    ANNOTATION_RECHECK,
    GROUP,
    KIND,
    LABEL_EXTERNAL_ID,
    LABEL_RECORD,
    MANAGED_BY,
    VERSION,
)

Phase = Literal["Processing", "Completed", "Failed", "TimedOut"]
Via = Literal["spaces", "nca-status", "webhook"]
PHASES: tuple[Phase, ...] = ("Processing", "Completed", "Failed", "TimedOut")
TERMINAL: frozenset[str] = frozenset({"Completed", "Failed", "TimedOut"})


class InvalidResource(ValueError):
    """A MediaJob whose spec the controller cannot act on (the CRD schema should prevent it)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def fmt_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class JobSpec:
    airtable_record_id: str
    external_job_id: str
    operation: str
    submitted_at: datetime
    target: Target | None = None
    output_url: str | None = None
    suspend: bool = False
    resubmitted_at: datetime | None = None  # set by the mirror when the app sends the job again

    @property
    def started_at(self) -> datetime:
        """The job's age (schedule, time-out) counts from its latest submission."""
        return max(self.submitted_at, self.resubmitted_at or self.submitted_at)

    def to_dict(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "airtableRecordId": self.airtable_record_id,
            "externalJobId": self.external_job_id,
            "operation": self.operation,
            "submittedAt": fmt_time(self.submitted_at),
        }
        if self.target:
            spec["target"] = {"table": self.target.table, "recordId": self.target.record_id}
        if self.output_url:
            spec["outputUrl"] = self.output_url
        if self.suspend:
            spec["suspend"] = True
        if self.resubmitted_at:
            spec["resubmittedAt"] = fmt_time(self.resubmitted_at)
        return spec

    @classmethod
    def from_row(cls, row: JobRow) -> JobSpec:
        return cls(
            airtable_record_id=row.record_id,
            external_job_id=row.external_job_id,
            operation=row.operation,
            submitted_at=row.submitted_at,
            target=row.target,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    phase: Phase = "Processing"
    output_url: str | None = None
    completed_via: str | None = None
    completed_at: datetime | None = None
    message: str | None = None
    checks: int = 0
    airtable_synced: bool = False
    last_handled_recheck_at: str | None = None
    observed_generation: int | None = None
    conditions: tuple[Mapping[str, Any], ...] = ()
    initialized: bool = False  # the controller has written a status at least once
    attempt: int = 1
    resubmitted_at: str | None = None  # spec.resubmittedAt of the attempt this status is about
    synced_at: datetime | None = None  # when the Jobs row got this transition (clean-up counts from it)

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def _synced(self) -> Mapping[str, Any]:
        """The Synced condition ({} if none); the CRD keys conditions by type, so there is at most one."""
        return next((cond for cond in self.conditions if cond.get("type") == "Synced"), {})

    @property
    def sync_reason(self) -> str | None:
        reason = self._synced.get("reason")
        return reason if isinstance(reason, str) else None

    @property
    def jobs_row_written_at(self) -> datetime | None:
        """When Airtable's Jobs row got this transition: syncedAt, or the Synced condition's time."""
        if self.synced_at is not None or not self.airtable_synced:
            return self.synced_at
        synced = self._synced
        return parse_time(synced.get("lastTransitionTime")) if synced.get("status") == "True" else None

    @classmethod
    def from_dict(cls, raw: Any) -> JobStatus:
        if not isinstance(raw, dict) or not raw.get("phase"):
            return cls()
        phase = raw.get("phase")
        conditions = raw.get("conditions")
        return cls(
            phase=phase if phase in PHASES else "Processing",
            output_url=_str(raw.get("outputUrl")),
            completed_via=_str(raw.get("completedVia")),
            completed_at=parse_time(raw.get("completedAt")),
            message=_str(raw.get("message")),
            checks=_int(raw.get("checks")) or 0,
            airtable_synced=raw.get("airtableSynced") is True,
            last_handled_recheck_at=_str(raw.get("lastHandledRecheckAt")),
            observed_generation=_int(raw.get("observedGeneration")),
            conditions=tuple(c for c in conditions if isinstance(c, dict))
            if isinstance(conditions, list)
            else (),
            initialized=True,
            attempt=_int(raw.get("attempt")) or 1,
            resubmitted_at=_str(raw.get("resubmittedAt")),
            synced_at=parse_time(raw.get("syncedAt")),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class MediaJob:
    namespace: str
    name: str
    uid: str
    resource_version: str
    generation: int
    spec: JobSpec
    status: JobStatus
    recheck_token: str | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def managed(self) -> bool:
        """Created by the mirror (or an early webhook), so the controller may give it new attempts."""
        return self.labels.get(MANAGED_BY[0]) == MANAGED_BY[1]

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def recheck_pending(self) -> bool:
        return bool(self.recheck_token) and self.recheck_token != self.status.last_handled_recheck_at

    @property
    def new_attempt(self) -> bool:
        """The mirror re-submitted the job and no status has been written for that attempt yet."""
        spec_token = fmt_time(self.spec.resubmitted_at) if self.spec.resubmitted_at else None
        return spec_token != self.status.resubmitted_at

    @property
    def phase(self) -> Phase:
        """The phase of the current attempt: a re-submitted job is Processing again."""
        return "Processing" if self.new_attempt else self.status.phase

    @property
    def ended(self) -> bool:
        return self.phase in TERMINAL

    @property
    def attempt(self) -> int:
        return self.status.attempt + 1 if self.new_attempt else self.status.attempt

    @property
    def needs_sync(self) -> bool:
        """An ended attempt whose Jobs row has not been written (or found ended) yet."""
        return self.ended and not self.status.airtable_synced and self.status.synced_at is None

    def ref(self) -> dict[str, str]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "resourceVersion": self.resource_version,
        }

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> MediaJob:
        meta = obj.get("metadata") or {}
        spec = obj.get("spec")
        name = meta.get("name", "?")
        if not isinstance(spec, dict):
            raise InvalidResource(f"MediaJob {name}: spec is missing")
        try:
            parsed = _parse_spec(spec)
        except (InvalidResource, UnsafeIdError) as exc:
            raise InvalidResource(f"MediaJob {name}: {exc}") from None
        return cls(
            namespace=meta.get("namespace", ""),
            name=name,
            uid=meta.get("uid", ""),
            resource_version=str(meta.get("resourceVersion", "")),
            generation=int(meta.get("generation") or 0),
            spec=parsed,
            status=JobStatus.from_dict(obj.get("status")),
            recheck_token=_str((meta.get("annotations") or {}).get(ANNOTATION_RECHECK)),
            labels=dict(meta.get("labels") or {}),
        )


def _int(raw: Any) -> int | None:
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else None


def _str(raw: Any) -> str | None:
    return raw if isinstance(raw, str) and raw else None


def _parse_spec(spec: Mapping[str, Any]) -> JobSpec:
    operation = spec.get("operation")
    if not isinstance(operation, str) or not operation:
        raise InvalidResource("spec.operation is missing")
    submitted = parse_time(spec.get("submittedAt"))
    if submitted is None:
        raise InvalidResource("spec.submittedAt is not a date-time")
    if not submitted_in_range(submitted):
        raise InvalidResource(
            f"spec.submittedAt is outside {EARLIEST_SUBMITTED.year}-{LATEST_SUBMITTED.year - 1}"
        )
    target_raw = spec.get("target")
    target = None
    if isinstance(target_raw, dict):
        table = target_raw.get("table")
        if table not in ("Segments", "Videos"):
            raise InvalidResource("spec.target.table must be Segments or Videos")
        target = Target(table=table, record_id=check_record_id(target_raw.get("recordId", "")))
    resubmitted_raw = spec.get("resubmittedAt")
    resubmitted = parse_time(resubmitted_raw)
    if resubmitted_raw is not None and resubmitted is None:
        raise InvalidResource("spec.resubmittedAt is not a date-time")
    return JobSpec(
        airtable_record_id=check_record_id(spec.get("airtableRecordId", "")),
        external_job_id=check_external_job_id(spec.get("externalJobId", "")),
        operation=operation,
        submitted_at=submitted,
        target=target,
        output_url=_str(spec.get("outputUrl")),
        suspend=spec.get("suspend") is True,
        resubmitted_at=resubmitted,
    )


def new_object(name: str, namespace: str, spec: JobSpec) -> dict[str, Any]:
    """The MediaJob the mirror creates for a Jobs row."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                LABEL_RECORD: spec.airtable_record_id,
                LABEL_EXTERNAL_ID: spec.external_job_id,
                MANAGED_BY[0]: MANAGED_BY[1],
            },
        },
        "spec": spec.to_dict(),
    }

"""What to do with a job, given what was observed: pure, so every path is a table-driven test.

Polling and the webhook both end here, so the rules for "completed", "failed" and "wait" exist
once. The caller does the I/O (HEAD, NCA status, status patch) and asks these functions what it
means.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from typing import Literal

from controller.model import MediaJob, Via
from controller.observations import (
    NcaFailed,
    NcaNotFound,
    NcaOutcome,
    NcaPending,
    NcaStatus,
    NcaSucceeded,
    NcaUnknown,
    ObjectFound,
    ObjectMissing,
    SpacesResult,
    SpacesUnknown,
)
from controller.vocabulary import Reason


@dataclasses.dataclass(frozen=True, slots=True)
class Complete:
    url: str
    via: Via
    appeared_at: datetime | None = None  # Last-Modified of the object, for detection latency


@dataclasses.dataclass(frozen=True, slots=True)
class Fail:
    message: str
    reason: str = Reason.FAILED
    via: Via | None = None  # how the failure was learned, recorded as completedVia


@dataclasses.dataclass(frozen=True, slots=True)
class TimeOut:
    message: str
    reason: str = Reason.TIMED_OUT


@dataclasses.dataclass(frozen=True, slots=True)
class EndedInAirtable:
    """The Jobs row left `processing` without us (by hand, or a late webhook of the old app).

    Airtable already holds the final word, so the job ends as synced and nothing is written back.
    """

    phase: Literal["Completed", "Failed"]
    message: str
    url: str | None = None
    reason: str = Reason.ENDED_IN_AIRTABLE


@dataclasses.dataclass(frozen=True, slots=True)
class Wait:
    """No result yet. `error` asks for a retry with backoff rather than the normal schedule."""

    message: str
    error: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class Ignore:
    """The job has already ended: a late answer changes nothing."""

    message: str


Decision = Complete | Fail | TimeOut | EndedInAirtable | Wait | Ignore
Transition = Complete | Fail | TimeOut | EndedInAirtable


@dataclasses.dataclass(frozen=True, slots=True)
class Observation:
    spaces: SpacesResult | None = None  # None: no URL can be predicted for the operation
    nca: NcaStatus | None = None  # None: NCA was not asked this time


def should_ask_nca(spaces: SpacesResult | None, *, nca_due: bool) -> bool:
    """NCA records every status call as a job on its disk: ask only when Spaces cannot answer."""
    return nca_due and not isinstance(spaces, ObjectFound)


def decide(job: MediaJob, seen: Observation, *, now: datetime, max_age: timedelta) -> Decision:
    """Completed is final; Failed and TimedOut only mean "no output yet" and can still complete."""
    if job.phase == "Completed":
        return Ignore("job already Completed")
    if isinstance(seen.spaces, ObjectFound):
        return Complete(seen.spaces.url, "spaces", seen.spaces.last_modified)
    nca = seen.nca
    if isinstance(nca, NcaSucceeded):
        return Complete(nca.url, "nca-status")
    if job.ended:
        return Ignore(f"job still {job.phase}: no output found")
    if isinstance(nca, NcaFailed):
        return Fail(f"NCA reported the job failed (code {nca.code}): {nca.message}", via="nca-status")

    errors = []
    if isinstance(seen.spaces, SpacesUnknown):
        errors.append(f"Spaces: {seen.spaces.reason}")
    if isinstance(nca, NcaUnknown):
        errors.append(f"NCA: {nca.reason}")
    conclusive = isinstance(seen.spaces, ObjectMissing) or (
        seen.spaces is None and isinstance(nca, NcaPending | NcaNotFound)
    )
    age = now - job.spec.started_at
    if age >= max_age and conclusive:
        hours = max_age.total_seconds() / 3600
        return TimeOut(
            f"no output after {hours:g} h ({job.status.checks + 1} checks); polling stopped,"
            " a late result (webhook or recheck) will still be taken"
        )
    if errors:
        return Wait("; ".join(errors), error=True)
    if isinstance(nca, NcaPending):
        return Wait(f"NCA says {nca.state}")
    if isinstance(nca, NcaNotFound):
        return Wait("output not on Spaces yet; NCA does not know the job (404)")
    return Wait("output not on Spaces yet")


def decide_webhook(job: MediaJob, outcome: NcaOutcome) -> Decision:
    """NCA's webhook carries the same payload as a `done` status answer.

    A late success still completes a Failed or TimedOut job; a late failure changes nothing.
    """
    if job.phase == "Completed":
        return Ignore("job already Completed")
    if isinstance(outcome, NcaSucceeded):
        return Complete(outcome.url, "webhook")
    if job.ended:
        return Ignore(f"job already {job.phase}")
    return Fail(f"NCA reported the job failed (code {outcome.code}): {outcome.message}", via="webhook")


def decide_airtable_row(job: MediaJob, row: dict[str, object] | None) -> Decision:
    """A mirrored job whose Jobs row is no longer `processing`: end it the way Airtable says."""
    if job.ended:
        return Ignore(f"job already {job.phase}")
    if row is None:
        return EndedInAirtable("Failed", "the Jobs row was deleted in Airtable")
    status = row.get("Status")
    if status == "processing":
        return Wait("the Jobs row is processing again")
    if status == "completed":
        return EndedInAirtable(
            "Completed", "the Jobs row was marked completed in Airtable", _payload_url(row)
        )
    return EndedInAirtable("Failed", f"the Jobs row was set to {str(status or 'empty')[:40]!r} in Airtable")


def _payload_url(row: dict[str, object]) -> str | None:
    raw = row.get("Response Payload")
    if not isinstance(raw, str):
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    if isinstance(payload, dict):
        for key in ("output_url", "response"):
            value = payload.get(key)
            if isinstance(value, str) and value.startswith(("http://", "https://")):
                return value
    return None

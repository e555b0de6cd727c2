"""The status documents the controller writes, built as pure functions of the job and a decision.

Conditions follow Flux: `Ready` is True only once the output is in Airtable, so
`kubectl wait --for=condition=Ready` waits for success; `Synced` says whether Airtable holds the
final result. Beside them, kstatus's abnormal-true pair (kubernetes-sigs/cli-utils `pkg/kstatus`),
so that Flux's health checks, `kubectl wait` and cli-utils tell "still working" from "will not
get there on its own": `Reconciling=True` while there is work in flight (the job is processing, or
its result is on its way to Airtable) and `Stalled=True` when it ended without an output (Failed,
TimedOut) or Airtable refused its target row (TargetRejected). Each condition carries the
generation it describes; one keeps its `lastTransitionTime` while its status does not change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.decide import Complete, EndedInAirtable, Fail, Transition
from controller.model import MediaJob, fmt_time
from controller.vocabulary import STALLED_REASONS, Condition, Reason


def conditions(
    job: MediaJob, *, phase: str, synced: bool, message: str, now: datetime, sync_reason: str | None = None
) -> list[dict[str, Any]]:
    """Ready and Synced always; Reconciling or Stalled only while True (kstatus reads absent as
    False, and a False one would only be noise)."""

    def _condition(kind: str, status: bool, reason: str, text: str) -> dict[str, Any]:
        value = "True" if status else "False"
        since = fmt_time(now)
        for old in job.status.conditions:
            if old.get("type") == kind and old.get("status") == value and old.get("lastTransitionTime"):
                since = str(old["lastTransitionTime"])
        return {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": text,
            "lastTransitionTime": since,
            "observedGeneration": job.generation,
        }

    if phase == "Completed" and synced:
        ready = _condition(Condition.READY, True, Reason.COMPLETED, message)
    elif phase == "Completed" and sync_reason == Reason.TARGET_REJECTED:
        ready = _condition(Condition.READY, False, Reason.TARGET_REJECTED, message)
    elif phase in ("Failed", "TimedOut"):
        ready = _condition(Condition.READY, False, phase, message)
    else:
        ready = _condition(Condition.READY, False, Reason.PROCESSING, message)
    if synced:
        sync = _condition(
            Condition.SYNCED, True, sync_reason or Reason.AIRTABLE_UPDATED, "Airtable holds the final result"
        )
    elif phase == "Processing":
        sync = _condition(Condition.SYNCED, False, Reason.PROCESSING, "nothing to write to Airtable yet")
    else:
        sync = _condition(
            Condition.SYNCED, False, sync_reason or Reason.PENDING, "waiting for the Airtable write-back"
        )
    stalled_reason = Reason.TARGET_REJECTED if sync_reason == Reason.TARGET_REJECTED else phase
    if stalled_reason in STALLED_REASONS:
        return [ready, sync, _condition(Condition.STALLED, True, stalled_reason, message)]
    if phase == "Processing":
        return [ready, sync, _condition(Condition.RECONCILING, True, Reason.PROCESSING, message)]
    if not synced:  # Completed, its result on the way to Airtable (or retried after an error)
        return [
            ready,
            sync,
            _condition(Condition.RECONCILING, True, sync_reason or Reason.PENDING, sync["message"]),
        ]
    return [ready, sync]


# Fields that belong to one attempt's result: a new attempt removes them (merge-patch null).
_RESULT_FIELDS = ("outputUrl", "completedVia", "completedAt", "failedAt", "outputLastModified", "syncedAt")


def attempt_fields(job: MediaJob) -> dict[str, Any]:
    """Which attempt a status is about; a new attempt also clears the previous attempt's result."""
    fields: dict[str, Any] = {
        "attempt": job.attempt,
        "resubmittedAt": fmt_time(job.spec.resubmitted_at) if job.spec.resubmitted_at else None,
    }
    if job.new_attempt:
        fields.update(dict.fromkeys(_RESULT_FIELDS))
    return fields


def initial_status(job: MediaJob, *, now: datetime, checks: int, message: str) -> dict[str, Any]:
    """The first status of an attempt (Processing), written together with its first check."""
    return {
        **attempt_fields(job),
        "phase": "Processing",
        "reason": Reason.RESUBMITTED if job.new_attempt else Reason.PROCESSING,
        "message": message,
        "checks": checks,
        "airtableSynced": False,
        "observedGeneration": job.generation,
        "conditions": conditions(job, phase="Processing", synced=False, message=message, now=now),
    }


def transition_status(job: MediaJob, decision: Transition, *, now: datetime, checks: int) -> dict[str, Any]:
    status: dict[str, Any] = {
        **attempt_fields(job),
        "checks": checks,
        "airtableSynced": False,
        "syncedAt": None,  # a new transition needs its own Airtable write
        "observedGeneration": job.generation,
    }
    if isinstance(decision, EndedInAirtable):
        status.update(
            phase=decision.phase,
            reason=decision.reason,
            message=decision.message,
            airtableSynced=True,
            syncedAt=fmt_time(now),
        )
        status["completedAt" if decision.phase == "Completed" else "failedAt"] = fmt_time(now)
        if decision.url:
            status["outputUrl"] = decision.url
        status["conditions"] = conditions(
            job,
            phase=decision.phase,
            synced=True,
            message=decision.message,
            now=now,
            sync_reason=decision.reason,
        )
        return status
    if isinstance(decision, Complete):
        message = f"output found via {decision.via}: {decision.url}"
        if job.ended:
            message += f" (after {job.phase})"
        status.update(
            phase="Completed",
            outputUrl=decision.url,
            completedVia=decision.via,
            completedAt=fmt_time(now),
            reason=Reason.COMPLETED,
            message=message,
        )
        if decision.appeared_at is not None:
            status["outputLastModified"] = fmt_time(decision.appeared_at)
        phase = "Completed"
    else:
        phase = "Failed" if isinstance(decision, Fail) else "TimedOut"
        status.update(phase=phase, failedAt=fmt_time(now), reason=decision.reason, message=decision.message)
        if isinstance(decision, Fail) and decision.via is not None:
            status["completedVia"] = decision.via
        message = decision.message
    status["conditions"] = conditions(job, phase=phase, synced=False, message=message, now=now)
    return status


def synced_status(job: MediaJob, *, now: datetime, reason: str = Reason.AIRTABLE_UPDATED) -> dict[str, Any]:
    """Airtable holds the final result: written by us, or the row was ended by someone else."""
    message = job.status.message or job.status.phase
    conds = conditions(job, phase=job.status.phase, synced=True, message=message, now=now, sync_reason=reason)
    if reason == Reason.ENDED_IN_AIRTABLE:
        conds[1]["message"] = "the Jobs row was ended in Airtable by someone else; left as it is"
    return {"airtableSynced": True, "syncedAt": fmt_time(now), "conditions": conds}


def _unsynced_conditions(job: MediaJob, *, now: datetime, reason: str, error: str) -> list[dict[str, Any]]:
    """The phase kept, and Synced=False saying why Airtable does not hold the result."""
    message = job.status.message or job.status.phase
    conds = conditions(
        job, phase=job.status.phase, synced=False, message=message, now=now, sync_reason=reason
    )
    conds[1]["message"] = error[:500]
    return conds


def target_rejected_status(job: MediaJob, *, now: datetime, error: str) -> dict[str, Any]:
    """The Jobs row is written but the target row refused the output: no automatic retries."""
    conds = _unsynced_conditions(job, now=now, reason=Reason.TARGET_REJECTED, error=error)
    return {"airtableSynced": False, "syncedAt": fmt_time(now), "conditions": conds}


def sync_error_status(job: MediaJob, *, now: datetime, error: str) -> dict[str, Any]:
    """Airtable keeps refusing: say so on the resource, keep the phase."""
    return {"conditions": _unsynced_conditions(job, now=now, reason=Reason.AIRTABLE_ERROR, error=error)}

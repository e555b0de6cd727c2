import json
from datetime import timedelta
from typing import Any

import pytest

from controller.decide import Complete, EndedInAirtable, Fail, TimeOut
from controller.status import (
    initial_status,
    synced_status,
    target_rejected_status,
    transition_status,
)
from controller.writeback import RowWrite, already_written, planned_writes
from tests.unit.helpers import NOW, RECORD, SEGMENT, VIDEO, job

URL = "https://bucket.example/phi-bucket/abc_output_0.mp4"


def cond(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_completion_status() -> None:
    status = transition_status(job(), Complete(URL, "spaces"), now=NOW, checks=4)
    assert status["phase"] == "Completed"
    assert status["outputUrl"] == URL
    assert status["completedVia"] == "spaces"
    assert status["completedAt"] == "2026-11-29T12:00:00Z"
    assert status["airtableSynced"] is False
    assert status["checks"] == 4
    assert status["observedGeneration"] == 1
    assert (cond(status, "Ready")["status"], cond(status, "Ready")["reason"]) == ("False", "Processing")
    assert (cond(status, "Synced")["status"], cond(status, "Synced")["reason"]) == ("False", "Pending")
    assert "failedAt" not in status
    assert "outputLastModified" not in status
    found = transition_status(job(), Complete(URL, "spaces", NOW - timedelta(seconds=90)), now=NOW, checks=1)
    assert found["outputLastModified"] == "2026-11-29T11:58:30Z"


@pytest.mark.parametrize(
    ("decision", "phase", "reason"),
    [(Fail("NCA said no"), "Failed", "Failed"), (TimeOut("no output after 24 h"), "TimedOut", "TimedOut")],
)
def test_failure_statuses(decision: Fail | TimeOut, phase: str, reason: str) -> None:
    status = transition_status(job(), decision, now=NOW, checks=1)
    assert (status["phase"], status["reason"], status["message"]) == (phase, reason, decision.message)
    assert status["failedAt"] == "2026-11-29T12:00:00Z"
    assert (cond(status, "Ready")["status"], cond(status, "Ready")["reason"]) == ("False", phase)


def test_ended_in_airtable_is_synced_without_a_write() -> None:
    status = transition_status(job(), EndedInAirtable("Completed", "marked completed"), now=NOW, checks=2)
    assert status["airtableSynced"] is True
    assert status["reason"] == "EndedInAirtable"
    assert cond(status, "Synced")["status"] == "True"
    assert cond(status, "Synced")["reason"] == "EndedInAirtable"
    assert cond(status, "Ready")["status"] == "True"


def test_synced_makes_a_completed_job_ready_and_keeps_transition_times() -> None:
    earlier = NOW - timedelta(minutes=5)
    done = job(status=transition_status(job(), Complete(URL, "webhook"), now=earlier, checks=1))
    status = synced_status(done, now=NOW)
    assert status["airtableSynced"] is True
    assert cond(status, "Ready") | {"lastTransitionTime": None} == {
        "type": "Ready",
        "status": "True",
        "reason": "Completed",
        "message": f"output found via webhook: {URL}",
        "lastTransitionTime": None,
        "observedGeneration": 1,
    }
    assert cond(status, "Ready")["lastTransitionTime"] == "2026-11-29T12:00:00Z"
    assert cond(status, "Synced")["status"] == "True"
    # Ready went False→True now; an unchanged condition keeps its time
    again = synced_status(job(status={**done_status(done), **status}), now=NOW + timedelta(hours=1))
    assert cond(again, "Ready")["lastTransitionTime"] == "2026-11-29T12:00:00Z"


def done_status(j: Any) -> dict[str, Any]:
    return {"phase": j.status.phase, "outputUrl": j.status.output_url, "message": j.status.message}


def test_initial_status() -> None:
    status = initial_status(job(generation=3), now=NOW, checks=1, message="waiting")
    assert status["phase"] == "Processing"
    assert status["observedGeneration"] == 3
    assert cond(status, "Ready")["reason"] == "Processing"


def completed(operation: str, via: str = "spaces", target: dict[str, str] | None = None) -> Any:
    j = job(operation=operation, target=target)
    return job(
        operation=operation, target=target, status=transition_status(j, Complete(URL, via), now=NOW, checks=1)
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("operation", "target_write"),
    [
        (
            "combine",
            RowWrite("Segments", SEGMENT, {"Voiceover + Video": [{"url": URL}], "Status": "combined"}),
        ),
        ("concatenate", RowWrite("Videos", VIDEO, {"Combined Segments Video": [{"url": URL}]})),
        ("add_music", RowWrite("Videos", VIDEO, {"Video + Music": [{"url": URL}]})),
        ("transcribe", None),
    ],
)
def test_planned_writes_per_operation(operation: str, target_write: RowWrite | None) -> None:
    writes = planned_writes(completed(operation))
    jobs_write = writes[-1]
    assert (jobs_write.table, jobs_write.record_id) == ("Jobs", RECORD)
    assert jobs_write.fields["Status"] == "completed"
    payload = json.loads(jobs_write.fields["Response Payload"])
    assert (payload["output_url"], payload["completed_via"]) == (URL, "spaces")
    assert "found on Spaces" in jobs_write.fields["Notes"]
    if target_write is None:
        assert len(writes) == 1
    else:
        assert writes[0] == target_write  # the target goes first


def test_completion_notes_say_how_it_was_detected() -> None:
    assert "webhook" in planned_writes(completed("concatenate", via="webhook"))[-1].fields["Notes"]
    assert "job-status API" in planned_writes(completed("concatenate", via="nca-status"))[-1].fields["Notes"]


@pytest.mark.parametrize(
    ("decision", "notes"),
    [
        (Fail("NCA reported the job failed (code 500): boom"), "Failed: NCA reported"),
        (TimeOut("no output after 24 h"), "Timed out: no output"),
    ],
)
def test_planned_writes_for_failures(decision: Fail | TimeOut, notes: str) -> None:
    j = job(status=transition_status(job(), decision, now=NOW, checks=1))
    assert planned_writes(j) == [
        RowWrite("Jobs", RECORD, {"Status": "failed", "Notes": planned_writes(j)[0].fields["Notes"]})
    ]
    assert planned_writes(j)[0].fields["Notes"].startswith(notes)


W_SEG = RowWrite("Segments", SEGMENT, {"Voiceover + Video": [{"url": URL}], "Status": "combined"})
W_JOB = RowWrite("Jobs", RECORD, {"Status": "completed", "Response Payload": "{}", "Notes": "x"})


@pytest.mark.parametrize(
    ("write", "current", "done"),
    [
        (W_SEG, None, False),
        (W_SEG, {}, False),
        (W_SEG, {"Status": "combined", "Voiceover + Video": [{"url": URL}]}, True),
        # Airtable re-hosts attachments: the file name is what survives
        (
            W_SEG,
            {
                "Status": "combined",
                "Voiceover + Video": [{"url": "https://dl.airtable/x", "filename": "abc_output_0.mp4"}],
            },
            True,
        ),
        (
            W_SEG,
            {
                "Status": "combined",
                "Voiceover + Video": [{"url": "https://dl.airtable/x", "filename": "other.mp4"}],
            },
            False,
        ),
        (W_SEG, {"Status": "pending", "Voiceover + Video": [{"url": URL}]}, False),
        (W_JOB, {"Status": "completed"}, True),
        (W_JOB, {"Status": "processing"}, False),
    ],
)
def test_already_written(write: RowWrite, current: dict[str, Any] | None, done: bool) -> None:
    assert already_written(write, current) is done


def kstatus(status: dict[str, Any]) -> str:
    """cli-utils' kstatus reading of a resource's conditions (pkg/kstatus/status, the generic
    rules): Stalled=True is Failed, Reconciling=True is InProgress, Ready=True is Current."""
    conds = {c["type"]: c["status"] for c in status["conditions"]}
    if conds.get("Stalled") == "True":
        return "Failed"
    if conds.get("Reconciling") == "True":
        return "InProgress"
    return "Current" if conds.get("Ready") == "True" else "InProgress"


def _processing() -> dict[str, Any]:
    return initial_status(job(generation=2), now=NOW, checks=0, message="waiting")


def _completed() -> dict[str, Any]:
    return transition_status(job(generation=2), Complete(URL, "spaces"), now=NOW, checks=1)


def _failed() -> dict[str, Any]:
    return transition_status(job(generation=2), Fail("NCA said no"), now=NOW, checks=1)


def _timed_out() -> dict[str, Any]:
    return transition_status(job(generation=2), TimeOut("no output"), now=NOW, checks=1)


def _synced(status: dict[str, Any]) -> dict[str, Any]:
    return {**status, **synced_status(job(generation=2, status=status), now=NOW)}


def _rejected() -> dict[str, Any]:
    done = _completed()
    return {**done, **target_rejected_status(job(generation=2, status=done), now=NOW, error="422 bad")}


@pytest.mark.parametrize(
    ("build", "types", "reading", "extra_reason"),
    [
        (_processing, {"Ready", "Synced", "Reconciling"}, "InProgress", "Processing"),
        (_completed, {"Ready", "Synced", "Reconciling"}, "InProgress", "Pending"),  # Airtable next
        (lambda: _synced(_completed()), {"Ready", "Synced"}, "Current", None),
        (_failed, {"Ready", "Synced", "Stalled"}, "Failed", "Failed"),
        (lambda: _synced(_failed()), {"Ready", "Synced", "Stalled"}, "Failed", "Failed"),
        (_timed_out, {"Ready", "Synced", "Stalled"}, "Failed", "TimedOut"),
        (_rejected, {"Ready", "Synced", "Stalled"}, "Failed", "TargetRejected"),
    ],
)
def test_kstatus_reads_every_phase_right(
    build: Any, types: set[str], reading: str, extra_reason: str | None
) -> None:
    status = build()
    assert {c["type"] for c in status["conditions"]} == types
    assert kstatus(status) == reading
    for c in status["conditions"]:
        assert c["observedGeneration"] == 2
    extra = [c for c in status["conditions"] if c["type"] in ("Reconciling", "Stalled")]
    assert [c["reason"] for c in extra] == ([extra_reason] if extra_reason else [])
    assert all(c["status"] == "True" for c in extra)  # abnormal-true: present only while True

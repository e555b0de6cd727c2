"""Contract section 2 as pure decisions: late results, attempts, never clobbering Airtable."""

from datetime import timedelta
from typing import Any

import pytest

from controller.cleanup import expired
from controller.decide import Complete, Fail, TimeOut, Transition
from controller.mirror import is_resubmission, resubmission_patch
from controller.rows import JobRow, append_note
from controller.settings import Settings, SettingsError
from controller.status import initial_status, synced_status, target_rejected_status, transition_status
from controller.transitions import still_applies
from controller.writeback import RowWrite, holds_our_result, jobs_row_verdict, note_line
from tests.samples import REQUIRED_ENV
from tests.unit.helpers import JOB_ID, NOW, RECORD, job

URL = "https://bucket.example/b/x.mp4"
OURS = note_line(NOW, "Timed out: no output after 24 h.")
COMPLETED = RowWrite("Jobs", RECORD, {"Status": "completed", "Notes": "Completed: NCA webhook."})
FAILED = RowWrite("Jobs", RECORD, {"Status": "failed", "Notes": "Failed: boom."})


@pytest.mark.parametrize(
    ("write", "row", "verdict"),
    [
        (COMPLETED, {"Status": "processing"}, "write"),
        (COMPLETED, {"Status": "processing", "Notes": "by the app"}, "write"),
        # our own earlier result (TimedOut written as failed): a late completion overwrites it
        (COMPLETED, {"Status": "failed", "Notes": f"older line\n{OURS}"}, "write"),
        (COMPLETED, {"Status": "completed", "Notes": note_line(NOW, "Completed: x.")}, "done"),
        (FAILED, {"Status": "failed", "Notes": OURS}, "done"),
        # someone else ended it: a person, or the old app's late webhook
        (COMPLETED, {"Status": "failed", "Notes": f"{OURS}\ncancelled by Ann"}, "ended"),
        (COMPLETED, {"Status": "failed"}, "ended"),
        (FAILED, {"Status": "completed", "Notes": "done by the old app"}, "ended"),
        (COMPLETED, {"Status": "pending"}, "ended"),
        (COMPLETED, None, "ended"),  # the row was deleted
        # the mirror's note for an invalid row is not a result
        (COMPLETED, {"Status": "failed", "Notes": "mediajob-controller cannot track this job: x"}, "ended"),
    ],
)
def test_jobs_row_verdict(write: RowWrite, row: dict[str, Any] | None, verdict: str) -> None:
    assert jobs_row_verdict(write, row) == verdict


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, OURS),
        ("", OURS),
        ("  \n", OURS),
        ("set up by the app", f"set up by the app\n{OURS}"),
        ("a\nb\n", f"a\nb\n{OURS}"),
    ],
)
def test_notes_are_appended_never_replaced(existing: str | None, expected: str) -> None:
    assert append_note(existing, OURS) == expected
    assert holds_our_result({"Notes": append_note(existing, OURS)})


def test_a_note_line_is_one_line_with_time_and_text() -> None:
    assert note_line(NOW, "Failed:\n  boom") == "2026-11-29T12:00:00Z mediajob-controller: Failed: boom"


@pytest.mark.parametrize(
    ("decision", "via"),
    [
        (Fail("NCA reported the job failed (code 500): x", via="webhook"), "webhook"),
        (Fail("NCA reported the job failed (code 500): x", via="nca-status"), "nca-status"),
        (Complete(URL, "spaces"), "spaces"),
        (TimeOut("no output"), None),
    ],
)
def test_failures_record_how_they_were_learned(decision: Transition, via: str | None) -> None:
    status = transition_status(job(), decision, now=NOW, checks=1)
    assert status.get("completedVia") == via
    assert status["attempt"] == 1


def test_a_late_completion_needs_a_new_airtable_write() -> None:
    timed_out = job(status=transition_status(job(), TimeOut("no output"), now=NOW, checks=5))
    synced = job(status={**_status(timed_out), **synced_status(timed_out, now=NOW)})
    assert not synced.needs_sync
    late = transition_status(synced, Complete(URL, "webhook"), now=NOW, checks=5)
    assert (late["phase"], late["airtableSynced"], late["syncedAt"]) == ("Completed", False, None)
    assert job(status={**_status(synced), **late}).needs_sync


def test_a_new_attempt_clears_the_previous_result() -> None:
    first = job(status=transition_status(job(), Complete(URL, "spaces"), now=NOW, checks=3))
    synced = job(status={**_status(first), **synced_status(first, now=NOW)})
    again = job(status=_status(synced), resubmitted_at="2026-11-29T12:00:00Z")
    assert again.new_attempt
    assert not again.needs_sync
    status = initial_status(again, now=NOW, checks=0, message="re-submitted")
    assert status["phase"] == "Processing"
    assert status["attempt"] == 2
    assert status["resubmittedAt"] == "2026-11-29T12:00:00Z"
    for field in ("outputUrl", "completedVia", "completedAt", "syncedAt"):
        assert field in status
        assert status[field] is None
    after = job(status={**_status(synced), **status}, resubmitted_at="2026-11-29T12:00:00Z")
    assert (after.new_attempt, after.phase, after.attempt) == (False, "Processing", 2)


@pytest.mark.parametrize(
    ("fresh_status", "fresh_spec", "decision", "applies"),
    [
        ({}, {}, Complete(URL, "webhook"), True),
        ({"phase": "Processing", "checks": 2}, {}, Fail("x"), True),
        ({"phase": "TimedOut"}, {}, Complete(URL, "webhook"), True),  # a late completion wins
        ({"phase": "TimedOut"}, {}, Fail("x"), False),
        ({"phase": "Completed"}, {}, Complete(URL, "webhook"), False),
        ({}, {"resubmitted_at": "2026-11-29T12:00:00Z"}, Complete(URL, "webhook"), False),  # new attempt
    ],
)
def test_a_decision_never_crosses_attempts_or_overwrites_completed(
    fresh_status: dict[str, Any], fresh_spec: dict[str, Any], decision: Transition, applies: bool
) -> None:
    decided_on = job(status={"phase": "Processing", "attempt": 1})
    fresh = job(status={"phase": "Processing", "attempt": 1, **fresh_status}, **fresh_spec)
    assert still_applies(decided_on, fresh, decision) is applies


def test_a_rejected_target_stops_the_automatic_retries() -> None:
    done = job(status=transition_status(job(), Complete(URL, "spaces"), now=NOW, checks=1))
    rejected = job(status={**_status(done), **target_rejected_status(done, now=NOW, error="HTTP 422")})
    assert not rejected.needs_sync
    assert rejected.status.sync_reason == "TargetRejected"
    ready = next(c for c in rejected.status.conditions if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetRejected")


def test_the_clean_up_clock_starts_when_airtable_was_synced() -> None:
    done = job(status=transition_status(job(), Complete(URL, "spaces"), now=NOW, checks=1))
    later = NOW + timedelta(minutes=5)
    synced = job(status={**_status(done), **synced_status(done, now=later)})
    assert synced.status.jobs_row_written_at == later
    assert done.status.jobs_row_written_at is None


def _status(j: Any) -> dict[str, Any]:
    """The raw status back from a parsed job's conditions and fields (enough for these tests)."""
    s = j.status
    raw: dict[str, Any] = {
        "phase": s.phase,
        "checks": s.checks,
        "airtableSynced": s.airtable_synced,
        "attempt": s.attempt,
        "conditions": list(s.conditions),
    }
    for key, value in (
        ("outputUrl", s.output_url),
        ("completedVia", s.completed_via),
        ("message", s.message),
        ("resubmittedAt", s.resubmitted_at),
        ("syncedAt", s.synced_at.strftime("%Y-%m-%dT%H:%M:%SZ") if s.synced_at else None),
    ):
        if value is not None:
            raw[key] = value
    return raw


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, timedelta(hours=168)),
        ("168", timedelta(hours=168)),
        ("0.5", timedelta(minutes=30)),
        ("0.001", timedelta(seconds=3.6)),
        ("0", None),  # never
        ("0.0", None),
    ],
)
def test_the_ttl_setting(value: str | None, expected: timedelta | None) -> None:
    env = {**REQUIRED_ENV, **({"MEDIAJOB_TTL_AFTER_FINISHED_HOURS": value} if value is not None else {})}
    assert Settings.from_env(env).mediajob_ttl_after_finished == expected


@pytest.mark.parametrize("value", ["-1", "abc", "nan", "inf", "1e300", "1e-9"])
def test_a_bad_ttl_stops_start_up_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="MEDIAJOB_TTL_AFTER_FINISHED_HOURS"):
        Settings.from_env({**REQUIRED_ENV, "MEDIAJOB_TTL_AFTER_FINISHED_HOURS": value})


TTL = timedelta(hours=1)
SYNCED = {"phase": "Completed", "airtableSynced": True, "syncedAt": "2026-11-29T10:30:00Z"}


@pytest.mark.parametrize(
    ("status", "annotations", "gone"),
    [
        (SYNCED, {}, True),  # synced 90 min ago
        ({**SYNCED, "syncedAt": "2026-11-29T11:30:00Z"}, {}, False),  # 30 min ago
        ({**SYNCED, "phase": "TimedOut"}, {}, True),
        ({"phase": "Completed", "airtableSynced": False}, {}, False),  # Airtable not written yet
        ({"phase": "Processing"}, {}, False),
        ({**SYNCED, "airtableSynced": False}, {}, True),  # TargetRejected: the Jobs row was written
        (SYNCED, {"media.phi.dev/recheck-requested-at": "1"}, False),  # a recheck is pending
        # synced before syncedAt existed: the Synced condition's time counts
        (
            {
                "phase": "Failed",
                "airtableSynced": True,
                "conditions": [
                    {
                        "type": "Synced",
                        "status": "True",
                        "reason": "AirtableUpdated",
                        "message": "",
                        "lastTransitionTime": "2026-11-29T09:00:00Z",
                    }
                ],
            },
            {},
            True,
        ),
    ],
)
def test_which_jobs_the_clean_up_deletes(
    status: dict[str, Any], annotations: dict[str, str], gone: bool
) -> None:
    assert expired(job(status=status, annotations=annotations), now=NOW, ttl=TTL) is gone


def row(external: str = JOB_ID) -> JobRow:
    return JobRow(RECORD, external, "combine", NOW - timedelta(hours=2), None, "processing")


@pytest.mark.parametrize(
    ("status", "external", "written", "resubmitted"),
    [
        ({"phase": "Processing"}, JOB_ID, None, False),
        ({"phase": "Processing"}, "new-job-2", None, True),  # a new External Job ID
        ({"phase": "Failed"}, "new-job-2", None, True),
        ({"phase": "Completed", "airtableSynced": True}, JOB_ID, 1, True),  # back to processing
        ({"phase": "TimedOut", "airtableSynced": True}, JOB_ID, 1, True),
        # still processing only because our own write is pending (or landed after the listing)
        ({"phase": "Completed"}, JOB_ID, None, False),
        # the written result was an earlier attempt's: a newer one (an early webhook's) ended since
        ({"phase": "Completed", "attempt": 2}, JOB_ID, 1, False),
        ({"phase": "Completed", "attempt": 2, "airtableSynced": True}, JOB_ID, 2, True),
    ],
)
def test_what_is_a_resubmission(
    status: dict[str, Any], external: str, written: int | None, resubmitted: bool
) -> None:
    assert is_resubmission(job(status=status), row(external), written_attempt=written) is resubmitted


def test_a_resubmission_patch_makes_a_new_generation_and_moves_the_label() -> None:
    patch = resubmission_patch(job(status={"phase": "Failed"}), row("new-job-2"), NOW)
    assert patch["spec"]["externalJobId"] == "new-job-2"
    assert patch["spec"]["resubmittedAt"] == "2026-11-29T12:00:00Z"
    assert patch["spec"]["target"] is None  # the row has none now: removed by the merge patch
    assert patch["metadata"]["labels"] == {"media.phi.dev/external-job-id": "new-job-2"}
    assert patch["metadata"]["resourceVersion"] == "100"


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        ({"Status": "processing", "External Job ID": "job-attempt-1"}, "write"),
        ({"Status": "processing", "External Job ID": " job-attempt-1 "}, "write"),  # the cell as typed
        ({"Status": "processing"}, "write"),  # the field is not readable: the status decides
        ({"Status": "processing", "External Job ID": ""}, "write"),
        # re-submitted meanwhile (found by the chaos soak): attempt 1's TimedOut write would have
        # ended attempt 2 before the mirror saw its new id
        ({"Status": "processing", "External Job ID": "job-attempt-2"}, "ended"),
        ({"Status": "failed", "Notes": OURS, "External Job ID": "job-attempt-2"}, "ended"),
    ],
)
def test_a_row_that_names_another_nca_job_is_not_written(row: dict[str, Any], verdict: str) -> None:
    assert jobs_row_verdict(FAILED, row, "job-attempt-1") == verdict

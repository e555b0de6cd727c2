from datetime import UTC, datetime, timedelta

import pytest

from controller.decide import (
    Complete,
    Decision,
    EndedInAirtable,
    Fail,
    Ignore,
    Observation,
    TimeOut,
    Wait,
    decide,
    decide_airtable_row,
    decide_webhook,
    should_ask_nca,
)
from controller.observations import (
    NcaFailed,
    NcaNotFound,
    NcaPending,
    NcaSucceeded,
    NcaUnknown,
    ObjectFound,
    ObjectMissing,
    SpacesUnknown,
)
from tests.unit.helpers import NOW, job

URL = "https://bucket.example/b/x.mp4"
LM = datetime(2026, 11, 29, 11, 58, tzinfo=UTC)
DAY = timedelta(hours=24)
YOUNG = timedelta(minutes=10)
OLD = timedelta(hours=25)
TIMED_OUT = (
    "no output after 24 h (1 checks); polling stopped, a late result (webhook or recheck) will still be taken"
)


@pytest.mark.parametrize(
    ("age", "seen", "expected"),
    [
        (YOUNG, Observation(ObjectFound(URL, LM, 10)), Complete(URL, "spaces", LM)),
        (OLD, Observation(ObjectFound(URL, LM, 10)), Complete(URL, "spaces", LM)),  # found beats timeout
        (YOUNG, Observation(ObjectMissing(URL, 404), NcaSucceeded((URL, "u2"))), Complete(URL, "nca-status")),
        (
            YOUNG,
            Observation(ObjectMissing(URL, 403), NcaFailed(500, "boom")),
            Fail("NCA reported the job failed (code 500): boom", via="nca-status"),
        ),
        (YOUNG, Observation(ObjectMissing(URL, 404), NcaPending("queued")), Wait("NCA says queued")),
        (YOUNG, Observation(ObjectMissing(URL, 404), NcaPending("running")), Wait("NCA says running")),
        (
            YOUNG,
            Observation(ObjectMissing(URL, 404), NcaNotFound()),
            Wait("output not on Spaces yet; NCA does not know the job (404)"),
        ),
        (YOUNG, Observation(ObjectMissing(URL, 404), None), Wait("output not on Spaces yet")),
        (
            YOUNG,
            Observation(SpacesUnknown(URL, "503 Slow Down"), None),
            Wait("Spaces: 503 Slow Down", error=True),
        ),
        (
            YOUNG,
            Observation(ObjectMissing(URL, 404), NcaUnknown("HTTP 500")),
            Wait("NCA: HTTP 500", error=True),
        ),
        (
            YOUNG,
            Observation(SpacesUnknown(URL, "timeout"), NcaUnknown("timeout")),
            Wait("Spaces: timeout; NCA: timeout", error=True),
        ),
        (
            OLD,
            Observation(ObjectMissing(URL, 404), NcaNotFound()),
            TimeOut(TIMED_OUT),
        ),
        (OLD, Observation(ObjectMissing(URL, 404), None), TimeOut(TIMED_OUT)),
        (OLD, Observation(None, NcaPending("queued")), TimeOut(TIMED_OUT)),
        # an inconclusive check never times a job out: it might have been done all along
        (OLD, Observation(SpacesUnknown(URL, "timeout"), None), Wait("Spaces: timeout", error=True)),
        (OLD, Observation(None, NcaUnknown("timeout")), Wait("NCA: timeout", error=True)),
        (
            OLD,
            Observation(ObjectMissing(URL, 404), NcaFailed(500, "x")),
            Fail("NCA reported the job failed (code 500): x", via="nca-status"),
        ),
    ],
)
def test_decide(age: timedelta, seen: Observation, expected: Decision) -> None:
    assert decide(job(age=age), seen, now=NOW, max_age=DAY) == expected


def test_a_completed_job_is_final() -> None:
    done = job(status={"phase": "Completed"})
    assert isinstance(decide(done, Observation(ObjectFound(URL, None, None)), now=NOW, max_age=DAY), Ignore)
    assert isinstance(decide(done, Observation(None, NcaSucceeded((URL,))), now=NOW, max_age=DAY), Ignore)
    assert isinstance(decide_webhook(done, NcaSucceeded((URL,))), Ignore)
    assert isinstance(decide_webhook(done, NcaFailed(500, "x")), Ignore)


@pytest.mark.parametrize("phase", ["Failed", "TimedOut"])
@pytest.mark.parametrize(
    ("seen", "expected"),
    [
        (Observation(ObjectFound(URL, LM, 10)), Complete(URL, "spaces", LM)),
        (Observation(ObjectMissing(URL, 404), NcaSucceeded((URL,))), Complete(URL, "nca-status")),
        (Observation(ObjectMissing(URL, 404), NcaPending("running")), Ignore),
        (Observation(ObjectMissing(URL, 404), NcaFailed(500, "x")), Ignore),  # already failed
        (Observation(ObjectMissing(URL, 404), NcaNotFound()), Ignore),
        (Observation(SpacesUnknown(URL, "503"), NcaUnknown("timeout")), Ignore),
    ],
)
def test_failed_and_timed_out_jobs_can_still_complete(
    phase: str, seen: Observation, expected: Decision | type[Ignore]
) -> None:
    ended = job(age=OLD, status={"phase": phase})
    decision = decide(ended, seen, now=NOW, max_age=DAY)
    if expected is Ignore:
        assert isinstance(decision, Ignore)
    else:
        assert decision == expected


@pytest.mark.parametrize("phase", ["Failed", "TimedOut"])
def test_a_late_webhook_completes_an_ended_job(phase: str) -> None:
    ended = job(status={"phase": phase})
    assert decide_webhook(ended, NcaSucceeded((URL,))) == Complete(URL, "webhook")
    assert isinstance(decide_webhook(ended, NcaFailed(500, "x")), Ignore)


def test_a_resubmitted_job_is_processing_again() -> None:
    resubmitted = job(
        status={"phase": "Completed", "attempt": 1}, resubmitted_at="2026-11-29T11:59:00Z", age=OLD
    )
    assert (resubmitted.new_attempt, resubmitted.phase, resubmitted.attempt) == (True, "Processing", 2)
    assert decide_webhook(resubmitted, NcaSucceeded((URL,))) == Complete(URL, "webhook")
    # the age counts from the re-submission, not from the row's Created Time
    seen = Observation(ObjectMissing(URL, 404), NcaPending("queued"))
    assert decide(resubmitted, seen, now=NOW, max_age=DAY) == Wait("NCA says queued")


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (NcaSucceeded((URL,)), Complete(URL, "webhook")),
        (
            NcaFailed(500, "404 Client Error"),
            Fail("NCA reported the job failed (code 500): 404 Client Error", via="webhook"),
        ),
    ],
)
def test_decide_webhook(outcome: NcaSucceeded | NcaFailed, expected: Decision) -> None:
    assert decide_webhook(job(), outcome) == expected


@pytest.mark.parametrize(
    ("spaces", "due", "ask"),
    [
        (ObjectFound(URL, None, None), True, False),
        (ObjectMissing(URL, 404), True, True),
        (ObjectMissing(URL, 404), False, False),
        (SpacesUnknown(URL, "503"), True, True),
        (None, True, True),
        (None, False, False),
    ],
)
def test_nca_is_asked_only_when_spaces_cannot_answer(spaces: object, due: bool, ask: bool) -> None:
    assert should_ask_nca(spaces, nca_due=due) is ask  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (None, EndedInAirtable("Failed", "the Jobs row was deleted in Airtable")),
        (
            {"Status": "completed"},
            EndedInAirtable("Completed", "the Jobs row was marked completed in Airtable"),
        ),
        (
            {"Status": "completed", "Response Payload": '{"output_url": "https://x/y.mp4"}'},
            EndedInAirtable("Completed", "the Jobs row was marked completed in Airtable", "https://x/y.mp4"),
        ),
        ({"Status": "failed"}, EndedInAirtable("Failed", "the Jobs row was set to 'failed' in Airtable")),
        ({"Status": "pending"}, EndedInAirtable("Failed", "the Jobs row was set to 'pending' in Airtable")),
        ({"Status": "processing"}, Wait("the Jobs row is processing again")),
    ],
)
def test_decide_airtable_row(row: dict[str, object] | None, expected: Decision) -> None:
    assert decide_airtable_row(job(), row) == expected

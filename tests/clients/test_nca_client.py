"""NcaClient against the NCA simulator, and the payload parser against the recorded real payloads."""

import json
from pathlib import Path

import pytest

from controller.clients.nca import NcaClient
from controller.naming import UnsafeIdError
from controller.observations import (
    NcaFailed,
    NcaListing,
    NcaNotFound,
    NcaPending,
    NcaSucceeded,
    NcaUnknown,
    PayloadError,
    parse_listing_body,
    parse_result_payload,
    parse_status_body,
)
from sandbox import NcaSimulator
from sandbox.nca import AUDIO_MIXING, COMPOSE, CONCATENATE

SAMPLES = Path(__file__).parents[1] / "fixtures" / "nca-samples"
JOB = "d0451a2c-fe2a-4cb9-8740-bfd1a0b36aba"
REC = "recJOBaaaaaaaaaaa"


async def test_queued_running_done(nca_sim: NcaSimulator, nca: NcaClient) -> None:
    nca_sim.add_job(JOB, endpoint=COMPOSE, caller_id=REC)
    nca_sim.set_status(JOB, "queued")
    assert await nca.job_status(JOB) == NcaPending("queued")
    nca_sim.set_status(JOB, "running")
    assert await nca.job_status(JOB) == NcaPending("running")
    nca_sim.finish_now(JOB)
    result = await nca.job_status(JOB)
    assert result == NcaSucceeded((f"{nca_sim.spaces_base_url}/{JOB}_output_0.mp4",))
    assert nca_sim.status_calls(JOB) == 3


@pytest.mark.parametrize("endpoint", [CONCATENATE, AUDIO_MIXING])
async def test_string_response_endpoints(nca_sim: NcaSimulator, nca: NcaClient, endpoint: str) -> None:
    nca_sim.add_job(JOB, endpoint=endpoint, caller_id=REC)
    nca_sim.finish_now(JOB)
    assert await nca.job_status(JOB) == NcaSucceeded((f"{nca_sim.spaces_base_url}/{JOB}.mp4",))


async def test_failed_job_is_done_with_another_code(nca_sim: NcaSimulator, nca: NcaClient) -> None:
    nca_sim.add_job(JOB, endpoint=COMPOSE, caller_id=REC)
    nca_sim.finish_now(JOB, fail_message="404 Client Error: File not found for url: http://x/missing.mp4")
    assert await nca.job_status(JOB) == NcaFailed(
        500, "404 Client Error: File not found for url: http://x/missing.mp4"
    )


async def test_unknown_and_forgotten_jobs_are_not_found(nca_sim: NcaSimulator, nca: NcaClient) -> None:
    assert await nca.job_status(JOB) == NcaNotFound()
    nca_sim.add_job(JOB, endpoint=COMPOSE, caller_id=REC)
    assert not isinstance(await nca.job_status(JOB), NcaNotFound)
    nca_sim.forget(JOB)
    assert await nca.job_status(JOB) == NcaNotFound()


async def test_wrong_key_is_unknown_and_never_shows_the_key(nca_sim: NcaSimulator) -> None:
    client = NcaClient(nca_sim.url, "wrong-secret-key-123")
    try:
        result = await client.job_status(JOB)
    finally:
        await client.close()
    assert result == NcaUnknown("NCA rejected the API key (HTTP 401)")
    assert "wrong-secret-key-123" not in repr(result)


def inject(nca_sim: NcaSimulator, fault: str) -> None:
    """The next request hangs, is dropped, or gets the HTTP status `fault`."""
    if fault == "hang":
        nca_sim.faults.hang_next(1, 2.0)
    elif fault == "drop":
        nca_sim.faults.drop_next(1)
    else:
        nca_sim.faults.fail_next(1, int(fault))


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("500", NcaUnknown("HTTP 500")),
        ("503", NcaUnknown("HTTP 503")),
        ("429", NcaUnknown("HTTP 429")),
        ("hang", NcaUnknown("timeout")),
        ("drop", NcaUnknown("connection error: RemoteProtocolError")),
    ],
)
async def test_faults_are_unknown(
    nca_sim: NcaSimulator, nca: NcaClient, fault: str, expected: NcaUnknown
) -> None:
    nca_sim.add_job(JOB, endpoint=COMPOSE, caller_id=REC)
    inject(nca_sim, fault)
    assert await nca.job_status(JOB) == expected


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json at all", "status answer is not JSON"),
        ("[" * 5000 + "]" * 5000, "status answer is not JSON"),  # overflows the parser: section 7
        ('{"response": ' + "[" * 99_999, "status answer is not JSON"),
        ("[1, 2, 3]", "status answer has no 'response' object"),
        ({"response": "done"}, "status answer has no 'response' object"),
        ({"response": {"job_status": "exploded"}}, "unexpected job_status 'exploded'"),
        (
            {"response": {"job_status": "done", "response": None}},
            "done, but payload must be an object, not NoneType",
        ),
        (
            {"response": {"job_status": "done", "response": {"code": "200"}}},
            "done, but payload 'code' must be an integer",
        ),
        (
            {"response": {"job_status": "done", "response": {"code": 200, "response": []}}},
            "done, but payload with code 200 has no output URL in 'response'",
        ),
        (
            {"response": {"job_status": "done", "response": {"code": 200, "response": "ftp://x"}}},
            "done, but payload with code 200 has no output URL in 'response'",
        ),
    ],
)
async def test_unexpected_shapes_are_clear_errors_not_crashes(
    nca_sim: NcaSimulator, nca: NcaClient, body: object, reason: str
) -> None:
    nca_sim.faults.fail_next(1, 200, body=body)  # type: ignore[arg-type]
    assert await nca.job_status(JOB) == NcaUnknown(reason)


async def test_unsafe_job_ids_are_refused_before_any_request(nca_sim: NcaSimulator, nca: NcaClient) -> None:
    with pytest.raises(UnsafeIdError):
        await nca.job_status("../../v1/admin")
    assert nca_sim.count() == 0


def sample(name: str) -> dict[str, object]:
    data = json.loads((SAMPLES / name).read_text())
    return data["body"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "30_webhook_compose.json",
            NcaSucceeded(
                ("http://127.0.0.1:9000/phi-bucket/d0451a2c-fe2a-4cb9-8740-bfd1a0b36aba_output_0.mp4",)
            ),
        ),
        (
            "30_webhook_concatenate.json",
            NcaSucceeded(("http://127.0.0.1:9000/phi-bucket/12e656b0-7545-4cc8-b2cc-ec2c61dd07e4.mp4",)),
        ),
        (
            "30_webhook_audio_mixing.json",
            NcaSucceeded(("http://127.0.0.1:9000/phi-bucket/9f61efc1-3c67-4beb-9ff4-625c85fa8fbd.mp4",)),
        ),
        (
            "30_webhook_compose_2outputs_metadata.json",
            NcaSucceeded(
                (
                    "http://127.0.0.1:9000/phi-bucket/88c6e604-f2b4-48de-bd2a-fa8c9e4bfb74_output_0.mp4",
                    "http://127.0.0.1:9000/phi-bucket/88c6e604-f2b4-48de-bd2a-fa8c9e4bfb74_output_1.mp3",
                )
            ),
        ),
        (
            "30_webhook_fail_compose_404.json",
            NcaFailed(500, "404 Client Error: File not found for url: http://127.0.0.1:8000/missing.mp4"),
        ),
        (
            "30_webhook_fail_concatenate_404.json",
            NcaFailed(500, "404 Client Error: File not found for url: http://127.0.0.1:8000/missing.mp4"),
        ),
    ],
)
def test_recorded_webhooks(name: str, expected: object) -> None:
    assert parse_result_payload(sample(name)) == expected


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("20_poll_compose_1_queued.json", NcaPending),
        ("20_poll_compose_2_running.json", NcaPending),
        ("20_poll_compose_3_done.json", NcaSucceeded),
        ("20_poll_concatenate_2_done.json", NcaSucceeded),
        ("20_poll_audio_mixing_3_done.json", NcaSucceeded),
        ("20_poll_compose_2outputs_metadata_3_done.json", NcaSucceeded),
        ("20_poll_fail_compose_404_2_done.json", NcaFailed),
        ("20_poll_fail_concatenate_404_2_done.json", NcaFailed),
    ],
)
def test_recorded_status_answers(name: str, kind: type) -> None:
    assert isinstance(parse_status_body(sample(name)), kind)


@pytest.mark.parametrize(
    "payload", [None, [], "x", {"code": True}, {"code": 200}, {"code": 200, "response": [{"url": "x"}]}]
)
def test_bad_payloads_raise_payload_error(payload: object) -> None:
    with pytest.raises(PayloadError):
        parse_result_payload(payload)


async def test_listing_shows_recent_states_and_the_pollers_own_calls(
    nca_sim: NcaSimulator, nca: NcaClient
) -> None:
    queued, running, done = "a0000000-0000-4000-8000-000000000001", "b" * 8, "c" * 8
    nca_sim.add_job(queued, endpoint=COMPOSE, caller_id=REC)
    nca_sim.set_status(queued, "queued")
    nca_sim.add_job(running, endpoint=COMPOSE, caller_id=REC)
    nca_sim.set_status(running, "running")
    nca_sim.add_job(done, endpoint=CONCATENATE, caller_id=REC)
    nca_sim.finish_now(done)
    await nca.job_status(done)  # a status call is a job file too, as on a real worker
    listing = await nca.jobs_listing(60)
    assert isinstance(listing, NcaListing)
    assert {k: v for k, v in listing.states.items() if k in (queued, running, done)} == {
        queued: "queued",
        running: "running",
        done: "done",
    }
    assert len(listing.states) == 5  # plus the status call's file and the listing's own
    assert list(listing.states.values()).count("running") == 2
    assert nca_sim.listing_calls == 1


async def test_listing_window_leaves_out_older_files(nca_sim: NcaSimulator, nca: NcaClient) -> None:
    nca_sim.add_job(JOB, endpoint=COMPOSE, caller_id=REC)
    nca_sim.set_status(JOB, "queued")
    nca_sim.jobs[JOB].added_at -= 120  # queued two minutes ago, unchanged since
    listing = await nca.jobs_listing(60)
    assert isinstance(listing, NcaListing)
    assert JOB not in listing.states  # absent is not "gone": only a hint


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("500", NcaUnknown("HTTP 500")),
        ("429", NcaUnknown("HTTP 429")),
        ("hang", NcaUnknown("timeout")),
        ("drop", NcaUnknown("connection error: RemoteProtocolError")),
        # Each listing writes its own file first: a 404 means the jobs folder is gone, an error.
        ("404", NcaUnknown("listing answered HTTP 404: NCA's jobs folder is missing")),
    ],
)
async def test_listing_faults_are_unknown(
    nca_sim: NcaSimulator, nca: NcaClient, fault: str, expected: object
) -> None:
    inject(nca_sim, fault)
    assert await nca.jobs_listing(60) == expected


async def test_listing_with_a_wrong_key_never_shows_it(nca_sim: NcaSimulator) -> None:
    client = NcaClient(nca_sim.url, "wrong-secret-key-123")
    try:
        result = await client.jobs_listing(60)
    finally:
        await client.close()
    assert result == NcaUnknown("NCA rejected the API key (HTTP 401)")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"response": {"a": "done", "b": "queued"}}, NcaListing({"a": "done", "b": "queued"})),
        ({"response": {"a": "exploded", "b": 3, "c": None}}, NcaListing({})),  # odd entries skipped
        ({"response": {"x" * 64: "done"}}, NcaListing({})),  # longer than any job id
        ({"response": []}, NcaUnknown("listing answer has no 'response' object")),
        ({"error": "Failed to retrieve job statuses"}, NcaUnknown("listing answer has no 'response' object")),
        ("[1]", NcaUnknown("listing answer has no 'response' object")),
    ],
)
def test_listing_shapes(body: object, expected: object) -> None:
    assert parse_listing_body(body) == expected


@pytest.mark.parametrize("name", ["05_jobs_status_before_any_job.json", "51_jobs_status_since_2s.json"])
def test_recorded_listings(name: str) -> None:
    body = sample(name)
    listing = parse_listing_body(body)
    assert isinstance(listing, NcaListing)
    assert listing.states == body["response"]

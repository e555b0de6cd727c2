"""The NCA simulator against the recorded real responses in tests/fixtures/nca-samples."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sandbox import NcaSimulator, SpacesSimulator
from sandbox.nca import AUDIO_MIXING, COMPOSE, CONCATENATE

NCA_KEY = "nca-sandbox-key"  # as in conftest
Loader = Callable[[str], Any]


def shape(value: Any) -> Any:
    """Key sets all the way down; scalars reduced to their JSON kind."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value[:1]]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "null" if value is None else type(value).__name__


async def poll(client: httpx.AsyncClient, nca: NcaSimulator, job_id: str, **extra: Any) -> httpx.Response:
    return await client.post(
        f"{nca.url}/v1/toolkit/job/status",
        json={"job_id": job_id, **extra},
        headers={"X-API-Key": NCA_KEY},
    )


async def test_wrong_and_missing_key_are_401_like_samples(
    nca: NcaSimulator, client: httpx.AsyncClient, load_sample: Loader
) -> None:
    url = f"{nca.url}/v1/toolkit/job/status"
    wrong = await client.post(url, json={"job_id": "x"}, headers={"X-API-Key": "nope"})
    missing = await client.post(url, json={"job_id": "x"})
    for resp, sample in (
        (wrong, "02_status_wrong_api_key.json"),
        (missing, "03_status_missing_api_key.json"),
    ):
        expected = load_sample(sample)
        assert resp.status_code == expected["http_status"] == 401
        assert resp.headers["Content-Type"].startswith(expected["content_type"])
        assert resp.json() == expected["body"]
    assert nca.status_calls("x") == 0


async def test_missing_job_id_is_400_like_sample(
    nca: NcaSimulator, client: httpx.AsyncClient, load_sample: Loader
) -> None:
    expected = load_sample("04_status_missing_job_id_field.json")
    resp = await client.post(
        f"{nca.url}/v1/toolkit/job/status", json={"id": "x"}, headers={"X-API-Key": NCA_KEY}
    )
    assert resp.status_code == expected["http_status"] == 400
    assert resp.json() == expected["body"]
    empty = await client.post(f"{nca.url}/v1/toolkit/job/status", json={}, headers={"X-API-Key": NCA_KEY})
    assert (empty.status_code, empty.json()) == (400, {"message": "Missing JSON in request"})


async def test_unknown_job_is_404_envelope_like_sample(
    nca: NcaSimulator, client: httpx.AsyncClient, load_sample: Loader
) -> None:
    expected = load_sample("01_status_unknown_job.json")
    job_id = str(uuid.uuid4())
    resp = await poll(client, nca, job_id)
    body = resp.json()
    assert resp.status_code == expected["http_status"] == 404
    assert shape(body) == shape(expected["body"])
    assert list(body) == list(expected["body"])  # same (sorted) key order
    assert body["code"] == 404
    assert body["message"] == {"error": "Job not found", "job_id": job_id}
    assert body["response"] is None
    assert body["endpoint"] == "/v1/toolkit/job/status"
    assert body["build_number"] == 209
    assert uuid.UUID(body["job_id"]) != uuid.UUID(job_id)


async def test_compose_timeline_upload_and_webhook(
    nca: NcaSimulator,
    spaces: SpacesSimulator,
    client: httpx.AsyncClient,
    receiver: Any,
    load_sample: Loader,
) -> None:
    job_id = str(uuid.uuid4())
    nca.add_job(
        job_id,
        endpoint=COMPOSE,
        caller_id="recJob0000000001",
        webhook_url=f"{receiver.url}/hook",
        queued_s=0.3,
        running_s=0.5,
    )
    first = (await poll(client, nca, job_id)).json()
    assert first["response"]["job_status"] == "queued"
    assert shape(first) == shape(load_sample("20_poll_compose_1_queued.json")["body"])
    key = f"{job_id}_output_0.mp4"
    assert (await client.head(spaces.url_for(key))).status_code == 404
    await asyncio.sleep(0.35)
    second = (await poll(client, nca, job_id)).json()
    assert second["response"]["job_status"] == "running"
    assert second["response"]["response"] is None
    assert shape(second) == shape(load_sample("20_poll_compose_2_running.json")["body"])
    await nca.wait_done(job_id)
    resp = await poll(client, nca, job_id)
    done = resp.json()
    expected = load_sample("20_poll_compose_3_done.json")
    assert resp.status_code == 200
    assert shape(done) == shape(expected["body"])
    assert list(done["response"]["response"]) == list(expected["body"]["response"]["response"])
    payload = done["response"]["response"]
    assert payload["response"] == [{"file_url": f"{spaces.base_url}/{key}"}]
    assert payload["id"] == "recJob0000000001"
    assert payload["job_id"] == done["response"]["job_id"] == job_id
    assert payload["code"] == 200
    assert payload["queue_time"] == pytest.approx(0.3, abs=0.1)
    assert payload["run_time"] == pytest.approx(0.5, abs=0.15)
    assert (await client.head(spaces.url_for(key))).status_code == 200
    assert len(receiver.received) == 1
    path, body, headers = receiver.received[0]
    assert path == "/hook"
    assert body == payload
    assert list(body) == list(load_sample("30_webhook_compose.json")["body"])
    assert headers["Content-Type"] == "application/json"
    assert nca.webhooks_sent == [(f"{receiver.url}/hook", payload, 200)]
    assert nca.status_calls(job_id) == 3


async def test_done_happens_without_polling(
    nca: NcaSimulator,
    spaces: SpacesSimulator,
    client: httpx.AsyncClient,
    receiver: Any,
    load_sample: Loader,
) -> None:
    job_id = str(uuid.uuid4())
    nca.add_job(job_id, endpoint=CONCATENATE, caller_id="recA", webhook_url=receiver.url, running_s=0.2)
    await nca.wait_done(job_id)
    assert nca.status_calls(job_id) == 0
    assert spaces.exists(f"{job_id}.mp4")
    assert [b["job_id"] for _, b, _ in receiver.received] == [job_id]
    done = (await poll(client, nca, job_id)).json()
    assert shape(done) == shape(load_sample("20_poll_concatenate_2_done.json")["body"])
    assert done["response"]["response"]["response"] == f"{spaces.base_url}/{job_id}.mp4"
    await asyncio.sleep(0.1)
    assert len(receiver.received) == 1  # posted once, never again


async def test_failed_job_is_done_with_code_500(
    nca: NcaSimulator,
    spaces: SpacesSimulator,
    client: httpx.AsyncClient,
    receiver: Any,
    load_sample: Loader,
) -> None:
    job_id = str(uuid.uuid4())
    message = "404 Client Error: File not found for url: http://127.0.0.1:8000/missing.mp4"
    nca.add_job(job_id, endpoint=COMPOSE, caller_id="recF", webhook_url=receiver.url, fail_message=message)
    await nca.wait_done(job_id)
    done = (await poll(client, nca, job_id)).json()
    expected = load_sample("20_poll_fail_compose_404_2_done.json")["body"]
    assert shape(done) == shape(expected)
    payload = done["response"]["response"]
    assert (payload["code"], payload["response"], payload["message"]) == (500, None, message)
    assert done["response"]["job_status"] == "done"
    assert not spaces.exists(f"{job_id}_output_0.mp4")
    assert receiver.received[0][1] == payload
    assert shape(receiver.received[0][1]) == shape(load_sample("30_webhook_fail_compose_404.json")["body"])


async def test_dropped_webhook_and_dead_receiver(
    nca: NcaSimulator, client: httpx.AsyncClient, receiver: Any, load_sample: Loader
) -> None:
    dropped = nca.add_job(
        endpoint=AUDIO_MIXING, caller_id="recD", webhook_url=receiver.url, drop_webhook=True
    )
    dead = nca.add_job(endpoint=CONCATENATE, caller_id="recE", webhook_url="http://127.0.0.1:9/none")
    await nca.wait_done(dropped.job_id)
    await nca.wait_done(dead.job_id)
    assert receiver.received == []
    assert nca.webhooks_dropped == [dropped.job_id]
    assert nca.webhooks_sent == [("http://127.0.0.1:9/none", dead.payload, None)]
    for job in (dropped, dead):
        body = (await poll(client, nca, job.job_id)).json()
        assert body["response"]["job_status"] == "done"
        assert body["response"]["response"]["code"] == 200
    mix = (await poll(client, nca, dropped.job_id)).json()["response"]["response"]
    assert shape(mix) == shape(
        load_sample("20_poll_audio_mixing_3_done.json")["body"]["response"]["response"]
    )


async def test_drop_webhook_rate_applies_when_unspecified(spaces: SpacesSimulator, receiver: Any) -> None:
    async with NcaSimulator(NCA_KEY, spaces=spaces, drop_webhook_rate=1.0) as sim:
        job = sim.add_job(caller_id="r", webhook_url=receiver.url)
        kept = sim.add_job(caller_id="r", webhook_url=receiver.url, drop_webhook=False)
        await sim.wait_done(job.job_id)
        await sim.wait_done(kept.job_id)
    assert job.drop_webhook
    assert [b["job_id"] for _, b, _ in receiver.received] == [kept.job_id]


async def test_forget_answers_404_again(nca: NcaSimulator, client: httpx.AsyncClient) -> None:
    job = nca.add_job(caller_id="recG")
    await nca.wait_done(job.job_id)
    assert (await poll(client, nca, job.job_id)).status_code == 200
    nca.forget(job.job_id)
    resp = await poll(client, nca, job.job_id)
    assert resp.status_code == 404
    assert resp.json()["message"] == {"error": "Job not found", "job_id": job.job_id}
    assert nca.status_calls(job.job_id) == 2


async def test_manual_control_pins_and_finishes(
    nca: NcaSimulator, spaces: SpacesSimulator, client: httpx.AsyncClient
) -> None:
    job = nca.add_job(endpoint=CONCATENATE, caller_id="recH", queued_s=0.05, running_s=0.05)
    nca.set_status(job.job_id, "running")
    await asyncio.sleep(0.2)
    body = (await poll(client, nca, job.job_id)).json()
    assert body["response"]["job_status"] == "running"
    assert not spaces.exists(f"{job.job_id}.mp4")
    nca.finish_now(job.job_id)
    assert nca.status(job.job_id) == "done"
    assert spaces.exists(f"{job.job_id}.mp4")
    with pytest.raises(ValueError, match="already done"):
        nca.set_status(job.job_id, "queued")
    later = nca.add_job(caller_id="recI", queued_s=60)
    nca.finish_now(later.job_id, fail_message="boom")
    assert later.payload is not None
    assert (later.payload["code"], later.payload["message"]) == (500, "boom")


async def test_output_urls_override_and_faults(
    nca: NcaSimulator, spaces: SpacesSimulator, client: httpx.AsyncClient
) -> None:
    url = f"{spaces.base_url}/custom/out.mp4"
    job = nca.add_job(endpoint=COMPOSE, caller_id="recJ", output_urls=[url])
    await nca.wait_done(job.job_id)
    assert job.payload is not None
    assert job.payload["response"] == [{"file_url": url}]
    assert spaces.exists("custom/out.mp4")
    nca.faults.fail_next(1, 502, body="Bad Gateway")
    resp = await poll(client, nca, job.job_id)
    assert (resp.status_code, resp.text) == (502, "Bad Gateway")
    assert (await poll(client, nca, job.job_id)).status_code == 200


async def test_listing_answers_like_the_recorded_one(
    nca: NcaSimulator, client: httpx.AsyncClient, load_sample: Loader
) -> None:
    url = f"{nca.url}/v1/toolkit/jobs/status"
    job_id = str(uuid.uuid4())
    nca.add_job(job_id, endpoint=COMPOSE, caller_id="recA")
    nca.set_status(job_id, "queued")
    await poll(client, nca, job_id)
    resp = await client.post(url, json={"since_seconds": 600}, headers={"X-API-Key": NCA_KEY})
    expected = load_sample("06_jobs_status_right_after_submit.json")
    assert resp.status_code == expected["http_status"] == 200
    body = resp.json()
    assert {k: shape(v) for k, v in body.items() if k != "response"} == {
        k: shape(v) for k, v in expected["body"].items() if k != "response"
    }
    own = body["job_id"]
    assert body["response"][own] == "running"  # the listing's own file, as recorded
    assert body["response"][job_id] == "queued"
    assert list(body["response"].values()).count("done") == 1  # the status call's own file
    wrong = await client.post(url, json={}, headers={"X-API-Key": "nope"})
    assert wrong.status_code == 401
    assert wrong.json() == load_sample("52_jobs_status_wrong_key.json")["body"]

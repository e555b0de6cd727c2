"""The NCA webhook receiver, the metrics and the logs, with the real operator and API server."""

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from controller.clients.kube import KubeClient
from controller.naming import resource_name
from controller.runtime import Runtime
from controller.vocabulary import ANNOTATION_RECHECK
from sandbox.controlplane import ControlPlane
from sandbox.world import AIRTABLE_KEY, NCA_KEY, SeededJob, World
from tests.harness import WEBHOOK_TOKEN, Halfway, mediajob, running, settings_for, until, wait_synced
from tests.processes import ControllerProcess, controllers
from tests.samples import nca_webhook_body

# Polling would take minutes (the budget may not check more often either): only the webhook can be fast.
SLOW = {"POLLING_INTERVAL_MINUTES": "10", "POLLING_MIN_INTERVAL_SECONDS": "600"}


def hook_url(runtime: Runtime, token: str = WEBHOOK_TOKEN) -> str:
    return f"http://127.0.0.1:{runtime.http.port}/webhooks/nca?token={token}"


def payload(world: World, job: SeededJob, **changes: object) -> dict[str, object]:
    response = job.output_url or f"{world.spaces.base_url}/{job.job_id}.mp4"
    return nca_webhook_body(**{"id": job.record_id, "job_id": job.job_id, "response": response, **changes})


async def known(runtime: Runtime, namespace: str, job: SeededJob) -> bool:
    return runtime.store.get((namespace, resource_name(job.record_id))) is not None


async def test_the_webhook_beats_the_next_poll(world: World, namespace: str, kube: KubeClient) -> None:
    job = world.add_job("combine", queued_s=2, running_s=1, drop_webhook=False)
    async with running(settings_for(world, namespace, **SLOW), rng=Halfway()) as runtime:
        world.nca_sim.jobs[job.job_id].webhook_url = hook_url(runtime)
        started = time.monotonic()
        obj = await wait_synced(kube, namespace, job, timeout=20)
        elapsed = time.monotonic() - started
        latency = runtime.metrics.detection_latency.labels(via="webhook")._sum.get()
    assert (obj["status"]["phase"], obj["status"]["completedVia"]) == ("Completed", "webhook")
    assert elapsed < 60  # the next poll of this job is minutes away
    assert world.nca_sim.webhooks_sent[0][2] == 200
    assert world.jobs_row(job)["Status"] == "completed"
    assert "webhook" in world.jobs_row(job)["Notes"]
    assert world.writes(job) == 2
    assert latency < 5


async def test_webhook_and_poll_racing_give_one_transition_and_one_write(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    jobs = [world.add_job("concatenate", drop_webhook=True) for _ in range(5)]
    for job in jobs:
        world.nca_sim.set_status(job.job_id, "running")
    async with running(settings_for(world, namespace, **SLOW)) as runtime:
        await until(lambda: all(runtime.store.get((namespace, resource_name(j.record_id))) for j in jobs))
        for job in jobs:
            world.spaces.put_object(f"{job.job_id}.mp4")  # the poll will find it...
        async with httpx.AsyncClient() as client:

            async def race(job: SeededJob) -> list[int]:
                name = resource_name(job.record_id)
                recheck = kube.patch_mediajob(
                    namespace, name, {"metadata": {"annotations": {ANNOTATION_RECHECK: "go"}}}
                )
                hooks = [client.post(hook_url(runtime), json=payload(world, job)) for _ in range(3)]
                results = await asyncio.gather(recheck, *hooks)
                return [r.status_code for r in results[1:]]  # type: ignore[union-attr]

            codes = await asyncio.gather(*(race(j) for j in jobs))
        for job in jobs:
            await wait_synced(kube, namespace, job)
        completions = sum(
            runtime.metrics.completions.labels(via=v)._value.get()
            for v in ("spaces", "webhook", "nca-status")
        )
    assert all(code in (200, 202) for batch in codes for code in batch)
    assert completions == 5
    for job in jobs:
        assert world.airtable.writes_for(job.record_id) == 1
        assert world.airtable.writes_for(job.target_id or "") == 1  # type: ignore[arg-type]
    events = json.loads(controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    assert sum(1 for e in events if e["reason"] == "Completed") == 5


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no token", 401),
        ("wrong token in header", 401),
        ("wrong token in query", 401),
        ("not json", 400),
        ("json array", 400),
        ("missing job_id", 400),
        ("code is text", 400),
        ("unsafe job id", 400),
        ("no output url", 400),
        ("too large", 413),
        ("unknown job", 202),
        ("record mismatch", 409),
    ],
)
async def test_bad_requests_change_nothing(
    world: World, namespace: str, kube: KubeClient, case: str, status: int
) -> None:
    job = world.add_job("concatenate", register_in_nca=False, job_id="waiting-job-1")
    async with running(settings_for(world, namespace, **SLOW), rng=Halfway()) as runtime:  # no check
        await until(lambda: known(runtime, namespace, job))
        before = await mediajob(kube, namespace, job)
        base = f"http://127.0.0.1:{runtime.http.port}/webhooks/nca"
        good = payload(world, job)
        request: dict[str, object] = {"url": f"{base}?token={WEBHOOK_TOKEN}", "json": good}
        if case == "no token":
            request["url"] = base
        elif case == "wrong token in header":
            request.update(url=base, headers={"X-Webhook-Token": "nope"})
        elif case == "wrong token in query":
            request["url"] = f"{base}?token=nope"
        elif case == "not json":
            request = {"url": request["url"], "content": b"{not json"}
        elif case == "json array":
            request["json"] = [good]
        elif case == "missing job_id":
            request["json"] = {k: v for k, v in good.items() if k != "job_id"}
        elif case == "code is text":
            request["json"] = {**good, "code": "200"}
        elif case == "unsafe job id":
            request["json"] = {**good, "job_id": "../../x"}
        elif case == "no output url":
            request["json"] = {**good, "response": None}
        elif case == "too large":
            request["json"] = {**good, "padding": "x" * (1024 * 1024 + 10)}
        elif case == "unknown job":
            request["json"] = {**good, "job_id": "never-heard-of-it"}
        elif case == "record mismatch":
            request["json"] = {**good, "id": "recSOMEONEELSEaaa"}
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.post(**request)  # type: ignore[arg-type]
        assert response.status_code == status, response.text
        assert "result" in response.json()
        await asyncio.sleep(0.5)
        after = await mediajob(kube, namespace, job)
        unknown = runtime.metrics.webhooks.labels(result="unknown_job")._value.get()
    assert before is not None
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert world.writes(job) == 0
    assert unknown == (1 if case == "unknown job" else 0)
    if case == "unknown job":
        assert len(await kube.list_mediajobs(namespace)) == 1  # nothing created


async def test_the_header_token_works_and_late_webhooks_are_acknowledged(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("concatenate", register_in_nca=False, job_id="header-job-1")
    async with running(settings_for(world, namespace, **SLOW)) as runtime:
        await until(lambda: known(runtime, namespace, job))
        url = f"http://127.0.0.1:{runtime.http.port}/webhooks/nca"
        async with httpx.AsyncClient(timeout=5) as client:
            first = await client.post(
                url, json=payload(world, job), headers={"X-Webhook-Token": WEBHOOK_TOKEN}
            )
            await wait_synced(kube, namespace, job)
            late = await client.post(
                url,
                json=payload(world, job, code=500, response=None, message="late"),
                headers={"X-Webhook-Token": WEBHOOK_TOKEN},
            )
        obj = await mediajob(kube, namespace, job)
    assert first.json()["result"] in ("recorded", "accepted")
    assert (late.status_code, late.json()["result"]) == (200, "already-ended")
    assert obj is not None
    assert obj["status"]["phase"] == "Completed"
    assert world.writes(job) == 2


async def test_a_failed_job_via_webhook(world: World, namespace: str, kube: KubeClient) -> None:
    job = world.add_job("combine", register_in_nca=False, job_id="failing-job-1")
    async with running(settings_for(world, namespace, **SLOW)) as runtime:
        await until(lambda: known(runtime, namespace, job))
        async with httpx.AsyncClient(timeout=5) as client:
            await client.post(
                hook_url(runtime),
                json=payload(world, job, code=500, response=None, message="ffmpeg: bad input"),
            )
        obj = await wait_synced(kube, namespace, job)
    assert (obj["status"]["phase"], obj["status"]["reason"]) == ("Failed", "Failed")
    assert "ffmpeg: bad input" in world.jobs_row(job)["Notes"]


async def test_a_slow_client_does_not_hold_up_others(world: World, namespace: str) -> None:
    async with running(settings_for(world, namespace, **SLOW)) as runtime:
        reader, writer = await asyncio.open_connection("127.0.0.1", runtime.http.port)
        writer.write(
            f"POST /webhooks/nca?token={WEBHOOK_TOKEN} HTTP/1.1\r\nHost: x\r\n"
            'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"job_id":'.encode()
        )
        await writer.drain()
        started = time.monotonic()
        async with httpx.AsyncClient(timeout=5) as client:
            other = await client.post(
                hook_url(runtime), json={"job_id": "x", "id": "y", "code": 200, "response": "http://a/b"}
            )
        quick = time.monotonic() - started
        async with asyncio.timeout(10):
            answer = await reader.read(1000)
        slow = time.monotonic() - started
        writer.close()
    assert other.status_code == 202
    assert quick < 1
    assert answer.startswith(b"HTTP/1.1 408")
    assert 4 <= slow < 8


async def test_metrics_after_a_scripted_scenario(world: World, namespace: str, kube: KubeClient) -> None:
    by_spaces = world.add_job("combine", drop_webhook=True)
    by_nca = world.add_job("concatenate", upload=False, drop_webhook=True)
    by_hook = world.add_job("add_music", register_in_nca=False, job_id="hooked-job-1")
    failed = world.add_job("combine", fail_message="bad", drop_webhook=True)
    waiting = world.add_job("concatenate", drop_webhook=True)
    world.nca_sim.set_status(waiting.job_id, "running")
    world.spaces.slow_down_next(1, path_contains=waiting.job_id)
    async with running(settings_for(world, namespace)) as runtime:
        await until(lambda: known(runtime, namespace, by_hook))
        async with httpx.AsyncClient(timeout=5) as client:
            await client.post(hook_url(runtime), json=payload(world, by_hook))
            await client.post(hook_url(runtime, "wrong"), json=payload(world, by_hook))
            await client.post(hook_url(runtime), json={**payload(world, by_hook), "job_id": "nobody"})
        for job in (by_spaces, by_nca, by_hook, failed):
            await wait_synced(kube, namespace, job)
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{runtime.http.metrics_port}/metrics")).text
            health = await client.get(f"http://127.0.0.1:{runtime.http.metrics_port}/healthz")
            ready = await client.get(f"http://127.0.0.1:{runtime.http.metrics_port}/readyz")
            # not on the webhooks' port, which an Ingress may expose
            hidden = await client.get(f"http://127.0.0.1:{runtime.http.port}/metrics")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['mediajob_completions_total{via="spaces"}'] == 1
    assert samples['mediajob_completions_total{via="nca-status"}'] == 1
    assert samples['mediajob_completions_total{via="webhook"}'] == 1
    assert samples['mediajob_failures_total{reason="Failed"}'] == 1
    assert samples['mediajob_webhooks_total{result="unauthorized"}'] == 1
    assert samples['mediajob_webhooks_total{result="unknown_job"}'] == 1
    assert samples['mediajob_webhooks_total{result="recorded"}'] == 1
    assert samples["mediajob_leader"] == 1
    assert hidden.status_code == 404
    assert samples["mediajob_writeback_backlog"] == 0
    assert samples['mediajob_processing_jobs{age="lt_1h"}'] == 1
    assert samples['mediajob_processing_jobs{age="gt_24h"}'] == 0
    assert samples['mediajob_checks_total{result="found"}'] == 1
    assert samples['mediajob_checks_total{result="error"}'] >= 1  # the 503
    assert samples['mediajob_outside_requests_total{code="503",system="spaces"}'] == 1
    assert samples['mediajob_outside_requests_total{code="200",system="airtable"}'] >= 5
    assert samples['mediajob_outside_requests_total{code="200",system="nca"}'] >= 2
    assert samples['mediajob_detection_latency_seconds_count{via="spaces"}'] == 1
    checks = sum(v for k, v in samples.items() if k.startswith("mediajob_checks_total"))
    assert samples["mediajob_check_lag_seconds_count"] >= checks > 0  # every check started is timed
    assert samples["mediajob_airtable_rate_limited_total"] == 0
    assert (health.status_code, ready.status_code) == (200, 200)


async def test_no_secret_reaches_logs_or_events(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    """A whole scenario in a real process with JSON logs at debug level, then grep for the secrets."""
    ok = world.add_job("combine", drop_webhook=True)
    failing = world.add_job("concatenate", fail_message=f"upstream said {NCA_KEY[:4]}…", drop_webhook=True)
    hooked = world.add_job("add_music", register_in_nca=False, job_id="hooked-secret-1")
    world.airtable.faults.fail_next(2, 500, path_contains="/Jobs")
    world.nca_sim.faults.fail_next(2, 401, body={"message": "Unauthorized"})
    env = world.env(
        WATCH_NAMESPACE=namespace,
        WEBHOOK_TOKEN=WEBHOOK_TOKEN,
        KUBECONFIG=str(controlplane.kubeconfig),
        POLLING_INTERVAL_MINUTES="0.017",
        LOG_FORMAT="json",
        LOG_LEVEL="debug",
    )
    proc = ControllerProcess("secret-check", env, tmp_path)
    with controllers(proc):
        await until(lambda: proc.get("/readyz"), timeout=30)
        await until(lambda: mediajob(kube, namespace, hooked), timeout=30)
        async with httpx.AsyncClient(timeout=5) as client:
            base = f"http://127.0.0.1:{proc.port}/webhooks/nca"
            await client.post(f"{base}?token={WEBHOOK_TOKEN}", json=payload(world, hooked))
            await client.post(f"{base}?token={WEBHOOK_TOKEN}x", json=payload(world, hooked))
            await client.post(base, json=payload(world, hooked), headers={"X-Webhook-Token": AIRTABLE_KEY})
        for job in (ok, failing, hooked):
            await wait_synced(kube, namespace, job, timeout=40)
    log = proc.log()
    events = controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    resources = controlplane.kubectl("get", "mj", "-n", namespace, "-o", "json").stdout
    assert len(log.splitlines()) > 10
    assert all(json.loads(line) for line in log.splitlines() if line.startswith("{"))
    job_lines = [json.loads(line) for line in log.splitlines() if '"mediajob"' in line]
    assert job_lines
    assert all("external_job_id" in line for line in job_lines)
    for secret in (AIRTABLE_KEY, NCA_KEY, WEBHOOK_TOKEN):
        assert secret not in log
        assert secret not in events
        assert secret not in resources

"""Metrics summed over two replicas, a leader and a follower, as Prometheus sums its targets."""

from datetime import timedelta
from pathlib import Path

import httpx

from controller.clients.kube import KubeClient, NotFound
from controller.model import utcnow
from controller.naming import resource_name
from sandbox.controlplane import ControlPlane
from sandbox.world import SeededJob, World
from tests.harness import FAST, WEBHOOK_TOKEN, until, wait_synced
from tests.processes import ControllerProcess, controllers

LEASE = "mediajob-controller"
Samples = dict[str, float]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


async def scrape(proc: ControllerProcess) -> Samples:
    response = await proc.get("/metrics")
    assert response is not None
    assert response.status_code == 200
    return parse(response.text)


def total(replicas: list[Samples], prefix: str) -> float:
    """sum(prefix...) over every replica's series, like PromQL's sum() over the targets."""
    return sum(v for s in replicas for k, v in s.items() if k == prefix or k.startswith(prefix + "{"))


async def holder(kube: KubeClient, namespace: str) -> str | None:
    try:
        lease = await kube.get_lease(namespace, LEASE)
    except NotFound:
        return None
    return (lease.get("spec") or {}).get("holderIdentity") or None


async def test_sums_over_a_leader_and_a_follower_count_each_job_once(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    now = utcnow()
    young = [world.add_job("combine", drop_webhook=True) for _ in range(3)]
    older = [
        world.add_job("concatenate", created=now - timedelta(hours=2), drop_webhook=True) for _ in range(2)
    ]
    oldest = world.add_job("add_music", created=now - timedelta(hours=8), drop_webhook=True)
    polled = world.add_job("concatenate", drop_webhook=True)
    hooked = world.add_job("concatenate", drop_webhook=True)
    for job in [*young, *older, oldest, polled, hooked]:
        world.nca_sim.set_status(job.job_id, "running")
    env = world.env(
        **{
            **FAST,
            "WATCH_NAMESPACE": namespace,
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "KUBECONFIG": str(controlplane.kubeconfig),
            "LEADER_ELECTION_ENABLED": "true",
            "LEASE_NAMESPACE": namespace,
            "LEASE_NAME": LEASE,
            "LOG_FORMAT": "json",
        }
    )
    a, b = ControllerProcess("rep-a", env, tmp_path), ControllerProcess("rep-b", env, tmp_path)
    with controllers(a, b):
        first = await until(lambda: holder(kube, namespace), timeout=30)
        leader, follower = (a, b) if first == "rep-a" else (b, a)
        everyone: list[SeededJob] = [*young, *older, oldest, polled, hooked]

        async def all_mirrored() -> bool:
            names = {i["metadata"]["name"] for i in await kube.list_mediajobs(namespace)}
            return {resource_name(j.record_id) for j in everyone} <= names

        await until(all_mirrored, timeout=30)
        # The leader may have mirrored everything before the follower has even started (its
        # imports take seconds on a loaded machine): the webhook below needs it listening.
        await until(lambda: follower.get("/readyz"), timeout=30)
        # One completion found by the leader's checks, one by a webhook sent to the follower. The
        # webhook's output is nowhere a check could find it (NCA still says running, nothing on
        # Spaces), so only the follower can complete that job.
        world.nca_sim.finish_now(polled.job_id)
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"http://127.0.0.1:{follower.port}/webhooks/nca",
                headers={"X-Webhook-Token": WEBHOOK_TOKEN},
                json={
                    "endpoint": "/v1/video/concatenate",
                    "code": 200,
                    "id": hooked.record_id,
                    "job_id": hooked.job_id,
                    "response": f"{world.spaces.base_url}/elsewhere/{hooked.job_id}.mp4",
                    "message": "success",
                },
            )
        assert answer.status_code in (200, 202), answer.text
        await wait_synced(kube, namespace, hooked, timeout=30)
        await wait_synced(kube, namespace, polled, timeout=30)

        async def settled() -> list[Samples] | None:
            replicas = [await scrape(leader), await scrape(follower)]
            lt_1h = total(replicas, 'mediajob_processing_jobs{age="lt_1h"}')
            return (
                replicas
                if lt_1h == len(young) and total(replicas, "mediajob_completions_total") == 2
                else None
            )

        replicas = await until(settled, timeout=30, every=0.2)
        on_leader, on_follower = replicas

    # every job once, summed over the two targets (the follower watches the same jobs)
    assert total(replicas, 'mediajob_processing_jobs{age="lt_1h"}') == 3
    assert total(replicas, 'mediajob_processing_jobs{age="1h_6h"}') == 2
    assert total(replicas, 'mediajob_processing_jobs{age="6h_24h"}') == 1
    assert total(replicas, 'mediajob_processing_jobs{age="gt_24h"}') == 0
    assert total(replicas, "mediajob_processing_jobs") == 6
    assert total(replicas, "mediajob_writeback_backlog") == 0
    assert total(replicas, "mediajob_leader") == 1
    # the follower exports no job gauges at all, but is alive and says so
    assert not any(
        k.startswith(("mediajob_processing_jobs", "mediajob_writeback_backlog")) for k in on_follower
    )
    assert on_follower["mediajob_leader"] == 0
    assert on_leader["mediajob_leader"] == 1
    # counters: each replica counts what it did, so the sums are the real totals
    assert on_follower['mediajob_completions_total{via="webhook"}'] == 1
    assert (
        on_leader['mediajob_completions_total{via="spaces"}']
        + on_leader.get('mediajob_completions_total{via="nca-status"}', 0)
        == 1
    )
    assert total(replicas, "mediajob_completions_total") == 2
    # the default process collector is back on both
    assert on_leader["process_resident_memory_bytes"] > 0
    assert on_follower["process_resident_memory_bytes"] > 0


async def test_metrics_negotiate_openmetrics(
    world: World, namespace: str, controlplane: ControlPlane, tmp_path: Path
) -> None:
    env = world.env(
        **{
            **FAST,
            "WATCH_NAMESPACE": namespace,
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "KUBECONFIG": str(controlplane.kubeconfig),
            "LOG_FORMAT": "json",
        }
    )
    proc = ControllerProcess("om", env, tmp_path)
    with controllers(proc):
        await until(lambda: proc.get("/readyz"), timeout=30)
        async with httpx.AsyncClient(timeout=5) as client:
            url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
            om = await client.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
            plain = await client.get(url)
            zipped = await client.get(url, headers={"Accept-Encoding": "gzip"})
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert om.text.rstrip().endswith("# EOF")
    assert "mediajob_leader 1.0" in om.text
    assert plain.headers["content-type"].startswith("text/plain")
    assert "# EOF" not in plain.text
    assert zipped.headers.get("content-encoding") == "gzip"

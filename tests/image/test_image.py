"""The built image as a pod runs it: a lifecycle, a webhook, and a SIGKILL failover between two
containers (issue "Runs as shipped"). Every controller here is the shipped image, not the venv."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

from controller.clients.kube import KubeClient, NotFound
from controller.naming import resource_name
from sandbox.controlplane import ControlPlane
from sandbox.world import SeededJob, World
from tests.harness import FAST, WEBHOOK_TOKEN, until
from tests.image.conftest import ContainerProcess
from tests.processes import controllers

LEASE = "mediajob-controller"


def env_for(world: World, namespace: str, **extra: str) -> dict[str, str]:
    return world.env(
        **{
            **FAST,
            "WATCH_NAMESPACE": namespace,
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "LEADER_ELECTION_ENABLED": "true",
            "LOG_FORMAT": "json",
            **extra,
        }
    )


async def synced(kube: KubeClient, namespace: str, jobs: list[SeededJob]) -> bool:
    names = {resource_name(j.record_id) for j in jobs}
    items = await kube.list_mediajobs(namespace)
    done = [
        i for i in items if i["metadata"]["name"] in names and (i.get("status") or {}).get("airtableSynced")
    ]
    return len(done) == len(names)


async def holder(kube: KubeClient, namespace: str) -> Any:
    try:
        lease = await kube.get_lease(namespace, LEASE)
    except NotFound:
        return None
    return (lease.get("spec") or {}).get("holderIdentity")


def container(
    name: str,
    world: World,
    namespace: str,
    tmp_path: Path,
    image: str,
    sa: Path,
    cp: ControlPlane,
    **extra: str,
) -> ContainerProcess:
    env = env_for(world, namespace, **extra)
    return ContainerProcess(name, env, tmp_path, image=image, sa_dir=sa, api_url=cp.url)


async def test_lifecycle_as_uid_65532_with_a_read_only_root(
    world: World,
    namespace: str,
    kube: KubeClient,
    controlplane: ControlPlane,
    image: str,
    service_account: Path,
    tmp_path: Path,
) -> None:
    jobs = [
        world.add_job(op, running_s=1, drop_webhook=True) for op in ("combine", "concatenate", "add_music")
    ]
    failed = world.add_job("combine", fail_message="bad input", drop_webhook=True)
    pod = container("pod-a", world, namespace, tmp_path, image, service_account, controlplane)
    with controllers(pod):
        await until(lambda: synced(kube, namespace, [*jobs, failed]), timeout=90, every=0.5)
        ready = await pod.get("/readyz")
        assert ready is not None
        assert ready.status_code == 200
        assert pod.returncode is None, pod.log()[-3000:]
    log = pod.log()
    assert "getpwuid" not in log
    assert "forbidden" not in log.lower(), log[-3000:]  # the shipped Role was enough
    assert "Read-only file system" not in log
    for job in jobs:
        assert world.jobs_row(job)["Status"] == "completed"
        assert world.writes(job) == 2
    assert world.jobs_row(failed)["Status"] == "failed"


async def test_a_webhook_completes_a_job_in_the_container(
    world: World,
    namespace: str,
    kube: KubeClient,
    controlplane: ControlPlane,
    image: str,
    service_account: Path,
    tmp_path: Path,
) -> None:
    # no polling: only the webhook can complete the job
    pod = container(
        "pod-hook", world, namespace, tmp_path, image, service_account, controlplane, POLLING_ENABLED="false"
    )
    url = f"http://127.0.0.1:{pod.port}/webhooks/nca?token={WEBHOOK_TOKEN}"
    with controllers(pod):
        await until(lambda: pod.get("/readyz"), timeout=60, every=0.2)  # NCA posts once, never again
        job = world.add_job("concatenate", queued_s=1, drop_webhook=False, webhook_url=url)
        name = resource_name(job.record_id)
        await until(lambda: synced(kube, namespace, [job]), timeout=90, every=0.5)
    obj = await kube.get_mediajob(namespace, name)
    assert obj["status"]["completedVia"] == "webhook"
    assert world.jobs_row(job)["Status"] == "completed"
    assert world.writes(job) == 2


async def test_sigkill_failover_between_two_containers_writes_once(
    world: World,
    namespace: str,
    kube: KubeClient,
    controlplane: ControlPlane,
    image: str,
    service_account: Path,
    tmp_path: Path,
) -> None:
    timings = {
        "LEASE_DURATION_SECONDS": "6",
        "LEASE_RENEW_DEADLINE_SECONDS": "4",
        "LEASE_RETRY_PERIOD_SECONDS": "1",
    }
    early = [world.add_job("combine", running_s=1, drop_webhook=True) for _ in range(5)]
    a = container("pod-a", world, namespace, tmp_path, image, service_account, controlplane, **timings)
    b = container("pod-b", world, namespace, tmp_path, image, service_account, controlplane, **timings)
    with controllers(a, b):
        first = await until(lambda: holder(kube, namespace), timeout=60)
        leader, follower = (a, b) if first == "pod-a" else (b, a)
        await until(lambda: synced(kube, namespace, early), timeout=90, every=0.5)
        killed = time.monotonic()
        leader.signal(signal.SIGKILL)
        late = [
            world.add_job(op, running_s=1, drop_webhook=True)
            for op in ("concatenate", "add_music", "combine")
        ]
        await until(lambda: follower.metric("mediajob_leader"), timeout=40, every=0.2)
        takeover = time.monotonic() - killed
        await until(lambda: synced(kube, namespace, late), timeout=90, every=0.5)
        assert await holder(kube, namespace) == follower.name
        assert follower.returncode is None
        await asyncio.sleep(1)  # a doubled write would show up by now
    assert takeover < 6 + 4, f"takeover took {takeover:.1f} s"
    for job in [*early, *late]:
        assert world.jobs_row(job)["Status"] == "completed"
        assert world.writes(job) == 2, job

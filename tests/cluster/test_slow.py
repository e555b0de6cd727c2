"""Long scenarios, kept out of `make test` (run them with `make test-slow`)."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from controller.clients.kube import KubeClient
from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.cluster.test_leader import env_for, holder
from tests.harness import until
from tests.processes import ControllerProcess, controllers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_make_demo_runs_the_whole_mission() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sandbox.demo"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "MediaJobs: 6  Completed: 5  Failed: 1" in result.stdout
    assert "webhook: 1" in result.stdout
    assert "Completed: NCA webhook (mediajob-controller)." in result.stdout


async def test_sigkill_failover_with_1000_jobs_at_the_default_lease_timings(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    rng = random.Random(11)
    jobs = [
        world.add_job(
            ["combine", "concatenate", "add_music"][i % 3], queued_s=rng.uniform(0, 60), drop_webhook=True
        )
        for i in range(1000)
    ]
    env = env_for(world, namespace, controlplane.kubeconfig, POLLING_INTERVAL_MINUTES="0.1")
    a, b = ControllerProcess("big-a", env, tmp_path), ControllerProcess("big-b", env, tmp_path)

    async def synced() -> int:
        items = await kube.list_mediajobs(namespace)
        return sum(1 for i in items if (i.get("status") or {}).get("airtableSynced"))

    with controllers(a, b):
        first = await until(lambda: holder(kube, namespace), timeout=60)
        leader, follower = (a, b) if first == "big-a" else (b, a)

        async def at_least(n: int) -> bool:
            return await synced() >= n

        await until(lambda: at_least(300), timeout=180, every=1)
        killed = time.monotonic()
        leader.signal(signal.SIGKILL)
        await until(lambda: follower.metric("mediajob_leader"), timeout=60, every=0.2)
        takeover = time.monotonic() - killed
        await until(lambda: at_least(1000), timeout=400, every=2)
    assert takeover <= 15 + 10
    for job in jobs:
        assert world.airtable.writes_for(job.record_id) == 1
        assert world.airtable.writes_for(job.target_id or "") == 1  # type: ignore[arg-type]

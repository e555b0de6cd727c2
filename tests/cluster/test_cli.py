"""`kubectl mediajob` as kubectl runs it (a plugin on PATH), against a running controller."""

import asyncio
import os
import subprocess
from pathlib import Path

from controller.clients.kube import KubeClient
from controller.naming import resource_name
from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.harness import running, settings_for, until, wait_synced

BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"


def plugin(controlplane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(controlplane.kubeconfig), "PATH": f"{BIN}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(controlplane.kubectl_path), "mediajob", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def test_stuck_recheck_and_stats(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    done = world.add_job("concatenate", drop_webhook=True)
    hooked = world.add_job("combine", drop_webhook=False)
    world.nca_sim.set_status(hooked.job_id, "running")
    waiting = world.add_job("add_music", drop_webhook=True)
    world.nca_sim.set_status(waiting.job_id, "running")
    async with running(settings_for(world, namespace, POLLING_INTERVAL_MINUTES="0.05")) as runtime:
        world.nca_sim.jobs[
            hooked.job_id
        ].webhook_url = f"http://127.0.0.1:{runtime.http.port}/webhooks/nca?token={runtime.settings.webhook_token.reveal()}"
        await until(lambda: runtime.store.get((namespace, resource_name(hooked.record_id))))
        world.nca_sim.finish_now(hooked.job_id)  # uploads, then posts the webhook at once
        await wait_synced(kube, namespace, done, timeout=30)
        await wait_synced(kube, namespace, hooked, timeout=30)

        listed = await asyncio.to_thread(plugin, controlplane, "stuck", "-n", namespace, "--older-than", "0")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:6] == ["NAMESPACE", "NAME", "OPERATION", "EXTERNAL-ID", "AGE", "CHECKS"]
        assert [line.split()[1] for line in lines[1:]] == [resource_name(waiting.record_id)]
        none = await asyncio.to_thread(plugin, controlplane, "stuck", "-n", namespace, "--older-than", "60")
        assert "No processing MediaJobs older than 60 minutes" in none.stdout

        # --all-stuck before the output exists, so the job is surely still stuck when the plugin lists
        # it: with the output already in Spaces, a regular 3 s poll could complete it first.
        rechecked = await asyncio.to_thread(
            plugin,
            controlplane,
            "recheck",
            "-n",
            namespace,
            "--all-stuck",
            "--older-than",
            "0",
            "--timeout",
            "30",
        )
        assert rechecked.returncode == 0, rechecked.stdout + rechecked.stderr
        name = resource_name(waiting.record_id)
        assert f"✔ {namespace}/{name}: rechecked, phase Processing" in rechecked.stdout

        # By name, once the output exists: the same answer whether the recheck or a poll found it.
        world.spaces.put_object(f"{waiting.job_id}.mp4")
        by_name_waiting = await asyncio.to_thread(plugin, controlplane, "recheck", "-n", namespace, name)
        assert by_name_waiting.returncode == 0, by_name_waiting.stdout
        assert f"✔ {namespace}/{name}: rechecked, phase Completed via spaces" in by_name_waiting.stdout
        await wait_synced(kube, namespace, waiting)

        by_name = await asyncio.to_thread(
            plugin, controlplane, "recheck", "-n", namespace, resource_name(done.record_id)
        )
        assert by_name.returncode == 0, by_name.stdout
        assert "phase Completed" in by_name.stdout

        summary = await asyncio.to_thread(plugin, controlplane, "stats", "-n", namespace)
    assert summary.returncode == 0
    assert "MediaJobs: 3  Completed: 3" in summary.stdout
    assert "spaces: 2 (67%)" in summary.stdout
    assert "webhook: 1 (33%)" in summary.stdout
    assert "Webhook missed: 67% of completions were found by polling" in summary.stdout
    assert "Detection latency (Spaces Last-Modified → status): p50" in summary.stdout


async def test_recheck_without_a_controller_times_out_clearly(
    world: World, namespace: str, controlplane: ControlPlane, kube: KubeClient
) -> None:
    job = world.add_job("combine", register_in_nca=False, job_id="orphan-1")
    async with running(settings_for(world, namespace, POLLING_ENABLED="false")) as runtime:
        await until(lambda: runtime.store.get((namespace, resource_name(job.record_id))))
    result = await asyncio.to_thread(
        plugin, controlplane, "recheck", "-n", namespace, resource_name(job.record_id), "--timeout", "2"
    )
    assert result.returncode == 1
    assert "not handled within 2 s" in result.stdout

"""Leader election with real controller processes on the real API server.

Each test runs `python -m controller` processes against one World; the Lease decides which one
checks, mirrors and writes back. Signals are real: SIGTERM for a graceful hand-over, SIGKILL for
a crash, and a proxy that cuts one process off from the API server.
"""

import asyncio
import json
import random
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from controller.clients.kube import KubeClient, NotFound
from controller.naming import resource_name
from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.harness import WEBHOOK_TOKEN, fast_for, until
from tests.processes import ControllerProcess, controllers
from tests.tcpproxy import TcpProxy

LEASE = "mediajob-controller"


def env_for(world: World, namespace: str, kubeconfig: Path, **extra: str) -> dict[str, str]:
    return world.env(
        **{
            **fast_for(extra),
            "WATCH_NAMESPACE": namespace,
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "KUBECONFIG": str(kubeconfig),
            "LEADER_ELECTION_ENABLED": "true",
            "LEASE_NAMESPACE": namespace,
            "LEASE_NAME": LEASE,
            "LOG_FORMAT": "json",
            **extra,
        }
    )


async def holder(kube: KubeClient, namespace: str) -> str | None:
    try:
        lease = await kube.get_lease(namespace, LEASE)
    except NotFound:
        return None
    return (lease.get("spec") or {}).get("holderIdentity") or ""


async def leaders(procs: tuple[ControllerProcess, ...]) -> list[str]:
    values = await asyncio.gather(*(p.metric("mediajob_leader") for p in procs))
    return [p.name for p, v in zip(procs, values, strict=True) if v == 1.0]


async def test_two_processes_exactly_one_leads(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    env = env_for(world, namespace, controlplane.kubeconfig)
    a, b = ControllerProcess("ctl-a", env, tmp_path), ControllerProcess("ctl-b", env, tmp_path)
    with controllers(a, b) as procs:
        name = await until(lambda: holder(kube, namespace), timeout=30)
        assert name in ("ctl-a", "ctl-b")
        await until(lambda: leaders(procs), timeout=30)
        for _ in range(10):  # and it stays that way
            assert await leaders(procs) == [name]
            await asyncio.sleep(0.5)
        statuses = [await p.get("/readyz") for p in procs]
        assert [s.status_code if s else None for s in statuses] == [200, 200]  # the follower is ready too
        assert a.returncode is None
        assert b.returncode is None


async def test_sigterm_releases_the_lease_and_the_other_takes_over_in_under_3_s(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    env = env_for(world, namespace, controlplane.kubeconfig)  # real timings: 15 s lease, 2 s retry
    a, b = ControllerProcess("ctl-a", env, tmp_path), ControllerProcess("ctl-b", env, tmp_path)
    with controllers(a, b) as procs:
        first = await until(lambda: holder(kube, namespace), timeout=30)
        await until(lambda: leaders(procs), timeout=30)
        leader, follower = (a, b) if first == "ctl-a" else (b, a)
        sent = time.monotonic()
        leader.signal(signal.SIGTERM)
        await until(lambda: follower.metric("mediajob_leader"), timeout=10, every=0.05)
        takeover = time.monotonic() - sent
        assert await leader.wait() == 0
        assert await holder(kube, namespace) == follower.name
    assert takeover < 3.0, f"takeover took {takeover:.2f} s"
    assert "released Lease" in leader.log()


async def test_the_leader_steps_down_and_exits_when_the_api_server_is_unreachable(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    api = urlsplit(controlplane.url)
    proxy = await TcpProxy(api.hostname or "127.0.0.1", api.port or 443).start()
    try:
        proxied = controlplane.kubeconfig_with_server(f"https://127.0.0.1:{proxy.port}", tmp_path / "proxied")
        timings = {
            "LEASE_DURATION_SECONDS": "6",
            "LEASE_RENEW_DEADLINE_SECONDS": "4",
            "LEASE_RETRY_PERIOD_SECONDS": "1",
        }
        proc = ControllerProcess("ctl-cut", env_for(world, namespace, proxied, **timings), tmp_path)
        with controllers(proc):
            await until(lambda: proc.metric("mediajob_leader"), timeout=30)
            cut = time.monotonic()
            proxy.blackhole()
            code = await proc.wait(timeout=30)
            elapsed = time.monotonic() - cut
        assert code == 1
        assert elapsed < 4 + 6, f"exited {elapsed:.1f} s after losing the API server"
        assert "leadership lost" in proc.log()
    finally:
        await proxy.stop()


async def test_sigkill_in_the_middle_of_a_cycle_loses_nothing_and_writes_once(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    rng = random.Random(7)
    operations = ["combine", "concatenate", "add_music"]
    jobs = [
        world.add_job(
            operations[i % 3], queued_s=rng.uniform(0, 10), running_s=rng.uniform(0, 15), drop_webhook=True
        )
        for i in range(200)
    ]
    env = env_for(world, namespace, controlplane.kubeconfig, POLLING_INTERVAL_MINUTES="0.05")  # 3 s
    a, b = ControllerProcess("ctl-a", env, tmp_path), ControllerProcess("ctl-b", env, tmp_path)
    with controllers(a, b):
        first = await until(lambda: holder(kube, namespace), timeout=30)
        leader, follower = (a, b) if first == "ctl-a" else (b, a)

        async def synced() -> int:
            items = await kube.list_mediajobs(namespace)
            return sum(1 for i in items if (i.get("status") or {}).get("airtableSynced"))

        await until(lambda: _at_least(synced, 40), timeout=60, every=0.2)  # mid-way through
        killed = time.monotonic()
        leader.signal(signal.SIGKILL)
        await until(lambda: follower.metric("mediajob_leader"), timeout=40, every=0.1)
        takeover = time.monotonic() - killed
        await until(lambda: _at_least(synced, 200), timeout=120, every=0.5)
    assert takeover <= 15 + 10, f"takeover took {takeover:.1f} s"
    for job in jobs:
        assert world.jobs_row(job)["Status"] == "completed", job
        assert world.airtable.writes_for(job.record_id) == 1, job
        assert world.airtable.writes_for(job.target_id or "") == 1, job  # type: ignore[arg-type]


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def test_mirror_creates_the_right_resources_and_a_second_cycle_writes_nothing(
    world: World, namespace: str, kube: KubeClient
) -> None:
    from tests.harness import running, settings_for

    good = [
        world.add_job(
            ["combine", "concatenate", "add_music"][i % 3], register_in_nca=False, job_id=f"job-{i:04d}"
        )
        for i in range(990)
    ]
    base = world.base_id
    twins = []
    for record_id in ("recCaseTwinAAAAAAA"[:17], "reccasetwinaaaaaa"):
        twins.append(
            world.airtable.add_record(
                base,
                "Jobs",
                {
                    "Status": "processing",
                    "External Job ID": f"twin-{record_id}",
                    "Request Payload": json.dumps({"operation": "transcribe"}),
                    "Created Time": "2026-11-29T00:00:00.000Z",
                },
                record_id=record_id,
            )
        )
    malformed = {
        "bad-payload": {"Request Payload": "operation=combine"},
        "unsafe-id": {"External Job ID": "../../etc/passwd"},
        "no-operation": {"Request Payload": '{"segment_id": "x"}'},
        "bad-time": {"Created Time": "last tuesday"},
        "too-long-op": {"Request Payload": json.dumps({"operation": "x" * 64})},
    }
    bad_ids = {}
    for label, fields in malformed.items():
        row = {
            "Status": "processing",
            "External Job ID": f"bad-{label}",
            "Request Payload": '{"operation": "combine"}',
            "Created Time": "2026-11-29T00:00:00.000Z",
            "Notes": "from the old app",
            **fields,
        }
        bad_ids[label] = world.airtable.add_record(base, "Jobs", row)
    world.airtable.add_record(
        base,
        "Jobs",
        {"Status": "completed", "External Job ID": "done-1", "Request Payload": '{"operation": "combine"}'},
    )
    settings = settings_for(world, namespace, POLLING_ENABLED="false", POLLING_INTERVAL_MINUTES="0.1")
    async with running(settings) as runtime:
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= 1, timeout=90, every=0.2)
        items = await kube.list_mediajobs(namespace)
        names = {i["metadata"]["name"] for i in items}
        assert len(items) == 992
        assert {resource_name(j.record_id) for j in good} <= names
        assert {resource_name(t) for t in twins} <= names
        assert resource_name(twins[0]) != resource_name(twins[1])
        versions = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in items}
        before = runtime.mirror.cycles  # type: ignore[union-attr]
        await until(lambda: runtime.mirror.cycles >= before + 1, timeout=30, every=0.2)  # type: ignore[union-attr]
        report = runtime.mirror.last_report  # type: ignore[union-attr]
        assert report is not None
        assert (report.rows, report.invalid, report.api_writes, report.notes_written) == (997, 5, 0, 0)
        again = {
            i["metadata"]["name"]: i["metadata"]["resourceVersion"]
            for i in await kube.list_mediajobs(namespace)
        }
        assert again == versions
        invalid_metric = runtime.metrics.mirror_invalid_rows._value.get()
    assert invalid_metric == 5  # counted once per row, not once per cycle
    for label, record_id in bad_ids.items():
        notes = world.airtable.get_fields(base, "Jobs", record_id)["Notes"]
        assert notes.startswith("from the old app\nmediajob-controller cannot track this job:"), (
            label,
            notes,
        )
        assert notes.count("cannot track this job") == 1
        assert (
            world.airtable.get_fields(base, "Jobs", record_id)["Status"] == "processing"
        )  # the job is not failed
        assert world.airtable.writes_for(record_id) == 1
    spec = next(i for i in items if i["metadata"]["name"] == resource_name(good[0].record_id))["spec"]
    assert spec["externalJobId"] == "job-0000"
    assert spec["target"] == {"table": "Segments", "recordId": good[0].target_id}


async def test_a_row_changed_in_airtable_ends_its_job_without_writing_airtable(
    world: World, namespace: str, kube: KubeClient
) -> None:
    from tests.harness import running, settings_for, wait_phase

    done = world.add_job("combine", register_in_nca=False, job_id="manual-1")
    gone = world.add_job("concatenate", register_in_nca=False, job_id="manual-2")
    async with running(settings_for(world, namespace)) as runtime:
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= 1, timeout=30)
        world.airtable.set_fields(
            world.base_id,
            "Jobs",
            done.record_id,
            {"Status": "completed", "Response Payload": '{"output_url": "https://x.example/out.mp4"}'},
        )
        world.airtable.set_fields(world.base_id, "Jobs", gone.record_id, {"Status": "failed"})
        first = await wait_phase(kube, namespace, done, "Completed")
        second = await wait_phase(kube, namespace, gone, "Failed")
    assert (first["status"]["reason"], first["status"]["airtableSynced"]) == ("EndedInAirtable", True)
    assert first["status"]["outputUrl"] == "https://x.example/out.mp4"
    assert "completedVia" not in first["status"]
    assert second["status"]["reason"] == "EndedInAirtable"
    assert world.writes(done) == 0
    assert world.writes(gone) == 0


pytestmark = pytest.mark.timeout(300)

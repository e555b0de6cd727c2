"""`kubectl mediajob` as kubectl runs it (a plugin on PATH), against a running controller."""

import asyncio
import json
import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controller.clients.kube import KubeClient
from controller.model import utcnow
from controller.naming import resource_name
from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.cluster.test_lifecycle import hook_url, payload
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
        await until(lambda: runtime.store.get((namespace, resource_name(hooked.record_id))))
        # Only the webhook knows of this result (NCA still says running, nothing is on Spaces), so
        # no poll can find it first, however the machine is loaded.
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(hook_url(runtime), json=payload(hooked, hooked.output_url or ""))
        assert answer.status_code == 200, answer.text
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


def mediajob(namespace: str, record_id: str, job_id: str, minutes_ago: float) -> dict[str, Any]:
    submitted = (utcnow() - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "media.phi.dev/v1alpha1",
        "kind": "MediaJob",
        "metadata": {"name": resource_name(record_id), "namespace": namespace},
        "spec": {
            "airtableRecordId": record_id,
            "externalJobId": job_id,
            "operation": "concatenate",
            "submittedAt": submitted,
        },
    }


@pytest.fixture
def user_kubeconfig(controlplane: ControlPlane, namespace: str, tmp_path: Path) -> Path:
    """A user's kubeconfig, as kubectl takes it: a relative tokenFile and a relative CA path (both
    resolved against the kubeconfig's folder), and two contexts. The current one is a wrong user in
    another namespace, so only `--context work` can answer from `namespace`."""
    folder = tmp_path / "kube"
    folder.mkdir()
    (folder / "certs").mkdir()
    (folder / "certs" / "ca.crt").write_bytes(controlplane.ca_path.read_bytes())
    (folder / "token").write_text(controlplane.token + "\n")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": controlplane.url, "certificate-authority": "certs/ca.crt"},
            }
        ],
        "users": [
            {"name": "me", "user": {"tokenFile": "token"}},
            {"name": "stranger", "user": {"token": "not-a-valid-token"}},
        ],
        "contexts": [
            {"name": "work", "context": {"cluster": "local", "user": "me", "namespace": namespace}},
            {"name": "other", "context": {"cluster": "local", "user": "stranger", "namespace": "default"}},
        ],
        "current-context": "other",
    }
    path = folder / "config"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def run_plugin(
    controlplane: ControlPlane, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl running the plugin, from another folder, with no KUBECONFIG and an empty HOME
    unless given: only the flags say where the cluster is."""
    base = {"PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(cwd)}
    return subprocess.run(
        [str(controlplane.kubectl_path), "mediajob", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


async def test_kubectl_flags_kubeconfig_context_and_output(
    controlplane: ControlPlane, namespace: str, user_kubeconfig: Path, tmp_path: Path
) -> None:
    old = mediajob(namespace, "recOLDaaaaaaaaaaa", "job-old", 120)
    young = mediajob(namespace, "recYNGaaaaaaaaaaa", "job-young", 5)
    for obj in (old, young):
        controlplane.kubectl("apply", "-f", "-", input=json.dumps(obj))
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    flags = ["--kubeconfig", str(user_kubeconfig), "--context", "work"]

    # -o json, the namespace from the context (no -n): a kubectl List of the stuck MediaJobs
    as_json = await asyncio.to_thread(
        run_plugin, controlplane, cwd, "stuck", *flags, "--older-than", "60", "-o", "json"
    )
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert listed["kind"] == "List"
    assert [i["metadata"]["name"] for i in listed["items"]] == [old["metadata"]["name"]]
    assert listed["items"][0]["spec"]["externalJobId"] == "job-old"

    # flags before the command too, -o yaml is YAML (not JSON), stats as a document
    as_yaml = await asyncio.to_thread(
        run_plugin, controlplane, cwd, *flags, "stuck", "--older-than", "0", "-o", "yaml"
    )
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert as_yaml.stdout.startswith("apiVersion: v1\n")
    assert {i["metadata"]["name"] for i in yaml.safe_load(as_yaml.stdout)["items"]} == {
        old["metadata"]["name"],
        young["metadata"]["name"],
    }
    stats_json = await asyncio.to_thread(run_plugin, controlplane, cwd, "stats", *flags, "-o", "json")
    assert json.loads(stats_json.stdout)["phases"] == {"Processing": 2}

    wide = await asyncio.to_thread(
        run_plugin, controlplane, cwd, "stuck", *flags, "--older-than", "60", "-o", "wide"
    )
    assert wide.stdout.splitlines()[0].split() == [
        "NAMESPACE",
        "NAME",
        "OPERATION",
        "EXTERNAL-ID",
        "AGE",
        "CHECKS",
        "SUBMITTED",
        "MESSAGE",
    ]

    # -n beats the context's namespace; -A lists every namespace
    elsewhere = await asyncio.to_thread(
        run_plugin, controlplane, cwd, "stuck", *flags, "-n", "default", "-o", "json"
    )
    assert json.loads(elsewhere.stdout)["items"] == []
    everywhere = await asyncio.to_thread(
        run_plugin, controlplane, cwd, "stuck", *flags, "-A", "--older-than", "60", "-o", "json"
    )
    assert old["metadata"]["name"] in {i["metadata"]["name"] for i in json.loads(everywhere.stdout)["items"]}

    # without --context the current context's wrong user is used, and refused
    refused = await asyncio.to_thread(
        run_plugin, controlplane, cwd, "stuck", "--kubeconfig", str(user_kubeconfig)
    )
    assert refused.returncode == 1
    assert "HTTP 401" in refused.stderr
    assert "not-a-valid-token" not in refused.stderr + refused.stdout

    # recheck -o json: the annotated objects on stdout, progress on stderr
    rechecked = await asyncio.to_thread(
        run_plugin, controlplane, cwd, "recheck", old["metadata"]["name"], *flags, "--no-wait", "-o", "json"
    )
    assert rechecked.returncode == 0, rechecked.stderr
    items = json.loads(rechecked.stdout)["items"]
    assert "media.phi.dev/recheck-requested-at" in items[0]["metadata"]["annotations"]
    assert "► annotating" in rechecked.stderr


async def test_kubeconfig_from_the_environment_and_a_missing_one(
    controlplane: ControlPlane, namespace: str, user_kubeconfig: Path, tmp_path: Path
) -> None:
    """$KUBECONFIG when --kubeconfig is absent, like kubectl; a --kubeconfig that does not exist
    is an error that names it."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    from_env = await asyncio.to_thread(
        run_plugin,
        controlplane,
        cwd,
        "stats",
        "--context",
        "work",
        "-o",
        "json",
        env={"KUBECONFIG": str(user_kubeconfig)},
    )
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout)["mediaJobs"] == 0
    missing = await asyncio.to_thread(
        run_plugin, controlplane, cwd, "stats", "--kubeconfig", str(tmp_path / "nope")
    )
    assert missing.returncode == 1
    assert "nope" in missing.stderr


def kubectl(controlplane: ControlPlane, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(controlplane.kubeconfig)}
    return subprocess.run(
        [str(controlplane.kubectl_path), *args], capture_output=True, text=True, env=env, timeout=timeout
    )


async def test_wait_reads_success_failure_and_timeout_like_kstatus(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    """`kubectl mediajob wait` exits 0, 1 or 2; plain `kubectl wait` reads Ready and Stalled."""
    done = world.add_job("concatenate", drop_webhook=True)
    failing = world.add_job("combine", drop_webhook=True, fail_message="ffmpeg exited with code 1")
    waiting = world.add_job("add_music", drop_webhook=True)
    world.nca_sim.set_status(waiting.job_id, "running")
    names = {job: resource_name(job.record_id) for job in (done, failing, waiting)}
    async with running(settings_for(world, namespace, POLLING_INTERVAL_MINUTES="0.05")):
        for job in (done, failing, waiting):
            await until(lambda job=job: kube_has(kube, namespace, names[job]), timeout=20)  # type: ignore[misc]
        ok = await asyncio.to_thread(
            plugin, controlplane, "wait", "-n", namespace, names[done], "--timeout", "60", "-o", "json"
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        [obj] = json.loads(ok.stdout)["items"]
        assert obj["status"]["phase"] == "Completed"
        assert f"✔ {namespace}/{names[done]}: ready" in ok.stderr  # progress on stderr beside JSON
        failed = await asyncio.to_thread(
            plugin, controlplane, "wait", "-n", namespace, names[failing], "--timeout", "60"
        )
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert f"✗ {namespace}/{names[failing]}: stalled (Failed: NCA reported" in failed.stdout
        slow = await asyncio.to_thread(
            plugin, controlplane, "wait", "-n", namespace, names[waiting], names[done], "--timeout", "2"
        )
        assert slow.returncode == 2, slow.stdout + slow.stderr
        assert "still in progress after 2 s" in slow.stdout
        missing = await asyncio.to_thread(
            plugin, controlplane, "wait", "-n", namespace, "nope", "--timeout", "5"
        )
        assert missing.returncode == 1
        assert "not found" in missing.stderr

        # plain kubectl: Ready for success, Stalled for an end without output, and both are
        # written for the job's current generation
        for condition, job in (("Ready", done), ("Stalled", failing), ("Reconciling", waiting)):
            target = f"mj/{names[job]}"
            args = ("wait", "-n", namespace, f"--for=condition={condition}", target, "--timeout=30s")
            waited = await asyncio.to_thread(kubectl, controlplane, *args)
            assert waited.returncode == 0, f"{condition}: {waited.stderr}"
        obj = await kube.get_mediajob(namespace, names[failing])
        assert {c["type"]: c["observedGeneration"] for c in obj["status"]["conditions"]} == {
            "Ready": obj["metadata"]["generation"],
            "Synced": obj["metadata"]["generation"],
            "Stalled": obj["metadata"]["generation"],
        }
        wide = await asyncio.to_thread(kubectl, controlplane, "get", "mj", "-n", namespace, "-o", "wide")
        head, *rows = wide.stdout.splitlines()
        assert head.split()[7:10] == ["READY", "REASON", "MESSAGE"]
        assert {r.split()[0]: r.split()[7:9] for r in rows}[names[failing]] == ["False", "Failed"]


async def kube_has(kube: KubeClient, namespace: str, name: str) -> bool:
    try:
        await kube.get_mediajob(namespace, name)
    except Exception:
        return False
    return True

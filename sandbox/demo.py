"""`make demo`: the whole mission on one machine, with no cloud account, in about a minute.

It starts a real control plane (etcd + kube-apiserver), loopback simulators of Airtable, NCA and
Spaces with a few jobs whose webhooks are mostly dropped, and the controller as a real process
with leader election. Then it shows `kubectl get mediajobs` filling in as the jobs complete,
prints what landed in Airtable, and stops everything.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .controlplane import REPO, ControlPlane, free_port, stop_process
from .world import World

NAMESPACE = "demo"
WEBHOOK_TOKEN = "demo-webhook-token"  # noqa: S105 - a throwaway value for a local demo
JOBS: list[tuple[str, dict[str, object]]] = [
    ("combine", {"queued_s": 3, "running_s": 5}),
    ("concatenate", {"queued_s": 6, "running_s": 8}),
    ("add_music", {"queued_s": 2, "running_s": 14}),
    ("combine", {"queued_s": 10, "running_s": 10}),
    ("concatenate", {"queued_s": 4, "running_s": 3, "fail_message": "404 Client Error: input not found"}),
    ("add_music", {"queued_s": 5, "running_s": 6, "drop_webhook": False}),  # the one webhook NCA delivers
]


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


async def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="mediajob-demo-"))
    say("starting a local control plane (etcd + kube-apiserver)")
    plane = ControlPlane(workdir / "controlplane")
    plane.start()
    controller: asyncio.subprocess.Process | None = None
    try:
        plane.kubectl("apply", "-f", str(REPO / "crds"))
        plane.kubectl("create", "namespace", NAMESPACE)
        async with World() as world:
            port = free_port()
            hook = f"http://127.0.0.1:{port}/webhooks/nca?token={WEBHOOK_TOKEN}"
            for operation, timeline in JOBS:
                options = {"drop_webhook": True, **timeline}
                world.add_job(operation, webhook_url=hook, **options)  # type: ignore[arg-type]
            dropped = len(JOBS) - 1
            say(f"seeded {len(JOBS)} Airtable Jobs rows in 'processing'; NCA will drop {dropped} webhooks")
            env = {
                **os.environ,
                **world.env(),
                "KUBECONFIG": str(plane.kubeconfig),
                "WATCH_NAMESPACE": NAMESPACE,
                "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                "HTTP_PORT": str(port),
                "METRICS_PORT": str(free_port()),
                "POLLING_INTERVAL_MINUTES": "0.1",
                "LEADER_ELECTION_ENABLED": "true",
                "POD_NAME": "demo-controller-0",
                "LOG_FORMAT": "text",
            }
            log_path = workdir / "controller.log"
            say(f"starting the controller (logs: {log_path})")
            controller = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "controller",
                env=env,
                stdout=log_path.open("wb"),
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                await asyncio.sleep(4)
                out = await asyncio.to_thread(plane.kubectl, "get", "mediajobs", "-n", NAMESPACE, check=False)
                say(f"kubectl get mediajobs -n {NAMESPACE}   (t+{int(120 - (deadline - time.monotonic()))}s)")
                print(out.stdout or out.stderr, end="", flush=True)
                lines = out.stdout.splitlines()[1:]
                if len(lines) == len(JOBS) and all(" True " in f" {line} " for line in lines):
                    break
            say("Airtable Jobs table afterwards")
            for job in world.jobs:
                row = world.jobs_row(job)
                status, notes = row.get("Status", ""), row.get("Notes", "")
                print(f"{job.record_id}  {job.operation:<11}  {status:<10}  {notes}")
            say("kubectl mediajob stats")
            env_plugin = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
            stats = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "controller.cli",
                "stats",
                "-n",
                NAMESPACE,
                env=env_plugin,
                stdout=subprocess.PIPE,
            )
            output, _ = await stats.communicate()
            print(output.decode(), end="")
            say("stopping")
    finally:
        if controller is not None:
            await stop_process(controller, grace=20)
        plane.stop()
    print(f"done; everything ran under {workdir}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

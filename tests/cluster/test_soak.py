"""Chaos soak (issue 14, item 5): two replicas, 2,000 jobs over 10 minutes, faults on every side.

Real `python -m controller` processes with leader election at the default Lease timings run
against the local control plane and one sandbox World. Jobs arrive at an even pace; meanwhile
Airtable answers bursts of 429 and 5xx, NCA is down for 30 s, Spaces answers a storm of 503
SlowDown, the API server is restarted once, and the leader is SIGKILLed twice (and restarted, as a
Deployment would). The input mix: 1% poison rows, 5% re-submissions, 10% rows ended by hand, 10%
webhooks that come after TimedOut. At the end, from Airtable's write log and the API server:

- each transition reached Airtable exactly once (writes counted per Jobs row and per target row);
- no job is left Processing while its output exists on Spaces;
- no process exited except the ones killed;
- RSS stayed flat.

`SOAK_JOBS` and `SOAK_MINUTES` shrink it for development; `SOAK_REPORT` names a file for the figures
(markdown; docs/soak.md holds the last full run's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from controller.clients.kube import KubeClient
from controller.naming import resource_name
from sandbox._server import LoopbackServer
from sandbox.airtable import RATE_LIMIT_BODY
from sandbox.controlplane import ControlPlane
from sandbox.world import ENDPOINT_BY_OPERATION, World
from tests.cluster.test_leader import env_for, holder
from tests.harness import WEBHOOK_TOKEN, until
from tests.processes import ControllerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

JOBS = int(os.environ.get("SOAK_JOBS", "2000"))
MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
AIRTABLE_RPS = os.environ.get("SOAK_AIRTABLE_RPS", "3")
MAX_AGE_S = 90.0  # POLLING_MAX_AGE_HOURS=0.025
TTL_H = "0.05"  # 180 s: ended MediaJobs are deleted, so memory must stay flat
OPERATIONS = ("combine", "concatenate", "add_music")
SLOW_DOWN = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    "<Message>Please reduce your request rate.</Message></Error>"
)

# What each kind of job must leave in Airtable: the Jobs row's Status per write, and target writes.
EXPECTED: dict[str, tuple[list[str], int]] = {
    "normal": (["completed"], 1),
    "nca-failed": (["failed"], 0),
    "late-webhook": (["failed", "completed"], 1),  # TimedOut, then the late webhook
    "ended-by-hand": ([], 0),
    "resubmit-new-id": (["completed"], 1),  # the first attempt never ended
    "resubmit-again": (["completed", "completed"], 2),  # back to processing after our result
}


def target_writes_allowed(kind: str, nca_ids: int) -> set[int]:
    """The target writes a job may leave. A job sent again with the same NCA id has the same
    output: a leader that took over between the second attempt's end and its write-back did not
    see that attempt run, reads the target row first, finds the output there and rightly writes
    nothing (seen once in the soak, with a SIGKILL 1 s after such an end)."""
    target = EXPECTED[kind][1]
    return {1, 2} if kind == "resubmit-again" and nca_ids == 1 else {target}


@dataclasses.dataclass
class Planned:
    kind: str
    operation: str
    at: float  # seconds after the start of arrivals
    record_id: str = ""
    target_id: str | None = None
    job_ids: list[str] = dataclasses.field(default_factory=list)  # NCA ids, one per attempt
    poison: str = ""


def plan(rng: random.Random, jobs: int, duration: float) -> list[Planned]:
    counts = {
        "poison": jobs // 100,
        "resubmit-new-id": jobs * 25 // 1000,
        "resubmit-again": jobs * 25 // 1000,
        "ended-by-hand": jobs // 10,
        "late-webhook": jobs // 10,
        "nca-failed": jobs * 2 // 100,
    }
    kinds = [k for k, n in counts.items() for _ in range(n)]
    kinds += ["normal"] * (jobs - len(kinds))
    rng.shuffle(kinds)
    return [
        Planned(kind, OPERATIONS[i % 3], i * duration / jobs, poison=("deep", "year-1", "unsafe-id")[i % 3])
        for i, kind in enumerate(kinds)
    ]


class Service(LoopbackServer):
    """The Service in front of the replicas: a webhook goes to a live one, as Endpoints route it."""

    def __init__(self, replicas: Callable[[], list[ControllerProcess]]) -> None:
        super().__init__()
        self._replicas = replicas
        self._turn = 0
        self._session: aiohttp.ClientSession | None = None
        self.answers: Counter[int | str] = Counter()

    def _setup_routes(self, app: web.Application) -> None:
        app.router.add_post("/webhooks/nca", self._forward)

    async def _on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        body = await request.read()
        live = [p for p in self._replicas() if p.returncode is None]
        self._turn += 1
        for i in range(len(live)):
            proc = live[(self._turn + i) % len(live)]
            try:
                async with self._session.post(
                    f"http://127.0.0.1:{proc.port}/webhooks/nca",
                    params=request.query,
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as answer:
                    text = await answer.read()
                    self.answers[answer.status] += 1
                    return web.Response(status=answer.status, body=text, content_type="application/json")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers[type(exc).__name__] += 1
                continue  # not listening (yet), or cut: the next endpoint
        self.answers["no-endpoint"] += 1
        return web.Response(status=503)


class Replicas:
    """Two controller processes; a killed one is started again after `restart_s` (a Deployment)."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.procs = [ControllerProcess(n, env, log_dir) for n in ("soak-a", "soak-b")]
        self.instances: list[dict[str, Any]] = []  # one per started process
        self.started = time.monotonic()

    def start(self, proc: ControllerProcess) -> None:
        proc.start()
        assert proc.proc is not None
        self.instances.append(
            {
                "label": f"{proc.name}#{sum(1 for i in self.instances if i['name'] == proc.name) + 1}",
                "name": proc.name,
                "proc": proc.proc,
                "since": time.monotonic() - self.started,
                "killed": False,
                "rss": [],  # (seconds since the soak started, kB)
                "cpu_s": 0.0,
            }
        )

    def by_name(self, name: str | None) -> ControllerProcess:
        return next(p for p in self.procs if p.name == name)

    def sample(self) -> None:
        now = time.monotonic() - self.started
        for inst in self.instances:
            if inst["proc"].poll() is not None:
                continue
            try:
                status = Path(f"/proc/{inst['proc'].pid}/status").read_text()
                stat = Path(f"/proc/{inst['proc'].pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
            inst["rss"].append((now, rss))
            inst["cpu_s"] = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


def jobs_statuses(world: World, record_id: str) -> list[str | None]:
    return [
        f.get("Status")
        for _, table, rid, f in world.airtable.write_log
        if table == "Jobs" and rid == record_id
    ]


def output_exists(world: World, job_id: str) -> bool:
    job = world.nca_sim.jobs.get(job_id)
    if job is None:
        return False
    prefix = world.spaces.base_url + "/"
    return any(
        u.startswith(prefix) and world.spaces.exists(u[len(prefix) :])
        for u in world.nca_sim.output_urls_for(job)
    )


async def test_chaos_soak(
    namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    duration = MINUTES * 60
    rng = random.Random(14)
    planned = plan(rng, JOBS, duration)
    faults: list[tuple[float, str]] = []
    takeovers: list[dict[str, Any]] = []
    violations: list[str] = []
    wall = time.monotonic()

    async with World(airtable_penalty_s=30.0) as world:
        env = env_for(
            world,
            namespace,
            controlplane.kubeconfig,
            POLLING_INTERVAL_MINUTES="0.1",  # 6 s; also the mirror's period
            POLLING_MAX_AGE_HOURS=str(MAX_AGE_S / 3600),
            MEDIAJOB_TTL_AFTER_FINISHED_HOURS=TTL_H,
            AIRTABLE_PENALTY_SECONDS="30",  # Airtable's real penalty; the Lease timings are the defaults
            # Leaves the follower's early-webhook row reads room under the base's 5 requests per
            # second. At the default 4.5 the two replicas together re-trip the 30 s penalty and the
            # run starves (docs/soak.md, "What it found"); SOAK_AIRTABLE_RPS=4.5 shows it.
            AIRTABLE_REQUESTS_PER_SECOND=AIRTABLE_RPS,
        )
        replicas = Replicas(env, tmp_path)
        service = Service(lambda: replicas.procs)
        await service.start()
        hook = f"{service.url}/webhooks/nca?token={WEBHOOK_TOKEN}"
        base = world.base_id
        started = replicas.started
        t0 = 0.0  # when the first job arrives (after the first leader is elected)

        def t() -> float:
            return time.monotonic() - started

        def add(job: Planned) -> None:
            op = job.operation
            if job.kind == "poison":
                fields: dict[str, Any] = {
                    "Status": "processing",
                    "External Job ID": f"poison-{len(job.job_ids)}-{rng.randrange(10**9)}",
                    "Request Payload": json.dumps({"operation": op}),
                    "Created Time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                }
                if job.poison == "deep":
                    fields["Request Payload"] = '{"operation":"combine","x":' + "[" * 3000 + "]" * 3000 + "}"
                elif job.poison == "year-1":
                    fields["Created Time"] = "0001-01-01T00:00:00+01:00"
                else:
                    fields["External Job ID"] = rng.choice(
                        ["../../etc/passwd", "a b", "-x-"]
                    )  # not "abc\n": a cell is stripped
                job.record_id = world.airtable.add_record(base, "Jobs", fields)
                return
            timeline: dict[str, Any] = {"webhook_url": hook, "drop_webhook": rng.random() < 0.5}
            if job.kind == "normal" or job.kind == "resubmit-again":
                timeline.update(queued_s=rng.uniform(0, 5), running_s=rng.uniform(1, 40))
            elif job.kind == "nca-failed":
                timeline.update(running_s=rng.uniform(1, 20), fail_message="ffmpeg exited with code 1")
            elif job.kind == "late-webhook":
                timeline.update(running_s=MAX_AGE_S + rng.uniform(25, 60), drop_webhook=False)
            elif job.kind == "ended-by-hand":
                timeline.update(running_s=rng.uniform(45, 80))
            elif job.kind == "resubmit-new-id":
                timeline.update(drop_webhook=True)
            seeded = world.add_job(op, **timeline)
            job.record_id, job.target_id, job.job_ids = seeded.record_id, seeded.target_id, [seeded.job_id]
            loop = asyncio.get_running_loop()
            if job.kind == "resubmit-new-id":
                world.nca_sim.set_status(seeded.job_id, "queued")  # stuck: the app sends it again
                loop.call_later(rng.uniform(10, 20), resubmit, job, True)
            elif job.kind == "ended-by-hand":
                loop.call_later(rng.uniform(8, 20), end_by_hand, job, rng.random() < 0.5)

        def resubmit(job: Planned, new_id: bool) -> None:
            fields: dict[str, Any] = {"Status": "processing"}
            if new_id:
                again = world.nca_sim.add_job(
                    endpoint=ENDPOINT_BY_OPERATION[job.operation],
                    caller_id=job.record_id,
                    webhook_url=hook,
                    running_s=rng.uniform(3, 20),
                    drop_webhook=rng.random() < 0.5,
                )
                job.job_ids.append(again.job_id)
                fields["External Job ID"] = again.job_id
            world.airtable.set_fields(base, "Jobs", job.record_id, fields)

        def end_by_hand(job: Planned, completed: bool) -> None:
            if completed:
                fields = {
                    "Status": "completed",
                    "Response Payload": '{"output_url": "https://x.example/a.mp4"}',
                }
            else:
                fields = {"Status": "failed", "Notes": "cancelled by a person"}
            world.airtable.set_fields(base, "Jobs", job.record_id, fields)

        async def arrivals() -> None:
            for job in planned:
                await asyncio.sleep(max(0.0, t0 + job.at - t()))
                add(job)

        async def send_again() -> None:
            """`resubmit-again`: once our result is in the row, the app sets it back to processing."""
            waiting = {id(j): j for j in planned if j.kind == "resubmit-again"}
            loop = asyncio.get_running_loop()
            while waiting:
                for key, job in list(waiting.items()):
                    if job.record_id and jobs_statuses(world, job.record_id) == ["completed"]:
                        del waiting[key]
                        loop.call_later(rng.uniform(1, 5), resubmit, job, len(waiting) % 2 == 0)
                await asyncio.sleep(1)

        async def sample() -> None:
            while True:
                replicas.sample()
                await asyncio.sleep(10)

        async def kill_leader(restart_after: float) -> None:
            name = await until(lambda: holder(kube, namespace), timeout=60)
            leader = replicas.by_name(name)
            killed = time.monotonic()
            leader.signal(signal.SIGKILL)
            await leader.wait()
            for inst in replicas.instances:
                if inst["proc"] is leader.proc:
                    inst["killed"] = True
            faults.append((t(), f"SIGKILL leader {name}"))
            # The container restarts in the same pod, so with the same POD_NAME: it may win the Lease back.
            asyncio.get_running_loop().call_later(restart_after, replicas.start, leader)

            async def new_leader() -> str | None:
                for proc in replicas.procs:
                    if proc.returncode is None and await proc.metric("mediajob_leader") == 1.0:
                        return proc.name
                return None

            new = await until(new_leader, timeout=90, every=0.2)
            takeovers.append({"at": round(t()), "killed": name, "new": new, "s": time.monotonic() - killed})

        async def airtable_burst(status: int, seconds: float) -> None:
            """Every request answered `status` for a few seconds (429: the base went over its limit)."""
            before = world.airtable.faults.injected
            body = RATE_LIMIT_BODY if status == 429 else None
            world.airtable.faults.fail_next(10**6, status, body=body, path_contains=base)
            await asyncio.sleep(seconds)
            world.airtable.faults.clear()
            count = world.airtable.faults.injected - before
            faults.append((t(), f"Airtable: every request {status} for {seconds:g} s ({count} requests)"))

        async def chaos() -> None:
            async def at(fraction: float) -> None:
                await asyncio.sleep(max(0.0, t0 + fraction * duration - t()))

            await at(0.10)
            await airtable_burst(503, 5)
            await at(0.15)
            await airtable_burst(429, 3)
            await at(0.20)
            await kill_leader(20)  # restarted after the Lease expired: the other replica takes over
            await at(0.30)
            faults.append((t(), "NCA down for 30 s"))
            await world.nca_sim.outage(30)
            await at(0.40)
            await kill_leader(3)  # a quick container restart: it may win its own Lease back
            await at(0.50)
            world.spaces.faults.fail_next(10**6, 503, body=SLOW_DOWN)
            faults.append((t(), "Spaces: every request 503 SlowDown for 30 s"))
            await asyncio.sleep(30)
            storm = world.spaces.faults.injected
            world.spaces.faults.clear()
            faults.append((t(), f"Spaces storm over: {storm} requests answered 503"))
            await at(0.60)
            await airtable_burst(429, 3)
            await airtable_burst(500, 5)
            await at(0.70)
            down = await asyncio.to_thread(controlplane.restart_apiserver)
            faults.append((t(), f"kube-apiserver restarted: {down:.1f} s until ready"))
            await at(0.85)
            await airtable_burst(502, 5)

        def superseded(job: Planned) -> bool:
            """A late webhook that came while the TimedOut write was still waiting (Airtable paused):
            the write-back writes the job's current state, `completed`, once, and skips the stale one."""
            return job.kind == "late-webhook" and jobs_statuses(world, job.record_id) == ["completed"]

        def settled() -> bool:
            for job in planned:
                if not job.record_id:
                    return False
                if job.kind == "poison":
                    if world.airtable.writes_for(job.record_id) < 1:
                        return False
                    continue
                wanted, _ = EXPECTED[job.kind]
                if len(jobs_statuses(world, job.record_id)) < len(wanted) and not superseded(job):
                    return False
                least = min(target_writes_allowed(job.kind, len(job.job_ids)))
                if job.target_id and world.airtable.writes_for(job.target_id) < least:
                    return False
            return True

        for proc in replicas.procs:
            replicas.start(proc)
        background = [asyncio.create_task(c()) for c in (sample, send_again)]
        try:
            await until(lambda: holder(kube, namespace), timeout=60)
            t0 = t()
            faults.append((t0, "first job arrives"))
            await asyncio.gather(arrivals(), chaos())
            arrivals_done = t()
            try:
                await until(settled, timeout=MAX_AGE_S + 60 + 240, every=2)
            except AssertionError:
                violations.append("not every expected result reached Airtable in time (listed below)")
            settled_at = t()
            await asyncio.sleep(30)  # five poll intervals more: a duplicate write would show now
            replicas.sample()
            for inst in replicas.instances:
                code = inst["proc"].poll()
                if inst["killed"]:
                    if code != -signal.SIGKILL:
                        violations.append(f"{inst['label']} was killed but exited {code}")
                elif code is not None:
                    violations.append(f"{inst['label']} exited {code} without being killed")
            items = await kube.list_mediajobs(namespace)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            stopping = time.monotonic()
            for proc in replicas.procs:
                if proc.returncode is None:
                    proc.signal(signal.SIGTERM)
            for proc in replicas.procs:
                try:
                    await proc.wait(timeout=max(0.1, 30 - (time.monotonic() - stopping)))
                except AssertionError:
                    violations.append(f"{proc.name} did not exit within 30 s of SIGTERM")
                    proc.signal(signal.SIGKILL)
                    await proc.wait()
            stop_s = time.monotonic() - stopping
            await service.stop()
        for inst in replicas.instances:
            code = inst["proc"].poll()
            if not inst["killed"] and code != 0:
                violations.append(f"{inst['label']} exited {code} on SIGTERM")

        # Each transition reached Airtable exactly once.
        outcomes: Counter[str] = Counter()
        for job in planned:
            statuses = jobs_statuses(world, job.record_id)
            if job.kind == "poison":
                notes = world.airtable.get_fields(base, "Jobs", job.record_id).get("Notes", "")
                if world.airtable.writes_for(job.record_id) != 1 or notes.count("cannot track this job") != 1:
                    violations.append(f"poison {job.poison} {job.record_id}: {statuses} {notes!r}")
                outcomes["poison: one Note"] += 1
                continue
            wanted, target = EXPECTED[job.kind]
            got_target = world.airtable.writes_for(job.target_id) if job.target_id else 0
            if superseded(job) and got_target == target:
                outcomes["late-webhook, TimedOut superseded before its write"] += 1
                continue
            if statuses != wanted or got_target not in target_writes_allowed(job.kind, len(job.job_ids)):
                violations.append(
                    f"{job.kind} {job.record_id}: Jobs writes {statuses}, target writes {got_target}"
                )
            outcomes[job.kind] += 1
        # No job left Processing while its output exists.
        by_record = {job.record_id: job for job in planned}
        for item in items:
            phase = (item.get("status") or {}).get("phase") or "Processing"
            job = by_record.get(item["spec"]["airtableRecordId"])
            if (
                phase == "Processing"
                and job is not None
                and output_exists(world, item["spec"]["externalJobId"])
            ):
                violations.append(f"MediaJob {item['metadata']['name']} Processing, output on Spaces")
        for job in planned:
            row = world.airtable.get_fields(base, "Jobs", job.record_id)
            if (
                job.kind != "poison"
                and row.get("Status") == "processing"
                and output_exists(world, job.job_ids[-1])
            ):
                violations.append(f"Jobs row {job.record_id} ({job.kind}) processing, output on Spaces")
        names = {resource_name(j.record_id) for j in planned if j.kind != "poison"}

        # RSS stays flat: per process, the last third's max against the first third's, after 60 s.
        rss_rows = []
        for inst in replicas.instances:
            samples = [kb for s, kb in inst["rss"] if s >= inst["since"] + 60]
            if len(samples) < 9:
                rss_rows.append((inst, None, None, None, len(samples)))
                continue
            third = len(samples) // 3
            first, last = max(samples[:third]), max(samples[-third:])
            rss_rows.append((inst, first, last, last / first, len(samples)))
            if inst["rss"][-1][0] - inst["since"] >= 300 and last > 1.3 * first:
                violations.append(f"{inst['label']} RSS grew from {first} kB to {last} kB")

        logs = {p.name: p.log() for p in replicas.procs}
        figures = report(
            planned=planned,
            world=world,
            outcomes=outcomes,
            faults=faults,
            takeovers=takeovers,
            rss_rows=rss_rows,
            service=service,
            logs=logs,
            left=len([i for i in items if i["metadata"]["name"] in names]),
            times={
                "arrivals": arrivals_done,
                "settled": settled_at,
                "wall": time.monotonic() - wall,
                "stop": stop_s,
            },
            violations=violations,
        )
    print(figures)
    target = os.environ.get("SOAK_REPORT")
    if target:
        Path(target).write_text(figures)  # noqa: ASYNC240 - once, at the end
    assert not violations, "\n".join(violations[:50])


def listed(counts: Counter[Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])))


def rss_line(row: tuple[dict[str, Any], int | None, int | None, float | None, int]) -> str:
    inst, first, last, ratio, n = row
    head = f"  - {inst['label']} (started at {inst['since']:.0f} s{', SIGKILLed' if inst['killed'] else ''}):"
    mib = [kb / 1024 for _, kb in inst["rss"]] or [0.0]
    if first and last and ratio:
        body = (
            f" {first / 1024:.1f} MiB → {last / 1024:.1f} MiB (x{ratio:.2f}), {n} samples,"
            f" range {min(mib):.1f}-{max(mib):.1f} MiB"
        )
    else:
        body = f" {n} samples after warm-up, too short to compare"
    return f"{head}{body}, CPU {inst['cpu_s']:.0f} s"


def report(
    *,
    planned: list[Planned],
    world: World,
    outcomes: Counter[str],
    faults: list[tuple[float, str]],
    takeovers: list[dict[str, Any]],
    rss_rows: list[tuple[dict[str, Any], int | None, int | None, float | None, int]],
    service: Service,
    logs: dict[str, str],
    left: int,
    times: dict[str, float],
    violations: list[str],
) -> str:
    errors = sum(log.count('"level": "error"') for log in logs.values())
    tracebacks = sum(log.count("Traceback") for log in logs.values())
    log_ = world.airtable.write_log
    writes = Counter(table for _, table, _, _ in log_)
    statuses = Counter(f.get("Status") or "(Notes only)" for _, table, _, f in log_ if table == "Jobs")
    api = [r for r in world.airtable.requests if r.path.startswith("/v0/")]
    methods, answered = Counter(r.method for r in api), Counter(r.status for r in api)
    nca = world.nca_sim
    lines = [
        f"- jobs: {len(planned)} over {MINUTES:g} min ({listed(Counter(j.kind for j in planned))});"
        f" AIRTABLE_REQUESTS_PER_SECOND={AIRTABLE_RPS}",
        f"- checked outcomes: {listed(outcomes)}",
        f"- transitions written to Jobs rows: {sum(v for k, v in statuses.items() if k != '(Notes only)')}"
        f" ({listed(statuses)})",
        f"- Airtable record writes: {sum(writes.values())} ({listed(writes)}); requests: {len(api)}"
        f" ({listed(methods)}); answers: {listed(answered)};"
        f" rate limit hit for real: {world.airtable.rate_limited}",
        f"- NCA: {nca.count('POST', '/v1/toolkit/job/status')} status calls; webhooks sent"
        f" {len(nca.webhooks_sent)}, dropped on purpose {len(nca.webhooks_dropped)};"
        f" the Service's answers: {listed(service.answers)}",
        f"- Spaces: {world.spaces.count('HEAD')} HEADs",
        f"- MediaJobs left at the end: {left} (the rest deleted by the {TTL_H} h TTL)",
        "- faults injected (seconds after the controllers started):",
        *[f"  - {at:.0f} s: {what}" for at, what in faults],
        "- takeovers after SIGKILL (Lease 15 s / renew 10 s / retry 2 s):",
        *[
            f"  - at {tk['at']} s: {tk['killed']} killed, {tk['new']} leading after {tk['s']:.1f} s"
            for tk in takeovers
        ],
        "- RSS per process (VmRSS every 10 s, after 60 s of warm-up; first third's max, last third's max):",
        *[rss_line(row) for row in rss_rows],
        f"- log lines at error level: {errors}; tracebacks: {tracebacks}",
        f"- wall time: arrivals until {times['arrivals']:.0f} s, all results in Airtable at"
        f" {times['settled']:.0f} s, both replicas stopped by SIGTERM in {times['stop']:.1f} s,"
        f" whole test {times['wall']:.0f} s",
        f"- invariant violations: {len(violations)}",
        *[f"  - {v}" for v in violations[:20]],
    ]
    return "\n".join(lines) + "\n"

"""`make bench`: our controller against the seed's design, in one simulated world, side by side.

    python -m bench [--sizes 100,1000,10000] [--no-drain] [--out docs/benchmarks.md]

For each N, both contenders get the same world: N Jobs rows in `processing`, outputs appearing on
Spaces over a window, 90% of NCA's webhooks dropped, Airtable at ~150 ms with its real 5 req/s
limit and 30 s penalty, Spaces HEAD at ~40 ms, NCA status at ~80 ms. Time is compressed by a
per-N scale (all intervals, ages and timelines scaled alike; network latencies and Airtable's limit
stay physical). Each contender runs as its own process, so RSS and CPU are its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.controlplane import REPO, ControlPlane, free_port, stop_process
from sandbox.world import World

OPERATIONS = ("combine", "concatenate", "add_music")
WEBHOOK_TOKEN = "bench-webhook-token"
LATENCY = {"airtable": 0.150, "spaces": 0.040, "nca": 0.080}


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    n: int
    scale: float  # simulated seconds per real second
    window_min: float  # outputs appear uniformly over this many simulated minutes (0: all at once)
    limit_min: float  # stop after this many simulated minutes
    drop_rate: float = 0.9

    def real(self, sim_minutes: float) -> float:
        return sim_minutes * 60 / self.scale


# The scale keeps the check rate something two cores can serve: N / (2 min / scale) checks per second.
SCENARIOS = {
    100: Scenario("N=100", 100, 10, 20, 40),
    1000: Scenario("N=1,000", 1000, 5, 20, 40),
    10000: Scenario("N=10,000", 10000, 2, 20, 30),
}
# 1,000 outputs present at once; 60x so that detection takes seconds and the drain is the write-back.
DRAIN = Scenario("drain: 1,000 at once", 1000, 60, 0, 300, drop_rate=1.0)


@dataclasses.dataclass
class Result:
    contender: str
    scenario: Scenario
    completed: int = 0
    completed_by_op: dict[str, int] = dataclasses.field(default_factory=dict)
    latencies: list[float] = dataclasses.field(default_factory=list)  # simulated seconds
    status_latencies: list[float] = dataclasses.field(default_factory=list)  # to the status transition
    airtable_requests: int = 0
    airtable_429: int = 0
    spaces_requests: int = 0
    nca_requests: int = 0
    api_writes: dict[str, float] = dataclasses.field(default_factory=dict)
    peak_rss_mib: float = 0.0
    cpu_cores: float = 0.0
    wall_s: float = 0.0
    drain_s: float | None = None

    def per_job_hour(self, count: int) -> float:
        hours = self.wall_s * self.scenario.scale / 3600
        return count / self.scenario.n / hours if hours else 0.0

    def pct(self, q: float, values: list[float] | None = None) -> float | None:
        values = self.latencies if values is None else values
        if not values:
            return None
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ProcSampler:
    """Peak RSS (VmHWM) and CPU seconds of one process, read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start_cpu = self._cpu()
        self.start = time.monotonic()
        self.peak_kib = 0

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def sample(self) -> None:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kib = max(self.peak_kib, int(line.split()[1]))

    def cores(self) -> float:
        elapsed = time.monotonic() - self.start
        return (self._cpu() - self.start_cpu) / elapsed if elapsed else 0.0


def apiserver_writes(plane: ControlPlane) -> Counter[str]:
    """Mutating requests the API server has served, by resource, from its own /metrics."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {plane.token}"}
    request = urllib.request.Request(f"{plane.url}/metrics", headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    writes: Counter[str] = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(part.split("=", 1) for part in line[line.index("{") + 1 : line.index("}")].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        if labels.get("verb") in ("POST", "PATCH", "PUT", "DELETE", "APPLY", "CREATE", "UPDATE"):
            resource = labels.get("resource", "")
            if labels.get("subresource"):
                resource += "/" + labels["subresource"]
            writes[resource] += int(float(line.rsplit(" ", 1)[1]))
    return writes


def seed_world(world: World, sc: Scenario, webhook_url: str, rng: random.Random) -> dict[str, float]:
    """N jobs; returns record id → the real time its output appears."""
    now = time.time()
    appear: dict[str, float] = {}
    for i in range(sc.n):
        at = rng.uniform(0, sc.real(sc.window_min)) if sc.window_min else 0.0
        age = sc.real(rng.uniform(5.5, 30)) if sc.window_min else sc.real(10)
        job = world.add_job(
            OPERATIONS[i % 3],
            created=datetime.now(UTC) - timedelta(seconds=age),
            webhook_url=webhook_url,
            queued_s=at,
            drop_webhook=rng.random() < sc.drop_rate,
        )
        appear[job.record_id] = now + at
    return appear


def contender_env(
    world: World, sc: Scenario, plane: ControlPlane, namespace: str, port: int
) -> dict[str, str]:
    return {
        **os.environ,
        **world.env(),
        "KUBECONFIG": str(plane.kubeconfig),
        "WATCH_NAMESPACE": namespace,
        "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "HTTP_PORT": str(port),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "warning",
        "POLLING_INTERVAL_MINUTES": f"{2 / sc.scale:.6f}",
        "POLLING_MAX_AGE_HOURS": f"{24 / sc.scale:.6f}",
        "POLLING_SLOW_AFTER_MINUTES": f"{60 / sc.scale:.6f}",
        "POLLING_SLOW_INTERVAL_MINUTES": f"{10 / sc.scale:.6f}",
        "BASELINE_MIN_AGE_MINUTES": f"{5 / sc.scale:.6f}",
        "PYTHONUNBUFFERED": "1",
    }


def status_latencies(
    plane: ControlPlane, namespace: str, appear: dict[str, float], scale: float
) -> list[float]:
    """From the output's appearance to the MediaJob's `completedAt` (1 s resolution), simulated."""
    items = json.loads(plane.kubectl("get", "mediajobs", "-n", namespace, "-o", "json").stdout)["items"]
    states = Counter(
        ((i.get("status") or {}).get("phase"), (i.get("status") or {}).get("airtableSynced")) for i in items
    )
    print(f"  {len(items)} MediaJobs by (phase, synced): {dict(states)}", flush=True)
    latencies = []
    for item in items:
        record = item["spec"]["airtableRecordId"]
        done = (item.get("status") or {}).get("completedAt")
        if done and record in appear:
            at = datetime.fromisoformat(done.replace("Z", "+00:00")).timestamp()
            latencies.append(max(0.0, (at - appear[record]) * scale))
    return latencies


def completions(world: World) -> dict[str, float]:
    """Record id → real time the Jobs row was first written as completed."""
    done: dict[str, float] = {}
    for at, table, record_id, fields in world.airtable.write_log:
        if table == "Jobs" and fields.get("Status") == "completed" and record_id not in done:
            done[record_id] = at
    return done


async def run(contender: str, sc: Scenario, plane: ControlPlane, workdir: Path) -> Result:
    rng = random.Random(42)  # the same world for both contenders
    result = Result(contender, sc)
    namespace = f"bench-{contender}-{sc.n}-{int(time.time())}"
    if contender == "ours":
        plane.kubectl("create", "namespace", namespace)
    async with World(airtable_rate_limit=5, airtable_penalty_s=30) as world:
        world.airtable.faults.latency = LATENCY["airtable"]
        world.spaces.faults.latency = LATENCY["spaces"]
        world.nca_sim.faults.latency = LATENCY["nca"]
        port = free_port()
        appear = seed_world(world, sc, f"http://127.0.0.1:{port}/webhooks/nca?token={WEBHOOK_TOKEN}", rng)
        ops = {job.record_id: job.operation for job in world.jobs}
        env = contender_env(world, sc, plane, namespace, port)
        argv = [sys.executable, "-m", "controller" if contender == "ours" else "bench.baseline"]
        writes_before = apiserver_writes(plane)
        log_path = workdir / f"{contender}-{sc.n}-{int(sc.scale)}.log"
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=log_path.open("wb"), stderr=subprocess.STDOUT
        )
        sampler = ProcSampler(proc.pid)
        started = time.monotonic()
        deadline = started + sc.real(sc.limit_min)
        try:
            while time.monotonic() < deadline and proc.returncode is None:
                sampler.sample()
                if len(completions(world)) >= sc.n:
                    break
                await asyncio.sleep(0.5)
            sampler.sample()
            result.cpu_cores = sampler.cores()
        finally:
            await stop_process(proc, grace=30)
        result.wall_s = time.monotonic() - started
        result.peak_rss_mib = sampler.peak_kib / 1024
        done = completions(world)
        result.completed = len(done)
        result.completed_by_op = dict(Counter(ops[r] for r in done))
        result.latencies = [max(0.0, (done[r] - appear[r]) * sc.scale) for r in done]
        if sc.window_min == 0 and len(done) == sc.n:
            result.drain_s = max(done.values()) - min(appear.values())
        result.airtable_requests = world.airtable.count()
        result.airtable_429 = world.airtable.rate_limited
        result.spaces_requests = world.spaces.count()
        result.nca_requests = world.nca_sim.count()
        if contender == "ours":
            result.status_latencies = status_latencies(plane, namespace, appear, sc.scale)
        after = apiserver_writes(plane)
        for resource in ("mediajobs", "mediajobs/status", "events", "leases"):
            result.api_writes[resource] = (after[resource] - writes_before[resource]) / sc.n
    return result


def _per(count: float, of: float) -> float | None:
    return count / of if of else None


def _real(sim_seconds: float | None, scale: float) -> float | None:
    return None if sim_seconds is None else sim_seconds / scale


def fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def ratio(ours: float | None, seed: float | None) -> str:
    if ours is None or seed is None or seed == 0:
        return "n/a"
    return f"{ours / seed:.3g}x"


def rows_for(ours: Result, seed: Result) -> list[tuple[str, str, str, str]]:
    def both(label: str, get: Any, unit: str = "", digits: int = 1) -> tuple[str, str, str, str]:
        a, b = get(ours), get(seed)
        return (label, fmt(a, unit, digits), fmt(b, unit, digits), ratio(a, b))

    rows = [
        both("completed (of N)", lambda r: r.completed, "", 0),
        (
            "completed by op (combine/concatenate/add_music)",
            "/".join(str(ours.completed_by_op.get(o, 0)) for o in OPERATIONS),
            "/".join(str(seed.completed_by_op.get(o, 0)) for o in OPERATIONS),
            "",
        ),
        both("status transition latency p95 (sim s)", lambda r: r.pct(0.95, r.status_latencies)),
        both("detection latency p50 (sim s)", lambda r: r.pct(0.5)),
        both("detection latency p95 (sim s)", lambda r: r.pct(0.95)),
        both("detection latency max (sim s)", lambda r: max(r.latencies) if r.latencies else None),
        both("detection latency p95 (real s)", lambda r: _real(r.pct(0.95), r.scenario.scale), "", 2),
        both("Airtable requests per completed job", lambda r: _per(r.airtable_requests, r.completed), "", 2),
        both("Airtable 429s received", lambda r: r.airtable_429, "", 0),
        both("Spaces requests per job per hour", lambda r: r.per_job_hour(r.spaces_requests)),
        both("NCA requests per job per hour", lambda r: r.per_job_hour(r.nca_requests)),
        both(
            "API-server writes per job (mediajobs + status)",
            lambda r: r.api_writes.get("mediajobs", 0) + r.api_writes.get("mediajobs/status", 0),
            "",
            2,
        ),
        both("API-server writes per job (events)", lambda r: r.api_writes.get("events", 0), "", 2),
        both("peak RSS (MiB)", lambda r: r.peak_rss_mib),
        both("mean CPU (cores)", lambda r: r.cpu_cores, "", 3),
        both("run time (real s)", lambda r: r.wall_s),
    ]
    if ours.scenario.window_min == 0:
        rows.append(both("time to drain (real s; floor 40 s)", lambda r: r.drain_s))
    return rows


def markdown(pairs: list[tuple[Result, Result]], command: str) -> str:
    out = [
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d} (2 cores, loopback simulators, a real",
        "etcd + kube-apiserver). Each contender ran as its own process against the same simulated world;",
        "latencies are in simulated seconds (time compressed by the scale shown; network latencies and",
        "Airtable's 5 req/s limit and 30 s penalty are physical). See the notes below the tables.",
        "",
    ]
    for ours, seed in pairs:
        sc = ours.scenario
        out += [
            f"## {sc.name} ({sc.scale:g}x time, outputs over {sc.window_min:g} sim-min, "
            f"{sc.drop_rate:.0%} webhooks dropped)",
            "",
            "| figure | ours | seed | ours/seed |",
            "|---|---:|---:|---:|",
        ]
        out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows_for(ours, seed)]
        out.append("")
    return "\n".join(out) + "\n"


BEGIN, END = "<!-- bench:begin (generated by python -m bench) -->", "<!-- bench:end -->"


def write_between_markers(path: Path, generated: str) -> None:
    """Replace only the generated part, so the analysis written around it stays."""
    text = path.read_text() if path.exists() else f"{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(f"{head}{BEGIN}\n{generated}{END}{tail}")


def print_table(pairs: list[tuple[Result, Result]]) -> None:
    for ours, seed in pairs:
        rows = rows_for(ours, seed)
        print(f"\n{ours.scenario.name} ({ours.scenario.scale:g}x time)")
        width = max(len(r[0]) for r in rows)
        print(f"{'figure':<{width}}  {'ours':>12}  {'seed':>12}  {'ours/seed':>10}")
        for a, b, c, d in rows:
            print(f"{a:<{width}}  {b:>12}  {c:>12}  {d:>10}")


def print_single(result: Result) -> None:
    """One contender's figures, for profiling and tuning runs (`--only`)."""
    rows = rows_for(result, result)
    width = max(len(r[0]) for r in rows)
    print(f"\n{result.scenario.name} ({result.scenario.scale:g}x time), {result.contender} only")
    for label, value, _, _ in rows:
        print(f"{label:<{width}}  {value:>12}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated; empty for the drain only")
    parser.add_argument("--no-drain", action="store_true")
    parser.add_argument("--only", choices=["ours", "seed"], help="run one contender (for profiling)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mediajob-bench-"))
    plane = ControlPlane(workdir / "controlplane")
    plane.start()
    pairs: list[tuple[Result, Result]] = []
    try:
        plane.kubectl("apply", "-f", str(REPO / "crds"))
        scenarios = [SCENARIOS[int(s)] for s in args.sizes.split(",") if s]
        if not args.no_drain:
            scenarios.append(DRAIN)
        for sc in scenarios:
            results = []
            for contender in ("ours", "seed") if not args.only else (args.only,):
                print(f"running {sc.name} for {contender} (up to {sc.real(sc.limit_min):.0f} s)", flush=True)
                results.append(await run(contender, sc, plane, workdir))
            if len(results) == 1:
                print_single(results[0])
                continue
            pairs.append((results[0], results[1]))
            print_table(pairs[-1:])
    finally:
        plane.stop()
    command = "make bench"
    if args.sizes != "100,1000,10000" or args.no_drain:
        command = f"python -m bench --sizes {args.sizes}" + (" --no-drain" if args.no_drain else "")
    if pairs:
        write_between_markers(args.out, markdown(pairs, command))
    dump = [[dataclasses.asdict(r) for r in pair] for pair in pairs]
    (workdir / "results.json").write_text(json.dumps(dump, default=str))
    print(f"\nwrote {args.out}; logs in {workdir}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["quota"]:  # `python -m bench quota`: the Airtable quota bench (bench/quota.py)
        from bench.quota import cli

        sys.exit(cli(sys.argv[2:]))
    sys.exit(asyncio.run(main()))

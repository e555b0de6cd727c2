"""`make bench`: our controller against the seed's design, in one simulated world, side by side.

    python -m bench [--sizes 100,1000,10000] [--no-drain] [--contenders ours,push,seed]
                    [--out docs/benchmarks.md]

Contenders: `ours` (the controller, Airtable change notifications not configured, so it polls
incrementally), `push` (the same controller with AIRTABLE_WEBHOOK_URL pointing at its own HTTP
server: the leader creates an Airtable webhook and mirrors from its payloads) and `seed` (the
seed's design, bench/baseline.py). For each N, every contender gets the same world: N Jobs rows
in `processing`, outputs appearing on Spaces over a window, 90% of NCA's webhooks dropped,
Airtable at ~150 ms with its real 5 req/s limit and 30 s penalty, Spaces HEAD at ~40 ms, NCA
status at ~80 ms. Time is compressed by a per-N scale (all intervals, ages and timelines scaled
alike; network latencies and Airtable's limit stay physical). Each contender runs as its own
process, so RSS and CPU are its own. Our controller's own count of Airtable calls by purpose is
scraped from its /metrics just before it is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import random
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.controlplane import REPO, ControlPlane, free_port, stop_process
from sandbox.world import World

OPERATIONS = ("combine", "concatenate", "add_music")
WEBHOOK_TOKEN = "bench-webhook-token"
LATENCY = {"airtable": 0.150, "spaces": 0.040, "nca": 0.080}
# Our controller (`python -m controller`) in its two mirror modes, and the seed's design.
OURS_FAMILY = ("ours", "push")
CONTENDERS = (*OURS_FAMILY, "seed")
# controller/clients/airtable.py's purposes, in the order the table shows them.
PURPOSES = ("mirror", "payloads", "write", "read-before-write", "webhook-upkeep")
CALLS_METRIC = "mediajob_airtable_calls_total"
PINGS_METRIC = "mediajob_airtable_pings_total"


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
    # our controller's own counts (from its /metrics), empty for the seed
    calls_by_purpose: dict[str, float] = dataclasses.field(default_factory=dict)
    pings_by_result: dict[str, float] = dataclasses.field(default_factory=dict)
    webhooks_created: int = 0  # in the simulator, over the run
    pings_sent: int = 0  # by the simulator, any answer
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


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _labels(line: str) -> dict[str, str]:
    return dict(LABEL.findall(line[line.index("{") + 1 : line.rindex("}")]))


def counter_by_label(text: str, metric: str, label: str) -> dict[str, float]:
    """A Prometheus counter's samples from an exposition text, keyed by one label's value. Pure."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(metric + "{"):
            continue
        key = _labels(line).get(label)
        if key is not None:
            values[key] = values.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
    return values


def scrape(port: int) -> str:
    """The controller's /metrics text; empty if it does not answer (it has exited, say)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return str(response.read().decode())
    except OSError as exc:
        print(f"  could not scrape the controller's /metrics: {exc}", flush=True)
        return ""


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
    world: World, sc: Scenario, plane: ControlPlane, namespace: str, port: int, contender: str = "ours"
) -> dict[str, str]:
    push = {"AIRTABLE_WEBHOOK_URL": f"http://127.0.0.1:{port}/webhooks/airtable"}
    return {
        **os.environ,
        **world.env(),
        "KUBECONFIG": str(plane.kubeconfig),
        "WATCH_NAMESPACE": namespace,
        "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "HTTP_PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "warning",
        "POLLING_INTERVAL_MINUTES": f"{2 / sc.scale:.6f}",
        "POLLING_MAX_AGE_HOURS": f"{24 / sc.scale:.6f}",
        "POLLING_SLOW_AFTER_MINUTES": f"{60 / sc.scale:.6f}",
        "POLLING_SLOW_INTERVAL_MINUTES": f"{10 / sc.scale:.6f}",
        "BASELINE_MIN_AGE_MINUTES": f"{5 / sc.scale:.6f}",
        "AIRTABLE_WEBHOOK_CHECK_MINUTES": f"{60 / sc.scale:.6f}",
        "AIRTABLE_FULL_RESYNC_HOURS": f"{6 / sc.scale:.6f}",
        "PYTHONUNBUFFERED": "1",
        **(push if contender == "push" else {}),
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


@contextlib.asynccontextmanager
async def simulated_world() -> AsyncIterator[World]:
    """The simulators with Airtable's real limit and penalty and realistic latencies."""
    async with World(airtable_rate_limit=5, airtable_penalty_s=30) as world:
        world.airtable.faults.latency = LATENCY["airtable"]
        world.spaces.faults.latency = LATENCY["spaces"]
        world.nca_sim.faults.latency = LATENCY["nca"]
        yield world


async def run(contender: str, sc: Scenario, plane: ControlPlane, workdir: Path) -> Result:
    rng = random.Random(42)  # the same world for both contenders
    result = Result(contender, sc)
    namespace = f"bench-{contender}-{sc.n}-{int(time.time())}"
    ours = contender in OURS_FAMILY
    if ours:
        plane.kubectl("create", "namespace", namespace)
    async with simulated_world() as world:
        port = free_port()
        appear = seed_world(world, sc, f"http://127.0.0.1:{port}/webhooks/nca?token={WEBHOOK_TOKEN}", rng)
        ops = {job.record_id: job.operation for job in world.jobs}
        env = contender_env(world, sc, plane, namespace, port, contender)
        argv = [sys.executable, "-m", "controller" if ours else "bench.baseline"]
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
            if ours:
                text = await asyncio.to_thread(scrape, int(env["METRICS_PORT"]))
                result.calls_by_purpose = counter_by_label(text, CALLS_METRIC, "purpose")
                result.pings_by_result = counter_by_label(text, PINGS_METRIC, "result")
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
        result.webhooks_created = sum(
            1
            for r in world.airtable.requests
            if r.method == "POST" and r.path.endswith("/webhooks") and r.status == 200
        )
        result.pings_sent = len(world.airtable.webhooks.pings)
        if ours:
            if contender == "push":
                secret = plane.kubectl("get", "secret", "-n", namespace, "-o", "name", check=False).stdout
                print(f"  webhook state in the namespace: {secret.split() or 'no Secret'}", flush=True)
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


def purposes_of(results: list[Result]) -> list[str]:
    """The known purposes in their order, then any other the controllers reported. Pure."""
    seen = {p for r in results for p in r.calls_by_purpose}
    return [*PURPOSES, *sorted(seen - set(PURPOSES))]


def headers(results: list[Result]) -> list[str]:
    """figure, one column per contender, then `<contender>/seed` for each other one. Pure."""
    names = [r.contender for r in results]
    ratios = [f"{n}/seed" for n in names if n != "seed"] if "seed" in names else []
    return ["figure", *names, *ratios]


def rows_for(results: list[Result]) -> list[list[str]]:
    """One row per figure: its label, a value per contender, and each one's ratio to the seed."""
    seed = next((r for r in results if r.contender == "seed"), None)
    others = [r for r in results if r.contender != "seed"] if seed else []

    def row(label: str, get: Any, unit: str = "", digits: int = 1, compare: bool = True) -> list[str]:
        ratios = [ratio(get(r), get(seed)) if compare else "" for r in others] if seed else []
        return [label, *(fmt(get(r), unit, digits) for r in results), *ratios]

    def text(label: str, get: Any) -> list[str]:
        return [label, *(get(r) for r in results), *([""] * len(others))]

    def ours_only(get: Any) -> Any:
        return lambda r: get(r) if r.contender in OURS_FAMILY else None

    rows = [
        row("completed (of N)", lambda r: r.completed, "", 0),
        text(
            "completed by op (combine/concatenate/add_music)",
            lambda r: "/".join(str(r.completed_by_op.get(o, 0)) for o in OPERATIONS),
        ),
        row("status transition latency p95 (sim s)", lambda r: r.pct(0.95, r.status_latencies)),
        row("detection latency p50 (sim s)", lambda r: r.pct(0.5)),
        row("detection latency p95 (sim s)", lambda r: r.pct(0.95)),
        row("detection latency max (sim s)", lambda r: max(r.latencies) if r.latencies else None),
        row("detection latency p95 (real s)", lambda r: _real(r.pct(0.95), r.scenario.scale), "", 2),
        row("Airtable requests per completed job", lambda r: _per(r.airtable_requests, r.completed), "", 2),
    ]
    if any(r.contender in OURS_FAMILY for r in results):
        rows += [
            row(
                f"Airtable requests per completed job: {purpose} (controller's count)",
                ours_only(lambda r, p=purpose: _per(r.calls_by_purpose.get(p, 0.0), r.completed)),
                "",
                3,
                compare=False,
            )
            for purpose in purposes_of(results)
        ]
        rows += [
            text(
                "Airtable requests: controller's count / simulator's",
                lambda r: (
                    f"{sum(r.calls_by_purpose.values()):,.0f} / {r.airtable_requests:,}"
                    if r.contender in OURS_FAMILY
                    else f"n/a / {r.airtable_requests:,}"
                ),
            ),
            text(
                "Airtable webhooks created / pings sent (simulator)",
                lambda r: f"{r.webhooks_created} / {r.pings_sent}",
            ),
            text(
                "Airtable pings received, by result (controller)",
                lambda r: (
                    ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r.pings_by_result.items())) or "none"
                    if r.contender in OURS_FAMILY
                    else "n/a"
                ),
            ),
        ]
    rows += [
        row("Airtable 429s received", lambda r: r.airtable_429, "", 0),
        row("Spaces requests per job per hour", lambda r: r.per_job_hour(r.spaces_requests)),
        row("NCA requests per job per hour", lambda r: r.per_job_hour(r.nca_requests)),
        row(
            "API-server writes per job (mediajobs + status)",
            lambda r: r.api_writes.get("mediajobs", 0) + r.api_writes.get("mediajobs/status", 0),
            "",
            2,
        ),
        row("API-server writes per job (events)", lambda r: r.api_writes.get("events", 0), "", 2),
        row("peak RSS (MiB)", lambda r: r.peak_rss_mib),
        row("mean CPU (cores)", lambda r: r.cpu_cores, "", 3),
        row("run time (real s)", lambda r: r.wall_s),
    ]
    if results[0].scenario.window_min == 0:
        rows.append(row("time to drain (real s; floor 40 s)", lambda r: r.drain_s))
    return rows


def markdown(groups: list[list[Result]], command: str) -> str:
    out = [
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d} (2 cores, loopback simulators, a real",
        "etcd + kube-apiserver). Each contender ran as its own process against the same simulated world;",
        "latencies are in simulated seconds (time compressed by the scale shown; network latencies and",
        "Airtable's 5 req/s limit and 30 s penalty are physical). `ours` mirrors by incremental polling,",
        "`push` from Airtable's webhook payloads (AIRTABLE_WEBHOOK_URL set). See the notes below the tables.",
        "",
    ]
    for results in groups:
        sc = results[0].scenario
        head = headers(results)
        out += [
            f"## {sc.name} ({sc.scale:g}x time, outputs over {sc.window_min:g} sim-min, "
            f"{sc.drop_rate:.0%} webhooks dropped)",
            "",
            "| " + " | ".join(head) + " |",
            "|---|" + "---:|" * (len(head) - 1),
        ]
        out += ["| " + " | ".join(cells) + " |" for cells in rows_for(results)]
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


def print_table(results: list[Result]) -> None:
    rows = rows_for(results)
    head = headers(results)
    print(f"\n{results[0].scenario.name} ({results[0].scenario.scale:g}x time)")
    width = max(len(r[0]) for r in rows)
    print(f"{head[0]:<{width}}" + "".join(f"  {h:>12}" for h in head[1:]))
    for cells in rows:
        print(f"{cells[0]:<{width}}" + "".join(f"  {c:>12}" for c in cells[1:]))


def parse_contenders(value: str) -> list[str]:
    """`ours,push,seed` → the names, in order, each once; an unknown one is an argparse error. Pure."""
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"contenders are a comma-separated subset of {','.join(CONTENDERS)}; got {value!r}"
        )
    return names


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated; empty for the drain only")
    parser.add_argument("--no-drain", action="store_true")
    parser.add_argument(
        "--contenders",
        type=parse_contenders,
        default=list(CONTENDERS),
        help=f"comma-separated, run in this order (default {','.join(CONTENDERS)})",
    )
    parser.add_argument(
        "--only", choices=CONTENDERS, help="one contender, printed but not written (for profiling)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    contenders: list[str] = [args.only] if args.only else args.contenders
    workdir = Path(tempfile.mkdtemp(prefix="mediajob-bench-"))
    plane = ControlPlane(workdir / "controlplane")
    plane.start()
    groups: list[list[Result]] = []
    try:
        plane.kubectl("apply", "-f", str(REPO / "crds"))
        scenarios = [SCENARIOS[int(s)] for s in args.sizes.split(",") if s]
        if not args.no_drain:
            scenarios.append(DRAIN)
        for sc in scenarios:
            results = []
            for contender in contenders:
                print(f"running {sc.name} for {contender} (up to {sc.real(sc.limit_min):.0f} s)", flush=True)
                results.append(await run(contender, sc, plane, workdir))
            groups.append(results)
            print_table(results)
    finally:
        plane.stop()
    command = "make bench"
    if args.sizes != "100,1000,10000" or args.no_drain or contenders != list(CONTENDERS):
        command = f"python -m bench --sizes {args.sizes}" + (" --no-drain" if args.no_drain else "")
        if contenders != list(CONTENDERS):
            command += f" --contenders {','.join(contenders)}"
    dump = [[dataclasses.asdict(r) for r in results] for results in groups]
    (workdir / "results.json").write_text(json.dumps(dump, default=str))
    if groups and not args.only:
        write_between_markers(args.out, markdown(groups, command))
        print(f"\nwrote {args.out}; logs in {workdir}")
    else:
        print(f"\nlogs in {workdir}")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["quota"]:  # `python -m bench quota`: the Airtable quota bench (bench/quota.py)
        from bench.quota import cli

        sys.exit(cli(sys.argv[2:]))
    if sys.argv[1:2] == ["takeover"]:  # `python -m bench takeover`: the mirror behind a write-back backlog
        from bench.takeover import cli as takeover_cli

        sys.exit(takeover_cli(sys.argv[2:]))
    if sys.argv[1:2] == ["latency"]:  # `python -m bench latency`: real time, every webhook lost
        from bench.latency import cli as latency_cli

        sys.exit(latency_cli(sys.argv[2:]))
    sys.exit(asyncio.run(main()))

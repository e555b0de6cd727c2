"""`python -m bench quota`: Airtable calls per 30-day month, the seed's design against ours.

    python -m bench quota [--hours 12] [--scale 1440] [--out docs/benchmarks.md]

Each run starts the Airtable simulator (its webhooks and pings included), the controller's real
change sources (`PushSource`, `IncrementalPolling`, `FullListing`) and its real Airtable client,
and runs a simulated window in compressed time: rows arrive at the load's rate, each job ends 3
simulated minutes after it was submitted, and its result is written back (ours: as
controller/writeback.py batches, with its own `send_at` deciding when a partial batch goes and its
quota-aware linger (`QuotaLinger`, the Team plan's 100,000 calls at the 0.8 share) how long: the
Jobs rows read 50 a request before the write, except in push mode (not busy), where the payloads
vouch for them; then the target rows and the Jobs rows, 10 a request; the seed: three single-row updates per
job). The calls made after start-up are scaled to 30 days. Detection latency is from
a row's creation to the batch that hands it to the mirror, in simulated seconds.

Not exercised here: Kubernetes (the webhook state is kept in memory instead of a Secret), the
checks against NCA and Spaces (they make no Airtable calls), and the 7-day refresh (added as
computed: one call every 4 days when no payload read has extended the webhook).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import random
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.airtable_push import PingReceiver, PushSource, WebhookState
from controller.budget import DISCOVERY_FASTEST, DiscoveryPace, QuotaLinger
from controller.changes import ChangeBatch, ChangeSource, IncrementalPolling, list_processing
from controller.clients.airtable import IDS_PER_READ, MAX_RECORDS_PER_WRITE, AirtableClient
from controller.http import HttpServer
from controller.jobrows import KnownRows
from controller.metrics import Metrics
from controller.writeback import send_at
from sandbox import AirtableSimulator
from sandbox.controlplane import REPO, free_port
from sandbox.world import SCHEMA

KEY = "patBenchKey.0123456789"
BASE = "appBenchBase00001"
INTERVAL = 120.0  # POLLING_INTERVAL_MINUTES = 2, in simulated seconds
CHECK_EVERY = 3600.0  # AIRTABLE_WEBHOOK_CHECK_MINUTES = 60
FULL_EVERY = 6 * 3600.0  # AIRTABLE_FULL_RESYNC_HOURS = 6
LONGEST_LINGER = INTERVAL  # the quota-aware linger's longest: one polling interval
QUOTA, QUOTA_SHARE = 100_000, 0.8  # AIRTABLE_MONTHLY_QUOTA (Team) and AIRTABLE_QUOTA_ALERT_SHARE defaults
JOB_MINUTES = 3.0
SEED_MIN_AGE = 300.0  # the seed only lists rows older than 5 minutes
MONTH = 30 * 86400.0
REFRESHES_PER_MONTH_IDLE = 30 / 4
LOADS = {"idle": 0, "50 jobs/day": 50, "500 jobs/day": 500, "5,000 jobs/day": 5000}
PUSH, FALLBACK = "ours: push", "ours: fallback (incremental)"
TARGET_FIELDS = {
    "Segments": {"Status": "combined", "Voiceover + Video": [{"url": "https://x/y.mp4"}]},
    "Videos": {"Combined Segments Video": [{"url": "https://x/y.mp4"}]},
}
MODES = ("seed", "ours: full listing (before)", PUSH, FALLBACK)


class FullListing:
    """The seed's mirror, kept as the baseline: every `processing` row, every interval."""

    def __init__(self, airtable: AirtableClient, table: str) -> None:
        self._airtable = airtable
        self._table = table

    async def next_batch(self) -> ChangeBatch:
        return ChangeBatch(await list_processing(self._airtable, self._table), complete=True)

    async def wait(self, interval: float) -> None:
        await asyncio.sleep(interval)


class MemoryStore:
    """The Secret's role, in memory: the bench measures Airtable, not Kubernetes."""

    def __init__(self) -> None:
        self.state: WebhookState | None = None

    async def load(self) -> WebhookState | None:
        return dataclasses.replace(self.state) if self.state else None

    async def save(self, state: WebhookState) -> None:
        self.state = dataclasses.replace(state)

    async def save_cursor(self, cursor: int) -> None:
        if self.state:
            self.state.cursor = cursor

    async def mark_ping(self, at: datetime) -> None:
        return None


@dataclasses.dataclass
class Run:
    mode: str
    load: str
    jobs_per_day: float
    window_s: float
    calls: Counter[str] = dataclasses.field(default_factory=Counter)
    latencies: list[float] = dataclasses.field(default_factory=list)
    completed: int = 0
    created: int = 0
    scale_ms: float = 0.0  # simulated seconds per real millisecond

    def per_month(self) -> float:
        extra = REFRESHES_PER_MONTH_IDLE if self.mode == PUSH and not self.jobs_per_day else 0.0
        return sum(self.calls.values()) * MONTH / self.window_s + extra

    def by_purpose_month(self) -> dict[str, float]:
        return {k: v * MONTH / self.window_s for k, v in sorted(self.calls.items())}


class World:
    """Rows arrive, jobs end, results are written back; everything timed in simulated seconds."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.t0 = time.monotonic()
        self.created: dict[str, float] = {}
        self.discovered: dict[str, float] = {}
        self.targets: dict[str, tuple[str, str]] = {}
        self.ends: dict[str, float] = {}  # when NCA finishes the job, from its creation
        self.written: set[str] = set()

    def now(self) -> float:
        return (time.monotonic() - self.t0) * self.scale

    async def sleep(self, sim_seconds: float) -> None:
        await asyncio.sleep(max(sim_seconds, 0.0) / self.scale)


def add_job(
    sim: AirtableSimulator, world: World, rng: random.Random, i: int, runs_for: float = JOB_MINUTES * 60
) -> None:
    op = ("combine", "concatenate", "add_music")[i % 3]
    table = "Segments" if op == "combine" else "Videos"
    target = sim.add_record(BASE, table, {"Name": f"t-{i}"})
    rid = sim.add_record(
        BASE,
        "Jobs",
        {
            "Status": "processing",
            "External Job ID": f"job-{i:06d}-{rng.randrange(10**6)}",
            "Request Payload": json.dumps({"operation": op}),
            "Created Time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "Segment" if table == "Segments" else "Video": [target],
        },
    )
    world.created[rid] = world.now()
    world.targets[rid] = (table, target)
    world.ends[rid] = runs_for


async def consume(source: ChangeSource, world: World, *, min_age: float = 0.0) -> None:
    """The mirror's loop, reduced to what costs Airtable calls: wait, take a batch, commit."""
    while True:
        await source.wait(INTERVAL / world.scale)
        batch = await source.next_batch()
        now = world.now()
        for record in batch.records:
            rid = record["id"]
            if rid in world.created and rid not in world.discovered and now - world.created[rid] >= min_age:
                world.discovered[rid] = now
        await batch.commit()


class Stage:
    """One write-back stage's queue, batched by the controller's own `send_at`."""

    def __init__(self, limit: int, linger: QuotaLinger) -> None:
        self.limit = limit
        self.linger = linger
        self.items: list[tuple[str, float]] = []  # (record id, arrived)
        self.arrivals: deque[float] = deque(maxlen=256)

    def add(self, rid: str, now: float) -> None:
        self.items.append((rid, now))
        self.arrivals.append(now)

    def take(self, now: float) -> list[str]:
        """The batch that goes now (empty when it should wait for more)."""
        if not self.items:
            return []
        at = send_at(
            now=now,
            oldest=self.items[0][1],
            ready=len(self.items),
            limit=self.limit,
            arrivals=self.arrivals,
            linger=self.linger.linger(),
        )
        if at > now:
            return []
        batch, self.items = self.items[: self.limit], self.items[self.limit :]
        return [rid for rid, _ in batch]


async def write_back(
    airtable: AirtableClient, world: World, *, mode: str, linger: QuotaLinger, push: PushSource | None
) -> None:
    """Ends each discovered job JOB_MINUTES after submission and writes its result."""
    check = Stage(IDS_PER_READ, linger)
    targets = {
        "Segments": Stage(MAX_RECORDS_PER_WRITE, linger),
        "Videos": Stage(MAX_RECORDS_PER_WRITE, linger),
    }
    jobs = Stage(MAX_RECORDS_PER_WRITE, linger)
    waiting: list[tuple[str, float]] = []  # (row, when it asked) for a vouching payload read
    payload = '{"output_url": "https://x/y.mp4"}'
    while True:
        await world.sleep(1.0)
        now = world.now()
        due = [
            rid
            for rid, found in world.discovered.items()
            if rid not in world.written and now >= max(found, world.created[rid] + world.ends[rid])
        ]
        world.written.update(due)
        if mode == "seed":  # Jobs status and payload, the target row, the Jobs notes: one call each
            for rid in due:
                table, target = world.targets[rid]
                await airtable.update_records(
                    "Jobs", [(rid, {"Status": "completed", "Response Payload": payload})]
                )
                await airtable.update_records(table, [(target, TARGET_FIELDS[table])])
                await airtable.update_records("Jobs", [(rid, {"Notes": "done"})])
            continue
        # In push mode the payload reads vouch for the rows (no read before the write) when the
        # linger allows waiting for the next one (they come every `spacing` under a stream: 2 s
        # while the quota has room, half an interval as it runs short); the write-back asks the
        # real source for that read. A busy source reads no payloads, and a write-back that
        # writes at once reads the rows instead, as the controller does.
        vouched = (
            push is not None and push.vouching and linger.linger() * 1.25 + 1 >= push.spacing * world.scale
        )
        for rid in due:
            if vouched:
                waiting.append((rid, time.monotonic()))
            else:
                check.add(rid, now)
        if push is not None and not push.vouching:  # (it went busy meanwhile)
            for rid, _ in waiting:
                check.add(rid, now)
            waiting = []
        if push is not None and waiting:
            fresh = [rid for rid, asked in waiting if asked <= push.rows.fresh_at]
            waiting = [(rid, asked) for rid, asked in waiting if asked > push.rows.fresh_at]
            for rid in fresh:
                targets[world.targets[rid][0]].add(rid, now)
            if waiting:
                push.request_read()
        while batch := check.take(now):
            await airtable.get_records("Jobs", batch, fields=("Status", "Notes", "External Job ID"))
            for rid in batch:
                targets[world.targets[rid][0]].add(rid, now)
        for table, stage in targets.items():
            while batch := stage.take(now):
                await airtable.update_records(
                    table, [(world.targets[r][1], TARGET_FIELDS[table]) for r in batch]
                )
                for rid in batch:
                    jobs.add(rid, now)
        while batch := jobs.take(now):
            fields = {"Status": "completed", "Response Payload": payload, "Notes": "done"}
            await airtable.update_records("Jobs", [(rid, fields) for rid in batch])


async def arrivals(sim: AirtableSimulator, world: World, per_day: float, rng: random.Random) -> None:
    i = 0
    while per_day:
        await world.sleep(rng.expovariate(per_day / 86400.0))
        add_job(sim, world, rng, i)
        i += 1


@contextlib.asynccontextmanager
async def ping_server(receiver: PingReceiver, port: int) -> AsyncIterator[None]:
    http = HttpServer(
        port=port,
        metrics_port=0,
        token="bench-token-0123456789",
        metrics=Metrics(),
        receiver=lambda: None,
        ready=lambda: True,
        host="127.0.0.1",
        airtable_ping=receiver.receive,
    )
    await http.start()
    try:
        yield
    finally:
        await http.stop()


async def run_one(
    mode: str,
    load: str,
    per_day: float,
    *,
    hours: float,
    scale: float,
    burst: int = 0,
    preexisting: bool = False,
) -> Run:
    rng = random.Random(7)
    calls: Counter[str] = Counter()
    async with AirtableSimulator(KEY, rate_limit_per_s=math.inf) as sim:
        for table, fields in SCHEMA.items():
            sim.set_schema(BASE, table, fields)
        sim.add_record(BASE, "Jobs", {"Status": "completed", "External Job ID": "old"})
        world = World(scale)
        # The write-back's linger as the controller sets it by default: by what the quota has left,
        # counting every call (the mirror's too), on the simulated clock.
        linger = QuotaLinger(monthly_quota=QUOTA, share=QUOTA_SHARE, longest=LONGEST_LINGER, clock=world.now)

        def count(purpose: str) -> None:
            calls[purpose] += 1
            linger.spend()

        airtable = AirtableClient(
            api_key=KEY,
            base_id=BASE,
            api_url=sim.url,
            requests_per_second=10_000,
            penalty_seconds=1,
            count_call=count,
        )
        port = free_port()
        store = MemoryStore()
        holder: dict[str, PushSource | None] = {"source": None}
        fallback = IncrementalPolling(
            airtable, "Jobs", full_every=FULL_EVERY / scale, overlap=timedelta(seconds=60 / scale)
        )
        source: ChangeSource
        if mode == PUSH:
            push = PushSource(
                airtable=airtable,
                store=store,  # type: ignore[arg-type]
                table="Jobs",
                notification_url=f"http://127.0.0.1:{port}/webhooks/airtable",
                interval=INTERVAL / scale,
                check_every=CHECK_EVERY / scale,
                full_every=FULL_EVERY / scale,
                processing_count=lambda: len(world.discovered) - len(world.written),
                fallback=fallback,
                rows=KnownRows(),
                # As the controller: the same quota's shortfall, its fastest gap in simulated time.
                pace=DiscoveryPace(linger.shortfall, fastest=DISCOVERY_FASTEST / scale),
            )
            holder["source"] = source = push
        elif mode == FALLBACK:
            source = fallback
        else:
            source = FullListing(airtable, "Jobs")
        receiver = PingReceiver(store, leader_source=lambda: holder["source"])  # type: ignore[arg-type]
        async with ping_server(receiver, port):
            if burst and preexisting:  # as `make bench`: N rows wait, outputs over the next 20 minutes
                for i in range(burst):
                    add_job(sim, world, rng, i, runs_for=rng.uniform(0, 1200))
            # start-up (webhook creation, the first full listing) is not part of the month,
            # but is part of a burst's cost
            first = await source.next_batch()
            now = world.now()
            for record in first.records:
                if record["id"] in world.created:
                    world.discovered.setdefault(record["id"], now)
            await first.commit()
            if not burst:
                calls.clear()
                world.t0 = time.monotonic()
            tasks = [
                asyncio.create_task(consume(source, world, min_age=SEED_MIN_AGE if mode == "seed" else 0.0)),
                asyncio.create_task(
                    write_back(airtable, world, mode=mode, linger=linger, push=holder["source"])
                ),
                asyncio.create_task(arrivals(sim, world, per_day, rng)),
            ]
            if burst and not preexisting:  # N new rows at once, outputs over the next 20 minutes
                for i in range(burst):
                    add_job(sim, world, rng, i, runs_for=rng.uniform(0, 1200))
            try:
                await world.sleep(hours * 3600)
                if burst:
                    while len(world.written) < burst and world.now() < hours * 3600 * 3:
                        await world.sleep(60)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            window = world.now()
        await airtable.close()
    result = Run(mode, load, per_day, window, calls)
    result.latencies = [world.discovered[r] - world.created[r] for r in world.discovered]
    result.created = len(world.created)
    result.completed = len(world.written)
    return result


def _lat(run: Run) -> str:
    if not run.latencies:
        return "—"
    ordered = sorted(run.latencies)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"{statistics.median(ordered):.0f} / {p95:.0f} / {ordered[-1]:.0f}"


def markdown(runs: list[Run], bursts: list[Run], command: str) -> str:
    lines = [
        f"Produced by `{command}` on {datetime.now(UTC):%Y-%m-%d}: the real change sources and Airtable",
        "client against the Airtable simulator, time compressed; calls after start-up, scaled to 30 days.",
        "Latency: creation of a `processing` row to the batch that hands it to the mirror (p50 / p95 / max,",
        "simulated seconds; at this compression each real millisecond of round trip counts as",
        f"{runs[0].scale_ms if runs else 0:.1f} simulated seconds).",
        "",
        "| load | design | calls / 30 days | by purpose (per 30 days) | detection p50 / p95 / max (s) |",
        "|---|---|---:|---|---:|",
    ]
    for run in runs:
        purposes = ", ".join(f"{k} {v:,.0f}" for k, v in run.by_purpose_month().items()) or "none"
        if run.mode == PUSH and not run.jobs_per_day:
            purposes += f", refresh {REFRESHES_PER_MONTH_IDLE:.1f} (computed)"
        lines.append(f"| {run.load} | {run.mode} | {run.per_month():,.0f} | {purposes} | {_lat(run)} |")
    if bursts:
        lines += [
            "",
            "N=1,000 jobs ending uniformly over 20 minutes; every call counted from start-up until all",
            "are written back. *waiting*: the rows exist when the controller starts (as in `make bench`);",
            "*new*: they are created at once after start-up.",
            "",
            "| rows | design | completed | calls | calls per job | by purpose | detection max (s) |",
            "|---|---|---:|---:|---:|---|---:|",
        ]
        for run in bursts:
            total = sum(run.calls.values())
            purposes = ", ".join(f"{k} {v}" for k, v in sorted(run.calls.items()))
            worst = f"{max(run.latencies):.0f}" if run.latencies else "—"
            per_job = total / run.completed if run.completed else float("nan")
            cells = [run.load, run.mode, str(run.completed), str(total), f"{per_job:.3f}", purposes, worst]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- bench-quota:begin (generated by python -m bench quota) -->", "<!-- bench-quota:end -->"


def write_between_markers(path: Path, text: str) -> None:
    doc = path.read_text()
    if BEGIN in doc and END in doc:
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        doc = head + BEGIN + "\n" + text + END + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + BEGIN + "\n" + text + END + "\n"
    path.write_text(doc)


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench quota", description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=12.0, help="simulated hours per run")
    parser.add_argument("--scale", type=float, default=1440.0, help="simulated seconds per real second")
    parser.add_argument("--burst-scale", type=float, default=60.0)
    parser.add_argument("--no-burst", action="store_true")
    parser.add_argument(
        "--loads", default=";".join(LOADS), help="a ;-separated subset of: " + "; ".join(LOADS)
    )
    parser.add_argument("--modes", default="", help="a ;-separated subset of the designs (default all)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="'-': print only")
    args = parser.parse_args(argv)
    loads = {k: v for k, v in LOADS.items() if k in args.loads.split(";")}
    modes = [m for m in MODES if not args.modes or m in args.modes.split(";")]
    runs: list[Run] = []
    for load, per_day in loads.items():
        for mode in modes:
            print(f"{load}: {mode} ({args.hours * 3600 / args.scale:.0f} s)", flush=True)
            run = await run_one(mode, load, per_day, hours=args.hours, scale=args.scale)
            run.scale_ms = args.scale / 1000
            runs.append(run)
            print(f"  {run.per_month():,.0f} calls/month {dict(run.calls)} latency {_lat(run)}", flush=True)
    bursts: list[Run] = []
    if not args.no_burst:
        for preexisting in (True, False):
            for mode in modes:
                label = "waiting" if preexisting else "new"
                print(f"N=1,000 {label}: {mode}", flush=True)
                run = await run_one(
                    mode, label, 0, hours=0.5, scale=args.burst_scale, burst=1000, preexisting=preexisting
                )
                bursts.append(run)
            print(f"  {sum(run.calls.values())} calls for {run.completed} jobs {dict(run.calls)}", flush=True)
    command = "python -m bench quota" + "".join(
        f" {flag} {value}"
        for flag, value, default in (("--hours", args.hours, 12.0), ("--scale", args.scale, 1440.0))
        if value != default
    )
    text = markdown(runs, bursts, command)
    print(text)
    if str(args.out) != "-":
        write_between_markers(args.out, text)
    return 0


def cli(argv: list[str]) -> int:
    return asyncio.run(main(argv))


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))

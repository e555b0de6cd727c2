"""`kubectl mediajob`: the day-two questions, answered from the resources themselves.

    kubectl mediajob stuck [--older-than MINUTES]      processing jobs older than N minutes
    kubectl mediajob recheck NAME... | --all-stuck     ask for a check now and wait until it ran
    kubectl mediajob stats                             completions by source, webhook misses, latency

kubectl finds this as the `kubectl-mediajob` console script on PATH. It reads the kubeconfig the
way kubectl does (KUBECONFIG or ~/.kube/config) and uses the current context's namespace unless
told otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from controller.clients.kube import KubeClient, KubeError
from controller.model import parse_time, utcnow
from controller.naming import ANNOTATION_RECHECK


@dataclasses.dataclass(frozen=True)
class Row:
    namespace: str
    name: str
    phase: str
    operation: str
    external_id: str
    submitted_at: datetime | None
    checks: int
    via: str | None
    completed_at: datetime | None
    output_last_modified: datetime | None
    handled_recheck: str | None
    message: str

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Row:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
        return cls(
            namespace=meta.get("namespace", ""),
            name=meta.get("name", ""),
            phase=status.get("phase") or "Processing",
            operation=str(spec.get("operation", "")),
            external_id=str(spec.get("externalJobId", "")),
            submitted_at=parse_time(spec.get("submittedAt")),
            checks=int(status.get("checks") or 0),
            via=status.get("completedVia"),
            completed_at=parse_time(status.get("completedAt")),
            output_last_modified=parse_time(status.get("outputLastModified")),
            handled_recheck=status.get("lastHandledRecheckAt"),
            message=str(status.get("message") or ""),
        )


def human(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d"


def stuck(rows: Iterable[Row], *, older_than: timedelta, now: datetime) -> list[Row]:
    """Processing jobs older than the threshold, oldest first. Pure."""
    found = [
        r
        for r in rows
        if r.phase == "Processing" and r.submitted_at is not None and now - r.submitted_at >= older_than
    ]
    return sorted(found, key=lambda r: r.submitted_at or now)


@dataclasses.dataclass(frozen=True)
class Stats:
    phases: dict[str, int]
    by_source: dict[str, int]
    missed_by_webhook: float | None  # share of completions that polling had to find
    latency: dict[str, float]  # p50/p95/max seconds, for completions proven by a Spaces object


def stats(rows: Iterable[Row]) -> Stats:
    """Pure: the figures `kubectl mediajob stats` prints."""
    rows = list(rows)
    phases: dict[str, int] = {}
    by_source: dict[str, int] = {}
    latencies: list[float] = []
    for row in rows:
        phases[row.phase] = phases.get(row.phase, 0) + 1
        if row.phase == "Completed" and row.via:
            by_source[row.via] = by_source.get(row.via, 0) + 1
            if row.completed_at and row.output_last_modified:
                latencies.append(max((row.completed_at - row.output_last_modified).total_seconds(), 0.0))
    completions = sum(by_source.values())
    missed = None if not completions else (completions - by_source.get("webhook", 0)) / completions
    latency: dict[str, float] = {}
    if latencies:
        ordered = sorted(latencies)
        latency = {
            "p50": statistics.median(ordered),
            "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "max": ordered[-1],
        }
    return Stats(phases=phases, by_source=by_source, missed_by_webhook=missed, latency=latency)


def table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


async def _rows(kube: KubeClient, namespace: str | None) -> list[Row]:
    return [Row.of(obj) for obj in await kube.list_mediajobs(namespace)]


async def cmd_stuck(kube: KubeClient, namespace: str | None, args: argparse.Namespace, out: TextIO) -> int:
    now = utcnow()
    found = stuck(await _rows(kube, namespace), older_than=timedelta(minutes=args.older_than), now=now)
    if not found:
        out.write(f"No processing MediaJobs older than {args.older_than:g} minutes.\n")
        return 0
    header = ["NAMESPACE", "NAME", "OPERATION", "EXTERNAL-ID", "AGE", "CHECKS", "MESSAGE"]
    table(
        [header]
        + [
            [
                r.namespace,
                r.name,
                r.operation,
                r.external_id,
                human(now - r.submitted_at),
                str(r.checks),
                r.message[:60],
            ]
            for r in found
            if r.submitted_at
        ],
        out,
    )
    return 0


async def cmd_recheck(kube: KubeClient, namespace: str | None, args: argparse.Namespace, out: TextIO) -> int:
    if args.all_stuck:
        targets = [
            (r.namespace, r.name)
            for r in stuck(
                await _rows(kube, namespace), older_than=timedelta(minutes=args.older_than), now=utcnow()
            )
        ]
    else:
        if not args.names:
            out.write("error: give MediaJob names or --all-stuck\n")
            return 2
        targets = [(namespace or "default", name) for name in args.names]
    if not targets:
        out.write("Nothing to recheck.\n")
        return 0
    token = f"{time.time():.6f}"
    for ns, name in targets:
        await kube.patch_mediajob(ns, name, {"metadata": {"annotations": {ANNOTATION_RECHECK: token}}})
        out.write(f"► annotating MediaJob {ns}/{name} with {ANNOTATION_RECHECK}={token}\n")
    if args.no_wait:
        return 0
    out.write(f"◎ waiting for the controller to handle the recheck (up to {args.timeout:g} s)\n")
    pending = set(targets)
    deadline = time.monotonic() + args.timeout
    while pending and time.monotonic() < deadline:
        for ns, name in sorted(pending):
            row = Row.of(await kube.get_mediajob(ns, name))
            if row.handled_recheck == token:
                pending.discard((ns, name))
                via = f" via {row.via}" if row.via else ""
                out.write(f"✔ {ns}/{name}: rechecked, phase {row.phase}{via}\n")
        if pending:
            await asyncio.sleep(0.5)
    for ns, name in sorted(pending):
        out.write(
            f"✗ {ns}/{name}: not handled within {args.timeout:g} s (is a controller running and leading?)\n"
        )
    return 1 if pending else 0


async def cmd_stats(kube: KubeClient, namespace: str | None, args: argparse.Namespace, out: TextIO) -> int:
    result = stats(await _rows(kube, namespace))
    total = sum(result.phases.values())
    out.write(
        f"MediaJobs: {total}  " + "  ".join(f"{k}: {v}" for k, v in sorted(result.phases.items())) + "\n"
    )
    completions = sum(result.by_source.values())
    if completions:
        parts = "  ".join(f"{k}: {v} ({v / completions:.0%})" for k, v in sorted(result.by_source.items()))
        out.write(f"Completions by source: {parts}\n")
    if result.missed_by_webhook is not None:
        out.write(f"Webhook missed: {result.missed_by_webhook:.0%} of completions were found by polling\n")
    if result.latency:
        lat = result.latency
        out.write(
            f"Detection latency (Spaces Last-Modified → status): p50 {lat['p50']:.0f}s  "
            f"p95 {lat['p95']:.0f}s  max {lat['max']:.0f}s\n"
        )
    return 0


COMMANDS = {"stuck": cmd_stuck, "recheck": cmd_recheck, "stats": cmd_stats}


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="kubectl mediajob", description=__doc__.splitlines()[0] if __doc__ else None
    )
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument("-n", "--namespace", help="the namespace (default: the context's)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="all namespaces")
    subs = root.add_subparsers(dest="command", required=True)
    p_stuck = subs.add_parser("stuck", parents=[scope], help="processing jobs older than N minutes")
    p_stuck.add_argument("--older-than", type=float, default=60.0, metavar="MINUTES")
    p_recheck = subs.add_parser("recheck", parents=[scope], help="check jobs now and wait until done")
    p_recheck.add_argument("names", nargs="*", metavar="NAME")
    p_recheck.add_argument("--all-stuck", action="store_true", help="every job that `stuck` lists")
    p_recheck.add_argument("--older-than", type=float, default=60.0, metavar="MINUTES")
    p_recheck.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    p_recheck.add_argument("--no-wait", action="store_true")
    subs.add_parser("stats", parents=[scope], help="completions by source, webhook misses, latency")
    return root


async def run(argv: Sequence[str], out: TextIO) -> int:
    args = parser().parse_args(argv)
    kube = KubeClient()
    try:
        namespace = None if args.all_namespaces else (args.namespace or kube.default_namespace or "default")
        return await COMMANDS[args.command](kube, namespace, args, out)
    except KubeError as exc:
        out.write(f"error: {exc}\n")
        return 1
    finally:
        await kube.close()


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:], sys.stdout)))


if __name__ == "__main__":
    main()

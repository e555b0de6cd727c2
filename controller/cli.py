"""`kubectl mediajob`: the day-two questions, answered from the resources themselves.

    kubectl mediajob stuck [--older-than MINUTES]      processing jobs older than N minutes
    kubectl mediajob recheck NAME... | --all-stuck     ask for a check now and wait until it ran
    kubectl mediajob stats                             completions by source, webhook misses, latency
    kubectl mediajob wait NAME... [--timeout SECONDS]  until Ready (exit 0), Stalled (1) or timeout (2)

kubectl finds this as the `kubectl-mediajob` console script on PATH. It follows kubectl's
conventions: `--kubeconfig`, `--context`, `-n/--namespace` (default: the context's namespace),
`-A/--all-namespaces` and `-o json|yaml|wide`, and reads credentials in kubectl's order
(--kubeconfig, $KUBECONFIG, ~/.kube/config, then the pod's service account).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

import kopf
import yaml

from controller.clients.kube import KubeClient, KubeError, NotFound
from controller.clients.login import KubeLogin
from controller.model import parse_time, utcnow
from controller.vocabulary import ANNOTATION_RECHECK

STRUCTURED = ("json", "yaml")
OUTPUTS = (*STRUCTURED, "wide")


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
    phases = dict(Counter(row.phase for row in rows))
    completed = [row for row in rows if row.phase == "Completed" and row.via]
    by_source = dict(Counter(row.via for row in completed if row.via))
    ordered = sorted(
        max((row.completed_at - row.output_last_modified).total_seconds(), 0.0)
        for row in completed
        if row.completed_at and row.output_last_modified
    )
    completions = sum(by_source.values())
    missed = None if not completions else (completions - by_source.get("webhook", 0)) / completions
    latency: dict[str, float] = {}
    if ordered:
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


def emit(data: Any, output: str, out: TextIO) -> None:
    """kubectl's structured output: JSON with 4-space indent, or block-style YAML."""
    if output == "json":
        out.write(json.dumps(data, indent=4, ensure_ascii=False) + "\n")
    else:
        out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True))


def as_list(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several objects the way `kubectl get -o json` prints them."""
    return {"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": list(items)}


@dataclasses.dataclass
class Context:
    """What every command gets: the client, the namespace (None: all), the parsed flags, the streams."""

    kube: KubeClient
    namespace: str | None
    args: argparse.Namespace
    out: TextIO
    err: TextIO

    @property
    def output(self) -> str | None:
        return str(self.args.output) if self.args.output else None

    @property
    def progress(self) -> TextIO:
        """Human progress lines: on stderr when stdout carries JSON or YAML for a pipe."""
        return self.err if self.output in STRUCTURED else self.out


async def cmd_stuck(ctx: Context) -> int:
    now = utcnow()
    objects = {Row.of(obj): obj for obj in await ctx.kube.list_mediajobs(ctx.namespace)}
    found = stuck(objects, older_than=timedelta(minutes=ctx.args.older_than), now=now)
    if ctx.output in STRUCTURED:
        emit(as_list(objects[r] for r in found), ctx.output or "json", ctx.out)
        return 0
    if not found:
        ctx.out.write(f"No processing MediaJobs older than {ctx.args.older_than:g} minutes.\n")
        return 0
    wide = ctx.output == "wide"
    header = ["NAMESPACE", "NAME", "OPERATION", "EXTERNAL-ID", "AGE", "CHECKS"]
    header += ["SUBMITTED", "MESSAGE"] if wide else ["MESSAGE"]
    lines = [header]
    for r in found:
        if r.submitted_at is None:
            continue
        cells = [r.namespace, r.name, r.operation, r.external_id, human(now - r.submitted_at), str(r.checks)]
        cells += [r.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"), r.message] if wide else [r.message[:60]]
        lines.append(cells)
    table(lines, ctx.out)
    return 0


async def cmd_recheck(ctx: Context) -> int:
    args = ctx.args
    if args.all_stuck:
        rows = [Row.of(obj) for obj in await ctx.kube.list_mediajobs(ctx.namespace)]
        targets = [
            (r.namespace, r.name)
            for r in stuck(rows, older_than=timedelta(minutes=args.older_than), now=utcnow())
        ]
    else:
        if not args.names:
            ctx.err.write("error: give MediaJob names or --all-stuck\n")
            return 2
        if ctx.namespace is None:
            ctx.err.write("error: a MediaJob NAME needs one namespace: use -n, not -A (or --all-stuck)\n")
            return 2
        targets = [(ctx.namespace, name) for name in args.names]
    progress = ctx.progress
    if not targets:
        progress.write("Nothing to recheck.\n")
        if ctx.output in STRUCTURED:
            emit(as_list([]), ctx.output or "json", ctx.out)
        return 0
    token = f"{time.time():.6f}"
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for ns, name in targets:
        latest[(ns, name)] = await ctx.kube.patch_mediajob(
            ns, name, {"metadata": {"annotations": {ANNOTATION_RECHECK: token}}}
        )
        progress.write(f"► annotating MediaJob {ns}/{name} with {ANNOTATION_RECHECK}={token}\n")
    pending = set(targets)
    if not args.no_wait:
        progress.write(f"◎ waiting for the controller to handle the recheck (up to {args.timeout:g} s)\n")
        deadline = time.monotonic() + args.timeout
        while pending and time.monotonic() < deadline:
            for ns, name in sorted(pending):
                obj = latest[(ns, name)] = await ctx.kube.get_mediajob(ns, name)
                row = Row.of(obj)
                if row.handled_recheck == token:
                    pending.discard((ns, name))
                    via = f" via {row.via}" if row.via else ""
                    progress.write(f"✔ {ns}/{name}: rechecked, phase {row.phase}{via}\n")
            if pending:
                await asyncio.sleep(0.5)
        for ns, name in sorted(pending):
            progress.write(
                f"✗ {ns}/{name}: not handled within {args.timeout:g} s"
                " (is a controller running and leading?)\n"
            )
    if ctx.output in STRUCTURED:
        emit(as_list(latest[t] for t in targets), ctx.output or "json", ctx.out)
    return 1 if pending and not args.no_wait else 0


def stats_document(result: Stats) -> dict[str, Any]:
    """`stats -o json|yaml`: plain types, camelCase keys as in Kubernetes objects."""
    return {
        "mediaJobs": sum(result.phases.values()),
        "phases": dict(sorted(result.phases.items())),
        "completionsBySource": dict(sorted(result.by_source.items())),
        "webhookMissedShare": result.missed_by_webhook,
        "detectionLatencySeconds": result.latency,
    }


async def cmd_stats(ctx: Context) -> int:
    result = stats(Row.of(obj) for obj in await ctx.kube.list_mediajobs(ctx.namespace))
    if ctx.output in STRUCTURED:
        emit(stats_document(result), ctx.output or "json", ctx.out)
        return 0
    out = ctx.out
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


def verdict(obj: dict[str, Any]) -> str | None:
    """kstatus's reading of one MediaJob: "ready", "stalled", or None while in progress. Pure.

    A condition counts only for the generation it was written for, so a spec changed since (a
    re-submission) is in progress until the controller has looked at it.
    """
    generation = (obj.get("metadata") or {}).get("generation")
    conds = {
        c.get("type"): c
        for c in (obj.get("status") or {}).get("conditions") or []
        if isinstance(c, dict) and c.get("observedGeneration", generation) == generation
    }
    true = {kind for kind, c in conds.items() if c.get("status") == "True"}
    if "Stalled" in true:
        return "stalled"
    return "ready" if {"Ready", "Synced"} <= true else None


async def cmd_wait(ctx: Context) -> int:
    """Like `kubectl wait`, for both ends: 0 when every job is Completed and Synced, 1 when any
    stalled (Failed, TimedOut, TargetRejected) or is missing, 2 when the timeout came first."""
    args = ctx.args
    if not args.names:
        ctx.err.write("error: give MediaJob names\n")
        return 2
    if ctx.namespace is None:
        ctx.err.write("error: a MediaJob NAME needs one namespace: use -n, not -A\n")
        return 2
    progress = ctx.progress
    latest: dict[str, dict[str, Any]] = {}
    outcome: dict[str, str] = {}
    deadline = time.monotonic() + args.timeout
    while True:
        for name in args.names:
            if name in outcome:
                continue
            try:
                obj = latest[name] = await ctx.kube.get_mediajob(ctx.namespace, name)
            except NotFound:
                outcome[name] = "missing"
                ctx.err.write(f'error: mediajobs.media.phi.dev "{name}" not found\n')
                continue
            result = verdict(obj)
            if result is not None:
                outcome[name] = result
                reason = _stalled_reason(obj) if result == "stalled" else "Completed and Synced"
                mark = "✔" if result == "ready" else "✗"
                progress.write(f"{mark} {ctx.namespace}/{name}: {result} ({reason})\n")
        if len(outcome) == len(args.names) or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(args.interval, max(deadline - time.monotonic(), 0.0)))
    timed_out = [n for n in args.names if n not in outcome]
    for name in timed_out:
        progress.write(f"✗ {ctx.namespace}/{name}: still in progress after {args.timeout:g} s\n")
    if ctx.output in STRUCTURED:
        emit(as_list(latest[n] for n in args.names if n in latest), ctx.output or "json", ctx.out)
    if any(v != "ready" for v in outcome.values()):
        return 1
    return 2 if timed_out else 0


def _stalled_reason(obj: dict[str, Any]) -> str:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Stalled":
            return f"{c.get('reason')}: {str(c.get('message'))[:80]}"
    return "Stalled"


COMMANDS = {"stuck": cmd_stuck, "recheck": cmd_recheck, "stats": cmd_stats, "wait": cmd_wait}


def _kubectl_flags(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """kubectl's flags, accepted before and after the command (`kubectl mediajob -n x stuck`, or
    `... stuck -n x`); on the commands they default to "not given", so they never undo the top's."""
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("--kubeconfig", metavar="PATH", help="the kubeconfig file to use", **unset)
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context to use", **unset)
    parser.add_argument(
        "-n", "--namespace", metavar="NAMESPACE", help="the namespace (default: the context's)", **unset
    )
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="all namespaces", **unset)
    parser.add_argument("-o", "--output", choices=OUTPUTS, help="json, yaml or wide", **unset)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="kubectl mediajob", description=__doc__.splitlines()[0] if __doc__ else None
    )
    _kubectl_flags(root, top=True)
    common = argparse.ArgumentParser(add_help=False)
    _kubectl_flags(common, top=False)
    subs = root.add_subparsers(dest="command", required=True)
    p_stuck = subs.add_parser("stuck", parents=[common], help="processing jobs older than N minutes")
    p_stuck.add_argument("--older-than", type=float, default=60.0, metavar="MINUTES")
    p_recheck = subs.add_parser("recheck", parents=[common], help="check jobs now and wait until done")
    p_recheck.add_argument("names", nargs="*", metavar="NAME")
    p_recheck.add_argument("--all-stuck", action="store_true", help="every job that `stuck` lists")
    p_recheck.add_argument("--older-than", type=float, default=60.0, metavar="MINUTES")
    p_recheck.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    p_recheck.add_argument("--no-wait", action="store_true")
    subs.add_parser("stats", parents=[common], help="completions by source, webhook misses, latency")
    p_wait = subs.add_parser(
        "wait", parents=[common], help="until Completed and Synced (0), Stalled (1) or the timeout (2)"
    )
    p_wait.add_argument("names", nargs="*", metavar="NAME")
    p_wait.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS")
    p_wait.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS)
    return root


async def run(argv: Sequence[str], out: TextIO, err: TextIO) -> int:
    args = parser().parse_args(argv)
    login = KubeLogin(kubeconfig=args.kubeconfig, context=args.context, in_cluster_first=False)
    try:
        kube = KubeClient(login)  # an exec plugin may run here, as it would for kubectl
    except kopf.LoginError as exc:
        err.write(f"error: {exc}\n")
        return 1
    try:
        namespace = None if args.all_namespaces else (args.namespace or kube.default_namespace or "default")
        return await COMMANDS[args.command](Context(kube, namespace, args, out, err))
    except (KubeError, kopf.LoginError) as exc:
        err.write(f"error: {exc}\n")
        return 1
    finally:
        await kube.close()


def main() -> None:
    sys.exit(asyncio.run(run(sys.argv[1:], sys.stdout, sys.stderr)))


if __name__ == "__main__":
    main()

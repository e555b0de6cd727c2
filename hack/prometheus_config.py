"""Prometheus configuration from the shipped ServiceMonitor and PrometheusRule, for `make e2e`.

    python hack/prometheus_config.py config OUT_DIR [--for ALERT=DURATION ...]
    kubectl get endpointslices -l SELECTOR -o json | python hack/prometheus_config.py targets OUT_DIR
    python hack/prometheus_config.py selector   # the ServiceMonitor's matchLabels as a -l selector

The real Prometheus of `make e2e` has no Prometheus Operator to turn manifests/monitoring into its
configuration, so this does the operator's part for our two objects:
- Debian's prometheus is built without Kubernetes service discovery, so the ServiceMonitor becomes a
  `file_sd_configs` job, and `targets` writes that file from the EndpointSlices of the Services the
  monitor selects (`selector`), every address on the endpoint's port name, ready or not (as the
  `endpoints` role does); `job` is the Service's name, as the operator sets it. The e2e rewrites
  the file every second, standing in for the discovery's watch.
- The PrometheusRule's `spec.groups` become the rule file, unchanged except that `--for` shortens
  an alert's `for:` (MediaJobControllerDown waits 5 minutes; the e2e cannot).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
MONITORING = REPO / "manifests" / "monitoring"


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((MONITORING / name).read_text())
    return doc


def endpoint(monitor: dict[str, Any]) -> dict[str, Any]:
    (only,) = monitor["spec"]["endpoints"]  # the shipped monitor has one; more would need more jobs
    return dict(only)


def selector(monitor: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(monitor["spec"]["selector"]["matchLabels"].items()))


def scrape_config(monitor: dict[str, Any], namespace: str, out: Path, interval: str) -> dict[str, Any]:
    return {
        "job_name": f"serviceMonitor/{namespace}/{monitor['metadata']['name']}/0",
        "scrape_interval": interval,
        "scrape_timeout": "1s",
        "metrics_path": endpoint(monitor).get("path", "/metrics"),
        "file_sd_configs": [{"files": [str(out / "targets.json")], "refresh_interval": "1s"}],
    }


def targets(slices: dict[str, Any], port_name: str) -> list[dict[str, Any]]:
    """One target group per pod address, labelled as the operator's relabelling labels it."""
    groups = []
    for item in slices["items"]:
        service = item["metadata"]["labels"]["kubernetes.io/service-name"]
        ports = [p["port"] for p in item.get("ports") or [] if p.get("name") == port_name]
        for ep in item.get("endpoints") or []:
            pod = (ep.get("targetRef") or {}).get("name", "")
            for address in ep["addresses"]:
                groups += [
                    {
                        "targets": [f"{address}:{port}"],
                        "labels": {"job": service, "namespace": item["metadata"]["namespace"], "pod": pod},
                    }
                    for port in ports
                ]
    return sorted(groups, key=lambda g: str(g["targets"]))


def rule_groups(rule: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    groups = rule["spec"]["groups"]
    seen = set()
    for group in groups:
        for r in group["rules"]:
            if r.get("alert") in overrides:
                r["for"] = overrides[r["alert"]]
                seen.add(r["alert"])
    missing = set(overrides) - seen
    if missing:
        raise SystemExit(f"--for names alerts the PrometheusRule does not have: {sorted(missing)}")
    return {"groups": groups}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("what", choices=["config", "targets", "selector"])
    parser.add_argument("out", type=Path, nargs="?", default=Path("."))
    parser.add_argument("--namespace", default="mediajob-system")
    parser.add_argument("--interval", default="2s")
    parser.add_argument("--for", dest="overrides", action="append", default=[], metavar="ALERT=DURATION")
    args = parser.parse_args(argv)
    monitor = load("servicemonitor.yaml")
    if args.what == "selector":
        print(selector(monitor))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "targets":
        found = targets(json.load(sys.stdin), endpoint(monitor)["port"])
        partial = args.out / "targets.json.new"  # renamed into place: Prometheus never reads half a file
        partial.write_text(json.dumps(found))
        partial.replace(args.out / "targets.json")
        return 0
    overrides = dict(item.split("=", 1) for item in args.overrides)
    (args.out / "rules.yml").write_text(yaml.safe_dump(rule_groups(load("prometheusrule.yaml"), overrides)))
    (args.out / "targets.json").write_text("[]")
    config = {
        "global": {"scrape_interval": args.interval, "evaluation_interval": args.interval},
        "rule_files": [str(args.out / "rules.yml")],
        "scrape_configs": [scrape_config(monitor, args.namespace, args.out, args.interval)],
    }
    (args.out / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

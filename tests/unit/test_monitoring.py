"""The dashboard and the alert rules use only metrics the controller exports, and every alert
fires (and stays silent) as its promtool unit tests say."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from controller.metrics import Metrics
from controller.model import utcnow

MONITORING = Path(__file__).parents[2] / "manifests" / "monitoring"


def exported() -> set[str]:
    metrics = Metrics()
    metrics.track_jobs(lambda: [], utcnow)
    metrics.track_queue(lambda: 0)
    metrics.completions.labels(via="spaces")
    metrics.detection_latency.labels(via="spaces")
    text = metrics.render().decode()
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")} | {
        line.split("{")[0].split()[0] for line in text.splitlines() if line and not line.startswith("#")
    }


def used(text: str) -> set[str]:
    return set(re.findall(r"mediajob_[a-z_]+", text))


def test_dashboard_queries_use_exported_metrics() -> None:
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    missing = used(exprs) - exported()
    assert used(exprs)
    assert missing == set()
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("webhook", "latency", "stuck", "error"):
        assert topic in titles


def test_alert_rules_use_exported_metrics_and_cover_the_seed_alerts() -> None:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    rules = rule["spec"]["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {
        "MediaJobsStuck",
        "MediaJobPollingFailing",
        "MediaJobOutputNotFound",
        "MediaJobAirtableRateLimited",
    } <= names
    missing = used(" ".join(r["expr"] for r in rules)) - exported()
    assert missing == set()


OPERATIONS = Path(__file__).parents[2] / "docs" / "operations.md"
RUNBOOKS = "https://github.com/phi-dev/mediajob-controller/blob/main/docs/operations.md#"
JOB_GAUGES = {"mediajob_processing_jobs", "mediajob_writeback_backlog"}


def rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def github_anchors(markdown: str) -> set[str]:
    """The ids GitHub gives headings: lower case, punctuation dropped, spaces to hyphens."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in markdown.splitlines()
        if line.startswith("#")
    }


def series_names(metrics: Metrics) -> set[str]:
    return {
        line.split("{")[0].split()[0]
        for line in metrics.render().decode().splitlines()
        if line and not line.startswith("#")
    }


def test_every_alert_links_a_runbook_section_that_exists() -> None:
    anchors = github_anchors(OPERATIONS.read_text())
    for rule in rules():
        url = rule["annotations"].get("runbook_url", "")
        assert "runbook" not in rule["annotations"], rule["alert"]
        assert url.startswith(RUNBOOKS), rule["alert"]
        assert url.removeprefix(RUNBOOKS) in anchors, (rule["alert"], url)


def test_an_alert_fires_when_no_controller_exports_anything() -> None:
    follower = Metrics(leading=lambda: False)
    follower.track_jobs(lambda: [], utcnow)
    absent = [m for r in rules() for m in re.findall(r"absent\((mediajob_[a-z_]+)\)", r["expr"])]
    assert absent, "no absent() alert"
    # a follower exports it too: the alert means "no replica is up", not "no leader"
    assert set(absent) <= series_names(follower)


def test_a_follower_exports_no_job_gauges_and_the_leader_does() -> None:
    leading = False
    metrics = Metrics(leading=lambda: leading)
    metrics.track_jobs(lambda: [], utcnow)
    metrics.track_queue(lambda: 0)
    assert series_names(metrics) & JOB_GAUGES == set()
    assert "mediajob_leader" in series_names(metrics)
    leading = True
    assert series_names(metrics) >= JOB_GAUGES


def test_alerts_and_panels_sum_the_job_gauges_over_replicas() -> None:
    """With leader-only gauges, sum() over the targets is the count; max() would hide a doubled
    count from an older version during a rolling update, and a bare series shows per replica."""
    dashboard = json.loads((MONITORING / "dashboard.json").read_text())
    exprs = [(r["alert"], r["expr"]) for r in rules()]
    exprs += [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    checked = 0
    for where, expr in exprs:
        for gauge in JOB_GAUGES & used(expr):
            assert re.search(rf"sum(\s+by\s*\([^)]*\))?\s*\(\s*{gauge}\b", expr), (where, expr)
            checked += 1
    assert checked >= 4


def test_the_process_and_gc_collectors_are_registered() -> None:
    names = series_names(Metrics())
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert {"python_gc_collections_total", "python_info"} <= names


def test_quota_alert_uses_the_projection_and_has_a_runbook() -> None:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    [quota] = [
        r for r in rule["spec"]["groups"][0]["rules"] if r["alert"] == "MediaJobAirtableQuotaProjected"
    ]
    assert used(quota["expr"]) == {
        "mediajob_airtable_calls_projected_month",
        "mediajob_airtable_monthly_quota",
        "mediajob_airtable_quota_alert_share",
    }
    assert used(quota["expr"]) <= exported()
    assert quota["annotations"]["runbook_url"] == RUNBOOKS + "airtable-quota"


TESTS = Path(__file__).parents[1] / "monitoring" / "alerts.test.yaml"


def alert_names() -> set[str]:
    rules = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return {r["alert"] for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_promtool_test_that_fires_it_and_one_that_does_not() -> None:
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t["alert_rule_test"]]
    fired = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert alert_names() <= fired
    assert alert_names() <= silent


def test_promtool_checks_and_unit_tests_the_rules(tmp_path: Path) -> None:
    """Debian's `prometheus` package ships promtool (`make promtool`, and .ci/run, install it)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run `make promtool` (Debian's prometheus package)"
    rules = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules["spec"]))
    shutil.copy(TESTS, tmp_path / "alerts.test.yaml")
    check = subprocess.run(
        [promtool, "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in check.stdout
    test = subprocess.run(
        [promtool, "test", "rules", "alerts.test.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_build_info_and_queue_depth() -> None:
    metrics = Metrics()
    depth = [3]
    metrics.track_queue(lambda: depth[0])
    text = metrics.render().decode()
    assert 'mediajob_build_info{version="0.1.0"} 1.0' in text
    assert "mediajob_queue_depth 3.0" in text
    depth[0] = 0
    assert "mediajob_queue_depth 0.0" in metrics.render().decode()
    assert "mediajob_check_duration_seconds_bucket" in text

"""The dashboard and the alert rules only use metrics the controller exports."""

import json
import re
from pathlib import Path

import yaml

from controller.metrics import Metrics
from controller.model import utcnow

MONITORING = Path(__file__).parents[2] / "manifests" / "monitoring"


def exported() -> set[str]:
    metrics = Metrics()
    metrics.track_jobs(lambda: [], utcnow)
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
    assert quota["annotations"]["runbook_url"].startswith("docs/operations.md#")

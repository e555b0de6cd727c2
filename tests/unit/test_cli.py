import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from controller.cli import Row, as_list, emit, human, parser, stats, stats_document, stuck, verdict

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def row(
    name: str,
    phase: str = "Processing",
    age_min: float = 90,
    via: str | None = None,
    latency: float | None = None,
) -> Row:
    obj: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "media"},
        "spec": {
            "operation": "combine",
            "externalJobId": f"job-{name}",
            "submittedAt": (NOW - timedelta(minutes=age_min)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "status": {"phase": phase, "checks": 3},
    }
    if via:
        obj["status"].update(completedVia=via, completedAt="2026-11-29T11:00:00Z")
        if latency is not None:
            modified = datetime(2026, 11, 29, 11, 0, tzinfo=UTC) - timedelta(seconds=latency)
            obj["status"]["outputLastModified"] = modified.strftime("%Y-%m-%dT%H:%M:%SZ")
    return Row.of(obj)


def test_stuck_lists_only_old_processing_jobs_oldest_first() -> None:
    rows = [
        row("young", age_min=5),
        row("old", age_min=300),
        row("older", age_min=900),
        row("done", "Completed", 900, "spaces"),
    ]
    assert [r.name for r in stuck(rows, older_than=timedelta(minutes=60), now=NOW)] == ["older", "old"]
    assert [r.name for r in stuck(rows, older_than=timedelta(0), now=NOW)] == ["older", "old", "young"]


def test_stats() -> None:
    rows = [
        row("a", "Completed", via="webhook"),
        row("b", "Completed", via="spaces", latency=30),
        row("c", "Completed", via="spaces", latency=90),
        row("d", "Completed", via="nca-status"),
        row("e", "Failed"),
        row("f"),
    ]
    result = stats(rows)
    assert result.phases == {"Completed": 4, "Failed": 1, "Processing": 1}
    assert result.by_source == {"webhook": 1, "spaces": 2, "nca-status": 1}
    assert result.missed_by_webhook == 0.75
    assert result.latency == {"p50": 60.0, "p95": 90.0, "max": 90.0}


def test_stats_of_nothing() -> None:
    result = stats([])
    assert result.missed_by_webhook is None
    assert result.latency == {}


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (600, "10m"), (7500, "2h05m"), (200000, "2d")])
def test_human(seconds: int, text: str) -> None:
    assert human(timedelta(seconds=seconds)) == text


@pytest.mark.parametrize(
    "argv",
    [
        ["--kubeconfig", "k", "--context", "c", "-n", "ns", "-o", "json", "stuck"],
        ["stuck", "--kubeconfig", "k", "--context", "c", "-n", "ns", "-o", "json"],
        ["--kubeconfig", "k", "-n", "ns", "stuck", "--context", "c", "--output", "json"],
    ],
)
def test_kubectl_flags_before_or_after_the_command(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    assert (args.kubeconfig, args.context, args.namespace, args.output) == ("k", "c", "ns", "json")
    assert args.all_namespaces is False


def test_flags_given_only_before_the_command_are_not_reset_by_it() -> None:
    args = parser().parse_args(["-A", "-o", "wide", "recheck", "--all-stuck"])
    assert args.all_namespaces is True
    assert args.output == "wide"


def test_an_unknown_output_format_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["stats", "-o", "table"])
    assert "invalid choice: 'table'" in capsys.readouterr().err


def test_yaml_output_is_block_yaml_that_reads_back() -> None:
    data = as_list([{"metadata": {"name": "a", "labels": {"x": "yes"}}, "spec": {"n": 1, "on": True}}])
    out = io.StringIO()
    emit(data, "yaml", out)
    text = out.getvalue()
    assert text.startswith("apiVersion: v1\nkind: List\n")
    assert "{" not in text  # block style, not JSON in disguise
    assert yaml.safe_load(text) == data  # "yes" stays a string


def test_stats_document_is_plain_data() -> None:
    doc = stats_document(stats([row("a", "Completed", via="webhook"), row("b")]))
    assert doc == {
        "mediaJobs": 2,
        "phases": {"Completed": 1, "Processing": 1},
        "completionsBySource": {"webhook": 1},
        "webhookMissedShare": 0.0,
        "detectionLatencySeconds": {},
    }
    assert json.loads(json.dumps(doc)) == doc


def _obj(generation: int, *conds: tuple[str, str, int]) -> dict[str, object]:
    return {
        "metadata": {"generation": generation},
        "status": {"conditions": [{"type": t, "status": s, "observedGeneration": g} for t, s, g in conds]},
    }


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (_obj(1, ("Ready", "True", 1), ("Synced", "True", 1)), "ready"),
        (_obj(1, ("Ready", "False", 1), ("Synced", "False", 1), ("Reconciling", "True", 1)), None),
        (_obj(1, ("Ready", "True", 1), ("Synced", "False", 1)), None),  # Completed, Airtable not yet
        (_obj(1, ("Ready", "False", 1), ("Synced", "True", 1), ("Stalled", "True", 1)), "stalled"),
        (_obj(1, ("Ready", "False", 1), ("Synced", "False", 1), ("Stalled", "True", 1)), "stalled"),
        # written for an older generation (a re-submission the controller has not seen): in progress
        (_obj(2, ("Ready", "True", 1), ("Synced", "True", 1)), None),
        (_obj(2, ("Ready", "False", 1), ("Synced", "True", 1), ("Stalled", "True", 1)), None),
        ({"metadata": {"generation": 1}}, None),  # no status yet
        (
            {
                "metadata": {"generation": 1},
                "status": {"conditions": [{"type": "Ready", "status": "True"}, 7]},
            },
            None,
        ),
        # conditions written before observedGeneration existed count for the current generation
        (
            {
                "metadata": {"generation": 3},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}]
                },
            },
            "ready",
        ),
    ],
)
def test_wait_verdict_is_kstatus(obj: dict[str, object], expected: str | None) -> None:
    assert verdict(obj) == expected

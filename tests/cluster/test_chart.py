"""The Helm chart: lint-clean, and rendering the same objects as manifests/ (one source of truth).

helm is built from its Go module by hack/helm/build.sh (cached like the control plane); kubectl
kustomize renders manifests/. The chart's own objects are compared with kustomize's field by
field, less what only Helm adds (its labels, the config checksum) and the ConfigMap's hash suffix.
"""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mediajob-controller"
NS = "mediajob-system"
SECRETS = ["--set", "secrets.airtableApiKey=pat.x,secrets.ncaApiKey=nca-x,secrets.webhookToken=tok"]
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"}


@pytest.fixture(scope="session")
def helm() -> str:
    return subprocess.run(
        ["bash", str(REPO / "hack" / "helm" / "build.sh")], check=True, capture_output=True, text=True
    ).stdout.strip()


def run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120)


def template(helm: str, *args: str) -> list[dict[str, Any]]:
    result = run(helm, "template", "mediajob-controller", str(CHART), "-n", NS, *args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_key(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def without_helm(obj: dict[str, Any]) -> dict[str, Any]:
    """What both installs must agree on: the object less Helm's labels and the config checksum."""
    obj = yaml.safe_load(yaml.safe_dump(obj))
    meta = obj["metadata"]
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in HELM_LABELS}
    if obj["kind"] == "Deployment":
        pod = obj["spec"]["template"]
        pod["metadata"].pop("annotations", None)
        for source in pod["spec"]["containers"][0]["envFrom"]:
            if "configMapRef" in source:
                source["configMapRef"]["name"] = "mediajob-controller-config"
    if obj["kind"] == "ConfigMap":
        meta["name"] = "mediajob-controller-config"
    return obj


def test_the_shared_files_are_current() -> None:
    pairs = [(REPO / "crds" / "mediajobs.media.phi.dev.yaml", "mediajobs.media.phi.dev.yaml")]
    pairs += [
        (REPO / "manifests" / "rbac" / f"{name}.yaml", f"{name}.yaml")
        for name in (
            "service_account",
            "role",
            "role_binding",
            "mediajob_viewer_role",
            "mediajob_editor_role",
        )
    ]
    pairs.append((REPO / "manifests" / "monitoring" / "prometheusrule.yaml", "prometheusrule.yaml"))
    for source, copy in pairs:
        assert filecmp.cmp(source, CHART / "files" / copy, shallow=False), f"run `make chart` ({copy})"


def test_helm_lint_is_clean(helm: str) -> None:
    for values in (
        SECRETS,
        ["--set", "existingSecret=mine"],
        [*SECRETS, "--set", "networkPolicy.enabled=true"],
    ):
        result = run(helm, "lint", "--strict", str(CHART), *values)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


def test_the_chart_renders_what_the_manifests_do(helm: str, controlplane: ControlPlane) -> None:
    kustomized = [
        d
        for d in yaml.safe_load_all(
            controlplane.kubectl("kustomize", str(REPO / "manifests" / "default")).stdout
        )
        if d
    ]
    kustomized.append(yaml.safe_load((REPO / "crds" / "mediajobs.media.phi.dev.yaml").read_text()))
    charted = by_key(template(helm, *SECRETS))
    for obj in kustomized:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "ConfigMap":
            name = "mediajob-controller-config"
        assert (kind, name) in charted, f"the chart has no {kind} {name}"
        ours = without_helm(charted[(kind, name)])
        theirs = without_helm(obj)
        if kind == "ConfigMap":
            lease = {
                "LEASE_DURATION_SECONDS": "15",
                "LEASE_RENEW_DEADLINE_SECONDS": "10",
                "LEASE_RETRY_PERIOD_SECONDS": "2",
            }
            assert ours["data"] == {**theirs["data"], **lease}  # the chart also spells out the Lease timings
            continue
        assert ours == theirs, f"{kind} {name} differs between the chart and manifests/"
    only_helm = set(charted) - {(d["kind"], without_helm(d)["metadata"]["name"]) for d in kustomized}
    assert only_helm == {("Secret", "mediajob-controller-secrets")}  # the chart may create the Secret


def test_the_optional_objects_match_their_kustomize_twins(helm: str, controlplane: ControlPlane) -> None:
    charted = by_key(
        template(
            helm,
            *SECRETS,
            "--set",
            "serviceMonitor.enabled=true,prometheusRule.enabled=true,networkPolicy.enabled=true",
        )
    )
    monitor = yaml.safe_load((REPO / "manifests" / "monitoring" / "servicemonitor.yaml").read_text())
    rule = yaml.safe_load((REPO / "manifests" / "monitoring" / "prometheusrule.yaml").read_text())
    policy = yaml.safe_load(
        (REPO / "manifests" / "components" / "network-policy" / "networkpolicy.yaml").read_text()
    )
    assert without_helm(charted[("ServiceMonitor", "mediajob-controller")])["spec"] == monitor["spec"]
    assert charted[("PrometheusRule", "mediajob-controller")]["spec"] == rule["spec"]
    assert without_helm(charted[("NetworkPolicy", "mediajob-controller")]) == without_helm(policy)


def test_values_change_what_they_say(helm: str) -> None:
    base = by_key(template(helm, *SECRETS))
    deployment = base[("Deployment", "mediajob-controller")]
    assert (
        deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        == "ghcr.io/phi-dev/mediajob-controller:0.1.0"
    )
    crd = base[("CustomResourceDefinition", "mediajobs.media.phi.dev")]
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}

    digest = "sha256:" + "a" * 64
    changed = by_key(
        template(
            helm,
            *SECRETS,
            "--set",
            f"image.digest={digest},replicaCount=3,config.POLLING_INTERVAL_MINUTES=3,crds.keep=false",
            "--set",
            "leaderElection.leaseDurationSeconds=30,podDisruptionBudget.minAvailable=2",
        )
    )
    new = changed[("Deployment", "mediajob-controller")]
    assert (
        new["spec"]["template"]["spec"]["containers"][0]["image"]
        == f"ghcr.io/phi-dev/mediajob-controller@{digest}"
    )
    assert new["spec"]["replicas"] == 3
    checksum = "checksum/config"
    assert (
        new["spec"]["template"]["metadata"]["annotations"][checksum]
        != deployment["spec"]["template"]["metadata"]["annotations"][checksum]
    )  # a changed value rolls the pods
    data = changed[("ConfigMap", "mediajob-controller-config")]["data"]
    assert (data["POLLING_INTERVAL_MINUTES"], data["LEASE_DURATION_SECONDS"]) == ("3", "30")
    assert changed[("PodDisruptionBudget", "mediajob-controller")]["spec"]["minAvailable"] == 2
    assert "annotations" not in changed[("CustomResourceDefinition", "mediajobs.media.phi.dev")]["metadata"]

    mine = by_key(template(helm, "--set", "existingSecret=from-vault,crds.enabled=false"))
    assert ("Secret", "mediajob-controller-secrets") not in mine
    assert ("CustomResourceDefinition", "mediajobs.media.phi.dev") not in mine
    env_from = mine[("Deployment", "mediajob-controller")]["spec"]["template"]["spec"]["containers"][0][
        "envFrom"
    ]
    assert {"secretRef": {"name": "from-vault"}} in env_from

    missing = run(helm, "template", "x", str(CHART))
    assert missing.returncode != 0
    assert "secrets.airtableApiKey (or existingSecret) is required" in missing.stderr


def test_the_rendered_chart_applies_on_the_api_server(
    helm: str, controlplane: ControlPlane, tmp_path: Path
) -> None:
    rendered = run(
        helm,
        "template",
        "mediajob-controller",
        str(CHART),
        "-n",
        NS,
        *SECRETS,
        "--set",
        "networkPolicy.enabled=true",
    )
    assert rendered.returncode == 0, rendered.stderr
    (tmp_path / "chart.yaml").write_text(rendered.stdout)
    controlplane.kubectl("apply", "-f", str(REPO / "manifests" / "default" / "namespace.yaml"))
    result = controlplane.kubectl("apply", "--dry-run=server", "-f", str(tmp_path / "chart.yaml"))
    assert "deployment.apps/mediajob-controller" in result.stdout
    assert "Warning" not in result.stderr

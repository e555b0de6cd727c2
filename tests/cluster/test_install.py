"""README.md's install block, run as written against the real API server, twice.

There is no kubelet or controller-manager here, so the block's last line (`rollout status`) cannot
succeed: it is checked for its exact text and left out; the real-node e2e runs the whole block.
Everything before it runs verbatim under `bash -euo pipefail`, from a copy of the repository, so
the test can edit `config.env` as a user would.
"""

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
NS = "mediajob-system"
ROLLOUT = "kubectl -n mediajob-system rollout status deployment/mediajob-controller --timeout=180s"
SECRETS = {
    "AIRTABLE_API_KEY": "patINSTALLtest.0123",
    "NCA_API_KEY": "nca-install-key",
    "WEBHOOK_TOKEN": "t" * 48,
}


def install_block() -> str:
    readme = (REPO / "README.md").read_text()
    found = re.findall(r"<!-- install:begin -->\n```sh\n(.*?)```\n<!-- install:end -->", readme, re.S)
    assert len(found) == 1, "exactly one ```sh block between <!-- install:begin --> and <!-- install:end -->"
    return str(found[0])


def test_the_install_block_has_the_agreed_shape() -> None:
    block = install_block()
    assert block.rstrip().splitlines()[-1] == ROLLOUT
    assert "create secret generic mediajob-controller-secrets" in block
    for key in SECRETS:
        assert f'--from-literal={key}="${key}"' in block
    assert "kubectl apply -k manifests/default" in block
    assert "--dry-run=client -o yaml | kubectl apply" in block


def run_script(
    controlplane: ControlPlane, root: Path, script: str, secrets: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A documented block under `bash -euo pipefail`, in the user's copy, with kubectl on PATH."""
    env = {
        "PATH": f"{controlplane.bin_dir}:/usr/bin:/bin",
        "KUBECONFIG": str(controlplane.kubeconfig),
        "HOME": str(root),
        **(secrets or {}),
    }
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def run_block(controlplane: ControlPlane, root: Path, secrets: dict[str, str]) -> None:
    result = run_script(controlplane, root, install_block().replace(ROLLOUT + "\n", ""), secrets)
    assert "Warning" not in result.stderr, result.stderr


def user_copy(tmp_path: Path) -> tuple[Path, Path]:
    """The repository as a user has it, config.env's base id edited: (root, config.env)."""
    root = tmp_path / "repo"
    root.mkdir()
    for folder in ("manifests", "crds"):
        shutil.copytree(REPO / folder, root / folder)
    config = root / "manifests" / "default" / "config.env"
    config.write_text(config.read_text().replace("appREPLACEMEbase1", "appINSTALLbase001"))
    return root, config


def get(controlplane: ControlPlane, *what: str) -> Any:
    return json.loads(controlplane.kubectl("get", "-n", NS, *what, "-o", "json").stdout)


def config_in_use(controlplane: ControlPlane) -> tuple[str, dict[str, str]]:
    deployment = get(controlplane, "deployment", "mediajob-controller")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/phi-dev/mediajob-controller:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
    assert len(refs) == 1
    assert {e["secretRef"]["name"] for e in container["envFrom"] if "secretRef" in e} == {
        "mediajob-controller-secrets"
    }
    return refs[0], get(controlplane, "configmap", refs[0])["data"]


def secret_values(controlplane: ControlPlane) -> dict[str, str]:
    secret = get(controlplane, "secret", "mediajob-controller-secrets")
    annotations = secret["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations  # no second copy
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_the_install_block_runs_as_written_and_an_edit_rolls_the_pods(
    controlplane: ControlPlane, tmp_path: Path
) -> None:
    root, config = user_copy(tmp_path)

    # a Secret made by hand earlier (the old instructions): the block takes it over
    controlplane.kubectl("apply", "-f", str(REPO / "manifests" / "default" / "namespace.yaml"))
    controlplane.kubectl("delete", "secret", "mediajob-controller-secrets", "-n", NS, "--ignore-not-found")
    controlplane.kubectl(
        "create",
        "secret",
        "generic",
        "mediajob-controller-secrets",
        "-n",
        NS,
        "--from-literal=NCA_API_KEY=old",
    )

    run_block(controlplane, root, SECRETS)
    first, data = config_in_use(controlplane)
    assert re.fullmatch(r"mediajob-controller-config-[a-z0-9]{10}", first)
    assert data["AIRTABLE_BASE_ID"] == "appINSTALLbase001"
    assert secret_values(controlplane) == SECRETS
    labels = get(controlplane, "namespace", NS)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"

    # an edit of config.env and a new token, then the same block again
    config.write_text(config.read_text().replace("POLLING_INTERVAL_MINUTES=2", "POLLING_INTERVAL_MINUTES=3"))
    rotated = {**SECRETS, "WEBHOOK_TOKEN": "u" * 48}
    run_block(controlplane, root, rotated)
    second, data = config_in_use(controlplane)
    assert second != first  # a new pod template: the Deployment rolls its pods
    assert data["POLLING_INTERVAL_MINUTES"] == "3"
    assert data["AIRTABLE_BASE_ID"] == "appINSTALLbase001"
    assert secret_values(controlplane) == rotated


def test_the_generated_config_has_a_hash_and_the_deployment_refers_to_it(controlplane: ControlPlane) -> None:
    docs = [
        d
        for d in yaml.safe_load_all(
            controlplane.kubectl("kustomize", str(REPO / "manifests" / "default")).stdout
        )
        if d
    ]
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    assert config["metadata"]["name"].startswith("mediajob-controller-config-")
    env_from = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert {"configMapRef": {"name": config["metadata"]["name"]}} in env_from


@pytest.mark.parametrize(
    ("role", "aggregate_to", "verb", "resource", "allowed"),
    [
        ("mediajob-viewer", "view", "list", "mediajobs.media.phi.dev", "yes"),
        ("mediajob-viewer", "view", "get", "mediajobs.media.phi.dev --subresource=status", "yes"),
        ("mediajob-viewer", "view", "patch", "mediajobs.media.phi.dev", "no"),
        ("mediajob-viewer", "view", "delete", "mediajobs.media.phi.dev", "no"),
        ("mediajob-editor", "edit", "patch", "mediajobs.media.phi.dev", "yes"),  # the recheck annotation
        ("mediajob-editor", "edit", "create", "mediajobs.media.phi.dev", "yes"),
        ("mediajob-editor", "edit", "delete", "mediajobs.media.phi.dev", "yes"),
        ("mediajob-editor", "edit", "patch", "mediajobs.media.phi.dev --subresource=status", "no"),
        ("mediajob-editor", "edit", "get", "secrets", "no"),
    ],
)
def test_aggregated_roles_for_people(
    controlplane: ControlPlane, role: str, aggregate_to: str, verb: str, resource: str, allowed: str
) -> None:
    """The aggregation itself needs kube-controller-manager (absent here): the label is checked, and
    the role's rules are proven by binding it directly."""
    controlplane.kubectl("apply", "-f", str(REPO / "manifests" / "install.yaml"))
    cluster_role = json.loads(controlplane.kubectl("get", "clusterrole", role, "-o", "json").stdout)
    assert (
        cluster_role["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{aggregate_to}"] == "true"
    )
    user = f"{role}-user"
    binding = controlplane.kubectl(
        "create",
        "rolebinding",
        user,
        "-n",
        NS,
        f"--clusterrole={role}",
        f"--user={user}",
        "--dry-run=client",
        "-o",
        "yaml",
    ).stdout
    controlplane.kubectl("apply", "-f", "-", input=binding)
    result = controlplane.kubectl(
        "auth", "can-i", verb, *resource.split(), "-n", NS, f"--as={user}", check=False
    )
    assert result.stdout.strip() == allowed


def test_the_monitoring_overlay_adds_the_release_label(controlplane: ControlPlane) -> None:
    plain = [
        d
        for d in yaml.safe_load_all(
            controlplane.kubectl("kustomize", str(REPO / "manifests" / "monitoring")).stdout
        )
        if d
    ]
    stack = [
        d
        for d in yaml.safe_load_all(
            controlplane.kubectl(
                "kustomize", str(REPO / "manifests" / "monitoring-kube-prometheus-stack")
            ).stdout
        )
        if d
    ]
    for doc in plain:
        assert doc["metadata"]["namespace"] == NS
        assert "release" not in doc["metadata"].get("labels", {})
    selected = {d["kind"]: d["metadata"]["labels"].get("release") for d in stack if d["kind"] != "ConfigMap"}
    assert selected == {"PrometheusRule": "kube-prometheus-stack", "ServiceMonitor": "kube-prometheus-stack"}


def uninstall_block() -> str:
    operations = (REPO / "docs" / "operations.md").read_text()
    found = re.findall(r"<!-- uninstall:begin -->\n```sh\n(.*?)```\n<!-- uninstall:end -->", operations, re.S)
    assert len(found) == 1, "exactly one ```sh block between the uninstall markers in docs/operations.md"
    return str(found[0])


def test_the_documented_uninstall_keeps_every_mediajob(controlplane: ControlPlane, tmp_path: Path) -> None:
    root, _ = user_copy(tmp_path)
    run_block(controlplane, root, SECRETS)
    controlplane.kubectl("apply", "-n", NS, "-f", str(REPO / "manifests" / "samples" / "mediajob.yaml"))
    sample = get(controlplane, "mediajob", "recabcdefghijklmn-1555")
    result = run_script(controlplane, root, uninstall_block())
    assert "deployment.apps/mediajob-controller scaled" in result.stdout
    assert 'deployment.apps "mediajob-controller" deleted' in result.stdout
    assert get(controlplane, "deployments")["items"] == []
    # the CRD, the namespace and the MediaJob are all still there
    kept = get(controlplane, "mediajob", "recabcdefghijklmn-1555")
    assert kept["metadata"]["uid"] == sample["metadata"]["uid"]
    controlplane.kubectl("get", "crd", "mediajobs.media.phi.dev")
    controlplane.kubectl("get", "namespace", NS)
    controlplane.kubectl("delete", "-n", NS, "-f", str(REPO / "manifests" / "samples" / "mediajob.yaml"))

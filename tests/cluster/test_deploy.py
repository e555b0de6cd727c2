"""The shipped manifests on the real API server, and the controller running as its ServiceAccount.

There is no kubelet here, so the Deployment's pods never start; instead the controller runs as
local processes with a token of the shipped ServiceAccount, bound by exactly the shipped Role.
"""

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.clients.kube import KubeClient, NotFound
from controller.naming import resource_name
from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.harness import FAST, WEBHOOK_TOKEN, until
from tests.processes import ControllerProcess, controllers

REPO = Path(__file__).resolve().parents[2]
NS = "mediajob-system"
SA = "mediajob-controller"


def test_install_yaml_is_current(controlplane: ControlPlane) -> None:
    rendered = controlplane.kubectl("kustomize", str(REPO / "manifests" / "default")).stdout
    namespace = (REPO / "manifests" / "default" / "namespace.yaml").read_text()
    shipped = (REPO / "manifests" / "install.yaml").read_text()
    assert shipped.split("\n", 1)[1] == f"{namespace}---\n{rendered}", "run `make manifests`"


def test_the_crd_is_applied_on_its_own_and_kept(controlplane: ControlPlane) -> None:
    """Deleting the controller's manifests never deletes the CRD (and with it every MediaJob)."""
    docs = list(yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()))
    assert not [d for d in docs if d and d["kind"] in ("CustomResourceDefinition", "MediaJob")]
    crd = yaml.safe_load(controlplane.kubectl("kustomize", str(REPO / "manifests" / "crd")).stdout)
    source = yaml.safe_load((REPO / "crds" / "mediajobs.media.phi.dev.yaml").read_text())
    assert crd == source
    assert source["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    default = controlplane.kubectl("kustomize", str(REPO / "manifests" / "default")).stdout
    assert {d["kind"] for d in yaml.safe_load_all(default) if d} & {
        "CustomResourceDefinition",
        "Namespace",
    } == set()


@pytest.mark.parametrize(
    "how", [["-k", "manifests/default"], ["-f", "manifests/install.yaml"], ["-f", "manifests/samples"]]
)
def test_manifests_apply_cleanly_with_server_side_dry_run(controlplane: ControlPlane, how: list[str]) -> None:
    # a server-side dry run cannot create the namespace the other objects go into
    controlplane.kubectl("apply", "-f", str(REPO / "manifests" / "default" / "namespace.yaml"))
    result = controlplane.kubectl("apply", "--dry-run=server", how[0], str(REPO / how[1]))
    assert "(server dry run)" in result.stdout
    assert "Warning" not in result.stderr


def test_the_deployment_is_hardened() -> None:
    docs = list(yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert spec["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    config = next(d for d in docs if d and d["kind"] == "ConfigMap")
    assert config["data"]["LEADER_ELECTION_ENABLED"] == "true"
    assert not any(d and d["kind"] == "Secret" for d in docs)  # never a real value in the manifests
    assert {d["kind"] for d in docs if d} >= {
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }


@pytest.fixture(scope="module")
def installed(controlplane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped manifests applied for real, and a kubeconfig with the ServiceAccount's token."""
    controlplane.kubectl("apply", "-f", str(REPO / "manifests" / "install.yaml"))
    token = controlplane.kubectl("create", "token", SA, "-n", NS, "--duration=2h").stdout.strip()
    return controlplane.kubeconfig_for_token(
        token, tmp_path_factory.mktemp("sa") / "kubeconfig", namespace=NS
    )


@pytest.mark.parametrize(
    ("verb", "resource", "namespace", "allowed"),
    [
        ("watch", "mediajobs.media.phi.dev", NS, "yes"),
        ("create", "mediajobs.media.phi.dev", NS, "yes"),
        ("patch", "mediajobs.media.phi.dev --subresource=status", NS, "yes"),
        ("update", "leases.coordination.k8s.io", NS, "yes"),
        ("create", "events", NS, "yes"),
        ("get", "secrets", NS, "no"),
        ("list", "secrets", NS, "no"),
        ("get", "secrets/mediajob-controller-airtable-webhook", NS, "yes"),
        ("patch", "secrets/mediajob-controller-airtable-webhook", NS, "yes"),
        ("get", "secrets/another-secret", NS, "no"),
        ("list", "pods", NS, "no"),
        ("delete", "mediajobs.media.phi.dev", NS, "yes"),  # clean-up after the TTL
        ("patch", "mediajobs.media.phi.dev", NS, "yes"),  # the mirror's re-submission patch
        ("update", "mediajobs.media.phi.dev", NS, "no"),
        ("delete", "mediajobs.media.phi.dev", "default", "no"),
        ("list", "mediajobs.media.phi.dev", "default", "no"),
        ("update", "leases.coordination.k8s.io", "kube-system", "no"),
        ("list", "mediajobs.media.phi.dev", "--all-namespaces", "no"),
    ],
)
def test_what_the_service_account_may_do(
    controlplane: ControlPlane, installed: Path, verb: str, resource: str, namespace: str, allowed: str
) -> None:
    where = ["--all-namespaces"] if namespace == "--all-namespaces" else ["-n", namespace]
    result = controlplane.kubectl(
        "auth", "can-i", verb, *resource.split(), *where, kubeconfig=installed, check=False
    )
    assert result.stdout.strip() == allowed


@pytest.mark.parametrize(
    "args",
    [["get", "secrets", "-n", NS], ["get", "pods", "-n", NS], ["get", "mediajobs", "-n", "default"]],
)
def test_the_service_account_is_denied_for_real(
    controlplane: ControlPlane, installed: Path, args: list[str]
) -> None:
    result = controlplane.kubectl(*args, kubeconfig=installed, check=False)
    assert result.returncode != 0
    assert "Forbidden" in result.stderr


async def test_full_lifecycle_and_failover_with_only_the_shipped_role(
    world: World, controlplane: ControlPlane, installed: Path, kube: KubeClient, tmp_path: Path
) -> None:
    jobs = [
        world.add_job(op, queued_s=i * 0.7, running_s=1, drop_webhook=True)
        for i, op in enumerate(["combine", "concatenate", "add_music"] * 4)
    ]
    failed = world.add_job("combine", fail_message="bad input", drop_webhook=True)
    hooked = world.add_job("concatenate", queued_s=6, drop_webhook=False)
    env = world.env(
        **{
            **FAST,
            "KUBECONFIG": str(installed),
            "WATCH_NAMESPACE": NS,
            "LEASE_NAMESPACE": NS,
            "LEADER_ELECTION_ENABLED": "true",
            "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "LOG_FORMAT": "json",
        }
    )
    a, b = ControllerProcess("sa-a", env, tmp_path), ControllerProcess("sa-b", env, tmp_path)
    world.nca_sim.jobs[
        hooked.job_id
    ].webhook_url = f"http://127.0.0.1:{a.port}/webhooks/nca?token={WEBHOOK_TOKEN}"

    async def synced_count() -> int:
        items = await kube.list_mediajobs(NS)
        mine = {resource_name(j.record_id) for j in [*jobs, failed, hooked]}
        return sum(
            1
            for i in items
            if i["metadata"]["name"] in mine and (i.get("status") or {}).get("airtableSynced")
        )

    with controllers(a, b):
        first = await until(lambda: _holder(kube), timeout=30)
        leader, follower = (a, b) if first == "sa-a" else (b, a)
        await until(lambda: _at_least(synced_count, 4), timeout=60, every=0.3)
        leader.signal(signal.SIGTERM)
        assert await leader.wait() == 0
        await until(lambda: follower.metric("mediajob_leader"), timeout=10)
        await until(lambda: _at_least(synced_count, len(jobs) + 2), timeout=90, every=0.3)
        for proc in (a, b):
            log = proc.log()
            assert "forbidden" not in log.lower(), log[-3000:]  # no request was refused by RBAC
    for job in jobs:
        assert world.jobs_row(job)["Status"] == "completed"
        assert world.writes(job) == 2
    assert world.jobs_row(failed)["Status"] == "failed"
    obj = await kube.get_mediajob(NS, resource_name(hooked.record_id))
    assert obj["status"]["phase"] == "Completed"
    events = json.loads(controlplane.kubectl("get", "events", "-n", NS, "-o", "json").stdout)["items"]
    assert any(
        e["reason"] == "Completed" and e["source"]["component"] == "mediajob-controller" for e in events
    )


async def _holder(kube: KubeClient) -> Any:
    try:
        lease = await kube.get_lease(NS, "mediajob-controller")
    except NotFound:
        return None
    return (lease.get("spec") or {}).get("holderIdentity")


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def test_the_entrypoint_starts_with_the_manifests_env(
    controlplane: ControlPlane, installed: Path, tmp_path: Path
) -> None:
    """The console script the image runs, with the ConfigMap, the example Secret and the downward API."""
    docs = list(yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()))
    config = next(d for d in docs if d and d["kind"] == "ConfigMap")["data"]
    # edited as the README asks: the shipped placeholders are refused (tests/unit/test_settings.py)
    config = {**config, "AIRTABLE_BASE_ID": "appEDITEDbase0001", "NCA_API_URL": "http://127.0.0.1:9"}
    secret = yaml.safe_load((REPO / "manifests" / "manager" / "secret.example.yaml").read_text())[
        "stringData"
    ]
    env = {
        **config,
        **secret,
        "POD_NAME": "mediajob-controller-abc12",
        "WATCH_NAMESPACE": NS,
        "LEASE_NAMESPACE": NS,
        "KUBECONFIG": str(installed),
        "LEADER_ELECTION_ENABLED": "false",
    }
    proc = ControllerProcess(
        "entrypoint", env, tmp_path, argv=[str(REPO / ".venv" / "bin" / "mediajob-controller")]
    )
    with controllers(proc):
        ready = await until(lambda: proc.get("/readyz"), timeout=30)
        assert ready.status_code == 200
        assert proc.returncode is None
    assert "configuration error" not in proc.log()


async def test_the_sandbox_service_for_kind_starts_and_stops(tmp_path: Path) -> None:
    """What `make e2e` deploys next to the controller: the simulators as one service."""
    import signal as signals
    import subprocess
    import sys

    import httpx

    from sandbox.controlplane import free_port
    from sandbox.world import AIRTABLE_KEY, BASE_ID

    ports = [free_port() for _ in range(4)]
    proc = subprocess.Popen(  # noqa: ASYNC220
        [
            sys.executable,
            "-m",
            "sandbox.serve",
            "--host",
            "127.0.0.1",
            "--jobs",
            "6",
            f"--airtable-port={ports[0]}",
            f"--nca-port={ports[1]}",
            f"--spaces-port={ports[2]}",
            f"--report-port={ports[3]}",
        ],
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:

        async def rows() -> list[dict[str, object]] | None:
            try:
                async with httpx.AsyncClient(timeout=2) as client:
                    answer = await client.get(
                        f"http://127.0.0.1:{ports[0]}/v0/{BASE_ID}/Jobs",
                        params={"filterByFormula": "{Status}='processing'"},
                        headers={"Authorization": f"Bearer {AIRTABLE_KEY}"},
                    )
            except httpx.HTTPError:
                return None
            return answer.json()["records"] if answer.status_code == 200 else None

        records = await until(rows, timeout=20)
        assert len(records) == 6
        # the e2e's report: each job with the Airtable writes on its rows; more jobs on demand
        async with httpx.AsyncClient(timeout=2, base_url=f"http://127.0.0.1:{ports[3]}") as client:
            report = (await client.get("/report")).json()
            assert [job["writes"] for job in report["jobs"]] == [0] * 6
            assert {job["record_id"] for job in report["jobs"]} == {r["id"] for r in records}
            assert (await client.post("/jobs", params={"count": "2"})).json() == {"jobs": 8}
            assert len((await client.get("/report")).json()["jobs"]) == 8
    finally:
        proc.send_signal(signals.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_metrics_and_probes_are_off_the_webhook_service() -> None:
    """An Ingress in front of the webhook Service exposes the webhooks, never /metrics."""
    docs = [d for d in yaml.safe_load_all((REPO / "manifests" / "install.yaml").read_text()) if d]
    container = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "metrics": 8081}
    assert container["livenessProbe"]["httpGet"]["port"] == "metrics"
    assert container["readinessProbe"]["httpGet"]["port"] == "metrics"
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    assert [p["name"] for p in services["mediajob-controller"]["spec"]["ports"]] == ["http"]
    assert [p["name"] for p in services["mediajob-controller-metrics"]["spec"]["ports"]] == ["metrics"]
    monitor = yaml.safe_load((REPO / "manifests" / "monitoring" / "servicemonitor.yaml").read_text())
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert (
        monitor["spec"]["selector"]["matchLabels"]
        == services["mediajob-controller-metrics"]["metadata"]["labels"]
    )


def test_the_network_policy_component_applies(controlplane: ControlPlane, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(REPO / "manifests" / "default", overlay)],
                "components": [
                    os.path.relpath(REPO / "manifests" / "components" / "network-policy", overlay)
                ],
            }
        )
    )
    rendered = controlplane.kubectl(
        "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    [policy] = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policy["metadata"]["namespace"] == NS
    ingress = policy["spec"]["ingress"]
    assert ingress[0] == {"ports": [{"port": "http", "protocol": "TCP"}]}  # webhooks from anywhere
    assert ingress[1]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]} == {53, 443, 6443}
    controlplane.kubectl("apply", "-f", str(REPO / "manifests" / "default" / "namespace.yaml"))
    (tmp_path / "all.yaml").write_text(rendered)
    result = controlplane.kubectl("apply", "--dry-run=server", "-f", str(tmp_path / "all.yaml"))
    assert "networkpolicy.networking.k8s.io/mediajob-controller created (server dry run)" in result.stdout

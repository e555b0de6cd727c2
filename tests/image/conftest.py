"""The image tier: the built image, run the way the Deployment runs it, against the real API server.

Each container runs as UID 65532 with no passwd entry, a read-only root, no capabilities, a tmpfs
/tmp and a ServiceAccount token of the shipped Role mounted where the kubelet puts it. It reaches
the API server through KUBERNETES_SERVICE_HOST/PORT, as in a pod, and the simulators on loopback
(host network).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sandbox.controlplane import ControlPlane
from tests.cluster.conftest import kube, world  # noqa: F401 - the same World and client as the cluster tier
from tests.processes import ControllerProcess

REPO = Path(__file__).resolve().parents[2]
IMAGE = "mediajob-controller:dev"
SA = "mediajob-controller"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/image/" in str(item.path):
            item.add_marker(pytest.mark.image)
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def image() -> str:
    """`make image`, as a new machine runs it: the engine, the (offline) base and the build."""
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "image.sh")], capture_output=True, text=True, timeout=1200, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return IMAGE


@pytest.fixture
def service_account(controlplane: ControlPlane, namespace: str) -> Iterator[Path]:
    """The shipped ServiceAccount, Role and RoleBinding in the test's namespace, and a projected-token
    folder like the kubelet's: token, ca.crt and namespace, readable by any UID."""
    docs = yaml.safe_load_all(controlplane.kubectl("kustomize", str(REPO / "manifests" / "rbac")).stdout)
    for doc in docs:
        if not doc or doc.get("kind") not in ("ServiceAccount", "Role", "RoleBinding"):
            continue
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
        controlplane.kubectl("apply", "-f", "-", input=json.dumps(doc))
    token = controlplane.kubectl("create", "token", SA, "-n", namespace, "--duration=2h").stdout.strip()
    folder = Path(tempfile.mkdtemp(prefix="mediajob-sa-"))
    (folder / "token").write_text(token)
    (folder / "ca.crt").write_bytes(controlplane.ca_path.read_bytes())
    (folder / "namespace").write_text(namespace)
    folder.chmod(0o755)
    for item in folder.iterdir():
        item.chmod(0o644)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


class ContainerProcess(ControllerProcess):
    """A controller in the image, hardened like the Deployment's pod; signals go to the container."""

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, *, image: str, sa_dir: Path, api_url: str
    ):
        super().__init__(name, {}, log_dir)
        self.container = f"mj-{name}-{uuid.uuid4().hex[:6]}"
        host, port = api_url.removeprefix("https://").rsplit(":", 1)
        settings = {
            **env,
            "POD_NAME": name,
            "HTTP_PORT": str(self.port),
            "METRICS_PORT": str(self.metrics_port),
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
        }
        self.argv = [
            "docker", "run", "--rm", "--name", self.container, "--network", "host",
            "--user", "65532:65532", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges",
            "-v", f"{sa_dir}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            *[arg for key, value in settings.items() for arg in ("-e", f"{key}={value}")],
            image,
        ]  # fmt: skip
        self.env = {k: v for k, v in self.env.items() if k in ("PATH", "HOME")}

    def signal(self, sig: int) -> None:
        subprocess.run(
            ["docker", "kill", "-s", str(int(sig)), self.container], capture_output=True, check=False
        )

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", "15", self.container], capture_output=True, check=False)
        super().stop()

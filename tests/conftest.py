"""Session fixtures: the real local control plane, started once per test run."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver on loopback with the project's CRD applied; stopped at the end."""
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    plane.start()
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = str(plane.kubeconfig)
    try:
        plane.kubectl("apply", "-f", str(REPO / "crds"))
        plane.kubectl("wait", "--for=condition=Established", "crd/mediajobs.media.phi.dev", "--timeout=60s")
        yield plane
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        plane.stop()


@pytest.fixture
def namespace(controlplane: ControlPlane) -> str:
    """A fresh namespace per test (never deleted: without a controller-manager it would hang Terminating)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    controlplane.kubectl("create", "namespace", name)
    return name

"""Everything under tests/cluster needs the real control plane: mark it so."""

from collections.abc import AsyncIterator

import pytest

from controller.clients.kube import KubeClient
from sandbox.controlplane import ControlPlane
from sandbox.world import World


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/cluster/" in str(item.path):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with World(airtable_penalty_s=1.0) as w:
        yield w


@pytest.fixture
async def kube(controlplane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = KubeClient()
    yield client
    await client.close()

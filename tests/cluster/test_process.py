"""The controller process itself: start-up failures that retrying cannot fix end it clearly."""

import socket
from pathlib import Path

import pytest

from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.harness import FAST, WEBHOOK_TOKEN
from tests.processes import ControllerProcess, controllers


@pytest.mark.parametrize("variable", ["HTTP_PORT", "METRICS_PORT"])
async def test_a_taken_port_stops_the_controller_with_a_clear_error(
    world: World, namespace: str, controlplane: ControlPlane, tmp_path: Path, variable: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))  # noqa: S104 - the controller binds all interfaces too
        taken.listen()
        port = taken.getsockname()[1]
        env = world.env(
            **{
                **FAST,
                "WATCH_NAMESPACE": namespace,
                "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
                "KUBECONFIG": str(controlplane.kubeconfig),
                "LOG_FORMAT": "json",
            }
        )
        proc = ControllerProcess("port-clash", env, tmp_path)
        proc.env[variable] = str(port)
        with controllers(proc):
            code = await proc.wait(timeout=60)
    assert code == 4
    last = proc.log().strip().splitlines()[-1]
    assert "start-up failed" in last
    assert f"cannot serve HTTP on port {port}:" in last  # the port that failed, whichever it is

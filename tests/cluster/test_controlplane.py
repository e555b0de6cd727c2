"""The local control plane itself: it starts, serves, and never outlives the process that started it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbox.controlplane import ControlPlane

SCRIPT = """
import sys
from pathlib import Path
from sandbox.controlplane import ControlPlane
plane = ControlPlane(Path(sys.argv[1]))
plane.start()
print(" ".join(str(p.pid) for p in plane._procs), flush=True)
sys.stdin.read()
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_children_die_with_a_killed_parent(controlplane: ControlPlane, tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pids = [int(p) for p in parent.stdout.readline().split()]
    assert len(pids) == 2
    assert all(alive(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(p) for p in pids)


def test_version_is_stamped(controlplane: ControlPlane) -> None:
    out = controlplane.kubectl("version").stdout
    assert "Server Version: v1." in out
    assert "v0.0.0" not in out


def test_restart_apiserver_keeps_the_port_and_the_objects(controlplane: ControlPlane) -> None:
    name = f"restart-{os.getpid()}"
    controlplane.kubectl("create", "configmap", name, "-n", "default", "--from-literal=k=v")
    url, pid = controlplane.url, controlplane._procs[-1].pid
    took = controlplane.restart_apiserver()
    assert controlplane._procs[-1].pid != pid
    assert not alive(pid)
    assert controlplane.url == url
    out = controlplane.kubectl("get", "configmap", name, "-n", "default", "-o", "jsonpath={.data.k}").stdout
    assert out == "v"
    assert took < 60

"""hack/kind/runc_bounded.py: what it keeps of a privileged container's capabilities, and the
runc calls it touches."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "hack" / "kind" / "runc_bounded.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("runc_bounded", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rb = load()
THIS_HOST = "CapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n"


@pytest.mark.parametrize(
    ("status", "has", "lacks"),
    [
        (THIS_HOST, {"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_CHECKPOINT_RESTORE"}, {"CAP_SYS_RESOURCE"}),
        ("CapBnd:\t000001ffffffffff\n", {"CAP_SYS_RESOURCE", "CAP_CHOWN"}, set()),
        ("CapBnd:\t0000000000000001\n", {"CAP_CHOWN"}, {"CAP_DAC_OVERRIDE", "CAP_SYS_ADMIN"}),
    ],
)
def test_the_bounding_set_is_read_from_capbnd(status: str, has: set[str], lacks: set[str]) -> None:
    caps = rb.bounding_set(status)
    assert has <= caps
    assert not lacks & caps


def test_a_status_without_capbnd_is_an_error() -> None:
    with pytest.raises(ValueError, match="CapBnd"):
        rb.bounding_set("Name:\tx\n")


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        (["--root", "/r", "--log", "/l", "create", "--bundle", "/b", "--pid-file", "/p", "id"], ("/b", True)),
        (["create", "-b", "/b2", "id"], ("/b2", True)),
        (["run", "--bundle=/b3", "id"], ("/b3", True)),
        (["--root", "/r", "exec", "--process", "/tmp/p.json", "--detach", "id"], ("/tmp/p.json", False)),
        (["exec", "-p", "/tmp/q.json", "id"], ("/tmp/q.json", False)),
        (["exec", "id", "sh"], None),  # its process on the command line: no capabilities asked for
        (["--root", "/r", "start", "id"], None),
        (["--root", "/r", "kill", "id", "9"], None),
        (["--root", "/r", "delete", "--force", "id"], None),
    ],
)
def test_create_run_and_exec_name_the_process_to_bound(
    args: list[str], spec: tuple[str, bool] | None
) -> None:
    found = rb.spec_of(args)
    if spec is None:
        assert found is None
        return
    path, whole = spec
    assert found == ((Path(path) / "config.json", True) if whole else (Path(path), False))


def test_a_create_without_bundle_means_the_working_directory() -> None:
    assert rb.spec_of(["create", "id"]) == (Path.cwd() / "config.json", True)


def test_capabilities_outside_the_set_are_dropped_from_every_kind() -> None:
    every = ["CAP_CHOWN", "CAP_SYS_RESOURCE", "CAP_SYS_ADMIN"]
    process = {"capabilities": {k: list(every) for k in ("bounding", "effective", "permitted")}}
    assert rb.bounded(process, {"CAP_CHOWN", "CAP_SYS_ADMIN"})
    assert process["capabilities"] == {
        k: ["CAP_CHOWN", "CAP_SYS_ADMIN"] for k in ("bounding", "effective", "permitted")
    }
    assert not rb.bounded(process, {"CAP_CHOWN", "CAP_SYS_ADMIN"})  # nothing more to drop


@pytest.mark.parametrize("process", [None, {}, {"capabilities": None}, {"capabilities": {"bounding": None}}])
def test_a_process_without_capabilities_is_left_alone(process: object) -> None:
    before = json.dumps(process)
    assert not rb.bounded(process, set())
    assert json.dumps(process) == before


@pytest.mark.parametrize("call", ["create", "exec"])
def test_it_rewrites_the_spec_and_runs_runc(tmp_path: Path, call: str) -> None:
    """The script as dockerd's shim runs it, with a stand-in runc that reports what it got."""
    caps = ["CAP_CHOWN", "CAP_SYS_RESOURCE"]
    process = {"args": ["sh"], "capabilities": {"bounding": caps}}
    spec = tmp_path / ("config.json" if call == "create" else "process.json")
    spec.write_text(json.dumps({"process": process} if call == "create" else process))
    fake = tmp_path / "runc"
    fake.write_text('#!/bin/sh\necho "$@"\n')
    fake.chmod(0o755)
    env = {**os.environ, "MEDIAJOB_RUNC": str(fake)}
    args = ["--root", "/r", call, "--bundle" if call == "create" else "--process", str(spec), "id"]
    if call == "create":
        args[4] = str(tmp_path)
    command = [sys.executable, str(SCRIPT), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == args
    written = json.loads(spec.read_text())
    kept = (written["process"] if call == "create" else written)["capabilities"]["bounding"]
    allowed = rb.bounding_set(Path("/proc/self/status").read_text())
    assert kept == [c for c in caps if c in allowed]

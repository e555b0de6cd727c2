"""The krew manifest and its launcher (plugins/krew)."""

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
KREW = REPO / "plugins" / "krew"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_the_manifest_names_this_version_and_the_launcher() -> None:
    manifest = yaml.safe_load((KREW / "mediajob.yaml").read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin"
    assert manifest["metadata"]["name"] == "mediajob"  # `kubectl mediajob`
    spec = manifest["spec"]
    assert spec["version"] == f"v{VERSION}"
    for key in ("homepage", "shortDescription", "description", "caveats"):
        assert spec[key]
    for platform in spec["platforms"]:
        assert platform["bin"] == "kubectl-mediajob"
        assert f"/v{VERSION}/kubectl-mediajob-v{VERSION}.tar.gz" in platform["uri"]
        assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
        assert platform["selector"]["matchExpressions"]
    launcher = (KREW / "kubectl-mediajob").read_text()
    assert f"\nversion={VERSION}\n" in launcher


def test_the_launcher_finds_its_environment_behind_krews_symlink(tmp_path: Path) -> None:
    """krew links ~/.krew/bin/kubectl-mediajob to the unpacked archive; an installed environment
    is used at once (the first-run install itself needs PyPI: see plugins/krew/release.sh)."""
    store, bin_dir = tmp_path / "store", tmp_path / "bin"
    store.mkdir()
    bin_dir.mkdir()
    (store / "kubectl-mediajob").write_bytes((KREW / "kubectl-mediajob").read_bytes())
    (store / "kubectl-mediajob").chmod(0o755)
    (bin_dir / "kubectl-mediajob").symlink_to("../store/kubectl-mediajob")
    venv = tmp_path / "cache" / "kubectl-mediajob" / VERSION
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "kubectl-mediajob").symlink_to(Path(sys.executable).parent / "kubectl-mediajob")
    (venv / ".installed").touch()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = subprocess.run(
        [str(bin_dir / "kubectl-mediajob"), "--help"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "--kubeconfig" in result.stdout


def test_the_launcher_says_what_python_it_needs(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "KUBECTL_MEDIAJOB_PYTHON": "false"}
    result = subprocess.run(
        [str(KREW / "kubectl-mediajob"), "stats"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert "needs Python 3.11 or later" in result.stderr
    assert not (tmp_path / "kubectl-mediajob").exists()

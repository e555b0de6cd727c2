"""The layering rule (.importlinter) holds, and breaks when a pure module imports a client."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
    )


def test_the_shipped_package_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        (
            "decide",
            "from controller.clients.nca import NcaClient",
            "controller.decide is not allowed to import controller.clients",
        ),
        ("schedule", "import httpx", "controller.schedule is not allowed to import httpx"),
        (
            "clients/spaces",
            "import controller.transitions",
            "controller.clients is not allowed to import controller.transitions",
        ),
        ("runtime", "import sandbox.world", "controller.runtime -> sandbox"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    shutil.copytree(
        REPO / "controller", tmp_path / "controller", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "sandbox", tmp_path / "sandbox", ignore=shutil.ignore_patterns("__pycache__"))
    for top in ("tests", "bench"):
        (tmp_path / top).mkdir()
        (tmp_path / top / "__init__.py").write_text("")
    shutil.copy(REPO / ".importlinter", tmp_path / ".importlinter")
    source = tmp_path / "controller" / f"{module}.py"
    text = source.read_text()
    head, sep, rest = text.partition("\nfrom __future__ import annotations\n")
    source.write_text(head + sep + line + "  # noqa\n" + rest if sep else line + "\n" + text)
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert broken in result.stdout

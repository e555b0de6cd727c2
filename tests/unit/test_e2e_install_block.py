"""`make e2e` runs the README's install steps verbatim: the one ```sh block between the markers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BLOCK = (
    "kubectl apply -k manifests/default\n"
    "kubectl -n mediajob-system create secret generic x \\\n"
    "  --from-literal=A=b\n"
)


def extract(readme: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", str(REPO / "hack" / "e2e.sh"), "--print-install-block", str(readme)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_block_between_the_markers_is_printed_verbatim(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n```sh\nnot this\n```\n<!-- install:begin -->\nSome prose.\n\n```sh\n"
        + BLOCK
        + "```\n<!-- install:end -->\n```sh\nnor this\n```\n"
    )
    result = extract(readme)
    assert result.returncode == 0, result.stderr
    assert result.stdout == BLOCK


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("```sh\n" + BLOCK + "```\n", "no <!-- install:begin -->"),
        ("<!-- install:begin -->\n```sh\n" + BLOCK + "```\n", "no <!-- install:begin -->"),
        ("<!-- install:begin -->\n<!-- install:end -->\n", "found 0"),
        ("<!-- install:begin -->\n```sh\na\n```\n```sh\nb\n```\n<!-- install:end -->\n", "found 2"),
        ("<!-- install:begin -->\n```bash\na\n```\n<!-- install:end -->\n", "found 0 (and 1 other"),
        ("<!-- install:begin -->\n```sh\na\n<!-- install:end -->\n", "found 1"),
    ],
    ids=["no-markers", "no-end", "no-block", "two-blocks", "not-sh", "unclosed"],
)
def test_anything_but_exactly_one_sh_block_fails(tmp_path: Path, text: str, error: str) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(text)
    result = extract(readme)
    assert result.returncode != 0
    assert error in result.stderr


@pytest.mark.skipif(
    "<!-- install:begin -->" not in (REPO / "README.md").read_text(), reason="README has no install block yet"
)
def test_the_readme_has_the_install_block_make_e2e_runs() -> None:
    result = extract(REPO / "README.md")
    assert result.returncode == 0, result.stderr
    assert "kubectl apply" in result.stdout


def test_the_uninstall_block_is_found_by_its_own_markers() -> None:
    result = subprocess.run(
        [
            "/bin/bash",
            str(REPO / "hack" / "e2e.sh"),
            "--print-install-block",
            str(REPO / "docs" / "operations.md"),
            "uninstall",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert lines[-2] == "kubectl -n mediajob-system scale deployment/mediajob-controller --replicas=0"
    assert lines[-1] == "kubectl delete -k manifests/default --ignore-not-found"

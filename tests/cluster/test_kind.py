"""`make e2e-kind` builds kind from its pinned Go module (hack/kind), as a new machine would."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_kind_is_built_from_the_version_go_mod_pins() -> None:
    pinned = re.search(r"^require sigs\.k8s\.io/kind (v\S+)$", (REPO / "hack/kind/go.mod").read_text(), re.M)
    assert pinned is not None
    built = subprocess.run(
        ["bash", str(REPO / "hack/kind/build.sh")], capture_output=True, text=True, timeout=600, check=True
    )
    kind = built.stdout.strip().splitlines()[-1]
    assert kind.endswith(f"kind-{pinned.group(1)}/kind")
    version = subprocess.run([kind, "version"], capture_output=True, text=True, timeout=30, check=True)
    assert version.stdout.startswith(f"kind {pinned.group(1)} ")

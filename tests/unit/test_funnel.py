"""One funnel for status writes and Events (as Flux's summarize-and-patch).

Every status write goes through `StatusWriter`, which keeps the store in step and posts the
Event that belongs to the change; every Event goes through the `EventRecorder`, which scrubs
secrets. A new call site that bypasses them fails here.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "controller"
FUNNEL = PACKAGE / "transitions.py"


def callers(method: str) -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "clients":
            continue  # the client defines the call
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == method:
                found.add(str(path.relative_to(PACKAGE)))
    return found


@pytest.mark.parametrize("method", ["patch_mediajob_status", "post_event"])
def test_only_the_funnel_talks_to_the_status_and_event_endpoints(method: str) -> None:
    assert callers(method) == {FUNNEL.name}


def test_events_are_recorded_only_through_the_writer_or_the_recorder() -> None:
    # `.record(` / `.record_ref(` on an EventRecorder: only the funnel itself and the invalid-spec
    # report (which has no MediaJob to write a status to) post Events directly.
    assert callers("record_ref") <= {FUNNEL.name, "runtime.py"}
    assert callers("record") <= {FUNNEL.name}

"""`python -m controller` refuses a bad environment with one line, before touching anything."""

import os
import subprocess
import sys

import pytest

GOOD = {
    "AIRTABLE_API_KEY": "patMAINtest.secretvalue",
    "AIRTABLE_BASE_ID": "appABCDEFGHIJKLMN",
    "NCA_API_URL": "http://127.0.0.1:9",
    "NCA_API_KEY": "nca-main-test-secret",
    "WEBHOOK_TOKEN": "hook-main-test-secret",
}


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"NCA_API_KEY": None}, "NCA_API_KEY"),
        ({"POLLING_INTERVAL_MINUTES": "soon"}, "POLLING_INTERVAL_MINUTES"),
        ({"POLLING_MAX_AGE_HOURS": "1e300"}, "POLLING_MAX_AGE_HOURS"),  # used to print a traceback
        ({"POLLING_INTERVAL_MINUTES": "1e-12"}, "POLLING_INTERVAL_MINUTES"),
    ],
)
def test_a_bad_environment_stops_start_up_with_one_line(change: dict[str, str | None], name: str) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AIRTABLE_", "NCA_", "POLLING_", "WEBHOOK_"))
    }
    env.update({k: v for k, v in {**GOOD, **change}.items() if v is not None})
    result = subprocess.run(
        [sys.executable, "-m", "controller"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"mediajob-controller: configuration error: {name}:")
    for secret in ("patMAINtest.secretvalue", "nca-main-test-secret", "hook-main-test-secret"):
        assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("pod_name", "hostname", "expected"),
    [
        ("mediajob-controller-7d9f-abcde", "ignored-host", "mediajob-controller-7d9f-abcde"),
        (None, "node-a", "node-a"),
        ("", "node-b", "node-b"),
        (None, "", "mediajob-controller"),
    ],
)
def test_kopf_identity_never_asks_the_passwd_database(
    pod_name: str | None, hostname: str, expected: str
) -> None:
    from controller.__main__ import operator_identity

    assert operator_identity(pod_name, hostname) == expected

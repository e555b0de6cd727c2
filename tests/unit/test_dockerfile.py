"""The image build as written; the image tier (tests/image) builds and runs it for real."""

from pathlib import Path

REPO = Path(__file__).parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def stages() -> dict[str, list[str]]:
    """Stage name (or "final" for the unnamed last one) to its non-comment lines."""
    result: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in DOCKERFILE.splitlines():
        if line.startswith("FROM "):
            words = line.split()
            current = result.setdefault(words[3] if len(words) > 3 else "final", [])
        if current is not None and line.strip() and not line.startswith("#"):
            current.append(line)
    return result


def test_the_base_is_an_argument_defaulting_to_the_official_slim_image() -> None:
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in DOCKERFILE.splitlines()
    for lines in stages().values():
        assert lines[0].startswith("FROM ${BASE_IMAGE}")


def test_dependencies_come_from_the_hash_checked_lock() -> None:
    build = stages()["build"]
    assert "RUN /opt/venv/bin/pip install --require-hashes --no-deps -r requirements.lock" in build
    assert "RUN /opt/venv/bin/pip install --no-deps ." in build
    lock = (REPO / "requirements.lock").read_text()
    for name in ("kopf", "kubernetes", "httpx", "pyairtable", "aiohttp", "prometheus-client", "requests"):
        assert f"\n{name}==" in lock, name


def test_the_controller_image_is_the_last_stage_and_never_ships_the_simulators() -> None:
    final = stages()["final"]
    assert DOCKERFILE.rstrip().endswith('ENTRYPOINT ["mediajob-controller"]')
    assert not any("sandbox" in line for line in final)
    assert not any("sandbox" in line for line in stages()["build"])


def test_final_stage_runs_as_a_numeric_non_root_user_without_build_tools() -> None:
    final = stages()["final"]
    user = next(line for line in final if line.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert not any(
        word in line for line in final for word in ("apt-get", "gcc", "pip install", "build-essential")
    )


def test_the_lock_pins_every_declared_dependency() -> None:
    import re
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lock = (REPO / "requirements.lock").read_text()
    for requirement in declared:
        name = re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert f"\n{name}==" in lock, f"{name} is declared but not in requirements.lock: run `make lock`"

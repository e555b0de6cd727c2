"""The image build as written: no Docker engine runs here, so its rules are checked on the file."""

from pathlib import Path

DOCKERFILE = (Path(__file__).parents[2] / "Dockerfile").read_text()


def stages() -> list[list[str]]:
    result: list[list[str]] = []
    for line in DOCKERFILE.splitlines():
        if line.startswith("FROM "):
            result.append([])
        if result and line.strip() and not line.startswith("#"):
            result[-1].append(line)
    return result


def test_multi_stage_slim_base_with_a_venv() -> None:
    build, final = stages()
    assert build[0].startswith("FROM python:3.11-slim")
    assert build[0].endswith("AS build")
    assert final[0].startswith("FROM python:3.11-slim")
    assert any("python -m venv /opt/venv" in line for line in build)
    assert any(line.startswith("COPY --from=build /opt/venv /opt/venv") for line in final)


def test_final_stage_runs_as_a_numeric_non_root_user_without_build_tools() -> None:
    final = stages()[1]
    user = next(line for line in final if line.startswith("USER "))
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit()
    assert int(uid) != 0
    assert not any(
        word in line for line in final for word in ("apt-get", "gcc", "pip install", "build-essential")
    )
    assert final[-1] == 'ENTRYPOINT ["mediajob-controller"]'

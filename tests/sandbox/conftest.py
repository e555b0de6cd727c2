"""Fixtures for the simulator tests: started simulators, an HTTP client, a webhook receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from sandbox import AirtableSimulator, NcaSimulator, SpacesSimulator
from tests.loopback import serve

# Test modules repeat these literals: they are not importable from here.
AIRTABLE_KEY = "patSandboxKey.0123456789"
NCA_KEY = "nca-sandbox-key"


SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "nca-samples"


def _samples_dir() -> Path:
    """A copy of shared/design/nca-samples (recorded from a real NCA run), kept with the tests."""
    return SAMPLES


@pytest.fixture
def load_sample() -> Callable[[str], Any]:
    """Loads one recorded NCA response by file name."""
    directory = _samples_dir()

    def load(name: str) -> Any:
        return json.loads((directory / name).read_text())

    return load


@dataclass
class Receiver:
    """A tiny webhook receiver: records every POST it gets."""

    url: str = ""
    received: list[tuple[str, dict[str, Any], dict[str, str]]] = field(default_factory=list)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()

    async def hook(request: web.Request) -> web.Response:
        rec.received.append((request.path, await request.json(), dict(request.headers)))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    async with serve(app) as url:
        rec.url = url
        yield rec


@pytest.fixture
async def spaces() -> AsyncIterator[SpacesSimulator]:
    async with SpacesSimulator() as sim:
        yield sim


@pytest.fixture
async def nca(spaces: SpacesSimulator) -> AsyncIterator[NcaSimulator]:
    async with NcaSimulator(NCA_KEY, spaces=spaces) as sim:
        yield sim


@pytest.fixture
async def airtable() -> AsyncIterator[AirtableSimulator]:
    async with AirtableSimulator(AIRTABLE_KEY, rate_limit_per_s=10_000) as sim:
        yield sim


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c

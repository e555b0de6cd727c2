"""POLLING_BATCH_SIZE checks at once reach Spaces and NCA at once: no client pool caps them lower."""

import asyncio
from collections.abc import AsyncIterator, Awaitable

import kopf
import pytest
from aiohttp import web

from controller.metrics import Metrics
from controller.runtime import Clients
from controller.settings import Settings
from tests.loopback import serve
from tests.samples import REQUIRED_ENV

WORKERS = 25


@pytest.fixture
async def gate() -> AsyncIterator[str]:
    """Answers nobody until WORKERS requests are in flight at once; a smaller pool never gets there."""
    arrived = 0
    everyone = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        if arrived >= WORKERS:
            everyone.set()
        await everyone.wait()
        if request.method == "HEAD":
            return web.Response(status=404)
        return web.json_response({"code": 200, "response": {"job_status": "running"}, "message": "success"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hold)
    async with serve(app) as url:
        try:
            yield url
        finally:
            everyone.set()  # a failed test must not leave handlers waiting through the shutdown


async def clients_for(url: str) -> Clients:
    settings = Settings.from_env(
        {
            **REQUIRED_ENV,
            "NCA_API_URL": url,
            "SPACES_BASE_URL": f"{url}/bucket",
            "POLLING_BATCH_SIZE": str(WORKERS),
        }
    )
    unused_cluster = kopf.ConnectionInfo(server="https://127.0.0.1:1", token="unused")
    return Clients.from_settings(settings, Metrics(), login=lambda: unused_cluster)


def one_check(system: str, clients: Clients, gate: str, i: int) -> Awaitable[object]:
    if system == "spaces":
        return clients.spaces.head(f"{gate}/bucket/job-{i}_output_0.mp4")
    return clients.nca.job_status(f"0000000{i:02d}-aaaa-4bbb-8ccc-dddddddddddd")


@pytest.mark.parametrize("system", ["spaces", "nca"])
async def test_every_worker_reaches_the_system_at_once(gate: str, system: str) -> None:
    clients = await clients_for(gate)
    try:
        async with asyncio.timeout(5):
            results = await asyncio.gather(*(one_check(system, clients, gate, i) for i in range(WORKERS)))
        assert len(results) == WORKERS
    finally:
        await clients.close()

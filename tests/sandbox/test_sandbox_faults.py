"""Fault injection, request log and server lifecycle, shown on the Spaces simulator."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from sandbox import SpacesSimulator


async def test_fail_next_answers_status_and_body_then_recovers(
    spaces: SpacesSimulator, client: httpx.AsyncClient
) -> None:
    spaces.put_object("a.mp4")
    spaces.faults.fail_next(2, 500, body={"error": "boom"}, headers={"X-Fault": "yes"})
    statuses = []
    for _ in range(3):
        resp = await client.get(spaces.url_for("a.mp4"))
        statuses.append(resp.status_code)
        if resp.status_code == 500:
            assert resp.json() == {"error": "boom"}
            assert resp.headers["X-Fault"] == "yes"
    assert statuses == [500, 500, 200]
    assert [r.status for r in spaces.requests] == [500, 500, 200]
    assert spaces.faults.injected == 2


async def test_fail_next_only_hits_matching_paths(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    spaces.put_object("a.mp4")
    spaces.put_object("b.mp4")
    spaces.faults.fail_next(1, 502, body="bad gateway", path_contains="b.mp4")
    assert (await client.get(spaces.url_for("a.mp4"))).status_code == 200
    resp = await client.get(spaces.url_for("b.mp4"))
    assert (resp.status_code, resp.text) == (502, "bad gateway")
    assert (await client.get(spaces.url_for("b.mp4"))).status_code == 200


async def test_drop_next_closes_connection_without_response(
    spaces: SpacesSimulator, client: httpx.AsyncClient
) -> None:
    spaces.put_object("a.mp4")
    spaces.faults.drop_next(1)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.head(spaces.url_for("a.mp4"))
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 200
    assert [r.status for r in spaces.requests] == [None, 200]


async def test_hang_next_makes_client_time_out(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    spaces.put_object("a.mp4")
    spaces.faults.hang_next(1, 3.0)
    with pytest.raises(httpx.ReadTimeout):
        await client.head(spaces.url_for("a.mp4"), timeout=0.2)
    started = time.monotonic()
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 200
    assert time.monotonic() - started < 1.0


async def test_hang_shorter_than_timeout_still_answers(
    spaces: SpacesSimulator, client: httpx.AsyncClient
) -> None:
    spaces.put_object("a.mp4")
    spaces.faults.hang_next(1, 0.2)
    started = time.monotonic()
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_latency_and_error_rate(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    spaces.put_object("a.mp4")
    spaces.faults.latency = 0.15
    started = time.monotonic()
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 200
    assert time.monotonic() - started >= 0.15
    spaces.faults.latency = 0.0
    spaces.faults.error_rate = 1.0
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 500
    spaces.faults.clear()
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 200


async def test_clear_disarms_pending_faults(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    spaces.put_object("a.mp4")
    spaces.faults.fail_next(5, 500)
    spaces.faults.drop_next(5)
    assert spaces.faults.pending == 10
    spaces.faults.clear()
    assert spaces.faults.pending == 0
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 200


async def test_request_log_and_count(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    spaces.put_object("a.mp4")
    await client.head(spaces.url_for("a.mp4"), params={"x": ["1", "2"]})
    await client.get(spaces.url_for("missing.mp4"), headers={"X-Trace": "t1"})
    assert spaces.count() == 2
    assert spaces.count("HEAD") == 1
    assert spaces.count("get", path_contains="missing") == 1
    assert spaces.count(path_contains="nothing") == 0
    first, second = spaces.requests
    assert first.query == {"x": ["1", "2"]}
    assert first.path == "/phi-bucket/a.mp4"
    assert second.headers["X-Trace"] == "t1"
    assert second.status == 404
    assert abs(first.time - time.time()) < 5


async def test_lifecycle_fixed_port_and_restart() -> None:
    sim = SpacesSimulator()
    with pytest.raises(RuntimeError):
        _ = sim.url
    await sim.start()
    port = sim.port
    assert sim.url == f"http://127.0.0.1:{port}"
    await sim.stop()
    assert not sim.running
    async with SpacesSimulator(port=port) as again, httpx.AsyncClient() as c:
        assert again.port == port
        again.put_object("k")
        assert (await c.head(again.url_for("k"))).status_code == 200
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as c:
            await c.head(f"http://127.0.0.1:{port}/phi-bucket/k")


async def test_outage_refuses_connections_then_serves_on_the_same_port(
    spaces: SpacesSimulator, client: httpx.AsyncClient
) -> None:
    spaces.put_object("a.mp4")
    url = spaces.url_for("a.mp4")
    down = asyncio.create_task(spaces.outage(0.5))
    await asyncio.sleep(0.2)
    with pytest.raises(httpx.ConnectError):
        await client.head(url)
    await down
    assert spaces.url_for("a.mp4") == url
    assert (await client.head(url)).status_code == 200

"""The webhook answers within its budget even when recording the result is slow."""

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx

from controller.http import HttpServer
from controller.metrics import Metrics

PAYLOAD = {"job_id": "job-1", "id": "recJOBaaaaaaaaaaa", "code": 200, "response": "http://x/y.mp4"}


class Receiver:
    def __init__(self, delay: float, answer: tuple[int, str]) -> None:
        self.delay = delay
        self.answer = answer
        self.done: list[dict[str, Any]] = []

    async def receive(self, payload: dict[str, Any], arrived: datetime) -> tuple[int, str]:
        await asyncio.sleep(self.delay)
        self.done.append(payload)
        return self.answer


async def serve(receiver: Receiver) -> HttpServer:
    server = HttpServer(
        port=0,
        metrics_port=0,
        token="t0ken-123",
        metrics=Metrics(),
        receiver=lambda: receiver,
        ready=lambda: True,
        host="127.0.0.1",
    )  # type: ignore[arg-type,return-value]
    await server.start()
    return server


async def test_a_slow_recording_is_answered_202_at_once_and_finished_later() -> None:
    receiver = Receiver(1.0, (200, "recorded"))
    server = await serve(receiver)
    try:
        async with httpx.AsyncClient() as client:
            started = time.monotonic()
            response = await client.post(
                f"http://127.0.0.1:{server.port}/webhooks/nca?token=t0ken-123", json=PAYLOAD
            )
            elapsed = time.monotonic() - started
        assert response.status_code == 202
        assert response.json()["result"] == "accepted"
        assert elapsed < 0.5
        assert receiver.done == []
        await asyncio.sleep(1.2)
        assert receiver.done == [PAYLOAD]
    finally:
        await server.stop()


async def test_a_fast_recording_gives_its_own_answer() -> None:
    receiver = Receiver(0.0, (200, "recorded"))
    server = await serve(receiver)
    try:
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"http://127.0.0.1:{server.port}/webhooks/nca",
                json=PAYLOAD,
                headers={"X-Webhook-Token": "t0ken-123"},
            )
        assert (response.status_code, response.json()) == (200, {"result": "recorded"})
    finally:
        await server.stop()


async def test_stop_waits_for_late_recordings() -> None:
    receiver = Receiver(0.5, (200, "recorded"))
    server = await serve(receiver)
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"http://127.0.0.1:{server.port}/webhooks/nca?token=t0ken-123", json=PAYLOAD
        )
    assert response.status_code == 202
    await server.stop()
    assert receiver.done == [PAYLOAD]

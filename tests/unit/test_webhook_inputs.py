"""Contract section 7 for the webhook: any bad token is a 401 and any bad body a 400, never a 500.

The requests are written as raw bytes over loopback to the real aiohttp server, so that header
bytes no HTTP client would send (non-ASCII, invalid UTF-8) reach it as they would from the wild.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import pytest

from controller.http import HttpServer
from controller.metrics import Metrics

TOKEN = "t0ken-123"
PAYLOAD = {"job_id": "job-1", "id": "recJOBaaaaaaaaaaa", "code": 200, "response": "http://x/y.mp4"}


class Receiver:
    def __init__(self) -> None:
        self.done: list[dict[str, Any]] = []

    async def receive(self, payload: dict[str, Any], arrived: datetime) -> tuple[int, str]:
        self.done.append(payload)
        return 200, "recorded"


@pytest.fixture
async def server() -> AsyncIterator[tuple[HttpServer, Receiver]]:
    receiver = Receiver()
    http = HttpServer(
        port=0,
        metrics_port=0,
        token=TOKEN,
        metrics=Metrics(),
        receiver=lambda: receiver,  # type: ignore[arg-type,return-value]
        ready=lambda: True,
        host="127.0.0.1",
    )
    await http.start()
    try:
        yield http, receiver
    finally:
        await http.stop()


async def raw_post(
    port: int, body: bytes, *, token: bytes | None = TOKEN.encode(), target: bytes = b""
) -> int:
    """POST with headers written byte for byte; returns the status code."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"POST /webhooks/nca" + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if token is not None:
        head += b"X-Webhook-Token: " + token + b"\r\n"
    head += b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    writer.write(head + body)
    await writer.drain()
    try:
        async with asyncio.timeout(10):
            status_line = await reader.readline()
    finally:
        writer.close()
    return int(status_line.split()[1])


GOOD = json.dumps(PAYLOAD).encode()


async def test_a_good_request_is_recorded(server: tuple[HttpServer, Receiver]) -> None:
    http, receiver = server
    assert await raw_post(http.port, GOOD) == 200
    assert receiver.done == [PAYLOAD]


@pytest.mark.parametrize(
    "token",
    [
        "tökén".encode(),
        b"t0ken-123\xff",
        b"\xff\xfe\xfd",
        b"t0ken-12\xe9",
        "t0ken-123€".encode(),
        b"",
        b"t0ken-1234",
    ],
)
async def test_any_bad_token_in_the_header_is_a_401(
    server: tuple[HttpServer, Receiver], token: bytes
) -> None:
    http, receiver = server
    assert await raw_post(http.port, GOOD, token=token) == 401
    assert receiver.done == []


@pytest.mark.parametrize(
    "query", [b"?token=t%C3%B6ken", b"?token=%FF%FE", b"?token=%ED%A0%80", b"?token=%00"]
)
async def test_any_bad_token_in_the_query_is_a_401(server: tuple[HttpServer, Receiver], query: bytes) -> None:
    http, receiver = server
    assert await raw_post(http.port, GOOD, token=None, target=query) == 401
    assert receiver.done == []


BAD_BODIES = [
    b"[" * 3000 + b"]" * 3000,
    b'{"job_id": "job-1", "id": "recJOBaaaaaaaaaaa", "x": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    b"[" * 99_999,
    b'{"a":' * 5000,
    b"\xff\xfe\x00",
    b"not json",
    b"",
    b"null",
    b"[1, 2]",
    b'"job-1"',
    b"{}",
    json.dumps({**PAYLOAD, "job_id": 7}).encode(),
    json.dumps({**PAYLOAD, "job_id": "job-1\n"}).encode(),
    json.dumps({**PAYLOAD, "job_id": "../etc"}).encode(),
    json.dumps({**PAYLOAD, "id": None}).encode(),
    json.dumps({**PAYLOAD, "code": "200"}).encode(),
    json.dumps({**PAYLOAD, "code": True}).encode(),
    json.dumps({**PAYLOAD, "code": 200, "response": None}).encode(),
    json.dumps({**PAYLOAD, "code": 200, "response": [{"file_url": 3}]}).encode(),
    json.dumps({**PAYLOAD, "code": 200, "response": "ftp://x"}).encode(),
    b'{"job_id": "job-1", "id": "recJOBaaaaaaaaaaa", "code": 1e999}',
    b'{"job_id": "job-1", "id": "recJOBaaaaaaaaaaa", "code": NaN}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=[f"body{i}" for i in range(len(BAD_BODIES))])
async def test_any_bad_body_is_a_400(server: tuple[HttpServer, Receiver], body: bytes) -> None:
    http, receiver = server
    assert await raw_post(http.port, body) == 400
    assert receiver.done == []
    assert await raw_post(http.port, GOOD) == 200  # and the server goes on

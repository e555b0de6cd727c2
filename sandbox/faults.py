"""Fault injection and request recording shared by the loopback simulators.

The controller must survive slow, failing and vanishing dependencies, so every
simulator runs the same :class:`Faults` middleware in front of its routes, and
keeps a :class:`RecordedRequest` log that tests assert on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)

FaultBody = Mapping[str, Any] | str | None


#: Request key set when the faults middleware cut the connection on purpose.
DROPPED_KEY = web.RequestKey("sandbox_dropped", bool)


@dataclass
class RecordedRequest:
    """One request as a simulator saw it; ``status`` is None when no response was sent."""

    time: float
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any
    status: int | None = None


@dataclass
class _Rule:
    kind: Literal["fail", "drop", "hang"]
    remaining: int
    path_contains: str | None
    status: int = 500
    body: FaultBody = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path_contains is None or self.path_contains in path)


class Faults:
    """Latency, random 500s and one-shot failures, applied before a simulator's routes.

    Rules armed with ``fail_next``/``drop_next``/``hang_next`` are consumed in the
    order they were armed; one request consumes at most one rule.
    """

    def __init__(self, *, latency: float = 0.0, error_rate: float = 0.0, seed: int | None = None):
        self.latency = latency
        self.error_rate = error_rate
        self.injected = 0
        self._rules: list[_Rule] = []
        self._random = random.Random(seed)

    def fail_next(
        self,
        count: int,
        status: int,
        body: FaultBody = None,
        headers: Mapping[str, str] | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (and ``body``)."""
        self._rules.append(
            _Rule("fail", count, path_contains, status=status, body=body, headers=dict(headers or {}))
        )

    def drop_next(self, count: int, path_contains: str | None = None) -> None:
        """Close the connection of the next ``count`` matching requests without answering."""
        self._rules.append(_Rule("drop", count, path_contains))

    def hang_next(self, count: int, seconds: float, path_contains: str | None = None) -> None:
        """Delay the next ``count`` matching requests by ``seconds`` before answering."""
        self._rules.append(_Rule("hang", count, path_contains, seconds=seconds))

    def clear(self) -> None:
        """Disarm every rule and reset latency and error rate."""
        self._rules.clear()
        self.latency = 0.0
        self.error_rate = 0.0

    @property
    def pending(self) -> int:
        """How many armed one-shot faults are still waiting for a request."""
        return sum(rule.remaining for rule in self._rules)

    def _take(self, path: str) -> _Rule | None:
        for rule in self._rules:
            if rule.matches(path):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                return rule
        return None

    def middleware(self) -> Middleware:
        """The aiohttp middleware that applies these faults ahead of the handler."""

        @web.middleware
        async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            rule = self._take(request.path)
            if rule is not None:
                self.injected += 1
                if rule.kind == "drop":
                    log.debug("fault: dropping connection for %s %s", request.method, request.path)
                    request[DROPPED_KEY] = True
                    if request.transport is not None:
                        request.transport.abort()
                    # aiohttp fails quietly (ConnectionError) writing to the aborted socket.
                    return web.Response(status=500)
                if rule.kind == "hang":
                    log.debug("fault: hanging %s %s for %.3fs", request.method, request.path, rule.seconds)
                    await asyncio.sleep(rule.seconds)
                    return await handler(request)
                log.debug("fault: answering %s %s with %d", request.method, request.path, rule.status)
                return _fault_response(rule.status, rule.body, rule.headers)
            if self.error_rate > 0 and self._random.random() < self.error_rate:
                self.injected += 1
                return _fault_response(500, None, {})
            return await handler(request)

        return faults_middleware


def _fault_response(status: int, body: FaultBody, headers: Mapping[str, str]) -> web.Response:
    if body is None:
        return web.Response(status=status, headers=dict(headers))
    if isinstance(body, str):
        return web.Response(status=status, text=body, headers=dict(headers))
    return web.json_response(dict(body), status=status, headers=dict(headers))


def recording_middleware(log_list: list[RecordedRequest]) -> Middleware:
    """Record every request with the status finally answered (None if dropped or cancelled)."""

    @web.middleware
    async def record_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = await request.read() if request.body_exists else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        query: dict[str, list[str]] = {}
        for key, value in request.query.items():
            query.setdefault(key, []).append(value)
        entry = RecordedRequest(
            time=time.time(),
            method=request.method,
            path=request.path,
            query=query,
            headers=dict(request.headers),
            json=body,
        )
        log_list.append(entry)
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            entry.status = exc.status
            raise
        except asyncio.CancelledError:
            entry.status = None
            raise
        except Exception:
            entry.status = 500
            raise
        entry.status = None if request.get(DROPPED_KEY) else response.status
        return response

    return record_middleware


def count_requests(
    requests: list[RecordedRequest], method: str | None = None, path_contains: str | None = None
) -> int:
    """Count recorded requests by method and path substring."""
    return sum(
        1
        for r in requests
        if (method is None or r.method.upper() == method.upper())
        and (path_contains is None or path_contains in r.path)
    )

"""The loopback aiohttp server every simulator is built on."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.typedefs import Middleware

from .faults import (
    Faults,
    RecordedRequest,
    count_requests,
    recording_middleware,
)

log = logging.getLogger(__name__)


class LoopbackServer:
    """A real HTTP server on 127.0.0.1 with a request log and fault injection.

    Subclasses add their routes in :meth:`_setup_routes`; the recording and fault
    middlewares run before any route, so faults apply to unknown paths too.
    """

    #: Seconds stop() waits for handlers still running (e.g. a hung request).
    shutdown_timeout = 0.2

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

    def _setup_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def _middlewares(self) -> list[Middleware]:
        """Middlewares a simulator runs after recording and faults (auth, rate limits)."""
        return []

    async def _on_start(self) -> None:
        """Hook run after the socket is bound (the url is known)."""

    async def _on_stop(self) -> None:
        """Hook run before the server is torn down."""

    async def start(self) -> None:
        """Bind the socket and serve; the port is ephemeral unless one was given."""
        if self._runner is not None:
            return
        app = web.Application(
            middlewares=[
                recording_middleware(self.requests),
                self.faults.middleware(),
                *self._middlewares(),
            ]
        )
        self._setup_routes(app)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            handler_cancellation=True,
            shutdown_timeout=self.shutdown_timeout,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        address = runner.addresses[0]
        self._port = int(address[1])
        self._runner = runner
        log.debug("%s listening on %s", type(self).__name__, self.url)
        await self._on_start()

    async def stop(self) -> None:
        """Stop serving; pending hung requests are cut off after a short grace."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            await self._on_stop()
        finally:
            await runner.cleanup()
            log.debug("%s stopped", type(self).__name__)

    async def outage(self, seconds: float) -> None:
        """Go down for `seconds` (connections refused, background work stopped), then serve again
        on the same port: a dependency that restarts."""
        port = self.port
        await self.stop()
        await asyncio.sleep(seconds)
        self._requested_port = port
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """How many requests were received, by method and path substring."""
        return count_requests(self.requests, method, path_contains)

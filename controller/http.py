"""One HTTP server per replica: the NCA webhook, /metrics, /healthz and /readyz.

NCA posts its webhook once, from its single queue thread, with no timeout: a slow receiver
stalls NCA's whole queue. So the receiver answers within a fixed budget whatever happens behind
it; work that takes longer (an API server under load) goes on in the background and the caller
gets 202.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from controller.clients.airtable import AirtableError
from controller.clients.kube import KubeError
from controller.metrics import Metrics
from controller.model import InvalidResource, utcnow
from controller.observations import PayloadError
from controller.receiver import WebhookReceiver, check_payload, parse_body

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
READ_TIMEOUT = 5.0
ANSWER_BUDGET = 0.08  # seconds: NCA must never wait on us
AirtablePingHandler = Callable[[bytes, str], Awaitable[tuple[int, str]]]


class PortUnavailable(Exception):
    """A port we must listen on is taken or not ours: retrying cannot fix it. Names the port."""

    def __init__(self, port: int, exc: OSError) -> None:
        super().__init__(f"cannot serve HTTP on port {port}: {exc.strerror or exc}")


class HttpServer:
    def __init__(
        self,
        *,
        port: int,
        metrics_port: int,
        token: str,
        metrics: Metrics,
        receiver: Callable[[], WebhookReceiver | None],
        ready: Callable[[], bool],
        host: str = "0.0.0.0",  # noqa: S104 - served to the cluster through the Service
        airtable_ping: AirtablePingHandler | None = None,
    ) -> None:
        self._airtable_ping = airtable_ping
        self._host = host
        self._token = token.encode()
        self._metrics = metrics
        self._receiver = receiver
        self._ready = ready
        self._background: set[asyncio.Task[Any]] = set()
        self._runners: list[web.AppRunner] = []
        self.port = port
        self.metrics_port = metrics_port

    def app(self) -> web.Application:
        """The webhooks: what NCA and Airtable call, and what an Ingress may expose."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post("/webhooks/nca", self._webhook)
        app.router.add_post("/webhooks/airtable", self._airtable_webhook)
        return app

    def ops_app(self) -> web.Application:
        """Metrics and probes, on a port of their own: never behind the webhooks' Ingress."""
        app = web.Application()
        # prometheus_client's own handler: OpenMetrics when the scraper asks for it, gzip, ?name[]=
        app.router.add_get("/metrics", make_aiohttp_handler(self._metrics.registry))
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        return app

    async def start(self) -> None:
        self.port = await self._serve(self.app(), self.port)
        self.metrics_port = await self._serve(self.ops_app(), self.metrics_port)
        log.info("webhooks on port %d; metrics and probes on port %d", self.port, self.metrics_port)

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        try:
            await web.TCPSite(runner, self._host, port).start()
        except OSError as exc:
            raise PortUnavailable(port, exc) from None
        return int(runner.addresses[0][1]) if runner.addresses else port

    async def stop(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()

    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("X-Webhook-Token") or request.query.get("token") or ""
        try:
            # Header bytes that are not UTF-8 arrive as surrogates: turned back into the bytes
            # that were sent, they are compared like any other wrong token.
            sent = given.encode("utf-8", "surrogateescape")
        except UnicodeError:
            return False
        return hmac.compare_digest(sent, self._token)

    async def _webhook(self, request: web.Request) -> web.Response:
        arrived = utcnow()
        if not self._authorized(request):
            self._metrics.webhooks.labels(result="unauthorized").inc()
            return _answer(401, "unauthorized", "missing or wrong webhook token")
        raw = await _read_body(request)
        if isinstance(raw, web.Response):
            self._metrics.webhooks.labels(result="too_large" if raw.status == 413 else "slow_client").inc()
            return raw
        try:
            payload = check_payload(parse_body(raw))
        except (ValueError, PayloadError) as exc:
            self._metrics.webhooks.labels(result="bad_request").inc()
            reason = str(exc) if isinstance(exc, PayloadError) else "body is not valid JSON"
            return _answer(400, "bad-request", reason)
        receiver = self._receiver()
        if receiver is None:
            return _answer(503, "not-ready", "the controller is starting")
        return await self._within_budget(receiver.receive(payload, arrived))

    async def _airtable_webhook(self, request: web.Request) -> web.Response:
        """Airtable's change notification: verified by its MAC, then a wake-up for the mirror."""
        if self._airtable_ping is None:
            return _answer(404, "not-configured", "AIRTABLE_WEBHOOK_URL is not set")
        raw = await _read_body(request)
        if isinstance(raw, web.Response):
            return raw
        status, result = await self._airtable_ping(raw, request.headers.get("X-Airtable-Content-MAC", ""))
        self._metrics.airtable_pings.labels(result=result.replace("-", "_")).inc()
        if status == 204:
            return web.Response(status=204)
        return _answer(status, result, None)

    async def _within_budget(self, work: Awaitable[tuple[int, str]]) -> web.Response:
        task = asyncio.ensure_future(work)
        try:
            async with asyncio.timeout(ANSWER_BUDGET):
                status, result = await asyncio.shield(task)
        except TimeoutError:
            self._background.add(task)
            task.add_done_callback(self._finished_late)
            return _answer(202, "accepted", "recording in the background")
        except (KubeError, InvalidResource, AirtableError) as exc:
            log.warning("webhook could not be recorded: %s", exc)
            return _answer(503, "error", "could not record the result, the poller will find it")
        except Exception:
            log.exception("webhook could not be recorded")
            return _answer(503, "error", "could not record the result, the poller will find it")
        return _answer(status, result, None)

    def _finished_late(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("webhook recorded late failed: %s", task.exception())

    async def _healthz(self, request: web.Request) -> web.Response:
        return _answer(200, "ok", None)

    async def _readyz(self, request: web.Request) -> web.Response:
        return _answer(200, "ready", None) if self._ready() else _answer(503, "not-ready", None)


async def _read_body(request: web.Request) -> bytes | web.Response:
    """The body, or the answer (413 or 408) when it is too large or comes too slowly."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        return _answer(413, "too-large", f"body over {MAX_BODY} bytes")
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        return _answer(413, "too-large", f"body over {MAX_BODY} bytes")
    except TimeoutError:
        return _answer(408, "timeout", "body not received in time")


def _answer(status: int, result: str, detail: str | None) -> web.Response:
    body: dict[str, Any] = {"result": result}
    if detail:
        body["detail"] = detail
    return web.json_response(body, status=status)

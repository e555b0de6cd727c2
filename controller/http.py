"""One HTTP server per replica: the NCA webhook, /metrics, /healthz and /readyz.

NCA posts its webhook once, from its single queue thread, with no timeout: a slow receiver
stalls NCA's whole queue. So the receiver answers within a fixed budget whatever happens behind
it; work that takes longer (an API server under load) goes on in the background and the caller
gets 202.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from controller import logs
from controller.clients.airtable import AirtableClient, AirtableError
from controller.clients.kube import Conflict, KubeClient, KubeError
from controller.decide import Ignore, Wait, decide_webhook
from controller.metrics import Metrics
from controller.mirror import resubmission_patch
from controller.model import InvalidResource, JobSpec, MediaJob, new_object, utcnow
from controller.naming import UnsafeIdError, check_external_job_id, check_record_id, resource_name
from controller.observations import PayloadError, parse_result_payload
from controller.rows import MIRROR_FIELDS, RowError, nesting_depth, parse_job_row
from controller.store import JobStore
from controller.transitions import Transitions
from controller.vocabulary import LABEL_EXTERNAL_ID, MANAGED_BY

log = logging.getLogger(__name__)
MAX_BODY = 1024 * 1024
READ_TIMEOUT = 5.0
MAX_BODY_DEPTH = 32  # NCA's payload nests three levels
ANSWER_BUDGET = 0.08  # seconds: NCA must never wait on us
ADOPTION_INTERVAL = 1.0  # seconds between two early-webhook row reads on one replica
AirtablePingHandler = Callable[[bytes, str], Awaitable[tuple[int, str]]]


class WebhookReceiver:
    """Turns one NCA webhook payload into a transition through the shared state machine.

    A webhook may beat the mirror (fast jobs finish in a second): then the receiver reads the
    Jobs row named by the payload's `id` and creates the MediaJob itself, exactly as the mirror
    would, and records the result on it. Airtable is still written only by the leader's
    write-back, fed by the watch, so there is one write per transition whichever path won.
    """

    def __init__(
        self,
        *,
        store: JobStore,
        kube: KubeClient,
        transitions: Transitions,
        metrics: Metrics,
        namespace: str | None,
        airtable: AirtableClient | None = None,
        jobs_table: str = "Jobs",
        home_namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._kube = kube
        self._transitions = transitions
        self._metrics = metrics
        self._namespace = namespace
        self._airtable = airtable
        self._jobs_table = jobs_table
        self._home = home_namespace or namespace
        self._clock = clock
        self._next_adoption = 0.0

    async def receive(self, payload: dict[str, Any], arrived: datetime) -> tuple[int, str]:
        """Returns (HTTP status, result word) for a payload whose shape was already checked."""
        job_id, record_id = payload["job_id"], payload["id"]
        outcome = parse_result_payload(payload)
        jobs = await self._find(job_id)
        if not jobs:
            early = await self._adopt(record_id, job_id)
            if early is None:
                self._metrics.webhooks.labels(result="unknown_job").inc()
                log.info(
                    "webhook for NCA job %s: record %.20r is not a processing Jobs row for it;"
                    " acknowledged, nothing created",
                    job_id,
                    record_id,
                )
                return 202, "unknown-job"
            jobs = [early]
        matching = [j for j in jobs if j.spec.airtable_record_id == record_id]
        if not matching:
            self._metrics.webhooks.labels(result="id_mismatch").inc()
            log.warning(
                "webhook for NCA job %s names record %s, which is not the job's record", job_id, record_id
            )
            return 409, "record-mismatch"
        job = matching[0]
        decision = decide_webhook(job, outcome)
        if isinstance(decision, Ignore | Wait):
            self._metrics.webhooks.labels(result="already_ended").inc()
            logs.for_job(log, job).info("webhook after the job ended (%s): acknowledged", job.status.phase)
            return 200, "already-ended"
        updated = await self._transitions.apply(
            job, decision, checks=job.status.checks, detected_from=arrived
        )
        result = "recorded" if updated is not None else "already-ended"
        self._metrics.webhooks.labels(result=result.replace("-", "_")).inc()
        return 200, result

    async def _adopt(self, record_id: str, job_id: str) -> MediaJob | None:
        """An early webhook: create the job's MediaJob from its Jobs row, if that row is processing."""
        if self._airtable is None or self._home is None:
            return None
        try:
            check_record_id(record_id)
        except UnsafeIdError:
            return None
        now = self._clock()
        if self._airtable.paused_for > 0 or now < self._next_adoption:
            # A follower's row reads are not paced together with the leader's: queued or in a
            # burst, they push the base over 5 requests per second and start a 30 s penalty,
            # which makes the mirror lag and more webhooks early (found by the chaos soak). So at
            # most one read per ADOPTION_INTERVAL, none while paused, and never a queue: the
            # mirror and the poller still find the job.
            log.info("webhook for NCA job %s before the mirror: Airtable busy, left to polling", job_id)
            return None
        self._next_adoption = now + ADOPTION_INTERVAL
        rows = await self._airtable.get_records(self._jobs_table, [record_id], fields=MIRROR_FIELDS)
        fields = rows.get(record_id)
        if fields is None:
            return None
        try:
            row = parse_job_row({"id": record_id, "fields": fields})
        except RowError:
            return None  # the mirror writes the row's Note
        if row.status != "processing" or row.external_job_id != job_id:
            return None  # ended, or an earlier attempt's result
        name = resource_name(record_id)
        job = self._store.get((self._home, name))
        if job is None:
            try:
                raw = await self._kube.create_mediajob(new_object(name, self._home, JobSpec.from_row(row)))
            except Conflict:
                raw = await self._kube.get_mediajob(self._home, name)  # the mirror was just faster
            job = MediaJob.from_object(raw)
        if job.spec.external_job_id != job_id:
            # The row was re-submitted with this NCA id and the mirror has not seen it yet.
            if job.labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
                return None
            try:
                raw = await self._kube.patch_mediajob(
                    job.namespace, job.name, resubmission_patch(job, row, utcnow())
                )
            except Conflict:
                return None
            job = MediaJob.from_object(raw)
        self._store.put(job)
        logs.for_job(log, job).info("webhook arrived before the mirror: took the job from its Jobs row")
        return job

    async def _find(self, job_id: str) -> list[MediaJob]:
        jobs = self._store.find_external(job_id)
        if jobs:
            return jobs
        # The watch may lag a just-created job: ask the API server before saying "unknown".
        try:
            items = await self._kube.list_mediajobs(
                self._namespace, label_selector=f"{LABEL_EXTERNAL_ID}={job_id}"
            )
        except KubeError as exc:
            log.warning("could not look up NCA job %s: %s", job_id, exc)
            return []
        found = []
        for item in items:
            try:
                found.append(MediaJob.from_object(item))
            except InvalidResource:
                continue
        return found


def parse_body(raw: bytes) -> Any:
    """JSON with its nesting bounded first, so that no body can overflow the parser's stack."""
    if nesting_depth(raw.decode("utf-8", "replace")) > MAX_BODY_DEPTH:
        raise PayloadError(f"body is nested deeper than {MAX_BODY_DEPTH} levels")
    try:
        return json.loads(raw)
    except (RecursionError, MemoryError):  # not expected after the bound; still the body's fault
        raise PayloadError("body is not valid JSON") from None


def check_payload(body: Any) -> dict[str, Any]:
    """The webhook's minimal shape (contract section 4); raises PayloadError with the reason."""
    if not isinstance(body, dict):
        raise PayloadError("body must be a JSON object")
    for field in ("job_id", "id"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise PayloadError(f"'{field}' must be a non-empty string")
    try:
        check_external_job_id(body["job_id"])
    except UnsafeIdError as exc:
        raise PayloadError(str(exc)) from None
    parse_result_payload(body)
    return body


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
        self._port = port
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
        self.port = await self._serve(self.app(), self._port)
        self.metrics_port = await self._serve(self.ops_app(), self.metrics_port)
        log.info("webhooks on port %d; metrics and probes on port %d", self.port, self.metrics_port)

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        self._runners.append(runner)
        await web.TCPSite(runner, self._host, port).start()
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
        if request.content_length is not None and request.content_length > MAX_BODY:
            self._metrics.webhooks.labels(result="too_large").inc()
            return _answer(413, "too-large", f"body over {MAX_BODY} bytes")
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._metrics.webhooks.labels(result="too_large").inc()
            return _answer(413, "too-large", f"body over {MAX_BODY} bytes")
        except TimeoutError:
            self._metrics.webhooks.labels(result="slow_client").inc()
            return _answer(408, "timeout", "body not received in time")
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
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _answer(413, "too-large", f"body over {MAX_BODY} bytes")
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _answer(413, "too-large", f"body over {MAX_BODY} bytes")
        except TimeoutError:
            return _answer(408, "timeout", "body not received in time")
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


def _answer(status: int, result: str, detail: str | None) -> web.Response:
    body: dict[str, Any] = {"result": result}
    if detail:
        body["detail"] = detail
    return web.json_response(body, status=status)

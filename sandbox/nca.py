"""The NCA toolkit's job-status API and webhook behaviour on loopback.

Answers ``POST /v1/toolkit/job/status`` and ``POST /v1/toolkit/jobs/status`` (the listing)
with the exact envelopes recorded from a real NCA (build 209) in ``shared/design/nca-samples/``.
As on a real worker, every status call is itself a job file, so the listing (the states of the
files changed within ``since_seconds``, default 600) fills with the poller's own calls. Jobs follow a timeline
(queued, running, done) driven by a background task, so at "done" the output
lands in the Spaces simulator and the webhook is POSTed once, whether or not
anyone polls; tests can also drive jobs by hand.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

from controller.backoff import wait_event

from ._server import LoopbackServer
from .spaces import SpacesSimulator

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done"]
STATUS_ENDPOINT = "/v1/toolkit/job/status"
LISTING_ENDPOINT = "/v1/toolkit/jobs/status"
COMPOSE = "/v1/ffmpeg/compose"
CONCATENATE = "/v1/video/concatenate"
AUDIO_MIXING = "/audio-mixing"
DEFAULT_SPACES_BASE_URL = "https://phi-bucket.nyc3.digitaloceanspaces.com/phi-bucket"

_HTML_415 = (
    "<!doctype html>\n<html lang=en>\n<title>415 Unsupported Media Type</title>\n"
    "<h1>Unsupported Media Type</h1>\n<p>Did not attempt to load JSON data because the "
    "request Content-Type was not &#39;application/json&#39;.</p>\n"
)
_HTML_400 = (
    "<!doctype html>\n<html lang=en>\n<title>400 Bad Request</title>\n<h1>Bad Request</h1>\n"
    "<p>The browser (or proxy) sent a request that this server could not understand.</p>\n"
)
_HTML_404 = (
    "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
    "<p>The requested URL was not found on the server. If you entered the URL manually "
    "please check your spelling and try again.</p>\n"
)

# Flask's jsonify sorts keys and writes compact JSON with a trailing newline.
_flask_dumps = functools.partial(json.dumps, sort_keys=True, separators=(",", ":"))


def _flask_json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_flask_dumps(data) + "\n", content_type="application/json")


def output_key(job_id: str, endpoint: str) -> str:
    """Where NCA uploads a job's output: compose adds ``_output_0``."""
    return f"{job_id}_output_0.mp4" if endpoint == COMPOSE else f"{job_id}.mp4"


@dataclass
class NcaJob:
    """One job as an NCA worker keeps it on its disk."""

    job_id: str
    endpoint: str
    caller_id: str
    webhook_url: str | None
    queued_s: float
    running_s: float
    fail_message: str | None
    drop_webhook: bool
    upload: bool
    output_urls: list[str] | None
    added_at: float
    pinned: JobStatus | None = None
    started_at: float | None = None
    done_at: float | None = None
    payload: dict[str, Any] | None = None
    webhook_task: asyncio.Task[None] | None = None

    @property
    def done(self) -> bool:
        return self.payload is not None


class NcaSimulator(LoopbackServer):
    """NCA toolkit status endpoint plus job timelines, uploads and one-shot webhooks."""

    build_number = 209

    def __init__(
        self,
        api_key: str,
        *,
        spaces: SpacesSimulator | None = None,
        spaces_base_url: str = DEFAULT_SPACES_BASE_URL,
        drop_webhook_rate: float = 0.0,
        pid: int = 11625,
        queue_id: int = 140153981162064,
        seed: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.spaces = spaces
        self.spaces_base_url = spaces_base_url
        self.drop_webhook_rate = drop_webhook_rate
        self.pid = pid
        self.queue_id = queue_id
        self.jobs: dict[str, NcaJob] = {}
        self.webhooks_sent: list[tuple[str, dict[str, Any], int | None]] = []
        self.webhooks_dropped: list[str] = []
        self._status_calls: Counter[str] = Counter()
        self.listing_calls = 0
        self.call_files: dict[str, float] = {}  # each status call's own job file: id → mtime
        self._random = random.Random(seed)
        self._wake: asyncio.Event | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ test-side API

    def add_job(
        self,
        job_id: str | None = None,
        *,
        endpoint: str = CONCATENATE,
        caller_id: str = "",
        webhook_url: str | None = None,
        queued_s: float = 0.0,
        running_s: float = 0.0,
        fail_message: str | None = None,
        drop_webhook: bool | None = None,
        upload: bool = True,
        output_urls: list[str] | None = None,
    ) -> NcaJob:
        """Register a submitted job; its timeline starts now."""
        jid = job_id or str(uuid.uuid4())
        if drop_webhook is None:
            drop_webhook = self._random.random() < self.drop_webhook_rate
        job = NcaJob(
            job_id=jid,
            endpoint=endpoint,
            caller_id=caller_id,
            webhook_url=webhook_url,
            queued_s=queued_s,
            running_s=running_s,
            fail_message=fail_message,
            drop_webhook=drop_webhook,
            upload=upload,
            output_urls=list(output_urls) if output_urls is not None else None,
            added_at=time.monotonic(),
        )
        self.jobs[jid] = job
        self._poke()
        return job

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status now (finishing it if due), or None if unknown."""
        job = self.jobs.get(job_id)
        return None if job is None else self._advance(job)

    def set_status(self, job_id: str, status: JobStatus) -> None:
        """Pin a job at queued/running (its timeline stops) or finish it now with done."""
        job = self.jobs[job_id]
        if job.done:
            raise ValueError(f"job {job_id} is already done")
        if status == "done":
            self._finalize(job)
            return
        if status == "running" and job.started_at is None:
            job.started_at = time.monotonic()
        job.pinned = status

    def finish_now(self, job_id: str, fail_message: str | None = None) -> None:
        """Finish the job immediately (upload + webhook), failed if ``fail_message``."""
        job = self.jobs[job_id]
        if fail_message is not None:
            job.fail_message = fail_message
        self.set_status(job_id, "done")

    def forget(self, job_id: str) -> None:
        """Drop the job's record, so status answers 404 like a restarted worker."""
        self.jobs.pop(job_id, None)

    def status_calls(self, job_id: str) -> int:
        """How many status requests asked about ``job_id``."""
        return self._status_calls[job_id]

    def output_urls_for(self, job: NcaJob) -> list[str]:
        if job.output_urls:
            return list(job.output_urls)
        base = self.spaces.base_url if self.spaces is not None else self.spaces_base_url
        return [f"{base}/{output_key(job.job_id, job.endpoint)}"]

    async def wait_done(self, job_id: str, within_s: float = 5.0) -> NcaJob:
        """Wait until the job is done and its webhook attempt (if any) has finished."""
        async with asyncio.timeout(within_s):
            while True:
                job = self.jobs.get(job_id)
                if job is not None and job.done:
                    if job.webhook_task is not None:
                        await asyncio.shield(job.webhook_task)
                    return job
                await asyncio.sleep(0.01)

    # ------------------------------------------------------------ timeline

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _advance(self, job: NcaJob) -> JobStatus:
        if job.done:
            return "done"
        if job.pinned is not None:
            return job.pinned
        elapsed = time.monotonic() - job.added_at
        if elapsed < job.queued_s:
            return "queued"
        if elapsed < job.queued_s + job.running_s:
            if job.started_at is None:
                job.started_at = job.added_at + job.queued_s
            return "running"
        self._finalize(job)
        return "done"

    def _pending(self) -> int:
        return sum(1 for job in self.jobs.values() if not job.done)

    def _finalize(self, job: NcaJob) -> None:
        """Mark done: upload outputs, build the payload, fire the webhook once."""
        if job.done:
            return
        now = time.monotonic()
        started = job.started_at if job.started_at is not None else min(now, job.added_at + job.queued_s)
        queue_time = round(max(started - job.added_at, 0.0), 3)
        run_time = round(max(now - started, 0.0), 3)
        failed = job.fail_message is not None
        urls = self.output_urls_for(job)
        if not failed and job.upload and self.spaces is not None:
            prefix = self.spaces.base_url + "/"
            for url in urls:
                if url.startswith(prefix):
                    self.spaces.put_object(url[len(prefix) :])
        response: Any = None
        if not failed:
            response = [{"file_url": u} for u in urls] if job.endpoint == COMPOSE else urls[0]
        job.done_at = now
        job.payload = {
            "endpoint": job.endpoint,
            "code": 500 if failed else 200,
            "id": job.caller_id,
            "job_id": job.job_id,
            "response": response,
            "message": job.fail_message if failed else "success",
            "pid": self.pid,
            "queue_id": self.queue_id,
            "run_time": run_time,
            "queue_time": queue_time,
            "total_time": round(queue_time + run_time, 3),
            "queue_length": self._pending(),
            "build_number": self.build_number,
        }
        log.debug("nca: job %s done (code %s)", job.job_id, job.payload["code"])
        if not job.webhook_url:
            return
        if job.drop_webhook:
            self.webhooks_dropped.append(job.job_id)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("nca: job %s finished outside an event loop, webhook not sent", job.job_id)
            self.webhooks_sent.append((job.webhook_url, dict(job.payload), None))
            return
        job.webhook_task = loop.create_task(self._send_webhook(job.webhook_url, dict(job.payload)))

    async def _send_webhook(self, url: str, payload: dict[str, Any]) -> None:
        """One attempt, no retry; the outcome is only recorded."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        status: int | None = None
        try:
            async with self._session.post(
                url,
                data=json.dumps(payload),
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "python-requests/2.34.2",
                },
            ) as resp:
                await resp.read()
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.debug("nca: webhook to %s failed: %s", url, exc)
        self.webhooks_sent.append((url, payload, status))

    async def _tick(self) -> None:
        assert self._wake is not None
        while True:
            self._wake.clear()
            now = time.monotonic()
            wait: float | None = None
            for job in list(self.jobs.values()):
                if job.done or job.pinned is not None:
                    continue
                due_in = job.added_at + job.queued_s + job.running_s - now
                if due_in <= 0:
                    try:
                        self._finalize(job)
                    except Exception:
                        log.exception("nca: finishing job %s failed", job.job_id)
                else:
                    wait = due_in if wait is None else min(wait, due_in)
            await wait_event(self._wake, wait)

    async def _on_start(self) -> None:
        self._wake = asyncio.Event()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _on_stop(self) -> None:
        tasks: list[asyncio.Task[None]] = [
            job.webhook_task for job in self.jobs.values() if job.webhook_task is not None
        ]
        if self._ticker is not None:
            tasks.append(self._ticker)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._ticker = None
        self._wake = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ HTTP

    def _setup_routes(self, app: web.Application) -> None:
        app.router.add_post(STATUS_ENDPOINT, self._handle_status)
        app.router.add_post(LISTING_ENDPOINT, self._handle_listing)
        app.router.add_route("*", "/{tail:.*}", self._handle_unknown)

    async def _handle_unknown(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text=_HTML_404, content_type="text/html")

    def _envelope(
        self, code: int, call_id: Any, message: Any, response: Any, endpoint: str = STATUS_ENDPOINT
    ) -> dict[str, Any]:
        own_id = str(uuid.uuid4())
        self.call_files[own_id] = time.monotonic()  # the call is a job on the worker's disk too
        return {
            "build_number": self.build_number,
            "code": code,
            "endpoint": endpoint,
            "id": call_id,
            "job_id": own_id,
            "message": message,
            "pid": self.pid,
            "queue_id": self.queue_id,
            "queue_length": self._pending(),
            "queue_time": 0,
            "response": response,
            "run_time": 0.0,
            "total_time": 0.0,
        }

    def _changed_at(self, job: NcaJob) -> float:
        """The job file's mtime: written when queued, when started and when done."""
        self._advance(job)
        return max(t for t in (job.added_at, job.started_at, job.done_at) if t is not None)

    async def _handle_listing(self, request: web.Request) -> web.Response:
        """`jobs/status`: the state of every job file modified within ``since_seconds``."""
        if request.headers.get("X-API-Key") != self.api_key:
            return _flask_json({"message": "Unauthorized"}, 401)
        self.listing_calls += 1
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            return web.Response(status=400, text=_HTML_400, content_type="text/html")
        since = body.get("since_seconds", 600) if isinstance(body, dict) else 600
        if isinstance(since, bool) or not isinstance(since, int | float):
            envelope = self._envelope(
                500, None, f"Failed to retrieve job statuses: {since!r}", None, LISTING_ENDPOINT
            )
            return _flask_json(envelope, 500)
        cutoff = time.monotonic() - since
        states: dict[str, str] = {}
        for job in self.jobs.values():
            if self._changed_at(job) >= cutoff:
                states[job.job_id] = self._advance(job)
        for call_id, at in self.call_files.items():
            if at >= cutoff:
                states[call_id] = "done"
        envelope = self._envelope(200, None, "success", None, LISTING_ENDPOINT)
        states[envelope["job_id"]] = "running"  # the listing's own file, still being written
        envelope["response"] = dict(sorted(states.items()))
        return _flask_json(envelope)

    async def _handle_status(self, request: web.Request) -> web.Response:
        if request.headers.get("X-API-Key") != self.api_key:
            return _flask_json({"message": "Unauthorized"}, 401)
        if request.content_type != "application/json":
            return web.Response(status=415, text=_HTML_415, content_type="text/html")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text=_HTML_400, content_type="text/html")
        if not body:
            return _flask_json({"message": "Missing JSON in request"}, 400)
        if not isinstance(body, dict):
            return _flask_json({"message": f"Invalid payload: {body!r} is not of type 'object'"}, 400)
        if "job_id" not in body:
            return _flask_json({"message": "Invalid payload: 'job_id' is a required property"}, 400)
        job_id = body["job_id"]
        if not isinstance(job_id, str):
            return _flask_json({"message": f"Invalid payload: {job_id!r} is not of type 'string'"}, 400)
        self._status_calls[job_id] += 1
        call_id = body.get("id")
        job = self.jobs.get(job_id)
        if job is None:
            envelope = self._envelope(404, call_id, {"error": "Job not found", "job_id": job_id}, None)
            return _flask_json(envelope, 404)
        status = self._advance(job)
        inner = {
            "job_id": job_id,
            "job_status": status,
            "process_id": self.pid,
            "queue_id": self.queue_id,
            "response": job.payload if status == "done" else None,
        }
        return _flask_json(self._envelope(200, call_id, "success", inner))

"""The NCA toolkit's job-status API, and the payload shape it shares with its webhook.

NCA answers with loosely shaped JSON, so every answer is parsed defensively into a closed set of
results. An answer we cannot read becomes `NcaUnknown` with a clear reason: the job waits and is
asked again later, it is never failed on a shape we did not expect.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from controller.clients import RequestObserver, ignore_request
from controller.naming import check_external_job_id

SYSTEM = "nca"
STATUS_PATH = "/v1/toolkit/job/status"
LISTING_PATH = "/v1/toolkit/jobs/status"
LISTED_STATES = ("queued", "running", "done")
MAX_LISTED = 100_000  # a listing bigger than this is cut: it is only a hint


class PayloadError(ValueError):
    """An NCA result payload (webhook body or `done` status) of an unexpected shape."""


@dataclasses.dataclass(frozen=True, slots=True)
class NcaSucceeded:
    urls: tuple[str, ...]

    @property
    def url(self) -> str:
        return self.urls[0]


@dataclasses.dataclass(frozen=True, slots=True)
class NcaFailed:
    code: int
    message: str


NcaOutcome = NcaSucceeded | NcaFailed


@dataclasses.dataclass(frozen=True, slots=True)
class NcaPending:
    state: str  # "queued" or "running"


@dataclasses.dataclass(frozen=True, slots=True)
class NcaNotFound:
    """NCA does not know the job: maybe another worker has it, or it was lost in a restart."""


@dataclasses.dataclass(frozen=True, slots=True)
class NcaUnknown:
    reason: str


NcaStatus = NcaSucceeded | NcaFailed | NcaPending | NcaNotFound | NcaUnknown


@dataclasses.dataclass(frozen=True, slots=True)
class NcaListing:
    """`jobs/status`: the state of each job whose file one worker changed within the window.

    A hint only: it covers the worker that answered and the window asked for, so a job missing
    from it is not missing from NCA.
    """

    states: dict[str, str]


def parse_listing_body(body: Any) -> NcaListing | NcaUnknown:
    """The envelope of `POST /v1/toolkit/jobs/status` with HTTP 200; odd entries are skipped."""
    if not isinstance(body, dict) or not isinstance(body.get("response"), dict):
        return NcaUnknown("listing answer has no 'response' object")
    states: dict[str, str] = {}
    for job_id, state in body["response"].items():
        if len(states) >= MAX_LISTED:
            break
        if state in LISTED_STATES and isinstance(job_id, str) and len(job_id) <= 63:
            states[job_id] = state
    return NcaListing(states)


def parse_result_payload(payload: Any) -> NcaOutcome:
    """The result of a finished job: the webhook body, or `response.response` of a `done` status.

    `code` 200 means success; the output is `response`, a URL string (concatenate, audio mixing)
    or a list of `{file_url, ...}` (compose, first entry is the video). Any other code is a
    failure whose error text is `message`.
    """
    if not isinstance(payload, dict):
        raise PayloadError(f"payload must be an object, not {type(payload).__name__}")
    code = payload.get("code")
    if isinstance(code, bool) or not isinstance(code, int):
        raise PayloadError("payload 'code' must be an integer")
    if code != 200:
        message = payload.get("message")
        text = message if isinstance(message, str) else repr(message)
        return NcaFailed(code=code, message=_clip(text or f"NCA reported code {code}"))
    response = payload.get("response")
    urls: list[str] = []
    if isinstance(response, str):
        urls.append(response)
    elif isinstance(response, list):
        for item in response:
            if isinstance(item, dict) and isinstance(item.get("file_url"), str):
                urls.append(item["file_url"])
            elif isinstance(item, str):
                urls.append(item)
    if not urls or not all(_looks_like_url(u) for u in urls):
        raise PayloadError("payload with code 200 has no output URL in 'response'")
    return NcaSucceeded(urls=tuple(urls))


def parse_status_body(body: Any) -> NcaStatus:
    """The envelope of `POST /v1/toolkit/job/status` with HTTP 200."""
    if not isinstance(body, dict) or not isinstance(body.get("response"), dict):
        return NcaUnknown("status answer has no 'response' object")
    inner = body["response"]
    state = inner.get("job_status")
    if state in ("queued", "running"):
        return NcaPending(state=state)
    if state != "done":
        return NcaUnknown(f"unexpected job_status {str(state)[:40]!r}")
    try:
        return parse_result_payload(inner.get("response"))
    except PayloadError as exc:
        return NcaUnknown(f"done, but {exc}")


class NcaClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 10,
        observe: RequestObserver = ignore_request,
    ) -> None:
        self._observe = observe
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"X-API-Key": api_key, "User-Agent": "mediajob-controller"},
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def job_status(self, job_id: str) -> NcaStatus:
        check_external_job_id(job_id)
        answer = await self._post(STATUS_PATH, {"job_id": job_id})
        if isinstance(answer, NcaUnknown | NcaNotFound):
            return answer
        return parse_status_body(answer)

    async def jobs_listing(self, since_seconds: float) -> NcaListing | NcaUnknown:
        """Every job whose state changed within `since_seconds`, on the worker that answers."""
        answer = await self._post(LISTING_PATH, {"since_seconds": max(1, round(since_seconds))})
        if isinstance(answer, NcaNotFound):  # "Jobs directory not found": a worker with no jobs yet
            return NcaListing({})
        if isinstance(answer, NcaUnknown):
            return answer
        return parse_listing_body(answer)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON answer of a 200, else what went wrong; NCA records each call on its disk."""
        try:
            response = await self._http.post(path, json=body)
        except httpx.TimeoutException:
            self._observe(SYSTEM, "timeout")
            return NcaUnknown("timeout")
        except httpx.TransportError as exc:
            self._observe(SYSTEM, "connection")
            return NcaUnknown(f"connection error: {type(exc).__name__}")
        self._observe(SYSTEM, str(response.status_code))
        status = response.status_code
        if status == 404:
            return NcaNotFound()
        if status == 401:
            return NcaUnknown("NCA rejected the API key (HTTP 401)")
        if status != 200:
            return NcaUnknown(f"HTTP {status}")
        try:
            return response.json()
        except (ValueError, RecursionError, MemoryError):  # a deeply nested answer overflows the parser
            return NcaUnknown("status answer is not JSON")


def _looks_like_url(value: str) -> bool:
    return value.startswith(("http://", "https://")) and len(value) <= 2048


def _clip(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

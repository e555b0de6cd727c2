"""What NCA and Spaces answered, as closed sets of values, and the parsers that make them.

Pure, so that `decide` and the webhook receiver depend on no client: the clients do the requests
and hand their answers to these parsers. NCA answers with loosely shaped JSON, so every answer is
parsed defensively; one we cannot read becomes `NcaUnknown` with a clear reason, and the job waits
and is asked again later: it is never failed on a shape we did not expect.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

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
    """`jobs/status`: the state of each job whose file changed within the window.

    A hint only: it covers the NCA container that answered (all its workers share one jobs
    folder; another container behind a load balancer has its own) and the window asked for, so
    a job missing from it is not missing from NCA.
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
        text = (message if isinstance(message, str) else repr(message)) or f"NCA reported code {code}"
        return NcaFailed(code=code, message=text if len(text) <= 500 else text[:497] + "...")
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
    if not urls or not all(u.startswith(("http://", "https://")) and len(u) <= 2048 for u in urls):
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


# Spaces


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectFound:
    url: str
    last_modified: datetime | None
    size: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class ObjectMissing:
    url: str
    status: int


@dataclasses.dataclass(frozen=True, slots=True)
class SpacesUnknown:
    """No answer we can trust (5xx, 503 Slow Down, timeout, network): retry, never "missing"."""

    url: str
    reason: str


SpacesResult = ObjectFound | ObjectMissing | SpacesUnknown


def parse_http_date(raw: str | None) -> datetime | None:
    """An aware UTC datetime, or None: never naive, since it is compared with aware times.

    RFC 5322 reads `-0000` (which the email parser returns naive) as UTC; any date that does not
    parse or cannot be expressed in UTC is no date at all.
    """
    if not raw:
        return None
    try:
        parsed = parsedate_to_datetime(raw)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def parse_size(raw: str | None) -> int | None:
    """ASCII digits only: `str.isdigit` also accepts '²', which `int` refuses."""
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > 20:
        return None
    return int(raw)

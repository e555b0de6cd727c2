"""Airtable, through pyairtable, kept off the event loop and inside the base's rate limit.

pyairtable is synchronous and its built-in retry gives up on a 429 after a few seconds, while
Airtable's penalty lasts 30 s. So pyairtable's retry is switched off, each HTTP request is made
by hand through `Api.request` in a worker thread, and the waiting happens here, in async code:
one request start per 1/rate seconds for the base, the whole base paused for the penalty after a
429, and exponential backoff with jitter after a 5xx or a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import requests
from pyairtable import Api, formulas
from requests.adapters import HTTPAdapter

from controller.backoff import RateLimiter, SendPacer, backoff_delay
from controller.clients import RequestObserver, ignore_request
from controller.naming import check_record_id

SYSTEM = "airtable"
MAX_RECORDS_PER_WRITE = 10
IDS_PER_READ = 50  # record ids per read: the formula stays far below Airtable's URL limit

log = logging.getLogger(__name__)
WRITE, READ = 0, 1  # limiter priorities: the write-back goes before the mirror's listing
# ... but a read waits through at most 4 other starts: a takeover with 1,000 results queued must not
# hold the mirror's listing (and so new jobs) back for a minute (python -m bench takeover)
FAIR_EVERY = 4

# Why a call is made, for the quota's per-purpose counter. A context variable, so that the callers
# (the mirror, the push manager) label their calls without threading a label through every method.
PURPOSE_MIRROR = "mirror"
PURPOSE_PAYLOADS = "payloads"
PURPOSE_WRITE = "write"
PURPOSE_READ_BEFORE_WRITE = "read-before-write"
PURPOSE_UPKEEP = "webhook-upkeep"
_purpose: contextvars.ContextVar[str | None] = contextvars.ContextVar("airtable_purpose", default=None)


@contextlib.contextmanager
def calls_for(purpose: str) -> Iterator[None]:
    """Label every Airtable call made inside the block (and in tasks it starts) with `purpose`."""
    token = _purpose.set(purpose)
    try:
        yield
    finally:
        _purpose.reset(token)


class _PacedAdapter(HTTPAdapter):
    def __init__(self, pacer: SendPacer) -> None:
        super().__init__(pool_maxsize=4)
        self._pacer = pacer

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self._pacer.wait()
        return super().send(request, *args, **kwargs)


class AirtableError(Exception):
    """Airtable did not accept a request."""


class AirtableUnavailable(AirtableError):
    """Retrying did not help for now (5xx, timeouts, network): try again later."""


class AirtableRejected(AirtableError):
    """A 4xx other than 429: the request itself is wrong, retrying as-is cannot succeed."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"Airtable rejected the request: HTTP {status} {error_type}: {message}")
        self.status = status


def any_record(record_ids: Sequence[str]) -> formulas.Formula:
    """`OR(RECORD_ID()='rec…', …)`, built by pyairtable.formulas (which quotes what it must)."""
    return formulas.OR(*(formulas.EQ(formulas.RECORD_ID(), r) for r in record_ids))


class AirtableClient:
    def __init__(
        self,
        *,
        api_key: str,
        base_id: str,
        api_url: str,
        requests_per_second: float,
        penalty_seconds: float,
        timeout: tuple[int, int] = (5, 30),
        max_attempts: int = 6,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
        observe: RequestObserver = ignore_request,
        on_rate_limited: Callable[[], None] = lambda: None,
        count_call: Callable[[str], None] = lambda purpose: None,
    ) -> None:
        self._api = Api(api_key, timeout=timeout, retry_strategy=None, endpoint_url=api_url)
        self._base = self._api.base(base_id)
        self._count_call = count_call
        self._limiter = RateLimiter(requests_per_second, fair_every=FAIR_EVERY)
        adapter = _PacedAdapter(SendPacer(self._limiter.interval))
        self._api.session.mount("http://", adapter)
        self._api.session.mount("https://", adapter)
        self._penalty = penalty_seconds
        self._max_attempts = max_attempts
        self._backoff = functools.partial(
            backoff_delay, base=backoff_base, cap=backoff_cap, rng=random.Random()
        )
        self._observe = observe
        self._on_rate_limited = on_rate_limited

    async def close(self) -> None:
        await asyncio.to_thread(self._api.session.close)

    @property
    def paused_for(self) -> float:
        """Seconds left of the pause after a 429 (0 when requests may go)."""
        return self._limiter.penalized_for

    async def list_records(
        self,
        table: str,
        *,
        formula: str | None = None,
        fields: Iterable[str] = (),
        priority: int = WRITE,
    ) -> list[dict[str, Any]]:
        """All records matching the formula: one request per page of up to 100."""
        urls = self._base.table(table).urls
        options: dict[str, Any] = {"page_size": 100}
        if formula:
            options["formula"] = formula
        if fields:
            options["fields"] = list(fields)
        records: list[dict[str, Any]] = []
        while True:
            page = await self._request(
                "GET",
                str(urls.records),
                priority=priority,
                fallback=("POST", str(urls.records_post)),
                options=options,
            )
            if not isinstance(page, dict) or not isinstance(page.get("records"), list):
                raise AirtableError("Airtable list answer has no 'records' list")
            records.extend(r for r in page["records"] if isinstance(r, dict))
            offset = page.get("offset")
            if not offset:
                return records
            options = {**options, "offset": str(offset)}

    async def get_records(
        self, table: str, record_ids: Sequence[str], *, fields: Iterable[str] = ()
    ) -> dict[str, dict[str, Any]]:
        """Fields of the given records, keyed by id; ids that do not exist are absent."""
        found: dict[str, dict[str, Any]] = {}
        ids = [check_record_id(r) for r in dict.fromkeys(record_ids)]
        with calls_for(_purpose.get() or PURPOSE_READ_BEFORE_WRITE):
            for start in range(0, len(ids), IDS_PER_READ):
                chunk = ids[start : start + IDS_PER_READ]
                for record in await self.list_records(table, formula=str(any_record(chunk)), fields=fields):
                    fields_of = record.get("fields")
                    found[str(record.get("id"))] = fields_of if isinstance(fields_of, dict) else {}
        return found

    async def update_records(
        self, table: str, updates: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[dict[str, Any]]:
        """PATCH the records, at most 10 per request (Airtable's limit).

        Returns the records as Airtable answered them (every field, after the write): what the
        row now holds, known without another read."""
        url = str(self._base.table(table).urls.records)
        written: list[dict[str, Any]] = []
        for start in range(0, len(updates), MAX_RECORDS_PER_WRITE):
            chunk = updates[start : start + MAX_RECORDS_PER_WRITE]
            body = {
                "records": [{"id": check_record_id(rid), "fields": dict(f)} for rid, f in chunk],
                "typecast": False,
            }
            answer = await self._request("PATCH", url, json=body)
            records = answer.get("records") if isinstance(answer, dict) else None
            written += [r for r in records if isinstance(r, dict)] if isinstance(records, list) else []
        return written

    # Webhooks (change notifications) and the base's schema --------------------------------------

    def _hooks_url(self, *tail: str) -> str:
        return "/".join([self._base.urls.webhooks, *(quote(segment, safe="") for segment in tail)])

    async def table_schema(self, table: str) -> tuple[str, dict[str, str]]:
        """The table's id and its field ids by name (the webhooks API speaks only ids)."""
        answer = await self._request("GET", str(self._base.urls.tables))
        for item in answer.get("tables", []) if isinstance(answer, dict) else []:
            if isinstance(item, dict) and table in (item.get("id"), item.get("name")):
                fields = {
                    str(f["name"]): str(f["id"])
                    for f in item.get("fields", [])
                    if isinstance(f, dict) and "name" in f and "id" in f
                }
                return str(item["id"]), fields
        raise AirtableRejected(404, "TABLE_NOT_FOUND", f"no table {table!r} in the base's schema")

    async def list_webhooks(self) -> list[dict[str, Any]]:
        answer = await self._request("GET", self._hooks_url())
        hooks = answer.get("webhooks") if isinstance(answer, dict) else None
        return [h for h in hooks if isinstance(h, dict)] if isinstance(hooks, list) else []

    async def create_webhook(self, notification_url: str, specification: Mapping[str, Any]) -> dict[str, Any]:
        body = {"notificationUrl": notification_url, "specification": dict(specification)}
        answer = await self._request("POST", self._hooks_url(), json=body)
        return answer if isinstance(answer, dict) else {}

    async def delete_webhook(self, webhook_id: str) -> None:
        await self._request("DELETE", self._hooks_url(webhook_id))

    async def refresh_webhook(self, webhook_id: str) -> dict[str, Any]:
        answer = await self._request("POST", self._hooks_url(webhook_id, "refresh"))
        return answer if isinstance(answer, dict) else {}

    async def enable_webhook_notifications(self, webhook_id: str) -> None:
        await self._request("POST", self._hooks_url(webhook_id, "enableNotifications"), json={"enable": True})

    async def webhook_payloads(self, webhook_id: str, cursor: int) -> dict[str, Any]:
        """One page (up to 50) of payloads from `cursor`: {payloads, cursor, mightHaveMore}."""
        url = self._hooks_url(webhook_id, "payloads")
        answer = await self._request("GET", url, params={"cursor": cursor}, priority=READ)
        if not isinstance(answer, dict) or not isinstance(answer.get("payloads"), list):
            raise AirtableError("Airtable payloads answer has no 'payloads' list")
        return answer

    async def _request(self, method: str, url: str, *, priority: int = WRITE, **kwargs: Any) -> Any:
        purpose = _purpose.get() or (PURPOSE_WRITE if method in ("PATCH", "PUT", "POST") else PURPOSE_MIRROR)
        if "/webhooks" in url and _purpose.get() is None:
            purpose = PURPOSE_PAYLOADS if url.endswith("/payloads") else PURPOSE_UPKEEP
        for attempt in itertools.count(1):
            await self._limiter.acquire(priority)
            self._count_call(purpose)
            try:
                result = await asyncio.to_thread(self._api.request, method, url, **kwargs)
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                self._observe(SYSTEM, str(status))
                if status == 429:
                    self._on_rate_limited()
                    self._limiter.penalize(self._penalty)
                    log.warning("Airtable answered 429: pausing the base for %.0f s", self._penalty)
                    error: AirtableError = AirtableUnavailable("Airtable kept answering 429")
                elif status >= 500:
                    error = AirtableUnavailable(f"Airtable answered HTTP {status}")
                else:
                    raise _rejected(status, exc.response) from None
            except requests.Timeout:
                self._observe(SYSTEM, "timeout")
                error = AirtableUnavailable("Airtable did not answer in time")
            except requests.RequestException as exc:
                self._observe(SYSTEM, "connection")
                error = AirtableUnavailable(f"cannot reach Airtable: {type(exc).__name__}")
            else:
                self._observe(SYSTEM, "200")
                return result
            if attempt >= self._max_attempts:
                raise error
            if not self._limiter.penalized_for:
                delay = self._backoff(attempt - 1)
                log.info("%s; retry %d in %.1f s", error, attempt, delay)
                await asyncio.sleep(delay)


def _rejected(status: int, response: requests.Response | None) -> AirtableRejected:
    try:
        body = response.json() if response is not None else None
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return AirtableRejected(
            status, str(error.get("type", "UNKNOWN")), str(error.get("message", ""))[:300]
        )
    return AirtableRejected(status, error if isinstance(error, str) else "UNKNOWN", "")

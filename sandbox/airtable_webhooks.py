"""Airtable's webhooks API, as documented, for the Airtable simulator.

- ``POST/GET /v0/bases/{baseId}/webhooks``, ``DELETE .../webhooks/{id}``,
  ``POST .../webhooks/{id}/refresh`` and ``POST .../webhooks/{id}/enableNotifications``;
- ``GET .../webhooks/{id}/payloads?cursor=&limit=`` answering ``{payloads, cursor, mightHaveMore}``,
  at most 50 payloads a page, cursors starting at 1;
- a payload per change transaction, with ``changedTablesById`` holding ``createdRecordsById``,
  ``changedRecordsById`` and ``destroyedRecordIds`` (cell values keyed by field id);
- a notification ping POSTed to ``notificationUrl`` with ``X-Airtable-Content-MAC:
  hmac-sha256=<hex>`` over the body, keyed with the base64-decoded ``macSecretBase64``; pings
  are coalesced while one is in flight, as Airtable sends one ping for several payloads;
- a 7-day life (``expirationTime``) that ``refresh`` and reading payloads extend; an expired
  webhook stops pinging and is gone (404) afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

WEBHOOK_LIFETIME = timedelta(days=7)
MAX_PAYLOADS_PER_PAGE = 50
MAX_WEBHOOKS_PER_BASE = 10
DATA_TYPES = {"tableData", "tableFields", "tableMetadata"}
CHANGE_TYPES = {"add", "remove", "update"}


class WebhookApiError(Exception):
    def __init__(self, status: int, type_: str, message: str) -> None:
        super().__init__(status)
        self.status = status
        self.body: dict[str, Any] = {"error": {"type": type_, "message": message}}


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass
class Change:
    """One record's change in a transaction; ``fields`` are by field id."""

    kind: str  # "add", "update" or "remove"
    record_id: str
    created: datetime | None = None
    current: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)
    unchanged: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimWebhook:
    id: str
    base_id: str
    notification_url: str | None
    specification: dict[str, Any]
    mac_secret: bytes
    created: datetime
    expiration: datetime
    payloads: list[dict[str, Any]] = field(default_factory=list)
    notifications_enabled: bool = True
    last_result: dict[str, Any] | None = None
    last_success: datetime | None = None
    pings_sent: int = 0
    pings_failed: int = 0
    ping_pending: bool = False

    @property
    def filters(self) -> dict[str, Any]:
        return dict(self.specification.get("options", {}).get("filters", {}))

    @property
    def includes(self) -> dict[str, Any]:
        return dict(self.specification.get("options", {}).get("includes") or {})

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "client",
            "isHookEnabled": True,
            "notificationUrl": self.notification_url,
            "cursorForNextPayload": len(self.payloads) + 1,
            "areNotificationsEnabled": self.notifications_enabled,
            "lastNotificationResult": self.last_result,
            "lastSuccessfulNotificationTime": _iso(self.last_success) if self.last_success else None,
            "expirationTime": _iso(self.expiration),
            "specification": self.specification,
        }


def _check_spec(spec: Any, table_ids: set[str]) -> dict[str, Any]:
    """The documented shape of a webhook specification; 422 INVALID_WEBHOOK_SPEC otherwise."""

    def bad(message: str) -> WebhookApiError:
        return WebhookApiError(422, "INVALID_WEBHOOK_SPEC", message)

    if not isinstance(spec, dict) or not isinstance(spec.get("options"), dict):
        raise bad("specification.options is required")
    filters = spec["options"].get("filters")
    if not isinstance(filters, dict):
        raise bad("specification.options.filters is required")
    types = filters.get("dataTypes")
    if not isinstance(types, list) or not types or not set(types) <= DATA_TYPES:
        raise bad("filters.dataTypes must be a non-empty list of tableData, tableFields, tableMetadata")
    scope = filters.get("recordChangeScope")
    if scope is not None and scope not in table_ids:
        raise bad(f"filters.recordChangeScope {scope!r} is not a table id of this base")
    changes = filters.get("changeTypes")
    if changes is not None and (not isinstance(changes, list) or not set(changes) <= CHANGE_TYPES):
        raise bad("filters.changeTypes must list add, remove or update")
    watch = filters.get("watchDataInFieldIds")
    if watch is not None and (not isinstance(watch, list) or not all(isinstance(f, str) for f in watch)):
        raise bad("filters.watchDataInFieldIds must be a list of field ids")
    return spec


class WebhookHub:
    """Every base's webhooks, their payload logs and their pings."""

    def __init__(self, *, lifetime: timedelta = WEBHOOK_LIFETIME, ping_delay_s: float = 0.0) -> None:
        self.lifetime = lifetime
        self.ping_delay_s = ping_delay_s
        self.hooks: dict[str, SimWebhook] = {}
        self.pings: list[tuple[str, int | None]] = []  # (webhook id, HTTP status or None)
        self._transactions = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _live(self, base_id: str, hook_id: str) -> SimWebhook:
        """The webhook, or 404; an expired one is deleted on the way."""
        self._expire()
        hook = self.hooks.get(hook_id)
        if hook is None or hook.base_id != base_id:
            raise WebhookApiError(404, "NOT_FOUND", "Could not find webhook")
        return hook

    def _expire(self) -> None:
        now = self._now()
        for hook_id in [h.id for h in self.hooks.values() if h.expiration <= now]:
            log.debug("airtable: webhook %s expired", hook_id)
            del self.hooks[hook_id]

    # ------------------------------------------------------------ REST

    def create(self, base_id: str, body: Mapping[str, Any], table_ids: set[str]) -> dict[str, Any]:
        self._expire()
        url = body.get("notificationUrl")
        if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
            raise WebhookApiError(422, "INVALID_NOTIFICATION_URL", "notificationUrl must be an http(s) URL")
        spec = _check_spec(body.get("specification"), table_ids)
        if sum(1 for h in self.hooks.values() if h.base_id == base_id) >= MAX_WEBHOOKS_PER_BASE:
            raise WebhookApiError(
                422, "TOO_MANY_WEBHOOKS_BY_OAUTH_INTEGRATION_IN_BASE", "Too many webhooks in this base"
            )
        now = self._now()
        hook = SimWebhook(
            id="ach" + secrets.token_hex(7),
            base_id=base_id,
            notification_url=url,
            specification=json.loads(json.dumps(spec)),
            mac_secret=secrets.token_bytes(64),
            created=now,
            expiration=now + self.lifetime,
        )
        self.hooks[hook.id] = hook
        return {
            "id": hook.id,
            "macSecretBase64": base64.b64encode(hook.mac_secret).decode(),
            "expirationTime": _iso(hook.expiration),
        }

    def list_hooks(self, base_id: str) -> dict[str, Any]:
        self._expire()
        return {"webhooks": [h.to_api() for h in self.hooks.values() if h.base_id == base_id]}

    def delete(self, base_id: str, hook_id: str) -> dict[str, Any]:
        del self.hooks[self._live(base_id, hook_id).id]
        return {}

    def refresh(self, base_id: str, hook_id: str) -> dict[str, Any]:
        hook = self._live(base_id, hook_id)
        hook.expiration = self._now() + self.lifetime
        return {"expirationTime": _iso(hook.expiration)}

    def enable_notifications(self, base_id: str, hook_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        hook = self._live(base_id, hook_id)
        if not isinstance(body.get("enable"), bool):
            raise WebhookApiError(422, "INVALID_REQUEST_UNKNOWN", "enable must be a boolean")
        hook.notifications_enabled = bool(body["enable"])
        return {}

    def payloads(
        self, base_id: str, hook_id: str, cursor_q: str | None, limit_q: str | None
    ) -> dict[str, Any]:
        hook = self._live(base_id, hook_id)
        try:
            cursor = int(cursor_q) if cursor_q else 1
            limit = int(limit_q) if limit_q else MAX_PAYLOADS_PER_PAGE
        except ValueError:
            raise WebhookApiError(
                422, "INVALID_REQUEST_UNKNOWN", "cursor and limit must be integers"
            ) from None
        if cursor < 1 or not 1 <= limit <= MAX_PAYLOADS_PER_PAGE:
            raise WebhookApiError(422, "INVALID_REQUEST_UNKNOWN", "cursor must be >= 1, limit 1 to 50")
        # Reading payloads extends an active webhook's life, as the documentation says.
        hook.expiration = self._now() + self.lifetime
        page = hook.payloads[cursor - 1 : cursor - 1 + limit]
        next_cursor = min(cursor, len(hook.payloads) + 1) + len(page)
        return {
            "payloads": page,
            "cursor": next_cursor,
            "mightHaveMore": next_cursor <= len(hook.payloads),
        }

    # ------------------------------------------------------------ changes → payloads → pings

    def record_changes(
        self,
        base_id: str,
        table_id: str,
        changes: list[Change],
        *,
        source: str,
    ) -> None:
        """One transaction on one table: a payload for each webhook it concerns, then a ping."""
        if not changes:
            return
        self._expire()
        self._transactions += 1
        for hook in list(self.hooks.values()):
            if hook.base_id != base_id:
                continue
            payload = self._payload_for(hook, table_id, changes, source)
            if payload is None:
                continue
            hook.payloads.append(payload)
            self._schedule_ping(hook)

    def _payload_for(
        self, hook: SimWebhook, table_id: str, changes: list[Change], source: str
    ) -> dict[str, Any] | None:
        filters = hook.filters
        if "tableData" not in filters.get("dataTypes", []):
            return None
        scope = filters.get("recordChangeScope")
        if scope is not None and scope != table_id:
            return None
        kinds = set(filters.get("changeTypes") or CHANGE_TYPES)
        watched = filters.get("watchDataInFieldIds")
        includes = hook.includes.get("includeCellValuesInFieldIds")
        with_previous = bool(hook.includes.get("includePreviousCellValues"))
        created: dict[str, Any] = {}
        updated: dict[str, Any] = {}
        destroyed: list[str] = []
        for change in changes:
            if change.kind not in kinds:
                continue
            if change.kind == "add":
                created[change.record_id] = {
                    "createdTime": _iso(change.created or self._now()),
                    "cellValuesByFieldId": dict(change.current),
                }
            elif change.kind == "remove":
                destroyed.append(change.record_id)
            else:
                if watched and not set(change.current) & set(watched):
                    continue
                entry: dict[str, Any] = {"current": {"cellValuesByFieldId": dict(change.current)}}
                if with_previous:
                    entry["previous"] = {"cellValuesByFieldId": dict(change.previous)}
                if includes:
                    extra = {
                        k: v
                        for k, v in change.unchanged.items()
                        if k not in change.current and (includes == "all" or k in includes)
                    }
                    if extra:
                        entry["unchanged"] = {"cellValuesByFieldId": extra}
                updated[change.record_id] = entry
        if not (created or updated or destroyed):
            return None
        table: dict[str, Any] = {}
        if created:
            table["createdRecordsById"] = created
        if updated:
            table["changedRecordsById"] = updated
        if destroyed:
            table["destroyedRecordIds"] = destroyed
        return {
            "timestamp": _iso(self._now()),
            "baseTransactionNumber": self._transactions,
            "payloadFormat": "v0",
            "actionMetadata": {
                "source": source,
                "sourceMetadata": {"user": {"id": "usrSandboxSandbox", "permissionLevel": "create"}},
            },
            "changedTablesById": {table_id: table},
        }

    def _schedule_ping(self, hook: SimWebhook) -> None:
        if hook.ping_pending or not hook.notifications_enabled or not hook.notification_url:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a synchronous test-side edit): the payload waits to be read
        hook.ping_pending = True
        task = loop.create_task(self._ping(hook))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _ping(self, hook: SimWebhook) -> None:
        try:
            if self.ping_delay_s:
                await asyncio.sleep(self.ping_delay_s)
        finally:
            hook.ping_pending = False
        if hook.id not in self.hooks or hook.expiration <= self._now() or not hook.notification_url:
            return
        body = json.dumps(
            {"base": {"id": hook.base_id}, "webhook": {"id": hook.id}, "timestamp": _iso(self._now())}
        ).encode()
        mac = "hmac-sha256=" + hmac.new(hook.mac_secret, body, hashlib.sha256).hexdigest()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                hook.notification_url,
                data=body,
                headers={"Content-Type": "application/json", "X-Airtable-Content-MAC": mac},
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = type(exc).__name__
        ok = status in (200, 204)
        hook.pings_sent += 1
        hook.pings_failed += 0 if ok else 1
        self.pings.append((hook.id, status))
        now = self._now()
        hook.last_result = {
            "success": ok,
            "completionTimestamp": _iso(now),
            "durationMs": round((time.monotonic() - started) * 1000, 3),
            "retryNumber": 0,
        }
        if not ok:
            hook.last_result["error"] = {"message": error or f"HTTP {status}"}
            hook.last_result["willBeRetried"] = False
        else:
            hook.last_success = now

    # ------------------------------------------------------------ test-side

    def expire(self, hook_id: str) -> None:
        """Move the webhook's expiration into the past: it stops pinging and is then gone."""
        with contextlib.suppress(KeyError):
            self.hooks[hook_id].expiration = self._now() - timedelta(seconds=1)

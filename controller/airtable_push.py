"""Push first: Airtable's change notifications (its webhooks API) drive the mirror.

The leader keeps one webhook on the Jobs table, watching only the fields the mirror reads. A ping
carries no data: it says "read the payloads". So a ping costs one call (more only when over 50
payloads wait), the changed rows that are `processing` cost one call per 50, and a quiet table
costs nothing but the upkeep: one listing of the webhooks per check period, a refresh before the
7-day expiry, and a full listing of the `processing` rows every `full_every` as a safety net.

State (the webhook id, its MAC secret and the payload cursor) lives in one Kubernetes Secret: the
MAC secret is a credential, so it belongs in a Secret and never in a status field or a ConfigMap;
and keeping the cursor beside it means a new leader resumes exactly where the old one committed.

Pings may reach any replica (the Service balances them). Every replica verifies the MAC; the
leader acts on a ping at once, a non-leader records it as an annotation on the Secret, which the
leader reads every few seconds (API-server reads are not Airtable calls).

Two rooms: `AirtableWebhook` keeps the webhook's life on Airtable's side (adopt or create it, look
at it once per check period, refresh it, its cursor) and reports facts (`Found`, `Health`);
`PushSource` decides what they mean for the mirror: the `Mode`, full resyncs, wake-ups, batches;
and it teaches the write-back's `KnownRows` what it reads, vouching for them after each payload read.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import enum
import hashlib
import hmac
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pyairtable import formulas

from controller.budget import DiscoveryPace
from controller.changes import PROCESSING, ChangeBatch, IncrementalPolling, list_processing
from controller.clients.airtable import (
    PURPOSE_MIRROR,
    PURPOSE_PAYLOADS,
    PURPOSE_UPKEEP,
    READ,
    AirtableClient,
    AirtableError,
    AirtableRejected,
    any_record,
    calls_for,
)
from controller.clients.kube import KubeClient, KubeError, NotFound
from controller.jobrows import KNOWN_FIELDS, KnownRows, cell_text, record_changes
from controller.model import fmt_time, parse_time, utcnow
from controller.naming import RECORD_ID
from controller.rows import MIRROR_FIELDS
from controller.settings import Secret
from controller.vocabulary import ANNOTATION_AIRTABLE_PING, FIELD_STATUS, MANAGED_BY

log = logging.getLogger(__name__)


class Mode(enum.Enum):
    """How the push source learns of changes now."""

    STARTING = "starting"
    PUSH = "push"  # pings wake the payload reads
    BUSY = "busy"  # new rows every interval: listed incrementally, as polling does; payloads unread
    PAYLOAD_POLLING = "payload-polling"  # no pings (or they stopped): payloads read every interval
    LISTING = "listing"  # no usable webhook: the incremental-polling fallback

    @property
    def reads_payloads(self) -> bool:
        """The payload stream is read, so what it says vouches for the rows (controller.jobrows)."""
        return self in (Mode.PUSH, Mode.PAYLOAD_POLLING)


def busy_pace(calls: Sequence[float], now: float, interval: float, *, busy: bool = False) -> bool:
    """Push spends more on discovery alone than polling's one listing per interval: BUSY_CALLS
    calls in the last BUSY_WINDOW intervals (payload reads the write-back did not ask for, fetches;
    while busy, what push would spend). Pure. The long window keeps a steady load in one mode
    (docs/architecture.md, "Busy"). Leaving costs LEAVE_CALLS at once (the stream's cursor, one
    more listing: PushSource._rejoin_batch): a busy source leaves only when push stays under the
    pace with them, else it would come straight back, paying them each time."""
    threshold = BUSY_CALLS - LEAVE_CALLS if busy else BUSY_CALLS
    return sum(1 for at in calls if now - at < BUSY_WINDOW * interval) >= threshold


def upkeep_period(pinged: bool, check_every: float) -> float:
    """How long the upkeep waits after its last look. A ping since shows that the webhook lives
    and that its pings reach us, which is what the look is for; then it looks only daily (for
    the expiry, refreshed with REFRESH_BEFORE to spare, and what pings cannot show). Pure."""
    return max(check_every, UPKEEP_LONGEST) if pinged else check_every


FORWARDED_LOOK = 2.0  # seconds between looks for a ping that another replica received
REFRESH_BEFORE = timedelta(days=3)  # webhooks live 7 days; refresh with 3 to spare
UPKEEP_LONGEST = 86400.0  # with pings coming, the webhook is still looked at daily
IDS_PER_FETCH = 50
ROWS_PER_PAGE = 100
BUSY_WINDOW, BUSY_CALLS, LEAVE_CALLS = 10, 10, 2  # (intervals, discovery calls, calls): see busy_pace
_KEY_ID, _KEY_SECRET, _KEY_CURSOR, _KEY_URL = "webhookId", "macSecretBase64", "cursor", "notificationUrl"


def mac_matches(secret_b64: str, body: bytes, header: str) -> bool:
    """Airtable signs the raw body with HMAC-SHA256 keyed by the base64-decoded secret. Pure."""
    try:
        key = base64.b64decode(secret_b64, validate=True)
    except ValueError:  # binascii.Error is one
        return False
    expected = "hmac-sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


def webhook_spec(table_id: str, field_ids: dict[str, str]) -> dict[str, Any]:
    """One table, its data only; only the mirror's fields make a payload and a ping (Notes among them,
    so the leader's knowledge of a row stays exact without reads). Status's value comes with each."""
    watched = [field_ids[name] for name in MIRROR_FIELDS if name in field_ids]
    filters: dict[str, Any] = {"dataTypes": ["tableData"], "recordChangeScope": table_id}
    if watched:
        filters["watchDataInFieldIds"] = watched
    options: dict[str, Any] = {"filters": filters}
    if FIELD_STATUS in field_ids:
        options["includes"] = {"includeCellValuesInFieldIds": [field_ids[FIELD_STATUS]]}
    return {"options": options}


def spec_covers(have: Any, want: dict[str, Any]) -> bool:
    """May a webhook with specification `have` be adopted? It must see at least what `want` sees. Pure.

    A webhook made by an earlier version that watches fewer fields would leave changes unseen."""
    options = have.get("options") if isinstance(have, dict) else None
    filters = options.get("filters") if isinstance(options, dict) else None
    if not isinstance(filters, dict):
        return False
    wanted = want["options"]["filters"]
    if "tableData" not in (filters.get("dataTypes") or []):
        return False
    if filters.get("recordChangeScope") != wanted.get("recordChangeScope"):
        return False
    if set(filters.get("changeTypes") or ("add", "remove", "update")) != {"add", "remove", "update"}:
        return False
    watched = filters.get("watchDataInFieldIds")
    if watched is None:
        return True  # every field is watched
    return isinstance(watched, list) and set(wanted.get("watchDataInFieldIds") or []) <= set(watched)


@dataclasses.dataclass
class Changes:
    fetch: set[str]  # may be `processing`: read the row
    touched: set[str]  # changed in any way, or deleted


def read_changes(payloads: Iterable[Any], table_id: str, status_field_id: str | None) -> Changes:
    """The rows a run of payloads touched, and those that may now be `processing`. Pure.

    A row whose payload shows a Status other than `processing` is not fetched: if a job of ours
    was still processing it, the mirror reads it anyway (it is in `touched`)."""
    status: dict[str, str | None] = {}  # the last Status seen, for every touched row
    for kind, rid, cells in record_changes(payloads, table_id):
        if kind == "destroyed":
            status[rid] = "(deleted)"
        elif status_field_id is not None and status_field_id in cells:
            status[rid] = cell_text(cells[status_field_id])
        elif rid not in status:
            status[rid] = None
    fetch = {rid for rid, value in status.items() if value in (None, "processing")}
    return Changes(fetch=fetch, touched=set(status))


@dataclasses.dataclass
class WebhookState:
    webhook_id: str
    mac_secret: Secret
    cursor: int | None
    notification_url: str
    ping_at: str | None = None


class SecretStateStore:
    """The webhook's id, MAC secret and cursor in one Secret; pings seen by non-leaders as an annotation."""

    def __init__(self, kube: KubeClient, *, namespace: str, name: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self.name = name

    async def load(self) -> WebhookState | None:
        """None when the Secret or its webhook id/secret is missing (a lost state: start afresh)."""
        try:
            body = await self._kube.get_secret(self.namespace, self.name)
        except NotFound:
            return None
        data = body.get("data") or {}
        values: dict[str, str] = {}
        for key in (_KEY_ID, _KEY_SECRET, _KEY_CURSOR, _KEY_URL):
            raw = data.get(key)
            try:
                values[key] = base64.b64decode(raw).decode() if isinstance(raw, str) else ""
            except ValueError:  # binascii.Error is one
                values[key] = ""
        if not values[_KEY_ID] or not values[_KEY_SECRET]:
            return None
        cursor = int(values[_KEY_CURSOR]) if values[_KEY_CURSOR].isdigit() else None
        annotations = (body.get("metadata") or {}).get("annotations") or {}
        return WebhookState(
            webhook_id=values[_KEY_ID],
            mac_secret=Secret(values[_KEY_SECRET]),
            cursor=cursor or None,
            notification_url=values[_KEY_URL],
            ping_at=annotations.get(ANNOTATION_AIRTABLE_PING),
        )

    async def save(self, state: WebhookState) -> None:
        string_data = {
            _KEY_ID: state.webhook_id,
            _KEY_SECRET: state.mac_secret.reveal(),
            _KEY_CURSOR: str(state.cursor or ""),
            _KEY_URL: state.notification_url,
        }
        try:
            await self._kube.patch_secret(self.namespace, self.name, {"stringData": string_data})
        except NotFound:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": self.name,
                    "namespace": self.namespace,
                    "labels": dict([MANAGED_BY]),
                },
                "type": "Opaque",
                "stringData": string_data,
            }
            await self._kube.create_secret(self.namespace, body)

    async def save_cursor(self, cursor: int | None) -> None:
        """None: the stream is not followed now (busy); whoever leads next starts afresh."""
        patch = {"stringData": {_KEY_CURSOR: str(cursor or "")}}
        await self._kube.patch_secret(self.namespace, self.name, patch)

    async def mark_ping(self, at: datetime) -> None:
        patch = {"metadata": {"annotations": {ANNOTATION_AIRTABLE_PING: fmt_time(at)}}}
        await self._kube.patch_secret(self.namespace, self.name, patch)


class PingReceiver:
    """Every replica's handler of `POST /webhooks/airtable`: verify, then wake the leader."""

    RELOAD_EVERY = 10.0  # seconds between re-reads of the Secret when a MAC does not match

    def __init__(
        self,
        store: SecretStateStore,
        *,
        leader_source: Callable[[], PushSource | None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._leader_source = leader_source
        self._clock = clock
        self._state: WebhookState | None = None
        self._loaded_at = -math.inf

    async def _secret(self, *, reload: bool) -> str | None:
        source = self._leader_source()
        if source is not None and source.state is not None:
            return source.state.mac_secret.reveal()
        if (reload or self._state is None) and self._clock() - self._loaded_at >= self.RELOAD_EVERY:
            self._loaded_at = self._clock()
            self._state = await self._store.load()
        return self._state.mac_secret.reveal() if self._state else None

    async def receive(self, body: bytes, mac_header: str) -> tuple[int, str]:
        """(HTTP status, result word). No Airtable call is ever made here."""
        try:
            secret = await self._secret(reload=False)
            if secret is None or not mac_matches(secret, body, mac_header):
                secret = await self._secret(reload=True)
            if secret is None:
                return 503, "no-webhook-yet"
            if not mac_matches(secret, body, mac_header):
                return 401, "bad-mac"
            source = self._leader_source()
            if source is not None:
                source.wake()
                return 204, "woken"
            await self._store.mark_ping(utcnow())
            return 204, "forwarded"
        except KubeError as exc:
            log.warning("Airtable ping not handled (Kubernetes API: %s); Airtable will retry", exc)
            return 503, "error"


@dataclasses.dataclass(frozen=True, slots=True)
class Found:
    """What `AirtableWebhook.ensure` found or made."""

    created: bool  # a new webhook: its stream starts now, so every processing row must be listed
    cursor_lost: bool  # adopted, but its cursor is gone: every processing row must be listed too
    notifications: bool  # Airtable pings it; else its payloads must be read every interval


@dataclasses.dataclass(frozen=True, slots=True)
class Health:
    """One look at the webhook (`AirtableWebhook.check`)."""

    gone: bool = False  # expired or deleted: a new one must be made
    waiting: bool = False  # payloads wait unread (while busy: came since the last look)
    failing: bool = False  # its pings fail, or were disabled (and are enabled again now)
    cursor: int | None = None  # where its stream stands now


def cursor_of(hook: dict[str, Any]) -> int:
    return max(int(hook.get("cursorForNextPayload") or 1), 1)


class AirtableWebhook:
    """The webhook's life on Airtable's side; what it means for the mirror is PushSource's to decide."""

    def __init__(
        self,
        airtable: AirtableClient,
        store: SecretStateStore,
        *,
        table: str,
        url: str,
        now: Callable[[], datetime],
    ) -> None:
        self._airtable = airtable
        self.store = store
        self._table = table
        self._url = url
        self._now = now
        self.state: WebhookState | None = None
        self.table_id: str | None = None
        self.field_ids: dict[str, str] = {}
        self._seen: int | None = None  # the stream's cursor at the last check

    async def ensure(self) -> Found:
        """Adopt the webhook named in the Secret if it still fits, else create one."""
        if self.table_id is None:
            self.table_id, self.field_ids = await self._airtable.table_schema(self._table)
            missing = [name for name in KNOWN_FIELDS if name not in self.field_ids]
            if missing:
                log.warning(
                    "the %s table has no field %s: its rows are read before every write",
                    self._table,
                    ", ".join(missing),
                )
        state = await self.store.load()
        hooks = await self._listed()
        wanted = webhook_spec(self.table_id, self.field_ids)
        if (
            state is not None
            and state.webhook_id in hooks
            and state.notification_url == self._url
            and spec_covers(hooks[state.webhook_id].get("specification"), wanted)
        ):
            hook = hooks[state.webhook_id]
            self.state = state
            await self._keep_alive(hook)
            log.info("adopted Airtable webhook %s at cursor %s", state.webhook_id, state.cursor)
            return Found(
                created=False,
                cursor_lost=state.cursor is None,
                notifications=bool(hook.get("areNotificationsEnabled", True)),
            )
        for old_id, hook in hooks.items():
            if hook.get("notificationUrl") == self._url or (state is not None and old_id == state.webhook_id):
                # ours from an earlier life (its secret lost, its URL changed, or it watches
                # fewer fields than this version needs): replace it
                log.info("deleting Airtable webhook %s, which cannot be adopted", old_id)
                await self._airtable.delete_webhook(old_id)
        created = await self._airtable.create_webhook(self._url, wanted)
        new_id, secret = created.get("id"), created.get("macSecretBase64")
        if not isinstance(new_id, str) or not isinstance(secret, str):
            raise AirtableError("Airtable's create-webhook answer has no id or secret")
        self.state = WebhookState(new_id, Secret(secret), cursor=1, notification_url=self._url)
        await self.store.save(self.state)
        log.info("created Airtable webhook %s on table %s", new_id, self._table)
        return Found(created=True, cursor_lost=False, notifications=True)

    async def check(self) -> Health:
        """One listing of the webhooks: alive? pings failing? payloads waiting unread? expiring?"""
        state = self.state
        assert state is not None
        hook = (await self._listed()).get(state.webhook_id)
        if hook is None:
            return Health(gone=True)
        # Payloads wait unread; while busy (no cursor kept), payloads came since the last look.
        cursor, seen, self._seen = cursor_of(hook), self._seen, cursor_of(hook)
        waiting = cursor > state.cursor if state.cursor is not None else seen is not None and cursor > seen
        result = hook.get("lastNotificationResult")
        failing = isinstance(result, dict) and result.get("success") is False
        if not hook.get("areNotificationsEnabled", True):
            await self._airtable.enable_webhook_notifications(state.webhook_id)
            failing = True
        await self._keep_alive(hook)
        return Health(waiting=waiting, failing=failing, cursor=cursor)

    async def save_cursor(self, state: WebhookState, cursor: int | None) -> None:
        if cursor != state.cursor:
            await self.store.save_cursor(cursor)
            state.cursor = cursor

    async def next_cursor(self) -> int:
        """Where the stream stands now: a full listing taken after it misses nothing."""
        assert self.state is not None
        return cursor_of((await self._listed()).get(self.state.webhook_id, {}))

    async def _listed(self) -> dict[str, dict[str, Any]]:
        """The base's webhooks by id (one call)."""
        return {str(h.get("id")): h for h in await self._airtable.list_webhooks()}

    async def _keep_alive(self, hook: dict[str, Any]) -> None:
        assert self.state is not None
        expires = parse_time(hook.get("expirationTime"))
        left = expires - self._now() if expires else None
        if left is not None and left < REFRESH_BEFORE:
            await self._airtable.refresh_webhook(self.state.webhook_id)
            log.info("refreshed Airtable webhook %s (it had %s left)", self.state.webhook_id, left)


class PushSource:
    """The mirror's change source on the leader while the webhook works (its modes: `Mode`)."""

    def __init__(
        self,
        *,
        airtable: AirtableClient,
        store: SecretStateStore,
        table: str,
        notification_url: str,
        interval: float,
        check_every: float,
        full_every: float,
        processing_count: Callable[[], int],
        fallback: IncrementalPolling,
        rows: KnownRows,
        pace: DiscoveryPace,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._airtable = airtable
        self.rows = rows
        rows.follow(self)
        self.webhook = AirtableWebhook(airtable, store, table=table, url=notification_url, now=now)
        self._table = table
        self._interval = interval
        self._check_every = check_every
        self._full_every = full_every
        self._processing_count = processing_count
        self._fallback = fallback
        self._clock = clock
        self._now = now
        self._wake = asyncio.Event()
        self.mode = Mode.STARTING
        self._need_full = True
        self._last_full = -math.inf
        self._last_check = -math.inf
        self._last_read = -math.inf
        self._pinged = False  # a ping arrived since the last upkeep
        self._heard_at = -math.inf  # when the last ping came
        self._listed_from = -math.inf  # when the last committed busy listing began (next: after a ping)
        self._discovery: deque[float] = deque(maxlen=BUSY_CALLS)  # when push spent (or would) a call
        self._vouch_wanted = False  # the write-back waits for a payload read
        self._listed_cursor: int | None = None  # where the last upkeep saw the stream, since leaving busy
        self._last_listing = -math.inf
        self._last_read_at = now()
        self._ping_seen: str | None = None
        # A ping after a quiet spell is read at once; under a stream of pings (our own write-backs
        # make them too) reads are spaced by `spacing`.
        self._pace = pace
        self._uncommitted = False
        self._uncommitted_before = False
        self._woken = True  # the first batch after start reads whatever waits
        self._started_at = now()

    @property
    def spacing(self) -> float:
        """The shortest time between two payload reads: seconds while the quota has room, half an
        interval as it runs out (a ping after a quiet spell is read at once either way)."""
        return self._pace.gap(self._interval / 2)

    def _listing_gap(self) -> float:
        """Busy, the shortest time between two listings: seconds, or an interval as the quota runs out."""
        return self._pace.gap(self._interval)

    @property
    def state(self) -> WebhookState | None:
        return self.webhook.state

    def mode_now(self) -> Mode:
        """The mode as of now: an await may have changed it (type checkers narrow attributes)."""
        return self.mode

    # ------------------------------------------------------------ wake-ups

    def request_read(self) -> None:
        """The write-back wants fresh facts: read payloads as soon as the spacing allows."""
        self._vouch_wanted = True
        self._wake.set()

    @property
    def active(self) -> bool:
        return self.mode in (Mode.STARTING, Mode.PUSH, Mode.PAYLOAD_POLLING)

    @property
    def vouching(self) -> bool:
        """Payloads are read and carry every field the write-back needs (else its changes go unseen)."""
        return (
            self.state is not None
            and self.mode.reads_payloads
            and all(name in self.webhook.field_ids for name in KNOWN_FIELDS)
        )

    def wake(self) -> None:
        self._pinged, self._heard_at = True, self._clock()
        if self.mode is Mode.BUSY and self._clock() - max(self._discovery, default=-math.inf) >= self.spacing:
            self._discovery.append(self._clock())  # push would read payloads for this ping
        if self.mode is Mode.PAYLOAD_POLLING:
            log.info("Airtable pings arrive again: back to push")
            self.mode = Mode.PUSH
        self._wake.set()

    def _busy_now(self) -> Mode:
        """PUSH and BUSY follow what discovery costs (busy_pace); the other modes are left as they are."""
        if self.mode in (Mode.PUSH, Mode.BUSY):
            busy = busy_pace(self._discovery, self._clock(), self._interval, busy=self.mode is Mode.BUSY)
            if busy and self.mode is Mode.PUSH:
                log.info("new Airtable rows come every interval: one incremental listing per interval")
                self._fallback.resume(self._last_read_at)
                self._listed_from = -math.inf
                self.rows.broken()  # no payload read will vouch now: the write-back reads rows
            elif not busy and self.mode is Mode.BUSY:
                log.info("Airtable discovery costs less than a listing an interval again: back to push")
                self._listed_cursor = None
                self._wake.set()  # rejoin the stream
            self.mode = Mode.BUSY if busy else Mode.PUSH
        return self.mode

    async def wait(self, interval: float) -> None:
        """Until a ping (spaced), an upkeep or full resync falls due, or the polling interval in a
        degraded mode; a ping recorded by another replica is looked for every few seconds."""
        look = max(min(interval / 4, FORWARDED_LOOK), 0.05)
        entered = self._clock()
        while True:
            now = self._clock()
            mode = self._busy_now()
            due = self._last_check + upkeep_period(self._pinged, self._check_every)
            if mode is not Mode.LISTING:  # (listing: the fallback keeps its own full resync)
                due = min(due, self._last_full + self._full_every)
            if mode is Mode.BUSY:
                if self._heard_at >= self._listed_from:  # (nothing changed without a ping)
                    due = min(due, self._last_listing + self._listing_gap())
                self._wake.clear()  # a ping only makes the next listing due
            elif mode is not Mode.PUSH or self._uncommitted:  # degraded, or the last cycle failed
                due = min(due, entered + interval)
            if self._wake.is_set() and mode is not Mode.BUSY:
                due = min(due, self._last_read + self.spacing)
            if due <= now:
                self._woken = self._wake.is_set()
                self._wake.clear()
                return
            try:
                async with asyncio.timeout(min(due - now, look)):
                    await self._wake.wait()
            except TimeoutError:
                await self._look_for_forwarded_ping()
            if self._wake.is_set():
                # keep waiting out the spacing, without spinning on the set event
                rest = self._last_read + self.spacing - self._clock()
                if rest > 0:
                    await asyncio.sleep(min(rest, look))

    async def _look_for_forwarded_ping(self) -> None:
        if self.state is None:
            return
        try:
            stored = await self.webhook.store.load()
        except KubeError:
            return
        mark = stored.ping_at if stored else None
        if mark and mark != self._ping_seen:
            at = parse_time(mark)
            since_start = at is not None and at >= self._started_at - timedelta(seconds=1)
            if self._ping_seen is not None or since_start:
                self.wake()
            self._ping_seen = mark

    # ------------------------------------------------------------ batches

    async def next_batch(self) -> ChangeBatch:
        """The next batch; until it is committed, `wait` retries after one interval at most."""
        self._uncommitted_before, self._uncommitted = self._uncommitted, True
        batch = await self._next_batch()
        self._woken = False

        async def commit() -> None:
            await batch.commit()
            self._uncommitted = False

        return dataclasses.replace(batch, commit=commit)

    async def _next_batch(self) -> ChangeBatch:
        retry_due = self._clock() - self._last_check >= self._check_every
        if self.state is None and (self.mode is not Mode.LISTING or retry_due):
            await self._ensure()  # without a webhook, tried again once per check period
        if self.mode is Mode.LISTING:
            return await self._fallback.next_batch()
        if self._clock() - self._last_check >= upkeep_period(self._pinged, self._check_every):
            await self._upkeep()
        if self.mode_now() is Mode.LISTING:  # the upkeep may have given up on the webhook
            return await self._fallback.next_batch()
        if self._need_full or self._clock() - self._last_full >= self._full_every:
            return await self._full_batch()
        if self._busy_now() is Mode.BUSY:
            return await self._busy_batch()
        if self.state is not None and self.state.cursor is None:
            return await self._rejoin_batch()
        if self.mode is Mode.PUSH and not self._woken and not self._uncommitted_before:
            return ChangeBatch([], complete=False)  # only the upkeep was due: nothing to read
        return await self._payload_batch()

    async def _busy_batch(self) -> ChangeBatch:
        """At most one incremental listing per listing gap, and only after a ping (without one
        nothing changed); no payload read: one the write-back would wait on costs a call while
        busy, as a read of its rows does, and vouches for less."""
        started = self._clock()
        if started - self._last_listing < self._listing_gap() or self._heard_at < self._listed_from:
            return ChangeBatch([], complete=False)  # (an upkeep was due)
        try:
            batch = await self._fallback.next_batch()
        finally:  # the next one a listing gap after this one ends
            self._last_listing = self._clock()
        self.rows.learn_rest(batch.records)
        if batch.records:
            self._discovery.append(self._clock())  # push would have fetched them
        state = self.state

        async def commit() -> None:
            await batch.commit()
            self._listed_from = started
            if state is not None:  # the payloads from here on are skipped: see _rejoin_batch
                await self.webhook.save_cursor(state, None)

        return dataclasses.replace(batch, commit=commit)

    async def _rejoin_batch(self) -> ChangeBatch:
        """Back on the stream after busy, whose payloads are skipped, not read (a busy day's come
        to hundreds of pages): the cursor as it stands now, then one more incremental listing,
        which covers every change until then."""
        state = self.state
        assert state is not None
        cursor = await self._cursor_now()
        batch = await self._fallback.next_batch()
        self.rows.learn_rest(batch.records)
        self._last_read, self._last_read_at = self._clock(), self._now()

        async def commit() -> None:
            await batch.commit()
            await self.webhook.save_cursor(state, cursor)

        return dataclasses.replace(batch, commit=commit)

    async def _cursor_now(self) -> int:
        """Where the stream stands: as the upkeep saw it, if it looked since busy ended (no call),
        else one listing of the webhooks."""
        self.rows.broken()
        cursor, self._listed_cursor = self._listed_cursor, None
        if cursor is None:
            with calls_for(PURPOSE_UPKEEP):
                cursor = await self.webhook.next_cursor()
        return cursor

    async def _full_batch(self) -> ChangeBatch:
        """Every processing row; the cursor is taken first, so nothing after it is missed."""
        state = self.state
        assert state is not None
        cursor = state.cursor
        if cursor is None and self.mode is not Mode.BUSY:
            cursor = await self._cursor_now()
        started, started_at = self._clock(), self._now()
        records = await list_processing(self._airtable, self._table)
        self.rows.learn_rest(records)

        async def commit() -> None:
            await self.webhook.save_cursor(state, cursor)
            self._need_full = False
            self._last_full = started
            if self.mode is Mode.BUSY:  # the next busy listing goes on from here
                self._fallback.resume(started_at)

        return ChangeBatch(records, complete=True, commit=commit)

    async def _payload_batch(self) -> ChangeBatch:
        state = self.state
        assert state is not None
        assert state.cursor is not None
        self._last_read, self._last_read_at = self._clock(), self._now()
        if not self._vouch_wanted:
            self._discovery.append(self._last_read)  # a read for the mirror alone
        self._vouch_wanted = False
        cursor = state.cursor
        payloads: list[Any] = []
        with calls_for(PURPOSE_PAYLOADS):
            while True:
                try:
                    page = await self._airtable.webhook_payloads(state.webhook_id, cursor)
                except AirtableRejected as exc:
                    if exc.status == 404:
                        await self._recreate()
                        if self.mode is Mode.LISTING:
                            return await self._fallback.next_batch()
                        return await self._full_batch()
                    raise
                payloads.extend(page["payloads"])
                next_cursor = page.get("cursor")
                if isinstance(next_cursor, int) and next_cursor >= cursor:
                    cursor = next_cursor
                if not page.get("mightHaveMore") or not page["payloads"]:
                    break
        table_id = self.webhook.table_id
        assert table_id is not None
        self.rows.learn_payloads(payloads, table_id, self.webhook.field_ids)
        self.rows.vouch(self._last_read)
        changes = read_changes(payloads, table_id, self.webhook.field_ids.get(FIELD_STATUS))
        touched = changes.touched
        if changes.fetch:
            self._discovery.append(self._clock())
        records, complete = await self._fetch(changes.fetch)
        self.rows.learn_rest(records)

        async def commit() -> None:
            await self.webhook.save_cursor(state, cursor)
            if complete:
                self._last_full = self._last_read

        return ChangeBatch(records, complete=complete, touched=frozenset(touched), commit=commit)

    async def _fetch(self, ids: set[str]) -> tuple[list[dict[str, Any]], bool]:
        """The changed rows that are `processing`: by id (50 a call), or by one full listing when
        that is fewer calls (a burst of new rows)."""
        if not ids:
            return [], False
        by_id = math.ceil(len(ids) / IDS_PER_FETCH)
        full = math.ceil((self._processing_count() + len(ids)) / ROWS_PER_PAGE)
        if full < by_id:
            return await list_processing(self._airtable, self._table), True
        records: list[dict[str, Any]] = []
        ordered = sorted(rid for rid in ids if RECORD_ID.fullmatch(rid))
        with calls_for(PURPOSE_MIRROR):
            for start in range(0, len(ordered), IDS_PER_FETCH):
                chunk = ordered[start : start + IDS_PER_FETCH]
                formula = str(formulas.AND(PROCESSING, any_record(chunk)))
                records += await self._airtable.list_records(
                    self._table, formula=formula, fields=MIRROR_FIELDS, priority=READ
                )
        return records, False

    # ------------------------------------------------------------ the webhook's life

    async def _ensure(self) -> None:
        """Adopt the webhook named in the Secret, else create one; on failure fall back to listing."""
        self._started_at = self._now()
        try:
            with calls_for(PURPOSE_UPKEEP):
                found = await self.webhook.ensure()
        except AirtableError as exc:
            if self.mode is not Mode.LISTING:
                log.warning(
                    "Airtable change notifications unavailable (%s): polling incrementally instead", exc
                )
            self.mode = Mode.LISTING
            self.webhook.state = None
            self.rows.broken()
            self._fallback.force_full()
        else:
            self._found(found)
        self._last_check = self._clock()

    async def _recreate(self) -> None:
        """A new webhook, or incremental polling when Airtable refuses one, as at start-up."""
        log.warning("the Airtable webhook is gone (expired or deleted): creating a new one")
        self.rows.broken()
        self.webhook.state = None
        await self._ensure()

    def _found(self, found: Found) -> None:
        """What a webhook adopted or made means for the source."""
        if found.created:
            self.rows.broken()
            self._need_full = True
        elif found.cursor_lost:
            log.info("the Airtable webhook has no saved cursor (lost, or skipped while busy): listing all")
            self._need_full = True
        elif self._need_full:
            # a new leader resumes at the saved cursor: the payloads since cover everything
            self._need_full = False
            self._last_full = self._clock()
        self.mode = Mode.PUSH if found.notifications else Mode.PAYLOAD_POLLING

    async def _upkeep(self) -> None:
        """One look at the webhook; pings that do not reach us mean reading payloads every interval."""
        self._last_check = self._clock()
        pinged, self._pinged = self._pinged, False
        try:
            with calls_for(PURPOSE_UPKEEP):
                health = await self.webhook.check()
        except AirtableError as exc:
            log.warning("Airtable webhook upkeep failed: %s", exc)
            return
        if health.gone:
            await self._recreate()
            return
        if (health.waiting and not pinged) or health.failing:
            if self.mode in (Mode.PUSH, Mode.BUSY):
                log.warning("Airtable pings are not reaching us: reading payloads every interval")
            self.mode = Mode.PAYLOAD_POLLING
            self._wake.set()
        self._listed_cursor = health.cursor

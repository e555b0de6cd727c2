"""Airtable's REST API v0 on loopback, as pyairtable 3.5 speaks it.

The controller reads and writes the Jobs, Segments and Videos tables through
pyairtable. This simulator answers the same URLs, bodies and error JSON, filters
with a real (safe) formula evaluator, paginates with opaque offsets, enforces
the 10-records-per-write limit and the per-base 5 requests/s limit with its
30-second penalty, so those code paths are exercised for real.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import secrets
import string
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlparse

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ._server import LoopbackServer
from .airtable_webhooks import Change, WebhookApiError, WebhookHub
from .formula import Formula, FormulaError, RecordView, iso

log = logging.getLogger(__name__)

MAX_RECORDS_PER_WRITE = 10
MAX_PAGE_SIZE = 100
_ALNUM = string.ascii_letters + string.digits
_RECORD_ID_RE = re.compile(r"^rec[A-Za-z0-9]{14}$")
_SORT_PARAM_RE = re.compile(r"^sort\[(\d+)\]\[(field|direction)\]$")

RATE_LIMIT_BODY = {
    "errors": [{"error": "RATE_LIMIT_REACHED", "message": "Rate limit exceeded. Please try again later"}]
}
AUTH_BODY = {"error": {"type": "AUTHENTICATION_REQUIRED", "message": "Authentication required"}}
NOT_FOUND_BODY = {"error": "NOT_FOUND"}
RECORD_NOT_FOUND_BODY = {"error": {"type": "MODEL_ID_NOT_FOUND", "message": "Record not found"}}
_INVALID_REQUEST = "Invalid request: parameter validation failed. Check your request data."


def new_id(prefix: str) -> str:
    """An Airtable-looking id: a 3-letter prefix and 14 alphanumerics."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(14))


def _batch(items: Any, verb: str) -> list[Any]:
    """A batch write's `records`: a non-empty list of at most 10, as Airtable requires."""
    if not isinstance(items, list) or not items:
        raise _error(422, "INVALID_RECORDS", "You must provide an array of records")
    if len(items) > MAX_RECORDS_PER_WRITE:
        raise _error(
            422,
            "INVALID_RECORDS",
            f"A maximum of {MAX_RECORDS_PER_WRITE} records can be {verb} per request "
            f"but you have provided {len(items)}.",
        )
    return items


def _is_empty(value: Any) -> bool:
    return value is None or value is False or value == "" or value == []


class _ApiError(Exception):
    """Carries the HTTP status and JSON body Airtable would answer."""

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = dict(body)

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status)


def _error(status: int, type_: str, message: str) -> _ApiError:
    return _ApiError(status, {"error": {"type": type_, "message": message}})


@dataclass
class AirtableRecord:
    """A stored row; ``modified`` backs LAST_MODIFIED_TIME()."""

    id: str
    fields: dict[str, Any]
    created: datetime
    modified: datetime

    def view(self) -> RecordView:
        return RecordView(self.id, self.fields, self.created, self.modified)

    def to_api(self, only: Iterable[str] | None = None) -> dict[str, Any]:
        wanted = None if only is None else set(only)
        fields = {
            k: v for k, v in self.fields.items() if not _is_empty(v) and (wanted is None or k in wanted)
        }
        return {"id": self.id, "createdTime": iso(self.created), "fields": fields}


@dataclass
class _Table:
    name: str
    id: str
    records: dict[str, AirtableRecord] = field(default_factory=dict)
    schema: set[str] | None = None
    base_id: str = ""
    field_ids: dict[str, str] = field(default_factory=dict)

    def field_id(self, name: str) -> str:
        """Field ids are made on first sight of a name, as the UI would when the field is added."""
        fid = self.field_ids.get(name)
        if fid is None:
            fid = self.field_ids[name] = new_id("fld")
        return fid

    def cells(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        return {self.field_id(k): (None if _is_empty(v) else v) for k, v in fields.items()}


def _call_kind(method: str, parts: list[str]) -> str:
    """What a /v0 request is, for the per-month call counter (Airtable cannot know why it was made)."""
    if parts[1] == "meta":
        return "meta"
    if parts[1] == "bases":
        if len(parts) >= 5 and parts[4] == "payloads":
            return "webhook-payloads"
        return "webhook-upkeep"
    if method == "GET" or (len(parts) >= 4 and parts[3] == "listRecords"):
        return "read"
    return "write"


@dataclass
class _Iterator:
    base_id: str
    table_id: str
    remaining: list[str]
    fields: list[str] | None


class AirtableSimulator(LoopbackServer):
    """Bases and tables spring into existence on first use; ids look like Airtable's."""

    def __init__(
        self,
        api_key: str,
        *,
        rate_limit_per_s: float = 5.0,
        penalty_s: float = 30.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.api_key = api_key
        self.rate_limit_per_s = rate_limit_per_s
        self.penalty_s = penalty_s
        self.rate_limited = 0
        self.write_log: list[tuple[float, str, str, dict[str, Any]]] = []
        self._writes: Counter[str] = Counter()
        self._bases: dict[str, dict[str, _Table]] = {}
        self._windows: dict[str, deque[float]] = {}
        self._penalty_until: dict[str, float] = {}
        self._iterators: dict[str, _Iterator] = {}
        self._expired_iterators: set[str] = set()
        self.webhooks = WebhookHub()
        #: API calls answered (not 401/429), by calendar month ("2026-11") and kind of call.
        self.calls: Counter[tuple[str, str]] = Counter()
        self._pending: list[Change] | None = None

    # ------------------------------------------------------------ test-side API

    def add_record(
        self,
        base_id: str,
        table: str,
        fields: Mapping[str, Any],
        record_id: str | None = None,
        created_time: datetime | None = None,
    ) -> str:
        """Insert a row directly (not counted as a write); returns its id."""
        tbl = self._table(base_id, table)
        rid = record_id or new_id("rec")
        if rid in tbl.records:
            raise ValueError(f"record {rid} already exists in {table}")
        created = created_time or datetime.now(UTC)
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        clean = {k: v for k, v in fields.items() if not _is_empty(v)}
        tbl.records[rid] = AirtableRecord(rid, clean, created, created)
        self._emit(tbl, [Change("add", rid, created, tbl.cells(clean))], source="client")
        return rid

    def set_fields(self, base_id: str, table: str, record_id: str, fields: Mapping[str, Any]) -> None:
        """Edit a row behind the controller's back, like a human in the UI (not counted)."""
        tbl = self._table(base_id, table)
        record = tbl.records[record_id]
        change = self._update_change(tbl, record, fields)
        _merge(record, fields)
        self._emit(tbl, [change], source="client")

    def delete_record(self, base_id: str, table: str, record_id: str) -> None:
        """Delete a row behind the controller's back (not counted)."""
        tbl = self._table(base_id, table)
        del tbl.records[record_id]
        self._emit(tbl, [Change("remove", record_id)], source="client")

    def calls_in_month(self, month: str | None = None) -> Counter[str]:
        """This month's (or the given "YYYY-MM") answered API calls by kind; sum() for the total."""
        month = month or datetime.now(UTC).strftime("%Y-%m")
        out: Counter[str] = Counter()
        for (m, kind), n in self.calls.items():
            if m == month:
                out[kind] += n
        return out

    def delete_row(self, base_id: str, table: str, record_id: str) -> None:
        """Delete a row behind the controller's back; later writes to it answer 422 ROW_DOES_NOT_EXIST."""
        del self._table(base_id, table).records[record_id]

    def get_fields(self, base_id: str, table: str, record_id: str) -> dict[str, Any]:
        """The row's non-empty fields; KeyError if there is no such row."""
        record = self._table(base_id, table).records[record_id]
        return {k: v for k, v in record.fields.items() if not _is_empty(v)}

    def records(self, base_id: str, table: str) -> list[dict[str, Any]]:
        """All rows as the API shows them, in creation order."""
        return [r.to_api() for r in self._table(base_id, table).records.values()]

    def set_schema(self, base_id: str, table: str, field_names: Iterable[str]) -> None:
        """Declare the table's fields, so unknown names in formulas and writes answer 422."""
        self._table(base_id, table).schema = set(field_names)

    def table_id(self, base_id: str, table: str) -> str:
        """The ``tbl...`` id; requests may name the table by it instead of its name."""
        return self._table(base_id, table).id

    def field_id(self, base_id: str, table: str, name: str) -> str:
        """The ``fld...`` id of a field, as the metadata API and webhook payloads name it."""
        return self._table(base_id, table).field_id(name)

    def writes_for(self, record_id: str) -> int:
        """How many successful create/update requests touched ``record_id``."""
        return self._writes[record_id]

    def expire_iterators(self) -> None:
        """Make every outstanding offset answer LIST_RECORDS_ITERATOR_NOT_AVAILABLE."""
        self._expired_iterators.update(self._iterators)
        self._iterators.clear()

    def reset_rate_limit(self) -> None:
        """Forget request windows and penalties, e.g. between test phases."""
        self._windows.clear()
        self._penalty_until.clear()

    def in_penalty(self, base_id: str) -> bool:
        return time.monotonic() < self._penalty_until.get(base_id, 0.0)

    # ------------------------------------------------------------ internals

    def _table(self, base_id: str, ref: str, create: bool = True) -> _Table:
        tables = self._bases.setdefault(base_id, {})
        for tbl in tables.values():
            if ref == tbl.id:
                return tbl
        tbl_or_none = tables.get(ref)
        if tbl_or_none is None:
            if not create:
                raise KeyError(ref)
            tbl_or_none = tables[ref] = _Table(name=ref, id=new_id("tbl"), base_id=base_id)
        return tbl_or_none

    def _update_change(self, tbl: _Table, record: AirtableRecord, fields: Mapping[str, Any]) -> Change:
        changed = {k: v for k, v in fields.items() if record.fields.get(k) != (None if _is_empty(v) else v)}
        return Change(
            "update",
            record.id,
            current=tbl.cells(changed),
            previous=tbl.cells({k: record.fields.get(k) for k in changed}),
            unchanged=tbl.cells({k: v for k, v in record.fields.items() if k not in changed}),
        )

    def _emit(self, tbl: _Table, changes: list[Change], *, source: str) -> None:
        changes = [c for c in changes if c.kind != "update" or c.current]
        if self._pending is not None:
            self._pending.extend(changes)
            return
        self.webhooks.record_changes(tbl.base_id, tbl.id, changes, source=source)

    @contextlib.contextmanager
    def _transaction(self, tbl: _Table) -> Iterator[None]:
        """One API request is one Airtable transaction: one payload for all its records."""
        self._pending = []
        try:
            yield
        finally:
            changes, self._pending = self._pending, None
            self._emit(tbl, changes, source="publicApi")

    def _admit(self, base_id: str) -> bool:
        """Sliding one-second window per base; over the limit starts the penalty."""
        if math.isinf(self.rate_limit_per_s):
            return True
        now = time.monotonic()
        until = self._penalty_until.get(base_id)
        window = self._windows.setdefault(base_id, deque())
        if until is not None:
            if now < until:
                return False
            del self._penalty_until[base_id]
            window.clear()
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= max(1, math.floor(self.rate_limit_per_s)):
            self._penalty_until[base_id] = now + self.penalty_s
            log.debug(
                "airtable: base %s over %s req/s, penalty %.1fs",
                base_id,
                self.rate_limit_per_s,
                self.penalty_s,
            )
            return False
        window.append(now)
        return True

    def _middlewares(self) -> list[Middleware]:
        @web.middleware
        async def airtable_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            parts = [p for p in request.path.split("/") if p]
            if not parts or parts[0] != "v0":
                return await handler(request)
            if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
                return web.json_response(AUTH_BODY, status=401)
            base = (
                parts[2] if len(parts) >= 3 and parts[1] == "bases" else parts[1] if len(parts) >= 2 else ""
            )
            if base and base != "meta" and not self._admit(base):
                self.rate_limited += 1
                return web.json_response(RATE_LIMIT_BODY, status=429)
            if len(parts) >= 2:
                self.calls[(datetime.now(UTC).strftime("%Y-%m"), _call_kind(request.method, parts))] += 1
            try:
                return await handler(request)
            except _ApiError as exc:
                return exc.response()
            except WebhookApiError as exc:
                return web.json_response(exc.body, status=exc.status)

        return [airtable_guard]

    def _setup_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v0/meta/whoami", self._whoami)
        r.add_get("/v0/meta/bases/{base}/tables", self._schema)
        hooks = "/v0/bases/{base}/webhooks"
        r.add_post(hooks, self._hook_create)
        r.add_get(hooks, self._hook_list)
        r.add_delete(hooks + "/{hook}", self._hook_delete)
        r.add_post(hooks + "/{hook}/refresh", self._hook_refresh)
        r.add_post(hooks + "/{hook}/enableNotifications", self._hook_enable)
        r.add_get(hooks + "/{hook}/payloads", self._hook_payloads)
        r.add_route("*", "/v0/meta/{tail:.*}", self._not_found)
        r.add_post("/v0/{base}/{table}/listRecords", self._list)
        r.add_get("/v0/{base}/{table}", self._list)
        r.add_post("/v0/{base}/{table}", self._create)
        r.add_patch("/v0/{base}/{table}", self._batch_update)
        r.add_put("/v0/{base}/{table}", self._batch_update)
        r.add_delete("/v0/{base}/{table}", self._batch_delete)
        r.add_get("/v0/{base}/{table}/{record}", self._get_record)
        r.add_patch("/v0/{base}/{table}/{record}", self._update_record)
        r.add_put("/v0/{base}/{table}/{record}", self._update_record)
        r.add_delete("/v0/{base}/{table}/{record}", self._delete_record)
        r.add_route("*", "/{tail:.*}", self._not_found)

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response(NOT_FOUND_BODY, status=404)

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"id": "usrSandboxSandbox", "scopes": ["data.records:read", "data.records:write"]}
        )

    async def _schema(self, request: web.Request) -> web.Response:
        """GET /v0/meta/bases/{baseId}/tables: ids and fields (the declared schema, else those seen)."""
        tables = self._bases.get(request.match_info["base"])
        if tables is None:
            return web.json_response(NOT_FOUND_BODY, status=404)
        out = []
        for tbl in tables.values():
            names = (
                sorted(tbl.schema)
                if tbl.schema is not None
                else sorted({k for r in tbl.records.values() for k in r.fields} | set(tbl.field_ids))
            )
            fields = [{"id": tbl.field_id(n), "name": n, "type": "singleLineText"} for n in names]
            out.append(
                {
                    "id": tbl.id,
                    "name": tbl.name,
                    "primaryFieldId": fields[0]["id"] if fields else "",
                    "fields": fields,
                    "views": [],
                }
            )
        return web.json_response({"tables": out})

    def _table_ids(self, base_id: str) -> set[str]:
        return {t.id for t in self._bases.get(base_id, {}).values()}

    async def _hook_create(self, request: web.Request) -> web.Response:
        base_id = request.match_info["base"]
        body = await _json_body(request)
        return web.json_response(self.webhooks.create(base_id, body, self._table_ids(base_id)))

    async def _hook_list(self, request: web.Request) -> web.Response:
        return web.json_response(self.webhooks.list_hooks(request.match_info["base"]))

    async def _hook_delete(self, request: web.Request) -> web.Response:
        return web.json_response(self.webhooks.delete(request.match_info["base"], request.match_info["hook"]))

    async def _hook_refresh(self, request: web.Request) -> web.Response:
        return web.json_response(
            self.webhooks.refresh(request.match_info["base"], request.match_info["hook"])
        )

    async def _hook_enable(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        answer = self.webhooks.enable_notifications(
            request.match_info["base"], request.match_info["hook"], body
        )
        return web.json_response(answer)

    async def _hook_payloads(self, request: web.Request) -> web.Response:
        q = request.query
        answer = self.webhooks.payloads(
            request.match_info["base"], request.match_info["hook"], q.get("cursor"), q.get("limit")
        )
        return web.json_response(answer)

    async def _on_stop(self) -> None:
        await self.webhooks.close()

    def _req_table(self, request: web.Request) -> tuple[str, _Table]:
        base_id = request.match_info["base"]
        return base_id, self._table(base_id, request.match_info["table"])

    def _find(self, tbl: _Table, record_id: str) -> AirtableRecord:
        record = tbl.records.get(record_id)
        if record is None:
            if _RECORD_ID_RE.match(record_id):
                raise _ApiError(404, RECORD_NOT_FOUND_BODY)
            raise _ApiError(404, NOT_FOUND_BODY)
        return record

    # ------------------------------------------------------------ reads

    async def _list(self, request: web.Request) -> web.Response:
        base_id, tbl = self._req_table(request)
        if request.method == "POST":
            body = await _json_body(request)
            opts = _list_options_from_json(body)
            offset_q = request.query.get("offset")
            if offset_q and "offset" not in opts:
                opts["offset"] = offset_q
        else:
            opts = _list_options_from_query(request)
        page_size = _int_option(opts.get("pageSize"), MAX_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE)
        max_records = _int_option(opts.get("maxRecords"), None, low=1, high=None)
        fields: list[str] | None = opts.get("fields")
        offset = opts.get("offset")
        if offset:
            ids = self._resume(base_id, tbl, str(offset))
        else:
            ids = self._query(tbl, opts.get("filterByFormula"), opts.get("sort") or [])
            if max_records is not None:
                ids = ids[:max_records]
        page, rest = ids[:page_size], ids[page_size:]
        records = [tbl.records[rid].to_api(fields) for rid in page if rid in tbl.records]
        answer: dict[str, Any] = {"records": records}
        if rest:
            token = f"itr{new_id('')}/{rest[0]}"
            self._iterators[token] = _Iterator(base_id, tbl.id, rest, fields)
            answer["offset"] = token
        return web.json_response(answer)

    def _resume(self, base_id: str, tbl: _Table, token: str) -> list[str]:
        if token in self._expired_iterators:
            raise _error(
                422,
                "LIST_RECORDS_ITERATOR_NOT_AVAILABLE",
                "The list records iterator is no longer available.",
            )
        it = self._iterators.pop(token, None)
        if it is None or it.base_id != base_id or it.table_id != tbl.id:
            raise _error(422, "INVALID_OFFSET_VALUE", f"The value of offset {token} is invalid")
        return [rid for rid in it.remaining if rid in tbl.records]

    def _query(self, tbl: _Table, formula_text: Any, sort: list[dict[str, str]]) -> list[str]:
        records = list(tbl.records.values())
        if formula_text:
            try:
                formula = Formula(str(formula_text), tbl.schema)
            except FormulaError as exc:
                raise _error(422, "INVALID_FILTER_BY_FORMULA", str(exc)) from exc
            now = datetime.now(UTC)
            records = [r for r in records if formula.matches(r.view(), now)]
        for spec in reversed(sort):
            name = spec.get("field", "")
            if tbl.schema is not None and name not in tbl.schema:
                raise _error(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
            desc = str(spec.get("direction", "asc")).lower() == "desc"
            records.sort(key=functools.partial(_record_sort_key, name), reverse=desc)
        return [r.id for r in records]

    async def _get_record(self, request: web.Request) -> web.Response:
        _, tbl = self._req_table(request)
        return web.json_response(self._find(tbl, request.match_info["record"]).to_api())

    # ------------------------------------------------------------ writes

    def _check_fields(self, tbl: _Table, fields: Any) -> dict[str, Any]:
        if not isinstance(fields, dict):
            raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST)
        if tbl.schema is not None:
            for name in fields:
                if name not in tbl.schema:
                    raise _error(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
        return fields

    def _record_write(self, tbl: _Table, record: AirtableRecord, fields: Mapping[str, Any]) -> None:
        self._writes[record.id] += 1
        self.write_log.append((time.time(), tbl.name, record.id, dict(fields)))

    def _write(self, tbl: _Table, record: AirtableRecord, fields: Mapping[str, Any], replace: bool) -> None:
        change = self._update_change(
            tbl, record, {**dict.fromkeys(record.fields), **fields} if replace else fields
        )
        if replace:
            record.fields = {}
        _merge(record, fields)
        self._record_write(tbl, record, fields)
        self._emit(tbl, [change], source="publicApi")

    def _create_one(self, tbl: _Table, fields: Mapping[str, Any]) -> AirtableRecord:
        now = datetime.now(UTC)
        record = AirtableRecord(new_id("rec"), {}, now, now)
        _merge(record, fields)
        record.modified = now
        tbl.records[record.id] = record
        self._record_write(tbl, record, fields)
        self._emit(tbl, [Change("add", record.id, now, tbl.cells(record.fields))], source="publicApi")
        return record

    async def _create(self, request: web.Request) -> web.Response:
        _, tbl = self._req_table(request)
        body = await _json_body(request)
        if "records" in body:
            items = _batch(body["records"], "created")
            checked = [self._check_fields(tbl, _item_fields(item)) for item in items]
            with self._transaction(tbl):
                created = [self._create_one(tbl, fields) for fields in checked]
            return web.json_response({"records": [r.to_api() for r in created]})
        if "fields" in body:
            record = self._create_one(tbl, self._check_fields(tbl, body["fields"]))
            return web.json_response(record.to_api())
        raise _error(
            422,
            "INVALID_REQUEST_MISSING_FIELDS",
            'Could not find field "fields" in the request body',
        )

    async def _update_record(self, request: web.Request) -> web.Response:
        _, tbl = self._req_table(request)
        record = self._find(tbl, request.match_info["record"])
        body = await _json_body(request)
        fields = self._check_fields(tbl, body.get("fields"))
        self._write(tbl, record, fields, replace=request.method == "PUT")
        return web.json_response(record.to_api())

    async def _batch_update(self, request: web.Request) -> web.Response:
        _, tbl = self._req_table(request)
        body = await _json_body(request)
        items = _batch(body.get("records"), "updated")
        replace = request.method == "PUT"
        upsert = body.get("performUpsert")
        merge_on: list[str] = []
        if upsert is not None:
            merge_on = list(upsert.get("fieldsToMergeOn") or []) if isinstance(upsert, dict) else []
            if not merge_on:
                raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST)
        # Airtable applies a batch atomically: validate everything first.
        plan: list[tuple[AirtableRecord | None, dict[str, Any]]] = []
        for item in items:
            fields = self._check_fields(tbl, _item_fields(item))
            rid = item.get("id") if isinstance(item, dict) else None
            if rid is not None:
                if rid not in tbl.records:
                    raise _error(422, "ROW_DOES_NOT_EXIST", f"Record ID {rid} does not exist in this table")
                plan.append((tbl.records[rid], fields))
            elif merge_on:
                plan.append((self._upsert_target(tbl, merge_on, fields), fields))
            else:
                raise _error(422, "INVALID_RECORDS", "Record is missing id")
        out: list[dict[str, Any]] = []
        created_ids: list[str] = []
        updated_ids: list[str] = []
        with self._transaction(tbl):
            for target, fields in plan:
                if target is None:
                    target = self._create_one(tbl, fields)
                    created_ids.append(target.id)
                else:
                    self._write(tbl, target, fields, replace)
                    updated_ids.append(target.id)
                out.append(target.to_api())
        answer: dict[str, Any] = {"records": out}
        if merge_on:
            answer.update(createdRecords=created_ids, updatedRecords=updated_ids)
        return web.json_response(answer)

    def _upsert_target(
        self, tbl: _Table, merge_on: list[str], fields: Mapping[str, Any]
    ) -> AirtableRecord | None:
        matches = [
            r
            for r in tbl.records.values()
            if all(r.fields.get(name) == fields.get(name) for name in merge_on)
        ]
        if len(matches) > 1:
            raise _error(
                422,
                "INVALID_VALUE_FOR_COLUMN",
                "Cannot update more than one record with performUpsert",
            )
        return matches[0] if matches else None

    async def _delete_record(self, request: web.Request) -> web.Response:
        _, tbl = self._req_table(request)
        record = self._find(tbl, request.match_info["record"])
        del tbl.records[record.id]
        self._emit(tbl, [Change("remove", record.id)], source="publicApi")
        return web.json_response({"id": record.id, "deleted": True})

    async def _batch_delete(self, request: web.Request) -> web.Response:
        _, tbl = self._req_table(request)
        ids = request.query.getall("records[]", [])
        if not ids or len(ids) > MAX_RECORDS_PER_WRITE:
            raise _error(
                422,
                "INVALID_RECORDS",
                f"You must provide an array of up to {MAX_RECORDS_PER_WRITE} record IDs",
            )
        for rid in ids:
            self._find(tbl, rid)
        for rid in ids:
            del tbl.records[rid]
        self._emit(tbl, [Change("remove", rid) for rid in ids], source="publicApi")
        return web.json_response({"records": [{"id": rid, "deleted": True} for rid in ids]})


# ---------------------------------------------------------------- helpers


def _merge(record: AirtableRecord, fields: Mapping[str, Any]) -> None:
    """PATCH semantics: set given fields, empty values clear the cell."""
    for name, value in fields.items():
        if _is_empty(value):
            record.fields.pop(name, None)
        else:
            record.fields[name] = _enrich(value)
    record.modified = datetime.now(UTC)


def _enrich(value: Any) -> Any:
    """Give written attachments an id and filename, as Airtable does on save."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = []
        for item in value:
            if "url" in item and "id" not in item:
                item = {"id": new_id("att"), **item}
                item.setdefault("filename", unquote(urlparse(str(item["url"])).path.rsplit("/", 1)[-1]))
            out.append(item)
        return out
    return value


def _item_fields(item: Any) -> Any:
    return item.get("fields") if isinstance(item, dict) else None


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()  # cached: the recording middleware already read it
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST) from None
    if not isinstance(body, dict):
        raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST)
    return body


def _list_options_from_query(request: web.Request) -> dict[str, Any]:
    q = request.query
    opts: dict[str, Any] = {}
    for key in ("filterByFormula", "pageSize", "maxRecords", "offset", "view", "cellFormat"):
        if key in q:
            opts[key] = q[key]
    if "fields[]" in q:
        opts["fields"] = q.getall("fields[]")
    sorts: dict[int, dict[str, str]] = {}
    for key, value in q.items():
        match = _SORT_PARAM_RE.match(key)
        if match:
            sorts.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if sorts:
        opts["sort"] = [sorts[i] for i in sorted(sorts)]
    return opts


def _list_options_from_json(body: Mapping[str, Any]) -> dict[str, Any]:
    opts = {k: v for k, v in body.items() if v is not None}
    fields = opts.get("fields")
    if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) for f in fields)):
        raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST)
    sort = opts.get("sort")
    if sort is not None and (not isinstance(sort, list) or not all(isinstance(s, dict) for s in sort)):
        raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST)
    return opts


def _int_option(value: Any, default: int | None, *, low: int, high: int | None) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST) from None
    if number < low or (high is not None and number > high):
        raise _error(422, "INVALID_REQUEST_UNKNOWN", _INVALID_REQUEST)
    return number


def _record_sort_key(name: str, record: AirtableRecord) -> tuple[int, int, Any]:
    return _sort_key(record.fields.get(name))


def _sort_key(value: Any) -> tuple[int, int, Any]:
    if _is_empty(value):
        return (1, 0, 0)
    if isinstance(value, bool):
        return (0, 0, int(value))
    if isinstance(value, int | float):
        return (0, 0, value)
    return (0, 1, str(value))

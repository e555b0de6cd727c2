"""What the leader knows of each Jobs row's Status, External Job ID and Notes, and how fresh it is.

Contract section 2 forbids clobbering a row someone else ended, and Notes must be appended to,
so a write needs the row's current state. Reading it costs an Airtable call per 50 rows; with
push on, the same knowledge comes for free: a row's state is known from the REST rows the leader
has seen (the mirror's listings and fetches, the write-back's own reads, the answers to its
writes), and every later change to those three fields arrives as a webhook payload, because they
are watched. After a payload read that started at time t, every known row is known as of t.
That is the same guarantee a read at t gives, and the write that follows has the same window.

A row is unknown (and so read before it is written) when it was never seen, when a payload did
not carry a value the merge needs, after the webhook or its cursor was lost, and when it was
evicted to keep memory bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from controller.vocabulary import FIELD_EXTERNAL_ID, FIELD_NOTES, FIELD_STATUS

KNOWN_FIELDS = (FIELD_STATUS, FIELD_EXTERNAL_ID, FIELD_NOTES)  # in RowFacts' field order
DELETED = "(deleted)"
MAX_ROWS = 50_000  # ~100 bytes a row beyond its Notes: a bound far above the processing rows


def cell_text(value: Any) -> str | None:
    """A text or single-select cell as text. Pure.

    Single selects come as {id, name, color} in payloads, as text in the REST API."""
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) else None


def _text(value: Any) -> str | None:
    """An empty cell is no value, as the REST API leaves it out."""
    return cell_text(value) or None


@dataclasses.dataclass(frozen=True, slots=True)
class RowFacts:
    status: str | None
    external_job_id: str | None
    notes: str | None

    def as_row(self) -> dict[str, Any] | None:
        """The row as the REST API would give it (empty cells absent); None for a deleted row."""
        if self.status == DELETED:
            return None
        return {k: v for k, v in zip(KNOWN_FIELDS, dataclasses.astuple(self), strict=True) if v is not None}


def facts_from_rest(fields: Mapping[str, Any]) -> RowFacts:
    """A REST row leaves empty cells out, so an absent field is an empty one. Pure."""
    return RowFacts(*(_text(fields.get(name)) for name in KNOWN_FIELDS))


def merge_payload_cells(
    prior: RowFacts | None, cells: Mapping[str, Any], field_ids: Mapping[str, str]
) -> RowFacts | None:
    """A row's facts after one payload's cells (keyed by field id). Pure.

    A payload carries the fields that changed (and the ones listed in the webhook's includes); an
    absent field did not change, so it keeps its prior value, and with no prior value it is
    unknown. A cleared cell comes as null."""
    values: list[str | None] = []
    before = dataclasses.astuple(prior) if prior is not None else None
    for i, name in enumerate(KNOWN_FIELDS):
        fid = field_ids.get(name)
        if fid is not None and fid in cells:
            values.append(_text(cells[fid]))
        elif before is not None:
            values.append(before[i])
        else:
            return None
    return RowFacts(*values)


def record_changes(payloads: Iterable[Any], table_id: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, record id, cells by field id) for each row change in one table's payloads. Pure.

    Kinds: `created`, `changed` (its `current` cells over the `unchanged` ones the webhook
    includes) and `destroyed` (no cells). Anything not shaped as documented is skipped."""
    for payload in payloads:
        tables = payload.get("changedTablesById") if isinstance(payload, dict) else None
        table = tables.get(table_id) if isinstance(tables, dict) else None
        if not isinstance(table, dict):
            continue
        for key, kind in (("createdRecordsById", "created"), ("changedRecordsById", "changed")):
            records = table.get(key)
            for rid, change in records.items() if isinstance(records, dict) else ():
                change = change if isinstance(change, dict) else {}
                sections = (
                    (change,) if kind == "created" else (change.get("unchanged"), change.get("current"))
                )
                cells: dict[str, Any] = {}
                for section in sections:
                    found = section.get("cellValuesByFieldId") if isinstance(section, dict) else None
                    cells.update(found if isinstance(found, dict) else {})
                yield kind, str(rid), cells
        destroyed = table.get("destroyedRecordIds")
        for rid in destroyed if isinstance(destroyed, list) else ():
            yield "destroyed", str(rid), {}


class PayloadStream(Protocol):
    """The push source, as the row knowledge sees it (controller.airtable_push.PushSource)."""

    @property
    def active(self) -> bool:
        """The mirror is on push (or starting it): payload reads are coming."""

    @property
    def vouching(self) -> bool:
        """Payloads are being read and carry every field the write-back needs."""

    def request_read(self) -> None: ...


class KnownRows:
    """What the leader knows of the Jobs rows, and up to when a payload stream vouches for it.

    One per leadership term, built by the runtime and given to the push source (which teaches
    it and vouches) and the write-back (which asks it and teaches it its own reads and writes)."""

    def __init__(self, max_rows: int = MAX_ROWS) -> None:
        self._rows: OrderedDict[str, RowFacts] = OrderedDict()
        self._max = max_rows
        self._stream: PayloadStream | None = None
        self.fresh_at = -math.inf  # the start of the last payload read applied
        self._fresh = asyncio.Event()

    def __len__(self) -> int:
        return len(self._rows)

    def follow(self, stream: PayloadStream) -> None:
        self._stream = stream

    @property
    def streaming(self) -> bool:
        """A payload stream is on (or starting): worth waiting for rather than reading."""
        return self._stream is not None and self._stream.active

    @property
    def vouching(self) -> bool:
        return self._stream is not None and self._stream.vouching

    def as_of(self, record_id: str, since: float = -math.inf) -> RowFacts | None:
        """The row's facts if a payload read that started after `since` vouches for them, else
        None (unknown: read it); without `since`, whatever is known."""
        return self._rows.get(record_id) if since <= self.fresh_at else None

    async def wait_fresh(self, since: float, timeout: float) -> bool:
        """Wait (at most `timeout`) for a payload read that started after `since`; False when no
        stream vouches (then the caller reads the rows)."""
        try:
            async with asyncio.timeout(timeout):
                while self.fresh_at < since:
                    if self._stream is None or not self._stream.vouching:
                        return False
                    self._stream.request_read()
                    self._fresh.clear()
                    await self._fresh.wait()
        except TimeoutError:
            return False
        return self.vouching

    def vouch(self, started: float) -> None:
        """A payload read that started at `started` has been applied."""
        self.fresh_at = started
        self._fresh.set()

    def learn(self, record_id: str, facts: RowFacts | None) -> None:
        if facts is None:
            self._rows.pop(record_id, None)
            return
        self._rows[record_id] = facts
        self._rows.move_to_end(record_id)
        while len(self._rows) > self._max:
            self._rows.popitem(last=False)

    def learn_rest(self, records: Iterable[Mapping[str, Any]]) -> None:
        """REST records ({id, fields}) as listed or as answered to a write."""
        for record in records:
            fields = record.get("fields")
            rid = record.get("id")
            if isinstance(rid, str) and isinstance(fields, Mapping):
                self.learn(rid, facts_from_rest(fields))

    def learn_payloads(self, payloads: Iterable[Any], table_id: str, field_ids: Mapping[str, str]) -> None:
        """Apply a run of webhook payloads, in order: the last change to a row wins."""
        for kind, rid, cells in record_changes(payloads, table_id):
            if kind == "destroyed":
                self.learn(rid, RowFacts(DELETED, None, None))
            else:
                prior = self._rows.get(rid) if kind == "changed" else None
                self.learn(rid, merge_payload_cells(prior, cells, field_ids))

    def broken(self) -> None:
        """The payload stream broke (a new webhook, a lost cursor): nothing known is vouched for."""
        self._rows.clear()
        self.vouch(-math.inf)

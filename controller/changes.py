"""Where the mirror learns which Jobs rows to look at: a change source.

Airtable caps API calls per month (1,000 on Free, 100,000 on Team), so how the mirror finds rows
is a quota decision. The seed listed every `processing` row every interval, one call per 100 rows
even when idle (`bench.quota.FullListing` keeps it as the benchmarks' baseline). A source hands
the mirror a batch of `processing` rows and says how much of the table it covers:

- `IncrementalPolling`: only rows modified since the last cycle (`LAST_MODIFIED_TIME()`), and every
  row on a long period: the fallback when change notifications are not configured;
- `controller.airtable_push.PushSource`: Airtable's webhooks (near-zero calls when idle).

A batch is committed only after the mirror handled it, so a failed cycle reads the same changes
again instead of losing them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pyairtable import formulas

from controller.clients.airtable import PURPOSE_MIRROR, READ, AirtableClient, calls_for
from controller.rows import MIRROR_FIELDS
from controller.vocabulary import FIELD_STATUS

PROCESSING = formulas.match({FIELD_STATUS: "processing"})  # the rows the mirror follows
# How far back an incremental listing reaches before the previous cycle's start: covers clock
# skew between this pod and Airtable, and writes that landed while the previous listing ran.
INCREMENTAL_OVERLAP = timedelta(seconds=60)


async def _nothing() -> None:
    return None


@dataclasses.dataclass(frozen=True)
class ChangeBatch:
    """`records`: the `processing` rows to mirror. `complete`: they are all of them, so a job whose
    row is absent has left `processing`. Otherwise only the rows in `touched` (changed in any way,
    or deleted) may have left it."""

    records: list[dict[str, Any]]
    complete: bool
    touched: frozenset[str] = frozenset()
    commit: Callable[[], Awaitable[None]] = _nothing

    def may_have_departed(self, record_id: str) -> bool:
        return self.complete or record_id in self.touched


class ChangeSource(Protocol):
    async def next_batch(self) -> ChangeBatch: ...

    async def wait(self, interval: float) -> None:
        """Return when the next batch is due (at the latest after `interval` for polling sources)."""


def is_processing(record: Any) -> bool:
    fields = record.get("fields") if isinstance(record, dict) else None
    return isinstance(fields, dict) and fields.get(FIELD_STATUS) == "processing"


def record_ids(records: list[dict[str, Any]]) -> frozenset[str]:
    return frozenset(str(r["id"]) for r in records if isinstance(r, dict) and isinstance(r.get("id"), str))


async def list_processing(airtable: AirtableClient, table: str) -> list[dict[str, Any]]:
    return await _mirror_listing(airtable, table, str(PROCESSING))


async def _mirror_listing(airtable: AirtableClient, table: str, formula: str) -> list[dict[str, Any]]:
    with calls_for(PURPOSE_MIRROR):
        return await airtable.list_records(table, formula=formula, fields=MIRROR_FIELDS, priority=READ)


def modified_since_formula(since: datetime) -> str:
    """Rows modified after `since`; LAST_MODIFIED_TIME() is the creation time of a row never edited."""
    return str(formulas.IS_AFTER(formulas.LAST_MODIFIED_TIME(), since.astimezone(UTC)))


class IncrementalPolling:
    """Rows changed since the last cycle, and every `processing` row every `full_every` seconds.

    Idle, it still costs one call per interval (the listing answers empty); what it saves is pages:
    a cycle costs one call per 100 changed rows instead of one per 100 processing rows.
    """

    def __init__(
        self,
        airtable: AirtableClient,
        table: str,
        *,
        full_every: float,
        overlap: timedelta = INCREMENTAL_OVERLAP,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._airtable = airtable
        self._table = table
        self._full_every = full_every
        self._overlap = overlap
        self._now = now
        self._since: datetime | None = None
        self._last_full: float | None = None

    def full_due(self) -> bool:
        return (
            self._since is None
            or self._last_full is None
            or time.monotonic() - self._last_full >= self._full_every
        )

    def force_full(self) -> None:
        self._last_full = None

    def resume(self, covered_until: datetime) -> None:
        """Another source (the push source's payloads) covered every change until then."""
        self._since, self._last_full = covered_until - self._overlap, time.monotonic()

    async def next_batch(self) -> ChangeBatch:
        started, started_clock = self._now(), time.monotonic()

        async def commit_full() -> None:
            self._since, self._last_full = started - self._overlap, started_clock

        async def commit_incremental() -> None:
            self._since = started - self._overlap

        if self.full_due():
            return ChangeBatch(await list_processing(self._airtable, self._table), True, commit=commit_full)
        assert self._since is not None
        changed = await _mirror_listing(self._airtable, self._table, modified_since_formula(self._since))
        return ChangeBatch(
            [r for r in changed if is_processing(r)],
            complete=False,
            touched=record_ids(changed),
            commit=commit_incremental,
        )

    async def wait(self, interval: float) -> None:
        await asyncio.sleep(interval)

"""The simulator's webhooks API, driven by pyairtable's own webhook client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
from aiohttp import web
from pyairtable import Api
from pyairtable.models import WebhookNotification

from sandbox import AirtableSimulator
from tests.loopback import serve

AIRTABLE_KEY = "patSandboxKey.0123456789"  # as in conftest
BASE = "appSandboxBase001"
AUTH = {"Authorization": f"Bearer {AIRTABLE_KEY}"}


@dataclass
class Pings:
    url: str = ""
    bodies: list[tuple[str, str]] = field(default_factory=list)  # (raw body, MAC header)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def pings() -> AsyncIterator[Pings]:
    got = Pings()

    async def hook(request: web.Request) -> web.Response:
        got.bodies.append((await request.text(), request.headers.get("X-Airtable-Content-MAC", "")))
        got.arrived.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhooks/airtable", hook)
    async with serve(app) as url:
        got.url = f"{url}/webhooks/airtable"
        yield got


def jobs_spec(sim: AirtableSimulator, *watched: str) -> dict[str, Any]:
    filters: dict[str, Any] = {"dataTypes": ["tableData"], "recordChangeScope": sim.table_id(BASE, "Jobs")}
    if watched:
        filters["watchDataInFieldIds"] = [sim.field_id(BASE, "Jobs", name) for name in watched]
    return {"options": {"filters": filters}}


async def wait_for_ping(pings: Pings, count: int) -> None:
    async with asyncio.timeout(5):
        while len(pings.bodies) < count:
            pings.arrived.clear()
            await pings.arrived.wait()


async def test_create_list_refresh_delete_with_pyairtable(airtable: AirtableSimulator, pings: Pings) -> None:
    airtable.add_record(BASE, "Jobs", {"Status": "pending"})
    base = Api(AIRTABLE_KEY, endpoint_url=airtable.url).base(BASE)
    created = await asyncio.to_thread(base.add_webhook, pings.url, jobs_spec(airtable, "Status"))
    assert created.id.startswith("ach")
    assert created.expiration_time is not None
    lifetime = created.expiration_time - datetime.now(UTC)
    assert timedelta(days=6, hours=23) < lifetime <= timedelta(days=7)
    [hook] = await asyncio.to_thread(base.webhooks)
    assert (hook.id, hook.cursor_for_next_payload, hook.notification_url) == (created.id, 1, pings.url)
    assert hook.specification.options.filters.record_change_scope == airtable.table_id(BASE, "Jobs")
    airtable.webhooks.hooks[hook.id].expiration = datetime.now(UTC) + timedelta(hours=1)
    await asyncio.to_thread(hook.extend_expiration)
    [again] = await asyncio.to_thread(base.webhooks)
    assert again.expiration_time is not None
    assert again.expiration_time - datetime.now(UTC) > timedelta(days=6, hours=23)
    await asyncio.to_thread(hook.delete)
    assert await asyncio.to_thread(base.webhooks) == []


async def test_payloads_follow_the_cursor_and_pings_carry_a_valid_mac(
    airtable: AirtableSimulator, pings: Pings
) -> None:
    api = Api(AIRTABLE_KEY, endpoint_url=airtable.url)
    base = api.base(BASE)
    airtable.set_schema(BASE, "Jobs", ["Status", "External Job ID", "Notes"])
    created = await asyncio.to_thread(base.add_webhook, pings.url, jobs_spec(airtable, "Status"))
    rid = airtable.add_record(BASE, "Jobs", {"Status": "processing", "External Job ID": "j-1"})
    await wait_for_ping(pings, 1)
    body, mac = pings.bodies[0]
    note = WebhookNotification.from_request(body, mac, created.mac_secret_base64)
    assert (note.base.id, note.webhook.id) == (BASE, created.id)
    with pytest.raises(ValueError, match="MAC"):
        WebhookNotification.from_request(body, mac[:-2] + "00", created.mac_secret_base64)

    # A write through the API on a watched field is a payload; one on an unwatched field is not.
    table = api.table(BASE, "Jobs")
    await asyncio.to_thread(table.update, rid, {"Notes": "unwatched"})
    await asyncio.to_thread(table.update, rid, {"Status": "completed"})
    airtable.delete_record(BASE, "Jobs", rid)
    hook = (await asyncio.to_thread(base.webhooks))[0]
    assert hook.cursor_for_next_payload == 4
    got = await asyncio.to_thread(lambda: list(hook.payloads(cursor=1)))
    assert [p.cursor for p in got] == [1, 2, 3]
    tbl = airtable.table_id(BASE, "Jobs")
    status_fid = airtable.field_id(BASE, "Jobs", "Status")
    assert rid in got[0].changed_tables_by_id[tbl].created_records_by_id
    changed = got[1].changed_tables_by_id[tbl].changed_records_by_id[rid]
    assert changed.current.cell_values_by_field_id == {status_fid: "completed"}
    assert got[1].action_metadata is not None
    assert got[1].action_metadata.source == "publicApi"
    assert got[2].changed_tables_by_id[tbl].destroyed_record_ids == [rid]
    # Resuming from a saved cursor gives only what came after it.
    later = await asyncio.to_thread(lambda: list(hook.payloads(cursor=3)))
    assert [p.cursor for p in later] == [3]


async def test_pages_of_fifty_with_might_have_more(
    airtable: AirtableSimulator, client: httpx.AsyncClient
) -> None:
    airtable.add_record(BASE, "Jobs", {"Status": "pending"})
    created = await client.post(
        f"{airtable.url}/v0/bases/{BASE}/webhooks",
        headers=AUTH,
        json={"specification": jobs_spec(airtable)},
    )
    hook_id = created.json()["id"]
    for i in range(120):
        airtable.add_record(BASE, "Jobs", {"Status": "processing", "External Job ID": f"j-{i}"})
    url = f"{airtable.url}/v0/bases/{BASE}/webhooks/{hook_id}/payloads"
    first = (await client.get(url, headers=AUTH, params={"cursor": 1})).json()
    assert (len(first["payloads"]), first["cursor"], first["mightHaveMore"]) == (50, 51, True)
    last = (await client.get(url, headers=AUTH, params={"cursor": 101})).json()
    assert (len(last["payloads"]), last["cursor"], last["mightHaveMore"]) == (20, 121, False)
    empty = (await client.get(url, headers=AUTH, params={"cursor": 121})).json()
    assert (empty["payloads"], empty["cursor"], empty["mightHaveMore"]) == ([], 121, False)
    bad = await client.get(url, headers=AUTH, params={"cursor": 0})
    assert bad.status_code == 422


async def test_expired_webhook_stops_pinging_and_is_gone(airtable: AirtableSimulator, pings: Pings) -> None:
    airtable.add_record(BASE, "Jobs", {"Status": "pending"})
    base = Api(AIRTABLE_KEY, endpoint_url=airtable.url).base(BASE)
    created = await asyncio.to_thread(base.add_webhook, pings.url, jobs_spec(airtable))
    airtable.webhooks.expire(created.id)
    airtable.add_record(BASE, "Jobs", {"Status": "processing"})
    await asyncio.sleep(0.2)
    assert pings.bodies == []
    assert await asyncio.to_thread(base.webhooks) == []
    refresh = await asyncio.to_thread(
        requests.post,
        f"{airtable.url}/v0/bases/{BASE}/webhooks/{created.id}/refresh",
        headers=AUTH,
        timeout=5,
    )
    assert refresh.status_code == 404


async def test_bad_specs_are_refused(airtable: AirtableSimulator, client: httpx.AsyncClient) -> None:
    airtable.add_record(BASE, "Jobs", {"Status": "pending"})
    url = f"{airtable.url}/v0/bases/{BASE}/webhooks"
    for spec in (
        {},
        {"options": {"filters": {"dataTypes": []}}},
        {"options": {"filters": {"dataTypes": ["tableData"], "recordChangeScope": "tblNoSuchTable0000"}}},
    ):
        answer = await client.post(url, headers=AUTH, json={"specification": spec})
        assert answer.status_code == 422, spec
        assert answer.json()["error"]["type"] == "INVALID_WEBHOOK_SPEC"


async def test_webhook_calls_share_the_base_rate_limit_and_are_counted_by_month() -> None:
    async with (
        AirtableSimulator(AIRTABLE_KEY, rate_limit_per_s=5, penalty_s=30) as sim,
        httpx.AsyncClient() as c,
    ):
        sim.add_record(BASE, "Jobs", {"Status": "pending"})
        answers = [
            (await c.get(f"{sim.url}/v0/bases/{BASE}/webhooks", headers=AUTH)).status_code for _ in range(6)
        ]
        assert answers == [200] * 5 + [429]
        listing = await c.get(f"{sim.url}/v0/{BASE}/Jobs", headers=AUTH)
        assert listing.status_code == 429  # the same base, the same window
        assert sim.calls_in_month() == {"webhook-upkeep": 5}

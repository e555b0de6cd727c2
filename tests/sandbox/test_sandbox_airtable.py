"""The Airtable simulator over the wire, with httpx and with pyairtable's real client."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import requests
from pyairtable import Api

from sandbox import AirtableSimulator

AIRTABLE_KEY = "patSandboxKey.0123456789"  # as in conftest
BASE = "appSandboxBase001"
AUTH = {"Authorization": f"Bearer {AIRTABLE_KEY}"}


def api_for(sim: AirtableSimulator, *, retry: bool = False) -> Api:
    return Api(AIRTABLE_KEY, endpoint_url=sim.url, retry_strategy=True if retry else None)


def seed_jobs(sim: AirtableSimulator, count: int, **fields: Any) -> list[str]:
    return [sim.add_record(BASE, "Jobs", {"Name": f"job-{i}", **fields}) for i in range(count)]


async def test_auth_required(airtable: AirtableSimulator, client: httpx.AsyncClient) -> None:
    expected = {"error": {"type": "AUTHENTICATION_REQUIRED", "message": "Authentication required"}}
    missing = await client.get(f"{airtable.url}/v0/{BASE}/Jobs")
    wrong = await client.get(f"{airtable.url}/v0/{BASE}/Jobs", headers={"Authorization": "Bearer nope"})
    assert (missing.status_code, missing.json()) == (401, expected)
    assert (wrong.status_code, wrong.json()) == (401, expected)
    ok = await client.get(f"{airtable.url}/v0/{BASE}/Jobs", headers=AUTH)
    assert (ok.status_code, ok.json()) == (200, {"records": []})


async def test_ids_shape_and_empty_fields_omitted(
    airtable: AirtableSimulator, client: httpx.AsyncClient
) -> None:
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rid = airtable.add_record(
        BASE, "Jobs", {"Status": "pending", "Notes": "", "Video": []}, created_time=created
    )
    assert re.fullmatch(r"rec[A-Za-z0-9]{14}", rid)
    resp = await client.get(f"{airtable.url}/v0/{BASE}/Jobs/{rid}", headers=AUTH)
    assert resp.json() == {
        "id": rid,
        "createdTime": "2026-01-02T03:04:05.000Z",
        "fields": {"Status": "pending"},
    }
    assert airtable.get_fields(BASE, "Jobs", rid) == {"Status": "pending"}
    assert airtable.records(BASE, "Jobs") == [resp.json()]
    missing = await client.get(f"{airtable.url}/v0/{BASE}/Jobs/recAAAAAAAAAAAAAA", headers=AUTH)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "MODEL_ID_NOT_FOUND"
    junk = await client.get(f"{airtable.url}/v0/{BASE}/Jobs/garbage", headers=AUTH)
    assert (junk.status_code, junk.json()) == (404, {"error": "NOT_FOUND"})


async def test_pagination_with_offsets(airtable: AirtableSimulator, client: httpx.AsyncClient) -> None:
    ids = seed_jobs(airtable, 230)
    seen: list[str] = []
    offsets: list[str] = []
    params: dict[str, Any] = {}
    while True:
        resp = await client.get(f"{airtable.url}/v0/{BASE}/Jobs", params=params, headers=AUTH)
        assert resp.status_code == 200
        body = resp.json()
        seen += [r["id"] for r in body["records"]]
        if "offset" not in body:
            break
        offsets.append(body["offset"])
        params = {"offset": body["offset"]}
    assert seen == ids
    assert len(offsets) == 2
    assert all(re.fullmatch(r"itr[A-Za-z0-9]{14}/rec[A-Za-z0-9]{14}", o) for o in offsets)
    small = await client.get(
        f"{airtable.url}/v0/{BASE}/Jobs", params={"pageSize": 7, "maxRecords": 10}, headers=AUTH
    )
    assert [r["id"] for r in small.json()["records"]] == ids[:7]
    rest = await client.get(
        f"{airtable.url}/v0/{BASE}/Jobs", params={"offset": small.json()["offset"]}, headers=AUTH
    )
    assert [r["id"] for r in rest.json()["records"]] == ids[7:10]
    assert "offset" not in rest.json()
    too_big = await client.get(f"{airtable.url}/v0/{BASE}/Jobs", params={"pageSize": 101}, headers=AUTH)
    assert too_big.status_code == 422
    bogus = await client.get(
        f"{airtable.url}/v0/{BASE}/Jobs", params={"offset": "itrNope/recNope"}, headers=AUTH
    )
    assert bogus.status_code == 422


async def test_expired_iterator(airtable: AirtableSimulator, client: httpx.AsyncClient) -> None:
    seed_jobs(airtable, 3)
    first = await client.get(f"{airtable.url}/v0/{BASE}/Jobs", params={"pageSize": 1}, headers=AUTH)
    airtable.expire_iterators()
    resp = await client.get(
        f"{airtable.url}/v0/{BASE}/Jobs", params={"offset": first.json()["offset"]}, headers=AUTH
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "LIST_RECORDS_ITERATOR_NOT_AVAILABLE"


async def test_pyairtable_all_paginates_filters_and_selects_fields(
    airtable: AirtableSimulator,
) -> None:
    processing = seed_jobs(airtable, 120, Status="processing", Notes="n")
    seed_jobs(airtable, 15, Status="completed")
    table = api_for(airtable).table(BASE, "Jobs")
    rows = await asyncio.to_thread(
        table.all, formula="{Status}='processing'", fields=["Status"], page_size=50
    )
    assert [r["id"] for r in rows] == processing
    assert all(r["fields"] == {"Status": "processing"} for r in rows)
    assert airtable.count("GET", path_contains="/Jobs") == 3  # 50 + 50 + 20


async def test_pyairtable_falls_back_to_post_list_records(airtable: AirtableSimulator) -> None:
    wanted = seed_jobs(airtable, 5)
    seed_jobs(airtable, 5)
    decoys = [f"rec{i:014d}" for i in range(700)]
    formula = "OR(" + ",".join(f"RECORD_ID()='{rid}'" for rid in decoys + wanted) + ")"
    assert len(formula) > 16000
    table = api_for(airtable).table(BASE, "Jobs")
    rows = await asyncio.to_thread(table.all, formula=formula, sort=["-Name"])
    assert [r["id"] for r in rows] == list(reversed(wanted))
    assert airtable.count("POST", path_contains="/listRecords") == 1
    posted = airtable.requests[-1].json
    assert posted["filterByFormula"] == formula
    assert posted["sort"] == [{"field": "Name", "direction": "desc"}]


async def test_formulas(airtable: AirtableSimulator, client: httpx.AsyncClient) -> None:
    now = datetime.now(UTC)
    old = airtable.add_record(
        BASE,
        "Jobs",
        {"Status": "processing", "Created Time": (now - timedelta(minutes=30)).isoformat()},
    )
    fresh = airtable.add_record(
        BASE,
        "Jobs",
        {"Status": "processing", "Created Time": (now - timedelta(minutes=1)).isoformat()},
    )
    done = airtable.add_record(BASE, "Jobs", {"Status": "completed"})

    async def select(formula: str) -> list[str]:
        resp = await client.get(
            f"{airtable.url}/v0/{BASE}/Jobs", params={"filterByFormula": formula}, headers=AUTH
        )
        assert resp.status_code == 200, resp.text
        return [r["id"] for r in resp.json()["records"]]

    assert await select("{Status}='processing'") == [old, fresh]
    assert await select(f"OR(RECORD_ID()='{done}', RECORD_ID()=\"{fresh}\")") == [fresh, done]
    assert await select(f"AND({{Status}}='processing', RECORD_ID()='{old}')") == [old]
    assert await select(
        "AND({Status}='processing', IS_BEFORE({Created Time}, DATEADD(NOW(), -5, 'minutes')))"
    ) == [old]
    assert await select("{Created Time}=''") == [done]
    assert await select("DATETIME_DIFF(NOW(), {Created Time}, 'minutes') >= 29") == [old]

    bad = await client.get(
        f"{airtable.url}/v0/{BASE}/Jobs", params={"filterByFormula": "{Status='x'"}, headers=AUTH
    )
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["type"] == "INVALID_FILTER_BY_FORMULA"
    assert error["message"].startswith("The formula for filtering records is invalid: ")
    unknown_fn = await client.get(
        f"{airtable.url}/v0/{BASE}/Jobs", params={"filterByFormula": "EVAL('1')"}, headers=AUTH
    )
    assert unknown_fn.status_code == 422


async def test_pyairtable_sees_422_for_bad_formula_and_unknown_field(
    airtable: AirtableSimulator,
) -> None:
    airtable.set_schema(BASE, "Jobs", ["Status", "Notes"])
    table = api_for(airtable).table(BASE, "Jobs")
    with pytest.raises(requests.HTTPError) as err:
        await asyncio.to_thread(table.all, formula="AND({Status}='x'")
    assert err.value.response.status_code == 422
    assert "INVALID_FILTER_BY_FORMULA" in str(err.value)
    with pytest.raises(requests.HTTPError) as err:
        await asyncio.to_thread(table.all, formula="{Nope}='x'")
    assert "Unknown field names: nope" in err.value.response.text
    with pytest.raises(requests.HTTPError) as err:
        await asyncio.to_thread(table.create, {"Nope": 1})
    assert err.value.response.json()["error"]["type"] == "UNKNOWN_FIELD_NAME"


async def test_pyairtable_update_merges_replace_puts_and_counts_writes(
    airtable: AirtableSimulator,
) -> None:
    rid = airtable.add_record(BASE, "Jobs", {"Status": "processing", "Notes": "old"})
    before = datetime.now(UTC)
    table = api_for(airtable).table(BASE, "Jobs")
    out = await asyncio.to_thread(table.update, rid, {"Status": "completed"})
    assert out["fields"] == {"Status": "completed", "Notes": "old"}
    assert airtable.requests[-1].method == "PATCH"
    assert airtable.requests[-1].json == {
        "fields": {"Status": "completed"},
        "typecast": False,
        "returnFieldsByFieldId": False,
    }
    out = await asyncio.to_thread(table.update, rid, {"Notes": "new"}, replace=True)
    assert out["fields"] == {"Notes": "new"}
    assert airtable.requests[-1].method == "PUT"
    assert airtable.writes_for(rid) == 2
    assert [(t, r, f) for _, t, r, f in airtable.write_log] == [
        ("Jobs", rid, {"Status": "completed"}),
        ("Jobs", rid, {"Notes": "new"}),
    ]
    assert airtable.write_log[0][0] >= before.timestamp() - 1
    recent = await asyncio.to_thread(
        table.all, formula="IS_AFTER(LAST_MODIFIED_TIME(), DATEADD(NOW(), -1, 'minutes'))"
    )
    assert [r["id"] for r in recent] == [rid]
    with pytest.raises(requests.HTTPError) as err:
        await asyncio.to_thread(table.update, "recAAAAAAAAAAAAAA", {"Status": "x"})
    assert err.value.response.status_code == 404


async def test_batch_update_chunks_and_limits(airtable: AirtableSimulator, client: httpx.AsyncClient) -> None:
    ids = seed_jobs(airtable, 15, Status="processing")
    table = api_for(airtable).table(BASE, "Jobs")
    updated = await asyncio.to_thread(
        table.batch_update, [{"id": rid, "fields": {"Status": "completed"}} for rid in ids]
    )
    assert [r["id"] for r in updated] == ids
    assert airtable.count("PATCH") == 2  # pyairtable sends 10 + 5
    assert {airtable.get_fields(BASE, "Jobs", rid)["Status"] for rid in ids} == {"completed"}
    assert all(airtable.writes_for(rid) == 1 for rid in ids)

    eleven = {"records": [{"id": rid, "fields": {"Status": "x"}} for rid in ids[:11]]}
    resp = await client.patch(f"{airtable.url}/v0/{BASE}/Jobs", json=eleven, headers=AUTH)
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "INVALID_RECORDS"
    unknown = {
        "records": [
            {"id": ids[0], "fields": {"Status": "y"}},
            {"id": "recAAAAAAAAAAAAAA", "fields": {"Status": "y"}},
        ]
    }
    resp = await client.patch(f"{airtable.url}/v0/{BASE}/Jobs", json=unknown, headers=AUTH)
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "ROW_DOES_NOT_EXIST"
    assert airtable.get_fields(BASE, "Jobs", ids[0])["Status"] == "completed"  # atomic
    assert airtable.writes_for(ids[0]) == 1


async def test_create_single_batch_and_limit(airtable: AirtableSimulator, client: httpx.AsyncClient) -> None:
    table = api_for(airtable).table(BASE, "Segments")
    one = await asyncio.to_thread(table.create, {"Status": "new"})
    many = await asyncio.to_thread(table.batch_create, [{"n": i} for i in range(12)])
    assert len(many) == 12
    assert airtable.count("POST", path_contains="/Segments") == 3
    assert [r["id"] for r in airtable.records(BASE, "Segments")] == [one["id"]] + [r["id"] for r in many]
    assert airtable.writes_for(one["id"]) == 1
    body = {"records": [{"fields": {"n": i}} for i in range(11)]}
    resp = await client.post(f"{airtable.url}/v0/{BASE}/Segments", json=body, headers=AUTH)
    assert resp.status_code == 422
    assert resp.json()["error"]["type"] == "INVALID_RECORDS"
    seg = airtable.table_id(BASE, "Segments")
    by_id = await client.get(f"{airtable.url}/v0/{BASE}/{seg}", headers=AUTH)
    assert len(by_id.json()["records"]) == 13


async def test_attachments_get_id_and_filename(airtable: AirtableSimulator) -> None:
    rid = airtable.add_record(BASE, "Videos", {"Name": "v"})
    table = api_for(airtable).table(BASE, "Videos")
    url = "http://spaces.local/phi-bucket/abc.mp4"
    out = await asyncio.to_thread(table.update, rid, {"Video + Music": [{"url": url}]})
    [att] = out["fields"]["Video + Music"]
    assert att["url"] == url
    assert att["filename"] == "abc.mp4"
    assert re.fullmatch(r"att[A-Za-z0-9]{14}", att["id"])


async def test_rate_limit_then_penalty(client: httpx.AsyncClient) -> None:
    body_429 = {
        "errors": [
            {
                "error": "RATE_LIMIT_REACHED",
                "message": "Rate limit exceeded. Please try again later",
            }
        ]
    }
    async with AirtableSimulator(AIRTABLE_KEY, rate_limit_per_s=5, penalty_s=0.5) as sim:
        url = f"{sim.url}/v0/{BASE}/Jobs"
        statuses = [(await client.get(url, headers=AUTH)).status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        penalized = await client.get(url, headers=AUTH)
        assert (penalized.status_code, penalized.json()) == (429, body_429)
        assert sim.in_penalty(BASE)
        other = await client.get(f"{sim.url}/v0/appOtherBase00001/Jobs", headers=AUTH)
        assert other.status_code == 200
        await asyncio.sleep(0.55)
        assert (await client.get(url, headers=AUTH)).status_code == 200
        assert sim.rate_limited == 2
        assert [r.status for r in sim.requests].count(429) == 2


async def test_slow_requests_stay_under_the_limit(client: httpx.AsyncClient) -> None:
    async with AirtableSimulator(AIRTABLE_KEY, rate_limit_per_s=5, penalty_s=30) as sim:
        started = time.monotonic()
        for _ in range(7):
            assert (await client.get(f"{sim.url}/v0/{BASE}/Jobs", headers=AUTH)).status_code == 200
            await asyncio.sleep(0.21)
        assert time.monotonic() - started > 1.2
        assert sim.rate_limited == 0


async def test_pyairtable_retries_through_the_penalty() -> None:
    async with AirtableSimulator(AIRTABLE_KEY, rate_limit_per_s=2, penalty_s=0.3) as sim:
        rid = sim.add_record(BASE, "Jobs", {"Status": "pending"})
        table = api_for(sim, retry=True).table(BASE, "Jobs")

        def three_reads() -> list[str]:
            return [table.get(rid)["fields"]["Status"] for _ in range(3)]

        assert await asyncio.to_thread(three_reads) == ["pending"] * 3
        assert sim.rate_limited >= 1

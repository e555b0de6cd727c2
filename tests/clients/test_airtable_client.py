"""AirtableClient (pyairtable underneath) against the Airtable simulator over loopback HTTP."""

import asyncio
import time

import pytest

from controller.clients.airtable import AirtableClient, AirtableRejected, AirtableUnavailable
from sandbox import AirtableSimulator
from tests.clients.conftest import AIRTABLE_KEY, BASE


def seed(sim: AirtableSimulator, n: int, status: str = "processing") -> list[str]:
    return [
        sim.add_record(BASE, "Jobs", {"Status": status, "External Job ID": f"job-{i}", "Notes": "n"})
        for i in range(n)
    ]


def client_for(sim: AirtableSimulator, **overrides: object) -> AirtableClient:
    options: dict[str, object] = {
        "api_key": AIRTABLE_KEY,
        "base_id": BASE,
        "api_url": sim.url,
        "requests_per_second": 4.5,
        "penalty_seconds": 0.6,
        "timeout": (1, 1),
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
    }
    options.update(overrides)
    return AirtableClient(**options)  # type: ignore[arg-type]


async def test_list_is_one_request_per_100_rows_with_only_the_asked_fields(
    airtable_sim: AirtableSimulator, airtable: AirtableClient
) -> None:
    ids = seed(airtable_sim, 250)
    seed(airtable_sim, 30, status="completed")
    records = await airtable.list_records(
        "Jobs", formula="{Status}='processing'", fields=["Status", "External Job ID"]
    )
    assert [r["id"] for r in records] == ids
    assert all(set(r["fields"]) == {"Status", "External Job ID"} for r in records)
    assert airtable_sim.count("GET") == 3


async def test_get_records_by_id(airtable_sim: AirtableSimulator, airtable: AirtableClient) -> None:
    ids = seed(airtable_sim, 120)
    wanted = [*ids[::2], "recMISSINGaaaaaaa"]
    found = await airtable.get_records("Jobs", wanted, fields=["External Job ID"])
    assert set(found) == set(ids[::2])
    assert found[ids[0]] == {"External Job ID": "job-0"}
    assert airtable_sim.count() == 2  # 61 ids in chunks of 50


async def test_updates_go_in_batches_of_ten(
    airtable_sim: AirtableSimulator, airtable: AirtableClient
) -> None:
    ids = seed(airtable_sim, 25)
    answer = await airtable.update_records("Jobs", [(rid, {"Status": "completed"}) for rid in ids])
    assert airtable_sim.count("PATCH") == 3
    # the rows as they now are, every field: what the write-back then knows without a read
    assert [r["id"] for r in answer] == ids
    assert answer[0]["fields"] == airtable_sim.get_fields(BASE, "Jobs", ids[0])
    assert all(len(r.json["records"]) <= 10 for r in airtable_sim.requests if r.method == "PATCH")  # type: ignore[index]
    assert {airtable_sim.get_fields(BASE, "Jobs", rid)["Status"] for rid in ids} == {"completed"}
    assert all(airtable_sim.writes_for(rid) == 1 for rid in ids)
    assert airtable_sim.get_fields(BASE, "Jobs", ids[0])["Notes"] == "n"  # PATCH merges


async def test_the_limiter_keeps_the_base_under_5_per_second(
    airtable_sim: AirtableSimulator, airtable: AirtableClient
) -> None:
    ids = seed(airtable_sim, 1)
    start = time.monotonic()
    await asyncio.gather(*(airtable.update_records("Jobs", [(ids[0], {"Notes": str(i)})]) for i in range(12)))
    elapsed = time.monotonic() - start
    assert airtable_sim.rate_limited == 0
    assert airtable_sim.count("PATCH") == 12
    assert elapsed >= 11 / 4.5 - 0.1


async def test_a_429_waits_out_the_penalty_and_succeeds(airtable_sim: AirtableSimulator) -> None:
    ids = seed(airtable_sim, 1)
    hits: list[float] = []
    client = client_for(
        airtable_sim, requests_per_second=100, on_rate_limited=lambda: hits.append(time.monotonic())
    )
    try:
        await asyncio.gather(
            *(client.update_records("Jobs", [(ids[0], {"Notes": str(i)})]) for i in range(10))
        )
    finally:
        await client.close()
    assert airtable_sim.rate_limited >= 1
    assert len(hits) == airtable_sim.rate_limited
    patched = [r for r in airtable_sim.requests if r.method == "PATCH" and r.status == 200]
    assert len(patched) == 10


async def test_the_429_penalty_is_waited_not_hammered(airtable_sim: AirtableSimulator) -> None:
    ids = seed(airtable_sim, 1)
    airtable_sim.faults.fail_next(1, 429, body={"errors": [{"error": "RATE_LIMIT_REACHED"}]})
    client = client_for(airtable_sim, penalty_seconds=0.8)
    try:
        start = time.monotonic()
        await client.update_records("Jobs", [(ids[0], {"Notes": "x"})])
        assert time.monotonic() - start >= 0.8
    finally:
        await client.close()
    assert airtable_sim.count("PATCH") == 2


@pytest.mark.parametrize("fault", ["500", "502", "503", "hang", "drop"])
async def test_transient_faults_are_retried_with_backoff(
    airtable_sim: AirtableSimulator, airtable: AirtableClient, fault: str
) -> None:
    ids = seed(airtable_sim, 1)
    if fault == "hang":
        airtable_sim.faults.hang_next(2, 3.0)
    elif fault == "drop":
        airtable_sim.faults.drop_next(2)
    else:
        airtable_sim.faults.fail_next(2, int(fault))
    await airtable.update_records("Jobs", [(ids[0], {"Status": "completed"})])
    assert airtable_sim.get_fields(BASE, "Jobs", ids[0])["Status"] == "completed"
    assert airtable_sim.count("PATCH") == 3


async def test_persistent_5xx_gives_up_with_unavailable(airtable_sim: AirtableSimulator) -> None:
    ids = seed(airtable_sim, 1)
    airtable_sim.faults.fail_next(10, 500)
    client = client_for(airtable_sim, max_attempts=3)
    try:
        with pytest.raises(AirtableUnavailable, match="HTTP 500"):
            await client.update_records("Jobs", [(ids[0], {"Status": "completed"})])
    finally:
        await client.close()
    assert airtable_sim.count("PATCH") == 3


async def test_nothing_listening_is_unavailable() -> None:
    client = AirtableClient(
        api_key=AIRTABLE_KEY,
        base_id=BASE,
        api_url="http://127.0.0.1:9",
        requests_per_second=50,
        penalty_seconds=1,
        max_attempts=2,
        backoff_base=0.01,
        backoff_cap=0.01,
    )
    try:
        with pytest.raises(AirtableUnavailable, match="cannot reach Airtable"):
            await client.list_records("Jobs")
    finally:
        await client.close()


async def test_a_rejected_request_is_not_retried(
    airtable_sim: AirtableSimulator, airtable: AirtableClient
) -> None:
    ids = seed(airtable_sim, 1)
    with pytest.raises(AirtableRejected) as info:
        await airtable.update_records(
            "Jobs", [(ids[0], {"Status": "completed"}), ("recNOPEaaaaaaaaaa", {"Status": "x"})]
        )
    assert info.value.status == 422
    assert airtable_sim.count("PATCH") == 1
    assert airtable_sim.writes_for(ids[0]) == 0  # the batch is all or nothing


async def test_a_bad_formula_is_rejected(airtable: AirtableClient) -> None:
    with pytest.raises(AirtableRejected, match="INVALID_FILTER_BY_FORMULA"):
        await airtable.list_records("Jobs", formula="{Status}='processing")


async def test_a_wrong_key_is_rejected_without_showing_it(airtable_sim: AirtableSimulator) -> None:
    client = client_for(airtable_sim, api_key="patWRONGsecret.0000")
    try:
        with pytest.raises(AirtableRejected) as info:
            await client.list_records("Jobs")
    finally:
        await client.close()
    assert info.value.status == 401
    assert "patWRONGsecret" not in str(info.value)

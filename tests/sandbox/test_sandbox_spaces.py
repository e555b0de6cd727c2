"""The Spaces bucket: appear-at-time objects, 404/403 for missing, 503 SlowDown."""

from __future__ import annotations

import asyncio
import re
import time
from email.utils import formatdate, parsedate_to_datetime

import httpx

from sandbox import SpacesSimulator


async def test_object_appears_at_its_time(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    at = time.time() + 0.4
    spaces.put_object("job1.mp4", size=2048, at=at)
    url = f"{spaces.base_url}/job1.mp4"
    assert spaces.base_url == f"{spaces.url}/phi-bucket"
    early = await client.head(url)
    assert early.status_code == 404
    assert early.content == b""
    await asyncio.sleep(at - time.time() + 0.05)
    resp = await client.head(url)
    assert resp.status_code == 200
    assert resp.headers["Content-Length"] == "2048"
    assert resp.headers["Last-Modified"] == formatdate(at, usegmt=True)
    assert parsedate_to_datetime(resp.headers["Last-Modified"]).timestamp() == int(at)
    assert re.fullmatch(r'"[0-9a-f]{32}"', resp.headers["ETag"])
    assert resp.headers["Content-Type"] == "video/mp4"
    assert resp.content == b""
    got = await client.get(url)
    assert got.status_code == 200
    assert got.content == bytes(2048)
    assert got.headers["ETag"] == resp.headers["ETag"]
    assert spaces.head_count("job1.mp4") == 2
    assert spaces.exists("job1.mp4")


async def test_missing_key_is_404_nosuchkey(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    resp = await client.get(spaces.url_for("nope.mp4"))
    assert resp.status_code == 404
    assert "<Code>NoSuchKey</Code>" in resp.text
    assert "<Key>nope.mp4</Key>" in resp.text
    assert resp.headers["Content-Type"].startswith("application/xml")
    head = await client.head(spaces.url_for("nope.mp4"))
    assert (head.status_code, head.content) == (404, b"")


async def test_missing_key_can_answer_403_like_do_spaces(client: httpx.AsyncClient) -> None:
    async with SpacesSimulator("other-bucket", missing_status=403) as sim:
        assert sim.base_url.endswith("/other-bucket")
        resp = await client.get(sim.url_for("nope.mp4"))
        assert resp.status_code == 403
        assert "<Code>AccessDenied</Code>" in resp.text
        assert (await client.head(sim.url_for("nope.mp4"))).status_code == 403
        sim.put_object("yes.mp4")
        assert (await client.head(sim.url_for("yes.mp4"))).status_code == 200


async def test_slow_down_then_recovers(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    spaces.put_object("a.mp4")
    spaces.slow_down_next(2)
    resp = await client.get(spaces.url_for("a.mp4"))
    assert resp.status_code == 503
    assert "<Code>SlowDown</Code>" in resp.text
    assert "<Message>Please reduce your request rate.</Message>" in resp.text
    head = await client.head(spaces.url_for("a.mp4"))
    assert (head.status_code, head.content) == (503, b"")
    assert (await client.head(spaces.url_for("a.mp4"))).status_code == 200
    assert spaces.slowed_down == 2


async def test_wrong_bucket_and_delete(spaces: SpacesSimulator, client: httpx.AsyncClient) -> None:
    spaces.put_object("dir/a.mp4")
    assert (await client.head(spaces.url_for("dir/a.mp4"))).status_code == 200
    wrong = await client.get(f"{spaces.url}/not-the-bucket/dir/a.mp4")
    assert wrong.status_code == 404
    assert "<Code>NoSuchBucket</Code>" in wrong.text
    spaces.delete_object("dir/a.mp4")
    assert (await client.head(spaces.url_for("dir/a.mp4"))).status_code == 404

"""SpacesClient against the Spaces simulator over loopback HTTP."""

import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from controller.budget import SpacesBudget
from controller.clients.spaces import SpacesClient, UnsafeUrlError
from controller.observations import ObjectFound, ObjectMissing, SpacesUnknown, parse_size
from sandbox import SpacesSimulator
from tests.loopback import serve


async def test_found_with_last_modified_and_size(spaces_sim: SpacesSimulator, spaces: SpacesClient) -> None:
    at = time.time() - 5
    spaces_sim.put_object("abc.mp4", size=20133, at=at)
    result = await spaces.head(f"{spaces_sim.base_url}/abc.mp4")
    assert isinstance(result, ObjectFound)
    assert result.size == 20133
    assert result.last_modified is not None
    assert abs(result.last_modified.timestamp() - at) < 1


async def test_not_yet_there_is_missing(spaces_sim: SpacesSimulator, spaces: SpacesClient) -> None:
    spaces_sim.put_object("later.mp4", at=time.time() + 60)
    assert await spaces.head(f"{spaces_sim.base_url}/later.mp4") == ObjectMissing(
        f"{spaces_sim.base_url}/later.mp4", 404
    )


async def test_403_is_missing_as_on_public_spaces_buckets() -> None:
    async with SpacesSimulator(missing_status=403) as sim:
        client = SpacesClient(sim.base_url)
        try:
            assert await client.head(f"{sim.base_url}/x.mp4") == ObjectMissing(f"{sim.base_url}/x.mp4", 403)
        finally:
            await client.close()


async def test_slow_down_is_a_retry_never_missing(spaces_sim: SpacesSimulator, spaces: SpacesClient) -> None:
    spaces_sim.put_object("a.mp4")
    spaces_sim.slow_down_next(1)
    url = f"{spaces_sim.base_url}/a.mp4"
    assert await spaces.head(url) == SpacesUnknown(url, "503 Slow Down")
    assert isinstance(await spaces.head(url), ObjectFound)


async def test_the_budget_paces_requests_and_shrinks_on_slow_down(spaces_sim: SpacesSimulator) -> None:
    slowdowns: list[float] = []
    budget = SpacesBudget(20.0, on_congestion=lambda: slowdowns.append(budget.rate))
    client = SpacesClient(spaces_sim.base_url, budget=budget)
    url = f"{spaces_sim.base_url}/a.mp4"
    try:
        began = time.monotonic()
        for _ in range(11):
            await client.head(url)
        assert time.monotonic() - began >= 0.45  # 20 a second: ten gaps of 50 ms at least
        spaces_sim.slow_down_next(3)  # a storm: three 503s in a row are one congestion event
        for _ in range(3):
            assert await client.head(url) == SpacesUnknown(url, "503 Slow Down")
        assert len(slowdowns) == 1
        assert budget.rate == pytest.approx(10.0, abs=1.0)
        starts = [r.time for r in spaces_sim.requests if r.method == "HEAD"]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert min(gaps) >= 0.03  # never two requests closer than the budget allows
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("500", "HTTP 500"),
        ("502", "HTTP 502"),
        ("hang", "timeout"),
        ("drop", "connection error: RemoteProtocolError"),
    ],
)
async def test_faults_are_unknown(
    spaces_sim: SpacesSimulator, spaces: SpacesClient, fault: str, reason: str
) -> None:
    spaces_sim.put_object("a.mp4")
    if fault == "hang":
        spaces_sim.faults.hang_next(1, 2.0)
    elif fault == "drop":
        spaces_sim.faults.drop_next(1)
    else:
        spaces_sim.faults.fail_next(1, int(fault))
    url = f"{spaces_sim.base_url}/a.mp4"
    assert await spaces.head(url) == SpacesUnknown(url, reason)


async def test_closed_port_is_unknown() -> None:
    client = SpacesClient("http://127.0.0.1:9/bucket", timeout=0.5)
    try:
        result = await client.head("http://127.0.0.1:9/bucket/a.mp4")
    finally:
        await client.close()
    assert isinstance(result, SpacesUnknown)
    assert result.reason.startswith("connection error")


@pytest.mark.parametrize(
    "path",
    [
        "https://{host}/phi-bucket/a.mp4",  # other scheme
        "http://evil.example/phi-bucket/a.mp4",  # other host
        "http://{host}.evil.example/phi-bucket/a.mp4",
        "http://user:pw@{host}/phi-bucket/a.mp4",
        "http://{host}/phi-bucket/../secret",
        "http://{host}/phi-bucket/%2e%2e/secret",
        "http://{host}/phi-bucket/a/../../b",
        "http://{host}/other-bucket/a.mp4",
        "http://{host}/phi-bucket/a.mp4?x-id=GetObject",
        "http://{host}/phi-bucket/",
        "http://{host}/phi-bucket//etc/passwd",
        "file:///etc/passwd",
        "gopher://{host}/phi-bucket/a.mp4",
    ],
)
async def test_foreign_urls_are_refused_before_any_request(
    spaces_sim: SpacesSimulator, spaces: SpacesClient, path: str
) -> None:
    host = spaces_sim.url.removeprefix("http://")
    with pytest.raises(UnsafeUrlError):
        await spaces.head(path.format(host=host))
    assert spaces_sim.count() == 0


ODD_DATES = [
    ("Sun, 29 Nov 2026 10:00:00 -0000", datetime(2026, 11, 29, 10, 0, tzinfo=UTC)),
    ("Sun, 29 Nov 2026 10:00:00", datetime(2026, 11, 29, 10, 0, tzinfo=UTC)),
    ("Sun, 29 Nov 2026 11:00:00 +0100", datetime(2026, 11, 29, 10, 0, tzinfo=UTC)),
    ("Fri, 31 Dec 9999 23:59:59 -2359", None),
    ("Sun, 29 Nov 2026 10:00:00 +9999", None),
    ("x, 1 Jan 99999999999 00:00:00 GMT", None),
    ("yesterday", None),
]


@pytest.mark.parametrize(("header", "expected"), ODD_DATES)
async def test_last_modified_is_aware_utc_or_none(header: str, expected: datetime | None) -> None:
    """Section 7: an odd date from Spaces is no date, never a naive one (compared with aware times)."""

    async def head(request: web.Request) -> web.Response:
        return web.Response(headers={"Last-Modified": header})

    app = web.Application()
    app.router.add_route("HEAD", "/bucket/{key}", head)
    async with serve(app) as url:
        client = SpacesClient(f"{url}/bucket")
        try:
            result = await client.head(f"{url}/bucket/a.mp4")
        finally:
            await client.close()
    assert isinstance(result, ObjectFound)
    assert result.last_modified == expected
    if result.last_modified is not None:
        assert result.last_modified.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("20133", 20133), ("²", None), ("١٢", None), ("-1", None), ("", None), (None, None), ("9" * 40, None)],
)
def test_content_length_is_ascii_digits_or_none(raw: str | None, expected: int | None) -> None:
    assert parse_size(raw) == expected

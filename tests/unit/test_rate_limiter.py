"""The Airtable rate limiter, on looptime's fake clock."""

import asyncio
import itertools
import time

import pytest

from controller.backoff import RateLimiter, SendPacer

pytestmark = pytest.mark.looptime


def clock() -> float:
    return asyncio.get_running_loop().time()


async def test_starts_are_spaced_evenly() -> None:
    limiter = RateLimiter(5, clock=clock)
    t0 = clock()
    starts = []

    async def one() -> None:
        await limiter.acquire()
        starts.append(round(clock() - t0, 3))

    await asyncio.gather(*(one() for _ in range(6)))
    assert starts == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]


async def test_writes_go_before_queued_reads() -> None:
    limiter = RateLimiter(1, clock=clock)
    order: list[str] = []

    async def take(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        order.append(name)

    await limiter.acquire()  # the slot is taken for the next second
    reads = [asyncio.create_task(take(f"read{i}", 1)) for i in range(3)]
    await asyncio.sleep(0.1)
    write = asyncio.create_task(take("write", 0))
    await asyncio.gather(*reads, write)
    assert order == ["write", "read0", "read1", "read2"]


async def test_a_penalty_pauses_everyone() -> None:
    limiter = RateLimiter(5, clock=clock)
    await limiter.acquire()
    limiter.penalize(30)
    t0 = clock()
    await limiter.acquire()
    assert round(clock() - t0) == 30
    assert limiter.penalized_for == 0


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    limiter = RateLimiter(1, clock=clock)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.1)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    t0 = clock()
    await second
    assert clock() - t0 <= 1.0


def test_the_send_pacer_spaces_threads() -> None:
    pacer = SendPacer(0.05)
    stamps = []
    for _ in range(4):
        pacer.wait()
        stamps.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.049


@pytest.mark.parametrize(("fair_every", "read_at"), [(None, 20), (4, 4), (1, 1)])
async def test_a_backlog_of_writes_cannot_starve_a_read(fair_every: int | None, read_at: int) -> None:
    limiter = RateLimiter(10, clock=clock, fair_every=fair_every)
    order: list[str] = []

    async def take(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        order.append(name)

    await limiter.acquire()  # the slot is taken: everything below queues
    read = asyncio.create_task(take("read", 1))
    await asyncio.sleep(0.01)
    writes = [asyncio.create_task(take(f"write{i}", 0)) for i in range(20)]
    await asyncio.gather(read, *writes)
    assert order.index("read") == read_at
    assert len(order) == 21


def test_fair_every_must_be_positive() -> None:
    with pytest.raises(ValueError, match="fair_every"):
        RateLimiter(1, fair_every=0)

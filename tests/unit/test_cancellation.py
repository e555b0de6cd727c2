"""A stop must stop: cancellation that arrives in the same loop tick as a wake-up is not lost.

On Python 3.11, `asyncio.wait_for` returns the inner result when the inner awaitable finishes in
the tick the caller is cancelled, and the cancellation is gone (CPython gh-86296, fixed in 3.12).
A scheduler that swallowed its one cancel kept its TaskGroup alive, and SIGTERM hung the leader.
"""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from controller.backoff import RateLimiter, wait_event
from controller.scheduler import Scheduler


async def cancelled_in_the_tick_of(
    wake: Callable[[], object],
    waiting: Awaitable[object],
    prepare: Callable[[], Awaitable[object]] | None = None,
) -> bool:
    """Start `waiting`, then wake it and cancel it back to back; True when it ends cancelled."""
    task = asyncio.ensure_future(waiting)
    for _ in range(3):  # let it reach its innermost wait
        await asyncio.sleep(0)
    assert not task.done()
    if prepare is not None:
        await prepare()
    wake()
    task.cancel()
    try:
        async with asyncio.timeout(1):
            await asyncio.shield(task)  # so the timeout, if it comes, does not cancel the task itself
    except asyncio.CancelledError:
        return True
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return False


@pytest.mark.parametrize("timeout", [None, 60.0])
async def test_wait_event_keeps_a_cancel_that_meets_the_event(timeout: float | None) -> None:
    event = asyncio.Event()
    assert await cancelled_in_the_tick_of(event.set, wait_event(event, timeout))


async def test_the_scheduler_stops_when_cancelled_as_a_new_key_wakes_it() -> None:
    async def check(key: str) -> float | None:
        return None

    loop = asyncio.get_running_loop()
    scheduler: Scheduler[str] = Scheduler(check, workers=1, clock=loop.time)
    scheduler.schedule("later", loop.time() + 3600)
    assert await cancelled_in_the_tick_of(lambda: scheduler.schedule("now", loop.time() - 1), scheduler.run())


async def test_a_rate_limited_waiter_keeps_a_cancel_that_meets_its_turn() -> None:
    limiter = RateLimiter(1)
    await limiter.acquire()  # the next slot is a second away
    cond = limiter._cond  # a new arrival wakes the waiter through it

    def notify() -> None:
        cond.notify_all()
        cond.release()

    assert await cancelled_in_the_tick_of(notify, limiter.acquire(), prepare=cond.acquire)
    assert not limiter._waiting  # and the cancelled waiter left the queue

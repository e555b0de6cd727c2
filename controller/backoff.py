"""Timing shared by the outside calls: exponential backoff with jitter, a rate limiter with
priorities, and the pacer that keeps the limiter's spacing at the moment a request is sent.

Kept apart from the clients so that the timing rules are pure, testable and the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
import threading
import time
from collections.abc import Callable


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number `attempt` (0-based): doubling from `base` up to `cap`.

    "Equal jitter": half of the delay is fixed, half random, so retries from many jobs spread
    out but none retries immediately.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    ceiling = min(cap, base * (2 ** min(attempt, 32)))
    roll: float = (rng or random).random()
    return float(ceiling / 2 + roll * ceiling / 2)


async def wait_event(event: asyncio.Event, timeout: float | None) -> None:
    """Sleep until the event is set or the timeout passes, whichever comes first.

    `asyncio.timeout`, never `asyncio.wait_for`: on 3.11 the latter drops a cancellation that
    arrives in the tick the event is set (CPython gh-86296), and a stop would then hang.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()


_EPSILON = 1e-4


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart, and pauses everyone during a penalty.

    Even spacing (rather than a burst bucket) keeps any sliding one-second window at or under
    the rate even when requests take a little longer to arrive than to leave. Waiters with a lower
    `priority` number go first, so the write-back is not queued behind the mirror's listing; with
    `fair_every=n`, a waiter that has seen n others start before it goes next, so a backlog of
    urgent requests cannot starve the others (each waits at most n starts).
    """

    def __init__(
        self, rate: float, *, clock: Callable[[], float] = time.monotonic, fair_every: int | None = None
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if fair_every is not None and fair_every < 1:
            raise ValueError("fair_every must be at least 1")
        self.interval = 1.0 / rate
        self._clock = clock
        self._cond = asyncio.Condition()
        self._waiting: list[tuple[int, int]] = []
        self._seq = itertools.count()
        self._next_start = 0.0
        self._penalty_until = 0.0
        self._fair_every = fair_every
        self._passed: dict[int, int] = {}  # waiter (by sequence number) -> starts it has waited through

    def _head(self) -> tuple[int, int]:
        if self._fair_every is not None:
            overdue = [entry for entry in self._waiting if self._passed.get(entry[1], 0) >= self._fair_every]
            if overdue:
                return min(overdue, key=lambda entry: entry[1])
        return self._waiting[0]

    def penalize(self, seconds: float) -> None:
        self._penalty_until = max(self._penalty_until, self._clock() + seconds)

    @property
    def penalized_for(self) -> float:
        return max(0.0, self._penalty_until - self._clock())

    async def acquire(self, priority: int = 0) -> None:
        entry = (priority, next(self._seq))
        async with self._cond:
            heapq.heappush(self._waiting, entry)
            self._cond.notify_all()  # a new head may have to wait behind a more urgent request
            try:
                while True:
                    if self._head() == entry:
                        wait = max(self._next_start, self._penalty_until) - self._clock()
                        if wait <= _EPSILON:  # clocks with coarse resolution would spin forever
                            break
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(wait):
                                await self._cond.wait()
                    else:
                        await self._cond.wait()
            finally:  # waiters are woken only once the lock is released, after the lines below
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
                self._passed.pop(entry[1], None)
                self._cond.notify_all()
            if self._fair_every is not None:
                for _, seq in self._waiting:
                    self._passed[seq] = self._passed.get(seq, 0) + 1
            self._next_start = self._clock() + self.interval


class SendPacer:
    """The same spacing, enforced in the worker thread at the moment a request is sent.

    Threads start late by varying amounts when the process is busy; pacing again right before
    the send keeps that jitter from bunching requests up on the wire.
    """

    def __init__(self, interval: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            delay = self._next - self._clock()
            if delay > 0:
                time.sleep(delay)
            self._next = self._clock() + self._interval

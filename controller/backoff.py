"""Retry timing shared by every outside call: exponential backoff with jitter, and a rate limiter.

Kept apart from the clients so that the timing rules are pure, testable and the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
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
    """Sleep until the event is set or the timeout passes, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=timeout)


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart, and pauses everyone during a penalty.

    Even spacing (rather than a burst bucket) keeps any sliding one-second window at or under
    the rate even when requests take a little longer to arrive than to leave.
    """

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._clock = clock
        self._lock = asyncio.Lock()
        self._next_start = 0.0
        self._penalty_until = 0.0

    def penalize(self, seconds: float) -> None:
        self._penalty_until = max(self._penalty_until, self._clock() + seconds)

    @property
    def penalized_for(self) -> float:
        return max(0.0, self._penalty_until - self._clock())

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock()
                wait = max(self._next_start, self._penalty_until) - now
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            self._next_start = self._clock() + self._interval

"""One task for all jobs: a heap of due times and a small pool of workers.

kopf's per-object timers cost a task, a finalizer and handler bookkeeping per job, and saturate
the event loop at a few thousand jobs. Here a job waiting for its next check costs one heap entry;
only `workers` checks run at once, and each key is checked by at most one worker at a time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from controller.backoff import wait_event

K = TypeVar("K", bound=Hashable)
log = logging.getLogger(__name__)
# A due time before every other: a check that cannot wait (a recheck asked for by a person, a job
# NCA just listed as done) goes ahead of any backlog of regular checks.
URGENT = float("-inf")

# A check returns when to run next (a time.time() timestamp), or None to stop scheduling the key.
Check = Callable[[K], Awaitable[float | None]]


class Scheduler(Generic[K]):
    def __init__(
        self,
        check: Check[K],
        *,
        workers: int,
        clock: Callable[[], float] = time.time,
        crash_delay: float = 60.0,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self._check = check
        self._workers = workers
        self._clock = clock
        self._crash_delay = crash_delay
        self._on_lag = on_lag  # seconds a check started after it fell due: too few workers shows here
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, tuple[float, int]] = {}
        self._running: set[K] = set()
        self._rerun: dict[K, float] = {}
        self._seq = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def due_now(self) -> int:
        """Keys whose time has come and whose check has not started: the queue's depth."""
        now = self._clock()
        return sum(1 for at, _ in self._due.values() if at <= now)

    def is_scheduled(self, key: K) -> bool:
        return key in self._due or key in self._running

    def due_at(self, key: K) -> float | None:
        entry = self._due.get(key)
        return entry[0] if entry else None

    def schedule(self, key: K, at: float, *, earlier_only: bool = False) -> None:
        """Put the key on the heap; with `earlier_only`, never postpone an existing entry."""
        if key in self._running:
            previous = self._rerun.get(key)
            self._rerun[key] = at if previous is None else min(previous, at)
            return
        current = self._due.get(key)
        if current is not None and earlier_only and current[0] <= at:
            return
        seq = next(self._seq)
        self._due[key] = (at, seq)
        heapq.heappush(self._heap, (at, seq, key))
        if self._heap[0][1] == seq:
            self._wake.set()

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)  # the heap entry goes stale and is skipped when popped
        self._rerun.pop(key, None)

    async def run(self) -> None:
        """Run checks as they fall due, until cancelled; then stop every check in flight."""
        slots = asyncio.Semaphore(self._workers)
        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                # A free worker first, then the key due first at that moment: a key that became
                # urgent while every worker was busy is not overtaken by one picked earlier.
                await slots.acquire()
                try:
                    key, at = await self._next_due()
                except BaseException:
                    slots.release()
                    raise
                if self._on_lag is not None:  # an urgent check starts when it is asked for: no lag
                    self._on_lag(0.0 if at == URGENT else max(0.0, self._clock() - at))
                self._running.add(key)
                task = asyncio.create_task(self._run_one(key, slots))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _next_due(self) -> tuple[K, float]:
        while True:
            while self._heap:
                at, seq, key = self._heap[0]
                if self._due.get(key) != (at, seq):
                    heapq.heappop(self._heap)  # stale: cancelled or re-scheduled
                    continue
                delay = at - self._clock()
                if delay <= 0:
                    heapq.heappop(self._heap)
                    del self._due[key]
                    return key, at
                break
            else:
                delay = None
            self._wake.clear()
            await wait_event(self._wake, delay)

    async def _run_one(self, key: K, slots: asyncio.Semaphore) -> None:
        next_at: float | None
        try:
            next_at = await self._check(key)
        except Exception:  # a cancellation is not an Exception: it propagates
            log.exception("check of %s crashed; retrying in %.0f s", key, self._crash_delay)
            next_at = self._clock() + self._crash_delay
        finally:
            self._running.discard(key)
            slots.release()
        rerun = self._rerun.pop(key, None)
        if rerun is not None:
            next_at = rerun if next_at is None else min(next_at, rerun)
        if next_at is not None:
            self.schedule(key, next_at)

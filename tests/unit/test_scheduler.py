"""The single-task scheduler, on looptime's fake clock so that minutes pass in microseconds."""

import asyncio

import pytest

from controller.scheduler import Scheduler

pytestmark = pytest.mark.looptime


def loop_clock() -> float:
    return asyncio.get_running_loop().time()


async def test_checks_run_in_due_order_and_reschedule() -> None:
    runs: list[tuple[str, float]] = []

    async def check(key: str) -> float | None:
        runs.append((key, loop_clock()))
        return loop_clock() + 10 if key == "a" else None

    scheduler: Scheduler[str] = Scheduler(check, workers=2, clock=loop_clock)
    now = loop_clock()
    scheduler.schedule("b", now + 5)
    scheduler.schedule("a", now + 1)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(30)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [k for k, _ in runs] == ["a", "b", "a", "a"]
    assert [round(t - now) for _, t in runs] == [1, 5, 11, 21]


async def test_no_more_than_workers_at_once_and_one_check_per_key() -> None:
    running: set[int] = set()
    peak = 0

    async def check(key: int) -> float | None:
        nonlocal peak
        assert key not in running
        running.add(key)
        peak = max(peak, len(running))
        await asyncio.sleep(1)
        running.discard(key)
        return None

    scheduler: Scheduler[int] = Scheduler(check, workers=3, clock=loop_clock)
    for key in range(10):
        scheduler.schedule(key, loop_clock())
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert peak == 3


async def test_a_request_during_a_check_runs_right_after_it() -> None:
    starts: list[float] = []

    async def check(key: str) -> float | None:
        starts.append(loop_clock())
        await asyncio.sleep(2)
        return loop_clock() + 100

    scheduler: Scheduler[str] = Scheduler(check, workers=1, clock=loop_clock)
    t0 = loop_clock()
    scheduler.schedule("k", t0)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(1)
    scheduler.schedule("k", loop_clock(), earlier_only=True)  # e.g. a recheck annotation
    await asyncio.sleep(10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [round(s - t0) for s in starts] == [0, 2]


async def test_earlier_only_never_postpones() -> None:
    scheduler: Scheduler[str] = Scheduler(lambda k: asyncio.sleep(0, None), workers=1, clock=loop_clock)
    scheduler.schedule("k", 10.0)
    scheduler.schedule("k", 20.0, earlier_only=True)
    assert scheduler.due_at("k") == 10.0
    scheduler.schedule("k", 5.0, earlier_only=True)
    assert scheduler.due_at("k") == 5.0


async def test_cancelled_keys_do_not_run() -> None:
    runs: list[str] = []

    async def check(key: str) -> float | None:
        runs.append(key)
        return None

    scheduler: Scheduler[str] = Scheduler(check, workers=1, clock=loop_clock)
    scheduler.schedule("gone", loop_clock() + 1)
    scheduler.schedule("kept", loop_clock() + 2)
    scheduler.cancel("gone")
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert runs == ["kept"]
    assert len(scheduler) == 0


async def test_a_crashing_check_is_retried_later_not_lost() -> None:
    runs: list[float] = []

    async def check(key: str) -> float | None:
        runs.append(loop_clock())
        if len(runs) == 1:
            raise RuntimeError("boom")
        return None

    scheduler: Scheduler[str] = Scheduler(check, workers=1, clock=loop_clock, crash_delay=60)
    t0 = loop_clock()
    scheduler.schedule("k", t0)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(100)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [round(r - t0) for r in runs] == [0, 60]


async def test_stopping_cancels_checks_in_flight() -> None:
    cancelled = asyncio.Event()

    async def check(key: str) -> float | None:
        try:
            await asyncio.sleep(1000)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    scheduler: Scheduler[str] = Scheduler(check, workers=1, clock=loop_clock)
    scheduler.schedule("k", loop_clock())
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert cancelled.is_set()


async def test_ten_thousand_keys_each_run_once_on_time() -> None:
    runs: dict[int, float] = {}

    async def check(key: int) -> float | None:
        runs[key] = loop_clock()
        return None

    scheduler: Scheduler[int] = Scheduler(check, workers=10, clock=loop_clock)
    t0 = loop_clock()
    for key in range(10_000):
        scheduler.schedule(key, t0 + (key % 120))
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(130)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert len(runs) == 10_000
    assert max(runs[k] - (t0 + (k % 120)) for k in runs) < 0.01


@pytest.mark.parametrize(("workers", "lags"), [(2, [0, 0, 1, 1, 2, 2]), (6, [0] * 6)])
async def test_lag_shows_how_late_checks_start_for_want_of_workers(workers: int, lags: list[int]) -> None:
    seen: list[float] = []

    async def check(key: int) -> float | None:
        await asyncio.sleep(1)
        return None

    scheduler: Scheduler[int] = Scheduler(check, workers=workers, clock=loop_clock, on_lag=seen.append)
    t0 = loop_clock()
    for key in range(6):
        scheduler.schedule(key, t0)
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert [round(lag) for lag in seen] == lags


async def test_due_now_counts_what_waits_for_a_worker() -> None:
    async def check(key: int) -> float | None:
        await asyncio.sleep(10)
        return None

    scheduler: Scheduler[int] = Scheduler(check, workers=1, clock=loop_clock)
    now = loop_clock()
    for key in range(5):
        scheduler.schedule(key, now + key)
    assert scheduler.due_now() == 1  # key 0: due at once
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(4.5)
    assert scheduler.due_now() == 4  # one running, keys 1-4 due and waiting for the one worker
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_urgent_checks_go_ahead_of_a_backlog_with_no_lag() -> None:
    from controller.scheduler import URGENT

    runs: list[str] = []
    lags: list[float] = []

    async def check(key: str) -> float | None:
        runs.append(key)
        await asyncio.sleep(1)
        return None

    scheduler: Scheduler[str] = Scheduler(check, workers=1, clock=loop_clock, on_lag=lags.append)
    now = loop_clock()
    for i in range(5):
        scheduler.schedule(f"late-{i}", now - 60 + i)  # a backlog, overdue by a minute
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(0.5)  # late-0 is running
    scheduler.schedule("hinted", URGENT, earlier_only=True)
    await asyncio.sleep(10)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert runs[:2] == ["late-0", "hinted"]  # next, ahead of the four still overdue
    assert len(lags) == 6  # every check started is timed
    assert lags[1] == 0.0  # the urgent one started when asked for: no lag, not minus infinity
    assert max(lags) < 100

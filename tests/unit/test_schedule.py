import random
from datetime import timedelta

import pytest

from controller.backoff import backoff_delay
from controller.schedule import Timing, check_interval, first_check_at, nca_next_at, next_check_at, retry_at
from tests.unit.helpers import NOW

T = Timing(
    interval=timedelta(minutes=2),
    slow_after=timedelta(hours=1),
    slow_interval=timedelta(minutes=10),
    max_age=timedelta(hours=24),
)


@pytest.mark.parametrize(
    ("age", "interval"),
    [
        (timedelta(0), timedelta(minutes=2)),
        (timedelta(minutes=59), timedelta(minutes=2)),
        (timedelta(hours=1), timedelta(minutes=10)),
        (timedelta(hours=23), timedelta(minutes=10)),
    ],
)
def test_interval_by_age(age: timedelta, interval: timedelta) -> None:
    assert check_interval(age, T) == interval


@pytest.mark.parametrize("age_minutes", [1, 30, 90, 600])
def test_next_check_is_one_interval_away_within_jitter(age_minutes: int) -> None:
    rng = random.Random(1)
    submitted = NOW - timedelta(minutes=age_minutes)
    interval = check_interval(NOW - submitted, T)
    gaps = [next_check_at(submitted, NOW, T, rng) - NOW for _ in range(200)]
    assert min(gaps) >= interval * 0.85
    assert max(gaps) <= interval  # never late: no gap between checks exceeds the interval
    assert max(gaps) - min(gaps) > interval * 0.1  # there is jitter


def test_first_checks_after_a_restart_are_spread_over_the_interval() -> None:
    rng = random.Random(2)
    submitted = NOW - timedelta(minutes=5)
    offsets = sorted((first_check_at(submitted, NOW, T, rng) - NOW).total_seconds() for _ in range(1000))
    assert offsets[0] >= 0
    assert offsets[-1] <= 120
    # no second holds more than 2% of the checks
    per_second = [sum(1 for o in offsets if s <= o < s + 1) for s in range(120)]
    assert max(per_second) < 20


def test_a_job_due_to_time_out_is_checked_at_its_deadline() -> None:
    submitted = NOW - timedelta(hours=24) + timedelta(minutes=3)
    due = next_check_at(submitted, NOW, T, random.Random(3))
    assert due == submitted + T.max_age


def test_an_overdue_job_is_checked_now_not_later() -> None:
    submitted = NOW - timedelta(hours=30)
    assert first_check_at(submitted, NOW, T, random.Random(4)) <= NOW + T.slow_interval


@pytest.mark.parametrize(
    ("failures", "low", "high"), [(1, 7.5, 15), (2, 15, 30), (3, 30, 60), (4, 60, 120), (9, 60, 120)]
)
def test_retry_backs_off_up_to_one_interval(failures: int, low: float, high: float) -> None:
    rng = random.Random(5)
    for _ in range(50):
        delay = (retry_at(NOW - timedelta(minutes=5), NOW, failures, T, rng) - NOW).total_seconds()
        assert low <= delay <= high


@pytest.mark.parametrize(("answers", "minutes"), [(1, 2), (2, 4), (3, 8), (4, 10), (12, 10)])
def test_nca_is_asked_less_and_less_often(answers: int, minutes: float) -> None:
    assert nca_next_at(NOW, answers, T) - NOW == timedelta(minutes=minutes) * (1 - T.jitter)


@pytest.mark.parametrize(("attempt", "low", "high"), [(0, 0.5, 1), (1, 1, 2), (3, 4, 8), (10, 15, 30)])
def test_backoff_delay_doubles_with_jitter_and_a_cap(attempt: int, low: float, high: float) -> None:
    rng = random.Random(6)
    values = [backoff_delay(attempt, base=1, cap=30, rng=rng) for _ in range(100)]
    assert low <= min(values)
    assert max(values) <= high
    assert len(set(values)) > 50

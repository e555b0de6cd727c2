"""The check budget: each job's share of the Spaces rate, AIMD on 503, NCA's listing period, and the
write-back's quota-aware linger. All pure (a clock passed in), so every case is a table row."""

import asyncio
import dataclasses
import logging
import random
from datetime import timedelta

import pytest

from controller.budget import (
    ALERT_HEADROOM,
    DAY_S,
    MONTH_S,
    AimdRate,
    DiscoveryPace,
    QuotaLinger,
    SpacesBudget,
    discovery_gap,
)
from controller.schedule import (
    Timing,
    budget_gap,
    first_check_at,
    listing_period,
    next_check_at,
    required_rate,
    weight,
)
from tests.unit.helpers import NOW

T = Timing(
    interval=timedelta(minutes=2),
    slow_after=timedelta(hours=1),
    slow_interval=timedelta(minutes=10),
    max_age=timedelta(hours=24),
    floor=timedelta(seconds=5),
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    ("jobs", "rate", "job_weight", "seconds"),
    [
        (100, 25.0, 1.0, 5.0),  # 4 s by the budget: the floor wins
        (1000, 25.0, 1.0, 40.0),  # N/B
        (1000, 25.0, 4.0, 10.0),  # running: four times the share
        (1000, 25.0, 0.25, 160.0),  # queued: a quarter (the caller caps it at the interval)
        (10, 25.0, 1.0, 5.0),
        (1000, 12.5, 1.0, 80.0),  # after a 503 halved the rate, every gap doubles
    ],
)
def test_budget_gap_is_the_jobs_share_of_the_rate(
    jobs: int, rate: float, job_weight: float, seconds: float
) -> None:
    gap = budget_gap(total_weight=float(jobs), job_weight=job_weight, rate=rate, timing=T)
    assert gap.total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(("rate", "job_weight"), [(0.0, 1.0), (25.0, 0.0)])
def test_budget_gap_without_a_rate_or_weight_falls_back_to_the_slow_interval(
    rate: float, job_weight: float
) -> None:
    assert budget_gap(total_weight=10, job_weight=job_weight, rate=rate, timing=T) == T.slow_interval


@pytest.mark.parametrize(
    ("age_minutes", "budget_s", "longest_s"),
    [
        (5, 40, 40),  # the budget's gap when shorter than the interval
        (5, 400, 120),  # never less often than the age-based interval
        (90, 400, 400),  # old jobs: up to the slow interval
        (90, 900, 600),
    ],
)
def test_next_check_takes_the_shorter_of_budget_and_age(
    age_minutes: int, budget_s: float, longest_s: float
) -> None:
    rng = random.Random(3)
    submitted = NOW - timedelta(minutes=age_minutes)
    gaps = [
        (next_check_at(submitted, NOW, T, rng, timedelta(seconds=budget_s)) - NOW).total_seconds()
        for _ in range(100)
    ]
    assert max(gaps) <= longest_s
    assert min(gaps) >= longest_s * 0.85
    first = [
        (first_check_at(submitted, NOW, T, rng, timedelta(seconds=budget_s)) - NOW).total_seconds()
        for _ in range(100)
    ]
    assert min(first) >= 0
    assert max(first) <= longest_s  # a cold start spreads over one gap, not more


@pytest.mark.parametrize(
    ("listed", "expected"), [("running", 4.0), ("queued", 0.25), (None, 1.0), ("done", 1.0)]
)
def test_weights_by_what_nca_listed(listed: str | None, expected: float) -> None:
    assert weight(listed) == expected


@pytest.mark.parametrize(
    ("young", "old", "rate"),
    [(0, 0, 0.0), (120, 0, 1.0), (3000, 0, 25.0), (0, 600, 1.0), (9000, 1000, 76.67)],
)
def test_rate_the_age_based_schedule_needs(young: int, old: int, rate: float) -> None:
    assert required_rate(young, old, T) == pytest.approx(rate, abs=0.01)


@pytest.mark.parametrize(
    ("processing", "seconds"),
    [(0, 15.0), (1, 15.0), (10, 15.0), (100, 15.0), (120, 15.0), (200, 9.0), (360, 5.0), (10_000, 5.0)],
)
def test_listing_period_spends_two_listings_per_job_hour_and_waits_at_most_15_s(
    processing: int, seconds: float
) -> None:
    assert listing_period(processing, T, per_job_hour=2.0).total_seconds() == pytest.approx(seconds)


def test_listing_period_is_never_longer_than_the_interval() -> None:
    short = dataclasses.replace(T, interval=timedelta(seconds=6), floor=timedelta(seconds=2))
    assert listing_period(1, short, per_job_hour=2.0) == timedelta(seconds=6)
    assert listing_period(5000, short, per_job_hour=2.0) == timedelta(seconds=2)


def test_aimd_halves_once_per_congestion_and_climbs_back() -> None:
    clock = Clock()
    rate = AimdRate(40.0, floor=1.0, clock=clock)
    assert rate.current() == 40.0
    assert rate.congested()
    assert rate.current() == 20.0
    clock.t += 0.2
    assert not rate.congested()  # the same storm: one decrease
    clock.t += 1.0
    assert rate.congested()
    assert rate.current() == pytest.approx((20.0 + 40 / 30 * 1.2) / 2)
    for _ in range(20):  # a long storm stops at the floor
        clock.t += 1.1
        rate.congested()
    assert rate.current() == pytest.approx(1.0, abs=1.5)
    clock.t += 60
    assert rate.current() == 40.0  # back at the ceiling within RECOVERY_S


def test_aimd_ceiling_raised_is_climbed_to_not_jumped() -> None:
    clock = Clock()
    rate = AimdRate(25.0, floor=1.0, clock=clock)
    rate.set_ceiling(100.0)
    assert rate.current() == 25.0
    clock.t += 15
    assert rate.current() == pytest.approx(25.0 + 100 / 30 * 15)
    clock.t += 30
    assert rate.current() == 100.0
    rate.set_ceiling(10.0)
    assert rate.current() == 10.0


@pytest.mark.looptime
async def test_spaces_budget_spaces_requests_evenly_and_counts_slowdowns() -> None:
    loop = asyncio.get_running_loop()
    slowdowns: list[int] = []
    budget = SpacesBudget(20.0, on_congestion=lambda: slowdowns.append(1), clock=loop.time)
    starts = []
    for _ in range(41):
        await budget.acquire()
        starts.append(loop.time())
    assert starts[-1] - starts[0] == pytest.approx(2.0, abs=0.01)  # 20 a second, never more
    budget.slow_down()
    budget.slow_down()  # the same event
    assert slowdowns == [1]
    assert budget.rate == pytest.approx(10.0, abs=0.1)
    before = loop.time()
    for _ in range(11):
        await budget.acquire()
    assert loop.time() - before >= 0.95  # about 10 a second while it recovers
    budget.require(50.0)  # the age-based schedule needs more than configured: the ceiling rises
    assert budget.configured == 20.0


@pytest.mark.parametrize(
    ("quota", "spent_share_of_day", "linger"),
    [
        (100_000, 0.0, 0.0),  # nothing spent: at once
        (100_000, 0.4, 0.0),  # more than half a day left: at once
        (100_000, 0.75, 60.0),  # a quarter left: half the longest
        (100_000, 1.0, 120.0),  # the day's allowance spent: the longest
        (100_000, 3.0, 120.0),  # overdrawn: still the longest, never more
        (1_000, 1.0, 120.0),
        (0, 1000.0, 0.0),  # unlimited (Business) never lingers
    ],
)
def test_quota_linger_by_what_is_left_of_the_days_allowance(
    quota: int, spent_share_of_day: float, linger: float
) -> None:
    clock = Clock()
    q = QuotaLinger(monthly_quota=quota, share=0.8, longest=120.0, clock=clock)
    day = quota * 0.8 * ALERT_HEADROOM / MONTH_S * DAY_S
    q.spend(round(day * spent_share_of_day) if quota else 10**6)
    assert q.linger() == pytest.approx(linger, abs=0.5)


def test_quota_linger_refills_at_the_months_pace() -> None:
    clock = Clock()
    q = QuotaLinger(monthly_quota=100_000, share=0.8, longest=120.0, clock=clock)
    q.spend(2400)  # a Team plan's day (90% of 80,000, / 30)
    assert q.linger() == pytest.approx(120.0, abs=1)
    clock.t += DAY_S / 2  # half a day accrues half a day's allowance
    assert q.left() == pytest.approx(0.5, abs=0.01)
    assert q.linger() == pytest.approx(0.0, abs=1)
    clock.t += 10 * DAY_S
    assert q.left() == 1.0  # never more than a day ahead


@pytest.mark.parametrize(
    ("shortfall", "longest", "gap"),
    [
        (0.0, 60.0, 2.0),  # quota to spare: a ping is read within seconds
        (0.0, 1.5, 1.5),  # an interval shorter than that: never slower than the old pace
        (0.5, 60.0, 30.0),  # a quarter of the day's allowance left: half way to the old pace
        (1.0, 60.0, 60.0),  # the day's allowance spent: the old pace (half an interval, say)
        (0.01, 60.0, 2.0),  # just short: the floor still holds
        (7.0, 60.0, 60.0),  # never slower than `longest`
        (-1.0, 60.0, 2.0),
    ],
)
def test_discovery_gap_spends_the_quota_where_it_buys_latency(
    shortfall: float, longest: float, gap: float
) -> None:
    assert discovery_gap(shortfall, longest) == pytest.approx(gap)


def test_discovery_gap_in_compressed_time_scales_its_fastest() -> None:
    scale = 1440.0  # bench/quota.py: a simulated day in a real minute
    assert discovery_gap(0.0, 60.0 / scale, fastest=2.0 / scale) == pytest.approx(2.0 / scale)
    assert discovery_gap(1.0, 60.0 / scale, fastest=2.0 / scale) == pytest.approx(60.0 / scale)


def test_discovery_pace_says_when_it_slows_down_and_when_it_is_fast_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    q = QuotaLinger(monthly_quota=100_000, share=0.8, longest=120.0, clock=clock)
    gaps: list[float] = []
    pace = DiscoveryPace(q.shortfall, on_gap=gaps.append)
    with caplog.at_level(logging.INFO, logger="controller.budget"):
        assert pace.gap(60.0) == 2.0
        assert not caplog.records
        q.spend(2400)  # the day's allowance, at once
        assert pace.gap(60.0) == pytest.approx(60.0, abs=0.1)
        assert pace.gap(60.0) == pytest.approx(60.0, abs=0.1)  # one line per turn, not per read
        [slow] = caplog.records
        assert slow.levelno == logging.WARNING
        assert "runs short" in slow.getMessage()
        assert "AIRTABLE_MONTHLY_QUOTA" in slow.getMessage()
        clock.t += DAY_S  # a day accrues a day's allowance
        assert pace.gap(60.0) == 2.0
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.INFO]
    assert "room again" in caplog.records[-1].getMessage()
    assert gaps == [2.0, pytest.approx(60.0, abs=0.1), pytest.approx(60.0, abs=0.1), 2.0]


def test_an_unlimited_quota_never_slows_discovery() -> None:
    q = QuotaLinger(monthly_quota=0, share=0.8, longest=120.0, clock=Clock())
    q.spend(10**6)
    assert q.shortfall() == 0.0
    assert DiscoveryPace(q.shortfall).gap(60.0) == 2.0


def test_listed_states_stand_for_their_validity_and_newer_listings_win() -> None:
    from controller.observations import NcaListing
    from controller.reconcile import Listed

    valid = timedelta(minutes=2)
    listed = Listed()
    listed.merge(NcaListing({"a": "queued", "b": "running"}), NOW, valid)
    assert listed.state("a", NOW, valid) == "queued"
    later = NOW + timedelta(seconds=30)
    listed.merge(NcaListing({"a": "done"}), later, valid)  # b is absent: its state stands
    assert (listed.state("a", later, valid), listed.state("b", later, valid)) == ("done", "running")
    lapsed = NOW + timedelta(minutes=2, seconds=1)
    assert listed.state("b", lapsed, valid) is None  # not heard of for `valid`: forgotten
    assert listed.state("a", lapsed, valid) == "done"
    listed.merge(NcaListing({}), NOW + timedelta(minutes=5), valid)
    assert listed.states == {}  # memory is pruned with each listing
    assert listed.state("never", NOW, valid) is None


@pytest.mark.parametrize(
    ("jobs", "rate", "expected"),
    [
        ([], 20.0, (0.0, 20.0)),
        ([(1.0, 120.0)] * 100, 20.0, (100.0, 20.0)),  # 100 jobs: 5 s each, no cap binds
        # 1,000 queued (weight 0.25) would get 250 s each: capped at 120 s, they take 8.3/s off
        # the top, and the 250 running ones share the 11.7/s left
        ([(0.25, 120.0)] * 1000 + [(4.0, 120.0)] * 250, 20.0, (1000.0, 20.0 - 1000 / 120)),
        ([(1.0, 120.0)] * 3000, 20.0, (3000.0, 20.0)),  # every job capped: the rate as it is
    ],
)
def test_share_left_takes_the_capped_jobs_off_the_top(
    jobs: list[tuple[float, float]], rate: float, expected: tuple[float, float]
) -> None:
    from controller.schedule import share_left

    total, left = share_left(jobs, rate)
    assert (total, left) == pytest.approx(expected)

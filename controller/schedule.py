"""When to check a job next: its share of the Spaces budget, bounded by its age. Pure.

The age sets the longest gap: young jobs are checked at least every poll interval, older ones at
least every slow interval, and a job due to time out is checked exactly at its deadline. Within
that, each job gets its weighted share of the Spaces budget (`budget_gap`): with N jobs and B
requests a second, about N/B seconds between checks, never less than a floor. NCA's listing sets
the weights: a job NCA runs now is likely to finish soon; one still queued is not. Jitter spreads
checks so a restart with thousands of jobs does not fire them all in the same second.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta

from controller.backoff import backoff_delay


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    interval: timedelta  # POLLING_INTERVAL_MINUTES
    slow_after: timedelta  # age from which jobs are checked less often
    slow_interval: timedelta
    max_age: timedelta  # POLLING_MAX_AGE_HOURS
    floor: timedelta = timedelta(seconds=5)  # POLLING_MIN_INTERVAL_SECONDS: the shortest gap
    jitter: float = 0.075  # checks come 0-15% early, to spread them without ever coming late


# Regular checks are planned at this share of the budget; the rest is headroom for checks that
# cannot wait (hints, rechecks, retries) and for the jitter that brings checks early. Planned at
# the full budget, the queue would grow without bound and every urgent check would wait behind it.
PLANNED_SHARE = 0.8

# A job's share of the budget by what NCA's listing last said of it (None: not listed lately).
WEIGHTS: dict[str | None, float] = {"running": 4.0, None: 1.0, "queued": 0.25}


def weight(listed: str | None) -> float:
    return WEIGHTS.get(listed, 1.0)


def check_interval(age: timedelta, timing: Timing) -> timedelta:
    return timing.interval if age < timing.slow_after else timing.slow_interval


def budget_gap(*, total_weight: float, job_weight: float, rate: float, timing: Timing) -> timedelta:
    """The time between a job's checks that spends `rate` requests a second over all jobs.

    Each job gets `job_weight / total_weight` of the rate; never more often than the floor.
    The caller bounds it from above by the job's age-based interval, and passes the rate and the
    weight that the jobs so bounded leave (`share_left`).
    """
    if rate <= 0 or job_weight <= 0 or total_weight <= 0:
        return timing.slow_interval
    return max(timing.floor, timedelta(seconds=total_weight / (rate * job_weight)))


def share_left(weights_and_caps: list[tuple[float, float]], rate: float) -> tuple[float, float]:
    """(total weight, rate) for the jobs whose share is not bounded by their age-based interval.

    `weights_and_caps` holds each job's weight and its interval in seconds. A job whose weighted
    share of `rate` would check it less often than its interval is checked every interval
    instead, and that rate is taken off the top before the others share the rest (one round of
    water-filling: enough, since the caps only ever raise a job's rate). Pure.
    """
    total = sum(w for w, _ in weights_and_caps)
    if total <= 0 or rate <= 0:
        return total, rate
    capped_weight = capped_rate = 0.0
    for w, cap in weights_and_caps:
        if total / (rate * w) > cap:
            capped_weight += w
            capped_rate += 1.0 / cap
    left = rate - capped_rate
    if left <= rate * 0.1:  # the caps alone spend (nearly) all of it: share what is there evenly
        return total, rate
    return total - capped_weight, left


def required_rate(young: int, old: int, timing: Timing) -> float:
    """Requests a second the age-based intervals alone need: the budget is never below it."""
    return young / timing.interval.total_seconds() + old / timing.slow_interval.total_seconds()


# The longest wait between two NCA listings while any job is processing. A listing is one call
# that answers for every job, and the only way a failure (which Spaces cannot show) is seen in
# seconds: with few jobs its period follows the time it buys, not the per-job cost.
LISTING_LONGEST = timedelta(seconds=15)


def listing_period(processing: int, timing: Timing, *, per_job_hour: float) -> timedelta:
    """How long to wait after one NCA listing before the next: `per_job_hour` listings per
    processing job-hour, never longer than LISTING_LONGEST (nor the interval) nor shorter than the floor.

    From N = 3600 / (per_job_hour x 15 s) jobs (120 at the default 2) the per-job rate sets it, as
    before; below, it is 15 s: 240 listings an hour, so 24 calls a job-hour at N=10 and 240 at N=1
    (docs/operations.md). With no job processing there is no listing at all (the caller waits).
    """
    longest = min(timing.interval, LISTING_LONGEST)
    if processing <= 0:
        return longest
    seconds = 3600.0 / (per_job_hour * processing)
    return min(longest, max(timing.floor, timedelta(seconds=seconds)))


def _deadline_cap(submitted_at: datetime, due: datetime, timing: Timing, now: datetime) -> datetime:
    deadline = submitted_at + timing.max_age
    return max(now, deadline) if now <= deadline < due else due


def _gap(age: timedelta, timing: Timing, budget: timedelta | None) -> timedelta:
    interval = check_interval(age, timing)
    return interval if budget is None else min(interval, budget)


def first_check_at(
    submitted_at: datetime,
    now: datetime,
    timing: Timing,
    rng: random.Random,
    budget: timedelta | None = None,
) -> datetime:
    """A job seen for the first time (new, or after a restart): somewhere in its first gap."""
    due = now + _gap(now - submitted_at, timing, budget) * rng.random()
    return _deadline_cap(submitted_at, due, timing, now)


def next_check_at(
    submitted_at: datetime,
    now: datetime,
    timing: Timing,
    rng: random.Random,
    budget: timedelta | None = None,
) -> datetime:
    """One gap from now, minus up to 2x jitter: never later, so no gap exceeds the interval."""
    interval = _gap(now - submitted_at, timing, budget)
    factor = 1 - 2 * timing.jitter * rng.random()
    return _deadline_cap(submitted_at, now + interval * factor, timing, now)


def retry_at(
    submitted_at: datetime, now: datetime, failures: int, timing: Timing, rng: random.Random
) -> datetime:
    """After a check that could not reach Spaces or NCA: back off from 1/8 interval up to 1."""
    interval = check_interval(now - submitted_at, timing).total_seconds()
    delay = backoff_delay(max(failures - 1, 0), base=interval / 8, cap=interval, rng=rng)
    return _deadline_cap(submitted_at, now + timedelta(seconds=delay), timing, now)


def nca_next_at(now: datetime, pending_answers: int, timing: Timing) -> datetime:
    """After NCA said queued, running or 404: ask again after 1, 2, 4 ... intervals, capped."""
    factor = 2 ** max(min(pending_answers - 1, 16), 0)
    delay: timedelta = min(timing.interval * factor, timing.slow_interval)
    # A hair early, so the next regular check (with jitter) is not just short of it.
    return now + delay * (1 - timing.jitter)

"""When to check a job next: by its age, with jitter, and backing off on errors. Pure.

Young jobs are checked every poll interval, older ones every slow interval; a job due to time out
is checked exactly at its deadline. Jitter spreads checks so a restart with thousands of jobs does
not fire them all in the same second.
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
    jitter: float = 0.075  # checks come 0-15% early, to spread them without ever coming late


def check_interval(age: timedelta, timing: Timing) -> timedelta:
    return timing.interval if age < timing.slow_after else timing.slow_interval


def _deadline_cap(submitted_at: datetime, due: datetime, timing: Timing, now: datetime) -> datetime:
    deadline = submitted_at + timing.max_age
    return max(now, deadline) if now <= deadline < due else due


def first_check_at(submitted_at: datetime, now: datetime, timing: Timing, rng: random.Random) -> datetime:
    """A job seen for the first time (new, or after a restart): somewhere in its first interval."""
    interval = check_interval(now - submitted_at, timing)
    due = now + interval * rng.random()
    return _deadline_cap(submitted_at, due, timing, now)


def next_check_at(submitted_at: datetime, now: datetime, timing: Timing, rng: random.Random) -> datetime:
    """One interval from now, minus up to 2x jitter: never later, so no gap exceeds the interval."""
    interval = check_interval(now - submitted_at, timing)
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

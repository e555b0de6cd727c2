"""Budgets: how fast the leader may HEAD the bucket, and how long Airtable writes may linger.

A fixed check interval makes a lost webhook cost minutes whatever the load. A budget instead
spends a constant, small share of the bucket's capacity on however many jobs are processing:
with N jobs and B requests a second each job is looked at about every N/B seconds. Spaces
answers 503 "Slow Down" when a bucket is overloaded; the budget then halves at once and grows
back a little each second (AIMD, as TCP does), so the controller never adds to a storm.

Airtable's budget is a month's quota, not a rate: `QuotaLinger` turns what is left of it into how
long a result may wait for others to share a request with, and `DiscoveryPace` into how soon the
push source may read Airtable again after a ping: both spend the quota where it buys latency.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from controller.backoff import RateLimiter

log = logging.getLogger(__name__)
DECREASE = 0.5  # on a 503, the rate is multiplied by this
COOLDOWN_S = 1.0  # 503s within this long of a decrease are one congestion event, not several
RECOVERY_S = 30.0  # additive increase: back from the floor to the ceiling in about this long


class AimdRate:
    """A rate that halves on congestion and climbs back linearly to its ceiling. Pure (clock in)."""

    def __init__(self, ceiling: float, *, floor: float, clock: Callable[[], float] = time.monotonic) -> None:
        if floor <= 0 or ceiling < floor:
            raise ValueError("need 0 < floor <= ceiling")
        self._floor = floor
        self.ceiling = ceiling
        self._clock = clock
        self._base = ceiling  # the rate just after the last decrease
        self._since = clock()

    def set_ceiling(self, ceiling: float) -> None:
        """A larger load may raise the ceiling; the current rate still climbs to it, not jumps."""
        current = self.current()
        self.ceiling = max(self._floor, ceiling)
        self._base, self._since = min(current, self.ceiling), self._clock()

    def current(self) -> float:
        step = self.ceiling / RECOVERY_S
        return min(self.ceiling, self._base + step * (self._clock() - self._since))

    def congested(self) -> bool:
        """A 503: halve the rate, unless this is the same congestion event. True if it shrank."""
        now = self._clock()
        if now - self._since < COOLDOWN_S and self._base < self.ceiling:
            return False
        self._base, self._since = max(self._floor, self.current() * DECREASE), now
        return True


class SpacesBudget:
    """Every Spaces request passes here: evenly spaced at the current AIMD rate."""

    def __init__(
        self,
        requests_per_second: float,
        *,
        on_congestion: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.configured = requests_per_second
        self._rate = AimdRate(requests_per_second, floor=min(1.0, requests_per_second), clock=clock)
        self._limiter = RateLimiter(requests_per_second, clock=clock)
        self._on_congestion = on_congestion

    @property
    def rate(self) -> float:
        """Requests a second the budget allows now."""
        return self._rate.current()

    def require(self, requests_per_second: float) -> None:
        """The age-based schedule alone needs this rate: the budget never checks jobs less often."""
        ceiling = max(self.configured, requests_per_second)
        if abs(ceiling - self._rate.ceiling) > 1e-9:
            self._rate.set_ceiling(ceiling)

    async def acquire(self) -> None:
        self._limiter.interval = 1.0 / self._rate.current()
        await self._limiter.acquire()

    def slow_down(self) -> None:
        """Spaces answered 503 Slow Down."""
        if self._rate.congested():
            self._on_congestion()


DAY_S = 86400.0
MONTH_S = 30 * DAY_S
AT_ONCE_ABOVE = 0.5  # while more than this share of the day's allowance is left, write at once
# The linger aims a little under the alert's share, so that settling at its allowance does not
# make MediaJobAirtableQuotaProjected flap: the alert then means something else spends too.
ALERT_HEADROOM = 0.9


class QuotaLinger:
    """How long the write-back may hold a result back, from what is left of the Airtable quota.

    The share of AIRTABLE_MONTHLY_QUOTA that may be spent (90% of the alert's share) accrues
    evenly over the month, and up to one day of it may be spent ahead (a bucket: a busy hour draws
    on a quiet night). While more than half a day's allowance is left, results are written at once,
    within seconds; as it runs out, the linger grows to `longest`, where batches of ten rows cost
    about 0.24 calls a job. Unlimited (quota 0) never lingers. Every Airtable call counts, whatever
    its purpose. Pure (clock in). A new leader starts with a full day: a restart is rare, and the
    alert on the month's projection still watches the whole.
    """

    def __init__(
        self,
        *,
        monthly_quota: int,
        share: float,
        longest: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = monthly_quota * share * ALERT_HEADROOM / MONTH_S  # calls a second the month allows
        self._capacity = self._rate * DAY_S
        self._longest = longest
        self._clock = clock
        self._level = self._capacity
        self._at = clock()

    def spend(self, calls: int = 1) -> None:
        self._refill()
        self._level -= calls

    def left(self) -> float:
        """The share of a day's allowance left (may go below 0 after a burst)."""
        if self._capacity <= 0:
            return 1.0
        self._refill()
        return self._level / self._capacity

    def shortfall(self) -> float:
        """0 while more than half a day's allowance is left, rising to 1 as it runs out."""
        return min(1.0, max(0.0, (AT_ONCE_ABOVE - self.left()) / AT_ONCE_ABOVE))

    def linger(self) -> float:
        return self._longest * self.shortfall()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self._capacity, self._level + (now - self._at) * self._rate)
        self._at = now


DISCOVERY_FASTEST = 2.0  # seconds between two discovery reads while the quota has room


def discovery_gap(shortfall: float, longest: float, fastest: float = DISCOVERY_FASTEST) -> float:
    """The shortest time between two reads of Airtable for new rows: `fastest` (or `longest`, if
    shorter) while the quota has room, growing to `longest` as the day's allowance runs out
    (`shortfall` 0 to 1). Pure."""
    return max(min(fastest, longest), longest * min(1.0, max(0.0, shortfall)))


class DiscoveryPace:
    """How soon the push source may read Airtable again: a ping is read within seconds, busy or
    not, while the month's quota has room; only as the day's allowance runs short does discovery
    slow down, to its old pace (half an interval between payload reads, an interval between busy
    listings). The gap is a gauge, and each turn is one log line."""

    def __init__(
        self,
        shortfall: Callable[[], float],
        *,
        on_gap: Callable[[float], None] = lambda _: None,
        fastest: float = DISCOVERY_FASTEST,  # (a benchmark in compressed time scales it)
    ) -> None:
        self._shortfall = shortfall
        self._on_gap = on_gap
        self._fastest = fastest
        self._slowed = False

    def gap(self, longest: float) -> float:
        short = self._shortfall()
        gap = discovery_gap(short, longest, self._fastest)
        if (short > 0) != self._slowed:
            self._slowed = short > 0
            if self._slowed:
                log.warning(
                    "Airtable's allowance for the day runs short (AIRTABLE_MONTHLY_QUOTA): discovery "
                    "slows down, a read every %.1f s now and up to every %.0f s as it runs out",
                    gap,
                    longest,
                )
            else:
                log.info("Airtable's quota has room again: new rows are read within seconds")
        self._on_gap(gap)
        return gap

"""Prometheus metrics, in a registry of their own per controller (no global registry).

A registry per instance lets tests and the benchmark run several controllers in one process
and read each one's figures. It carries the process, platform and GC collectors that the
global registry would have had.

Every replica watches every job, so gauges that count jobs are exported by the leader only:
`sum()` over the ServiceMonitor's targets then counts each job once, also during a rolling
update. A follower exports none of those series (rather than 0), so a dashboard shows a gap,
not a false "no jobs", while no replica leads. Counters count what each replica did itself,
so they sum right as they are.
"""

from __future__ import annotations

import calendar
import importlib.metadata
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.model import MediaJob

AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("lt_1h", 3600.0),
    ("1h_6h", 6 * 3600.0),
    ("6h_24h", 24 * 3600.0),
    ("gt_24h", float("inf")),
)
LAG_BUCKETS = (0.05, 0.25, 1, 5, 15, 30, 60, 120, 300, 600)
CHECK_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 180, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)


def age_bucket(age_seconds: float) -> str:
    for name, upper in AGE_BUCKETS:
        if age_seconds < upper:
            return name
    return AGE_BUCKETS[-1][0]


class _ProcessingByAge(Collector):
    """Computed at scrape time from the job store, so it is never stale and costs nothing between."""

    def __init__(self, jobs: Callable[[], Iterable[MediaJob]], now: Callable[[], datetime]) -> None:
        self._jobs = jobs
        self._now = now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "mediajob_processing_jobs", "MediaJobs in phase Processing, by age", labels=["age"]
        )
        counts = {name: 0 for name, _ in AGE_BUCKETS}
        now = self._now()
        for job in self._jobs():
            if job.status.phase == "Processing" and not job.spec.suspend:
                counts[age_bucket((now - job.spec.submitted_at).total_seconds())] += 1
        for name, value in counts.items():
            family.add_metric([name], value)
        yield family


def _version() -> str:
    try:
        return importlib.metadata.version("mediajob-controller")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was not installed
        return "unknown"


class _LeaderOnly(Collector):
    """Yields the wrapped collector's families only while this replica leads."""

    def __init__(self, inner: Collector, leading: Callable[[], bool]) -> None:
        self._inner = inner
        self._leading = leading

    def collect(self) -> Iterable[Metric]:
        return self._inner.collect() if self._leading() else ()


def month_seconds(moment: datetime) -> tuple[float, float]:
    """(seconds since the month began, seconds in the month), in UTC. Pure."""
    moment = moment.astimezone(UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(moment.year, moment.month)[1]
    return (moment - start).total_seconds(), days * 86400.0


def project_month(calls: float, observed_seconds: float, month_length: float) -> float:
    """This month's calls at the rate seen so far; at least an hour of data, so a start-up burst is
    not extrapolated over the month. Pure."""
    return calls * month_length / max(observed_seconds, 3600.0)


class _AirtableQuota(Collector):
    """Airtable calls this calendar month (since this process started), projected to the month's end."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now
        self._month = ""
        self._calls = 0
        self._since = now()
        self.quota = 0
        self.share = 0.8

    def count(self) -> None:
        moment = self._now()
        month = moment.strftime("%Y-%m")
        if month != self._month:
            self._month, self._calls = month, 0
            self._since = max(self._since, moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0))
        self._calls += 1

    def collect(self) -> Iterator[GaugeMetricFamily]:
        moment = self._now()
        elapsed, length = month_seconds(moment)
        calls = self._calls if moment.strftime("%Y-%m") == self._month else 0
        observed = min(elapsed, (moment - self._since).total_seconds())
        yield GaugeMetricFamily(
            "mediajob_airtable_calls_projected_month",
            "Airtable calls this replica will make this calendar month at the rate seen so far",
            value=project_month(calls, observed, length),
        )
        yield GaugeMetricFamily(
            "mediajob_airtable_monthly_quota",
            "AIRTABLE_MONTHLY_QUOTA: the workspace's calls per month (0 = unlimited)",
            value=self.quota,
        )
        yield GaugeMetricFamily(
            "mediajob_airtable_quota_alert_share",
            "AIRTABLE_QUOTA_ALERT_SHARE: the share of the quota at which the alert fires",
            value=self.share,
        )


class Metrics:
    def __init__(self, *, leading: Callable[[], bool] = lambda: True) -> None:
        """`leading` says whether this replica holds the Lease (always, without leader election)."""
        self.registry = CollectorRegistry()
        self._leading = leading
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

        def counter(name: str, documentation: str, *labels: str) -> Counter:
            return Counter(name, documentation, labels, registry=r)

        def gauge(name: str, documentation: str, *labels: str) -> Gauge:
            return Gauge(name, documentation, labels, registry=r)

        self.completions = counter(
            "mediajob_completions", "Jobs completed, by the source that proved it first", "via"
        )
        self.failures = counter(
            "mediajob_failures", "Jobs that ended without output, by reason (Failed, TimedOut)", "reason"
        )
        self.checks = counter("mediajob_checks", "Checks run, by result", "result")
        self.detection_latency = Histogram(
            "mediajob_detection_latency_seconds",
            "From the output's Last-Modified (or the webhook's arrival) to the status transition",
            ["via"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.check_lag = Histogram(
            "mediajob_check_lag_seconds",
            "How late checks start after they fall due; grows when POLLING_BATCH_SIZE is too small",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.requests = counter(
            "mediajob_outside_requests",
            "Requests to outside systems, by system and HTTP status or error",
            "system",
            "code",
        )
        self.airtable_rate_limited = counter(
            "mediajob_airtable_rate_limited", "Airtable answers with HTTP 429"
        )
        self.writeback_backlog = Gauge(
            "mediajob_writeback_backlog", "Ended jobs whose result is not yet in Airtable", registry=None
        )
        r.register(_LeaderOnly(self.writeback_backlog, leading))
        self.writeback_errors = counter(
            "mediajob_writeback_errors", "Airtable write-back attempts that failed, by kind", "kind"
        )
        self.leader = gauge("mediajob_leader", "1 while this replica holds the Lease")
        self.webhooks = counter("mediajob_webhooks", "Webhook calls, by result", "result")
        self.mirror_invalid_rows = counter(
            "mediajob_mirror_invalid_rows",
            "Airtable Jobs rows that could not be parsed (once per row and reason)",
        )
        self.mirror_created = counter("mediajob_mirror_created", "MediaJobs created by the mirror")
        self.mirror_cycles = counter("mediajob_mirror_cycles", "Mirror cycles, by result", "result")
        self.airtable_calls = counter(
            "mediajob_airtable_calls",
            "Airtable API requests sent, by purpose (mirror, payloads, write, read-before-write, upkeep)",
            "purpose",
        )
        self.airtable_pings = counter(
            "mediajob_airtable_pings", "Airtable webhook notifications received, by result", "result"
        )
        self.airtable_quota = _AirtableQuota()
        r.register(self.airtable_quota)
        self.airtable_call_listeners: list[Callable[[], None]] = []  # e.g. the write-back's QuotaLinger
        self.spaces_budget = gauge(
            "mediajob_spaces_budget_requests_per_second",
            "The Spaces request rate the check budget allows now (SPACES_REQUESTS_PER_SECOND, AIMD)",
        )
        self.spaces_slowdowns = counter(
            "mediajob_spaces_slowdowns", "Spaces 503 Slow Down answers that shrank the check budget"
        )
        self.nca_listings = counter(
            "mediajob_nca_listings", "NCA jobs/status listings, by result (ok, error)", "result"
        )
        self.nca_hints = counter(
            "mediajob_nca_hints", "Jobs NCA's listing showed done that were checked at once"
        )
        self.build_info = gauge("mediajob_build_info", "The controller's version (always 1)", "version")
        self.build_info.labels(version=_version()).set(1)
        self.check_duration = Histogram(
            "mediajob_check_duration_seconds",
            "How long one check takes, Spaces and NCA calls and status writes included"
            " (as controller-runtime's reconcile_time_seconds)",
            buckets=CHECK_BUCKETS,
            registry=r,
        )
        self.writeback_linger = gauge(
            "mediajob_writeback_linger_seconds",
            "How long the write-back lets a result wait for others to share Airtable requests with",
        )
        self.discovery_gap = gauge(
            "mediajob_airtable_discovery_gap_seconds",
            "How soon push discovery may read Airtable again after a read: seconds while the quota has room",
        )

    def count_airtable_call(self, purpose: str) -> None:
        self.airtable_calls.labels(purpose=purpose).inc()
        self.airtable_quota.count()
        for listener in self.airtable_call_listeners:
            listener()

    def observe_request(self, system: str, code: str) -> None:
        self.requests.labels(system=system, code=code).inc()

    def track_jobs(self, jobs: Callable[[], Iterable[MediaJob]], now: Callable[[], datetime]) -> None:
        self.registry.register(_LeaderOnly(_ProcessingByAge(jobs, now), self._leading))

    def track_queue(self, depth: Callable[[], int]) -> None:
        """Checks due and not started (as controller-runtime's workqueue_depth); the leader's."""
        gauge = Gauge(
            "mediajob_queue_depth",
            "Checks that are due and have not started yet (the leader's)",
            registry=None,
        )
        gauge.set_function(depth)
        self.registry.register(_LeaderOnly(gauge, self._leading))

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""One typed settings object, read once from the environment (contract section 5).

Everything the controller can be told comes through here, so that a bad value stops start-up
with one line naming the variable instead of surfacing later as a confusing runtime error.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import partial
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# Matched whole with `fullmatch`: `$` would also match before a trailing newline.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_BASE_ID = re.compile(r"app[A-Za-z0-9]{14}")
_PLACEHOLDER_DOMAINS = ("example.com", "example.org", "example.net", "example", "invalid")


MIN_DURATION = timedelta(seconds=1)
MAX_DURATION = timedelta(days=3650)


class SettingsError(ValueError):
    """A variable is missing or malformed; the message names it and never shows a secret."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


class Secret:
    """A value that must never reach a log line, an Event, a status field or an exception."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclasses.dataclass(frozen=True)
class Settings:
    airtable_api_key: Secret
    airtable_base_id: str
    nca_api_url: str
    nca_api_key: Secret
    webhook_token: Secret
    airtable_api_url: str = "https://api.airtable.com"
    airtable_jobs_table: str = "Jobs"
    airtable_segments_table: str = "Segments"
    airtable_videos_table: str = "Videos"
    airtable_requests_per_second: float = 4.5
    airtable_penalty: timedelta = timedelta(seconds=30)
    spaces_base_url: str = "https://phi-bucket.nyc3.digitaloceanspaces.com/phi-bucket"
    polling_enabled: bool = True
    polling_interval: timedelta = timedelta(minutes=2)
    polling_max_age: timedelta = timedelta(hours=24)
    polling_batch_size: int = 10
    polling_slow_after: timedelta = timedelta(hours=1)
    polling_slow_interval: timedelta = timedelta(minutes=10)
    polling_min_interval: timedelta = timedelta(seconds=5)
    spaces_requests_per_second: float = 25.0
    nca_listing_enabled: bool = True
    mediajob_ttl_after_finished: timedelta | None = timedelta(hours=168)  # None: never delete
    watch_namespace: str | None = None
    leader_election_enabled: bool = False
    lease_name: str = "mediajob-controller"
    lease_namespace: str | None = None
    pod_name: str = "mediajob-controller"
    lease_duration: timedelta = timedelta(seconds=15)
    lease_renew_deadline: timedelta = timedelta(seconds=10)
    lease_retry_period: timedelta = timedelta(seconds=2)
    http_port: int = 8080
    metrics_port: int = 8081
    airtable_webhook_url: str | None = None
    airtable_webhook_secret: str = "mediajob-controller-airtable-webhook"  # noqa: S105 - a name
    airtable_webhook_check: timedelta = timedelta(minutes=60)
    airtable_full_resync: timedelta = timedelta(hours=6)
    airtable_monthly_quota: int = 100_000
    airtable_quota_alert_share: float = 0.8
    airtable_write_linger: timedelta | None = None
    log_format: str = "json"
    log_level: str = "info"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The raw secret values, for scrubbing and for tests that grep logs for leaks."""
        return tuple(
            s.reveal() for s in (self.airtable_api_key, self.nca_api_key, self.webhook_token) if s.reveal()
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, in_cluster_namespace: str | None = None) -> Settings:
        """Read and validate every variable; raise SettingsError on the first bad one."""
        r = _Reader(env)
        watch_namespace = r.get("WATCH_NAMESPACE", _dns_label, None)
        leader = r.get("LEADER_ELECTION_ENABLED", _bool, False)
        lease_ns = r.get("LEASE_NAMESPACE", _dns_label, None) or watch_namespace or in_cluster_namespace
        if leader and not lease_ns:
            raise SettingsError("LEASE_NAMESPACE", "required when LEADER_ELECTION_ENABLED is true")
        pod_name = r.get("POD_NAME", _dns_subdomain, None)
        if leader and not pod_name:
            raise SettingsError("POD_NAME", "required when LEADER_ELECTION_ENABLED is true")
        polling_interval = r.get("POLLING_INTERVAL_MINUTES", _minutes, cls.polling_interval)
        # Unset, the slow interval is never shorter than the normal one; set shorter, it is refused.
        slow_interval = r.get(
            "POLLING_SLOW_INTERVAL_MINUTES", _minutes, max(cls.polling_slow_interval, polling_interval)
        )
        if slow_interval < polling_interval:
            raise SettingsError(
                "POLLING_SLOW_INTERVAL_MINUTES", "must not be shorter than POLLING_INTERVAL_MINUTES"
            )
        # Unset, the floor is never longer than the interval; set longer, it is refused.
        min_interval = r.get(
            "POLLING_MIN_INTERVAL_SECONDS", _seconds, min(cls.polling_min_interval, polling_interval)
        )
        if min_interval > polling_interval:
            raise SettingsError(
                "POLLING_MIN_INTERVAL_SECONDS", "must not be longer than POLLING_INTERVAL_MINUTES"
            )
        settings = cls(
            airtable_api_key=r.secret("AIRTABLE_API_KEY"),
            airtable_base_id=r.required("AIRTABLE_BASE_ID", _base_id),
            airtable_api_url=r.get("AIRTABLE_API_URL", _http_url, cls.airtable_api_url),
            airtable_jobs_table=r.get("AIRTABLE_JOBS_TABLE", _table, cls.airtable_jobs_table),
            airtable_segments_table=r.get("AIRTABLE_SEGMENTS_TABLE", _table, cls.airtable_segments_table),
            airtable_videos_table=r.get("AIRTABLE_VIDEOS_TABLE", _table, cls.airtable_videos_table),
            airtable_requests_per_second=r.get(
                "AIRTABLE_REQUESTS_PER_SECOND", _requests_per_second, cls.airtable_requests_per_second
            ),
            airtable_penalty=r.get("AIRTABLE_PENALTY_SECONDS", _seconds, cls.airtable_penalty),
            nca_api_url=r.required("NCA_API_URL", _http_url),
            nca_api_key=r.secret("NCA_API_KEY"),
            spaces_base_url=r.get("SPACES_BASE_URL", _http_url, cls.spaces_base_url),
            polling_enabled=r.get("POLLING_ENABLED", _bool, cls.polling_enabled),
            polling_interval=polling_interval,
            polling_max_age=r.get("POLLING_MAX_AGE_HOURS", _hours, cls.polling_max_age),
            polling_batch_size=r.get("POLLING_BATCH_SIZE", _batch_size, cls.polling_batch_size),
            polling_slow_after=r.get("POLLING_SLOW_AFTER_MINUTES", _minutes, cls.polling_slow_after),
            polling_slow_interval=slow_interval,
            polling_min_interval=min_interval,
            spaces_requests_per_second=r.get(
                "SPACES_REQUESTS_PER_SECOND", _spaces_rate, cls.spaces_requests_per_second
            ),
            nca_listing_enabled=r.get("NCA_LISTING_ENABLED", _bool, cls.nca_listing_enabled),
            mediajob_ttl_after_finished=r.get(
                "MEDIAJOB_TTL_AFTER_FINISHED_HOURS", _ttl_hours, cls.mediajob_ttl_after_finished
            ),
            watch_namespace=watch_namespace,
            leader_election_enabled=leader,
            lease_name=r.get("LEASE_NAME", _dns_subdomain, cls.lease_name),
            lease_namespace=lease_ns,
            pod_name=pod_name or cls.pod_name,
            lease_duration=r.get("LEASE_DURATION_SECONDS", _seconds, cls.lease_duration),
            lease_renew_deadline=r.get("LEASE_RENEW_DEADLINE_SECONDS", _seconds, cls.lease_renew_deadline),
            lease_retry_period=r.get("LEASE_RETRY_PERIOD_SECONDS", _seconds, cls.lease_retry_period),
            webhook_token=r.secret("WEBHOOK_TOKEN"),
            http_port=r.get("HTTP_PORT", _port, cls.http_port),
            metrics_port=r.get("METRICS_PORT", _port, cls.metrics_port),
            airtable_webhook_url=r.get("AIRTABLE_WEBHOOK_URL", _http_url, None),
            airtable_webhook_secret=r.get(
                "AIRTABLE_WEBHOOK_SECRET", _dns_subdomain, cls.airtable_webhook_secret
            ),
            airtable_webhook_check=r.get(
                "AIRTABLE_WEBHOOK_CHECK_MINUTES", _minutes, cls.airtable_webhook_check
            ),
            airtable_full_resync=r.get("AIRTABLE_FULL_RESYNC_HOURS", _hours, cls.airtable_full_resync),
            airtable_monthly_quota=r.get("AIRTABLE_MONTHLY_QUOTA", _quota, cls.airtable_monthly_quota),
            airtable_quota_alert_share=r.get(
                "AIRTABLE_QUOTA_ALERT_SHARE", _share, cls.airtable_quota_alert_share
            ),
            airtable_write_linger=r.get("AIRTABLE_WRITE_LINGER_SECONDS", _seconds, None),
            log_format=r.get("LOG_FORMAT", _log_format, cls.log_format),
            log_level=r.get("LOG_LEVEL", _log_level, cls.log_level),
        )
        if settings.metrics_port and settings.metrics_port == settings.http_port:
            raise SettingsError("METRICS_PORT", "must differ from HTTP_PORT (metrics stay off the webhooks)")
        if not settings.lease_retry_period < settings.lease_renew_deadline < settings.lease_duration:
            raise SettingsError(
                "LEASE_RENEW_DEADLINE_SECONDS",
                "must be longer than LEASE_RETRY_PERIOD_SECONDS and shorter than LEASE_DURATION_SECONDS",
            )
        return settings


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def _raw(self, name: str, *, required: bool = False) -> str:
        """The value without surrounding blanks; "" when unset, as a blank value counts as unset."""
        raw = (self.env.get(name) or "").strip()
        if required and not raw:
            raise SettingsError(name, "is required but not set")
        return raw

    def required(self, name: str, parse: Callable[[str], T]) -> T:
        return _parse(name, self._raw(name, required=True), parse)

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self._raw(name)
        return _parse(name, raw, parse) if raw else default

    def secret(self, name: str) -> Secret:
        raw = self._raw(name, required=True)
        if any(ch.isspace() for ch in raw):
            raise SettingsError(name, "must not contain whitespace (value not shown)")
        return Secret(raw)


def _parse(name: str, raw: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(raw)
    except (ValueError, OverflowError) as exc:
        shown = raw if len(raw) <= 80 else raw[:77] + "..."
        raise SettingsError(name, f"{exc} (got {shown!r})") from None


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("must be true or false")


def _positive_float(raw: str, at_most: float = math.inf, too_high: str = "") -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a positive number")
    if value > at_most:
        raise ValueError(too_high)
    return value


def _duration(raw: str, unit: timedelta) -> timedelta:
    """At least a second (less is a hot loop), at most ten years (so `now + it` is a date)."""
    value = _positive_float(raw)
    seconds = value * unit.total_seconds()
    if seconds < MIN_DURATION.total_seconds():
        raise ValueError("must be at least one second")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError("must be at most ten years")
    return timedelta(seconds=seconds)


_MAX_TTL_HOURS = 24 * 366 * 100  # a century: any longer overflows no date, and means "never" anyway


def _ttl_hours(raw: str) -> timedelta | None:
    """Hours after the Airtable sync; 0 means never, as for a Job's ttlSecondsAfterFinished."""
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a number of hours (0 = never)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError("must be 0 (never) or a positive number of hours")
    if value > _MAX_TTL_HOURS:
        raise ValueError(f"must be at most {_MAX_TTL_HOURS} hours")
    if value == 0:
        return None
    if value * 3600 < 1:
        raise ValueError("must be at least one second (or 0 for never)")
    return timedelta(hours=value)


def _int_between(raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ValueError("must be a whole number") from None
    if not low <= value <= high:
        raise ValueError(f"must be between {low} and {high}")
    return value


_seconds = partial(_duration, unit=timedelta(seconds=1))
_minutes = partial(_duration, unit=timedelta(minutes=1))
_hours = partial(_duration, unit=timedelta(hours=1))
_requests_per_second = partial(_positive_float, at_most=1000.0, too_high="must be at most 1000")
# A share of a bucket's 800 requests a second (DigitalOcean's limit); all of it at most.
_spaces_rate = partial(_positive_float, at_most=800.0, too_high="must be at most 800 (a bucket's limit)")
_share = partial(_positive_float, at_most=1.0, too_high="must be a share between 0 and 1, e.g. 0.8")
_batch_size = partial(_int_between, low=1, high=1000)
_quota = partial(_int_between, low=0, high=10**12)  # calls per month; 0 means unlimited (Business plans)
# 0 asks the OS for a free port, as usual for servers (tests use it).
_port = partial(_int_between, low=0, high=65535)


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http or https URL with a host")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials")
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    # RFC 2606's names for documentation: a URL on them is a placeholder nobody edited.
    host = parts.hostname.rstrip(".")
    if any(host == d or host.endswith("." + d) for d in _PLACEHOLDER_DOMAINS):
        raise ValueError(f"is still a placeholder ({host} is reserved for documentation): set the real URL")
    return raw.rstrip("/")


def _base_id(raw: str) -> str:
    if not _BASE_ID.fullmatch(raw):
        raise ValueError("must look like an Airtable base id (app + 14 letters or digits)")
    if "replaceme" in raw.lower():
        raise ValueError("is still the placeholder from config.env: set your base's id")
    return raw


def _table(raw: str) -> str:
    if len(raw) > 255 or any(ch in raw for ch in "/?#"):
        raise ValueError("must be a table name or id without '/', '?' or '#'")
    return raw


def _dns_label(raw: str) -> str:
    if not _DNS_LABEL.fullmatch(raw):
        raise ValueError("must be a DNS-1123 label")
    return raw


def _dns_subdomain(raw: str) -> str:
    if not _DNS_SUBDOMAIN.fullmatch(raw):
        raise ValueError("must be a DNS-1123 subdomain")
    return raw


def _log_level(raw: str) -> str:
    if raw.lower() not in ("debug", "info", "warning", "error"):
        raise ValueError("must be debug, info, warning or error")
    return raw.lower()


def _log_format(raw: str) -> str:
    if raw not in ("json", "text"):
        raise ValueError("must be json or text")
    return raw

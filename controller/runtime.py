"""Everything one replica runs, built once from the Settings, and its leadership lifecycle.

Every replica serves the webhook and keeps a watch-fed view of the MediaJobs. Only the Lease
holder runs the checks, the mirror and the Airtable write-back. A replica that loses the Lease
stops that work at once and exits non-zero, so that it restarts clean (as controller-runtime
does); a replica that stops gracefully releases the Lease so that the next one takes over at
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from typing import Any

from controller.airtable_push import PingReceiver, PushSource, SecretStateStore
from controller.budget import DiscoveryPace, QuotaLinger, SpacesBudget
from controller.changes import ChangeSource, IncrementalPolling
from controller.cleanup import Cleanup
from controller.clients.airtable import PURPOSE_MIRROR, AirtableClient, calls_for
from controller.clients.kube import KubeClient, KubeError, Login, default_login
from controller.clients.nca import NcaClient
from controller.clients.spaces import SpacesClient
from controller.http import HttpServer
from controller.jobrows import KnownRows
from controller.leader import LeaderElector
from controller.metrics import Metrics
from controller.mirror import Mirror
from controller.model import MediaJob, utcnow
from controller.receiver import WebhookReceiver
from controller.reconcile import Reconciler
from controller.schedule import Timing
from controller.settings import Settings
from controller.store import JobStore
from controller.transitions import EventRecorder, StatusWriter, Transitions
from controller.vocabulary import Reason
from controller.writeback import Tables, WriteBack

log = logging.getLogger(__name__)
# NCA listings per processing job-hour from N=120 (below, one every 15 s: schedule.LISTING_LONGEST);
# every 5 s (the floor) from N=360. Each listing is one call that NCA records on its disk.
LISTINGS_PER_JOB_HOUR = 2.0


@dataclasses.dataclass
class Clients:
    """The one construction point of the outside-world clients."""

    airtable: AirtableClient
    nca: NcaClient
    spaces: SpacesClient
    kube: KubeClient
    spaces_budget: SpacesBudget

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics, login: Login = default_login) -> Clients:
        observe = metrics.observe_request
        budget = SpacesBudget(settings.spaces_requests_per_second, on_congestion=metrics.spaces_slowdowns.inc)
        return cls(
            airtable=AirtableClient(
                api_key=settings.airtable_api_key.reveal(),
                base_id=settings.airtable_base_id,
                api_url=settings.airtable_api_url,
                requests_per_second=settings.airtable_requests_per_second,
                penalty_seconds=settings.airtable_penalty.total_seconds(),
                observe=observe,
                on_rate_limited=metrics.airtable_rate_limited.inc,
                count_call=metrics.count_airtable_call,
            ),
            # The checks are these two clients' only users: one connection per worker, so that
            # POLLING_BATCH_SIZE, not a pool limit, sets how many checks run at once.
            nca=NcaClient(
                settings.nca_api_url,
                settings.nca_api_key.reveal(),
                max_connections=settings.polling_batch_size,
                observe=observe,
            ),
            spaces=SpacesClient(
                settings.spaces_base_url,
                max_connections=settings.polling_batch_size,
                observe=observe,
                budget=budget,
            ),
            kube=KubeClient(login, observe=observe),
            spaces_budget=budget,
        )

    async def close(self) -> None:
        for client in (self.airtable, self.nca, self.spaces, self.kube):
            with contextlib.suppress(Exception):
                await client.close()


def home_namespace(settings: Settings, kube: KubeClient) -> str:
    """Where the mirror creates MediaJobs: the watched namespace, else the controller's own."""
    return settings.watch_namespace or settings.lease_namespace or kube.default_namespace or "default"


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        stop: asyncio.Event,
        login: Login = default_login,
        rng: random.Random | None = None,
    ) -> None:
        """`rng` places the checks (first check, jitter, retry backoff): one that must know when, fixes it."""
        self.settings = settings
        self._rng = rng or random.Random()
        self.stop_flag = stop
        self.exit_code = 0
        self.startup_failure: str | None = None  # why start-up failed for good, for the exit line
        self.is_leader = False
        self.metrics = Metrics(leading=lambda: self.is_leader)
        self.metrics.airtable_quota.quota = settings.airtable_monthly_quota
        self.metrics.airtable_quota.share = settings.airtable_quota_alert_share
        # The write-back's linger: AIRTABLE_WRITE_LINGER_SECONDS if set, else what the quota allows.
        self.quota_linger = QuotaLinger(
            monthly_quota=settings.airtable_monthly_quota,
            share=settings.airtable_quota_alert_share,
            longest=settings.polling_interval.total_seconds(),
        )
        self.metrics.airtable_call_listeners.append(self.quota_linger.spend)
        self.store = JobStore()
        self.metrics.track_jobs(lambda: iter(self.store), utcnow)
        self.metrics.track_queue(lambda: self.reconciler.scheduler.due_now() if self.reconciler else 0)
        self.clients = Clients.from_settings(settings, self.metrics, login)
        kube = self.clients.kube
        self.namespace = home_namespace(settings, kube)
        self.events = EventRecorder(kube, host=settings.pod_name, secrets=settings.secrets)
        self.writer = StatusWriter(kube, self.store, self.events)
        self.transitions = Transitions(kube=kube, store=self.store, writer=self.writer, metrics=self.metrics)
        self.receiver = WebhookReceiver(
            store=self.store,
            kube=kube,
            transitions=self.transitions,
            metrics=self.metrics,
            namespace=settings.watch_namespace,
            airtable=self.clients.airtable,
            jobs_table=settings.airtable_jobs_table,
            home_namespace=self.namespace,
            leader_rate=settings.airtable_requests_per_second,
        )
        # Airtable's change notifications (push): any replica verifies a ping, the leader acts on it.
        self.push: PushSource | None = None
        self.webhook_store: SecretStateStore | None = None
        self.pings: PingReceiver | None = None
        if settings.airtable_webhook_url:
            self.webhook_store = SecretStateStore(
                kube,
                namespace=settings.lease_namespace or self.namespace,
                name=settings.airtable_webhook_secret,
            )
            self.pings = PingReceiver(self.webhook_store, leader_source=lambda: self.push)
        self.http = HttpServer(
            port=settings.http_port,
            metrics_port=settings.metrics_port,
            token=settings.webhook_token.reveal(),
            metrics=self.metrics,
            receiver=lambda: self.receiver if self._started else None,
            ready=lambda: self._started,
            airtable_ping=self.pings.receive if self.pings is not None else None,
        )
        self.elector: LeaderElector | None = None
        if settings.leader_election_enabled:
            self.elector = LeaderElector(
                kube,
                namespace=settings.lease_namespace or self.namespace,
                name=settings.lease_name,
                identity=settings.pod_name,
                lease_duration=settings.lease_duration.total_seconds(),
                renew_deadline=settings.lease_renew_deadline.total_seconds(),
                retry_period=settings.lease_retry_period.total_seconds(),
            )
        self._started = False
        self._leadership: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self.mirror: Mirror | None = None
        self.writeback: WriteBack | None = None
        self.reconciler: Reconciler | None = None
        self.cleanup: Cleanup | None = None

    async def start(self) -> None:
        await self.http.start()
        self._leadership = asyncio.create_task(self._lead_when_elected(), name="leadership")
        self._started = True

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        """kopf's watch events, for every replica's view of the jobs."""
        problem = self.store.observe(event_type, body)
        if problem and self.is_leader:
            task = asyncio.create_task(self._report_invalid(body, problem))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def close(self) -> None:
        """Graceful stop: leader work first, then the Lease, then the server and the clients."""
        if self._leadership is not None:
            self._leadership.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._leadership
        if self.elector is not None:
            await self.elector.release()
        self.metrics.leader.set(0)
        await self.http.stop()
        for task in list(self._side_tasks):
            task.cancel()
        await self.clients.close()

    async def _lead_when_elected(self) -> None:
        if self.elector is not None:
            await self.elector.acquire()
        self.is_leader = True
        self.metrics.leader.set(1)
        work = asyncio.create_task(self._lead(), name="leader-work")
        watchers: set[asyncio.Task[Any]] = {work}
        lost: asyncio.Task[None] | None = None
        if self.elector is not None:
            lost = asyncio.create_task(self.elector.hold(), name="lease-renewal")
            watchers.add(lost)
        try:
            done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            self.is_leader = False
            self.metrics.leader.set(0)
        if lost is not None and lost in done:
            log.error("lost the Lease: stopped all leader work; exiting so that the replica restarts clean")
        elif work in done and not work.cancelled() and work.exception() is not None:
            log.error("leader work crashed: %r; exiting", work.exception())
        self.exit_code = 1
        self.stop_flag.set()

    async def _lead(self) -> None:
        s = self.settings
        kube = self.clients.kube
        await self._seed_store()
        rows = KnownRows()  # this term's knowledge of the Jobs rows, shared by push and write-back
        self.writeback = writeback = WriteBack(
            airtable=self.clients.airtable,
            kube=kube,
            store=self.store,
            writer=self.writer,
            metrics=self.metrics,
            tables=Tables(s.airtable_jobs_table, s.airtable_segments_table, s.airtable_videos_table),
            retry_cap=max(s.polling_slow_interval.total_seconds(), 10.0),
            # A partial batch waits for more, when more are coming, up to the linger: Airtable's
            # quota counts requests, not rows.
            linger=self._write_linger,
            rows=rows,
        )
        timing = Timing(
            interval=s.polling_interval,
            slow_after=s.polling_slow_after,
            slow_interval=s.polling_slow_interval,
            max_age=s.polling_max_age,
            floor=s.polling_min_interval,
        )
        self.reconciler = reconciler = Reconciler(
            timing=timing,
            workers=s.polling_batch_size,
            spaces_base_url=s.spaces_base_url,
            spaces=self.clients.spaces,
            nca=self.clients.nca,
            kube=kube,
            store=self.store,
            transitions=self.transitions,
            writer=self.writer,
            writeback=writeback,
            metrics=self.metrics,
            namespace=s.watch_namespace,
            resync_every=s.polling_slow_interval.total_seconds(),
            polling=s.polling_enabled,
            budget=self.clients.spaces_budget,
            listing_per_job_hour=LISTINGS_PER_JOB_HOUR if s.nca_listing_enabled else None,
            rng=self._rng,
        )
        self.mirror = mirror = Mirror(
            airtable=self.clients.airtable,
            kube=kube,
            store=self.store,
            transitions=self.transitions,
            metrics=self.metrics,
            jobs_table=s.airtable_jobs_table,
            namespace=self.namespace,
            interval=s.polling_interval.total_seconds(),
            source=self._change_source(rows),
        )
        log.info("leading: checks %s, mirror and write-back running", "on" if s.polling_enabled else "off")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(writeback.run(), name="writeback")
                group.create_task(reconciler.run(), name="reconciler")
                with calls_for(PURPOSE_MIRROR):  # the task copies the label: the mirror's calls
                    group.create_task(mirror.run(), name="mirror")
                ttl = s.mediajob_ttl_after_finished
                if ttl is not None:
                    every = max(1.0, min(s.polling_interval.total_seconds(), ttl.total_seconds()))
                    self.cleanup = Cleanup(kube=kube, store=self.store, ttl=ttl, every=every)
                    group.create_task(self.cleanup.run(), name="cleanup")
        finally:
            self.push = None

    def _write_linger(self) -> float:
        explicit = self.settings.airtable_write_linger
        value = explicit.total_seconds() if explicit is not None else self.quota_linger.linger()
        self.metrics.writeback_linger.set(value)
        return value

    def _change_source(self, rows: KnownRows) -> ChangeSource:
        """Push when AIRTABLE_WEBHOOK_URL is set, else (and whenever the webhook is unusable)
        incremental polling."""
        s = self.settings
        fallback = IncrementalPolling(
            self.clients.airtable, s.airtable_jobs_table, full_every=s.airtable_full_resync.total_seconds()
        )
        if not s.airtable_webhook_url or self.webhook_store is None:
            return fallback
        self.push = PushSource(
            airtable=self.clients.airtable,
            store=self.webhook_store,
            table=s.airtable_jobs_table,
            notification_url=s.airtable_webhook_url,
            interval=s.polling_interval.total_seconds(),
            check_every=s.airtable_webhook_check.total_seconds(),
            full_every=s.airtable_full_resync.total_seconds(),
            processing_count=lambda: sum(1 for j in self.store if j.status.phase == "Processing"),
            fallback=fallback,
            rows=rows,
            # What is left of the month's quota paces discovery as it does the write-back's linger.
            pace=DiscoveryPace(self.quota_linger.shortfall, on_gap=self.metrics.discovery_gap.set),
        )
        return self.push

    async def _seed_store(self) -> None:
        """Start leading from a complete view, not from whatever the watch has delivered so far."""
        while True:
            try:
                async for page in self.clients.kube.iter_mediajobs(self.settings.watch_namespace):
                    for item in page:
                        self.observe(None, item)
                return
            except KubeError as exc:
                log.warning("cannot list MediaJobs yet (%s); retrying", exc)
                await asyncio.sleep(self.settings.lease_retry_period.total_seconds())

    async def _report_invalid(self, body: dict[str, Any], problem: str) -> None:
        meta = body.get("metadata") or {}
        ref = {
            "apiVersion": body.get("apiVersion", ""),
            "kind": body.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
        }
        log.warning("ignoring invalid MediaJob: %s", problem)
        await self.events.record_ref(ref, warning=True, reason=Reason.INVALID_SPEC, message=problem)


__all__ = ["Clients", "MediaJob", "Runtime"]

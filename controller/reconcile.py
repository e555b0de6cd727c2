"""The leader's checks: observe Spaces (then NCA if needed), decide, and record what changed.

This is the I/O shell around `decide`: it asks the outside world, hands the answers to the pure
decision, and writes to the API server only when something changed. A check that learns nothing
new writes nothing, because with thousands of jobs every write fans out to every watcher; a job's
first status goes through its own lane, so that the first checks of thousands of new jobs do not
wait behind thousands of writes.

Each job's next check spends its share of the Spaces budget (`schedule.budget_gap`). NCA is asked
as little as possible: one `jobs/status` listing a period stands in for most per-job status calls
(a job it shows queued or running needs none) and points at the jobs that just finished (checked
at once). The listing is only a hint: it covers one NCA container's jobs folder (shared by its
workers) and a window of time, so a job missing from it is asked about on the age-based schedule.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from controller import logs
from controller.budget import SpacesBudget
from controller.clients.kube import Conflict, KubeClient, KubeError, NotFound
from controller.clients.nca import NcaClient
from controller.clients.spaces import SpacesClient, UnsafeUrlError
from controller.decide import Complete, Fail, Observation, TimeOut, Wait, decide, should_ask_nca
from controller.metrics import Metrics
from controller.model import MediaJob, utcnow
from controller.naming import UnsafeIdError, expected_output_url
from controller.observations import (
    NcaListing,
    NcaNotFound,
    NcaPending,
    NcaStatus,
    NcaUnknown,
    ObjectMissing,
    SpacesResult,
    SpacesUnknown,
)
from controller.schedule import (
    PLANNED_SHARE,
    Timing,
    budget_gap,
    check_interval,
    first_check_at,
    listing_period,
    nca_next_at,
    next_check_at,
    required_rate,
    retry_at,
    share_left,
    weight,
)
from controller.scheduler import URGENT, Scheduler
from controller.status import initial_status
from controller.store import JobStore, Key
from controller.transitions import Event, StatusWriter, Transitions
from controller.vocabulary import Reason
from controller.writeback import WriteBack

log = logging.getLogger(__name__)
PERSISTENT_ERRORS = 3  # consecutive failed checks before an Event says so


@dataclasses.dataclass(slots=True)
class JobRuntime:
    """What the leader remembers between checks of one job; lost on restart, by design."""

    checks: int = 0
    failures: int = 0
    nca_pending: int = 0
    nca_next_at: datetime | None = None
    nca_hinted: bool = False  # NCA's listing showed it done: ask NCA in the next check if needed
    hint_refused_until: datetime | None = None  # NCA's own answer to a hint said "not done"
    reported_error: bool = False


@dataclasses.dataclass(slots=True)
class Listed:
    """What NCA's last listings said of the processing jobs, by NCA job id."""

    states: dict[str, tuple[str, datetime]] = dataclasses.field(default_factory=dict)

    def merge(self, listing: NcaListing, now: datetime, valid: timedelta) -> None:
        """Newer listings win; a state not heard of for `valid` is forgotten (another NCA
        container may hold the job, or it left the listing's window)."""
        cutoff = now - valid
        self.states = {k: v for k, v in self.states.items() if v[1] > cutoff}
        for job_id, state in listing.states.items():
            self.states[job_id] = (state, now)

    def state(self, job_id: str, now: datetime, valid: timedelta) -> str | None:
        entry = self.states.get(job_id)
        return entry[0] if entry is not None and entry[1] > now - valid else None


def check_result(spaces: SpacesResult | None, nca: NcaStatus | None, decision: object) -> str:
    """A small closed set of labels for the checks metric."""
    if isinstance(decision, Complete):
        return "found" if decision.via == "spaces" else "nca_done"
    if isinstance(decision, Fail):
        return "nca_failed"
    if isinstance(decision, TimeOut):
        return "timed_out"
    if isinstance(decision, Wait) and decision.error:
        return "error"
    if isinstance(nca, NcaPending):
        return "pending"
    if isinstance(nca, NcaNotFound):
        return "nca_not_found"
    if isinstance(spaces, ObjectMissing):
        return "missing"
    return "waiting"


class Reconciler:
    def __init__(
        self,
        *,
        timing: Timing,
        workers: int,
        spaces_base_url: str,
        spaces: SpacesClient,
        nca: NcaClient,
        kube: KubeClient,
        store: JobStore,
        transitions: Transitions,
        writer: StatusWriter,
        writeback: WriteBack,
        metrics: Metrics,
        namespace: str | None,
        resync_every: float,
        polling: bool = True,
        budget: SpacesBudget | None = None,
        listing_per_job_hour: float | None = None,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._timing = timing
        self._budget = budget
        self._listing_per_job_hour = listing_per_job_hour  # None: no NCA listing
        self._listed = Listed()
        self._listing_every = timing.interval  # the listing's current period
        self._job_processing = asyncio.Event()  # set when the watch shows a processing job
        self._share = (0.0, 0.0)  # (weight, rate) the jobs not bounded by their interval share
        self._first_status: dict[Key, None] = {}  # an ordered set: the lane's queue
        self._first_status_wake = asyncio.Event()
        self._spaces_base_url = spaces_base_url
        self._spaces = spaces
        self._nca = nca
        self._kube = kube
        self._store = store
        self._transitions = transitions
        self._writer = writer
        self._writeback = writeback
        self._metrics = metrics
        self._namespace = namespace
        self._resync_every = resync_every
        self._polling = polling
        self._rng = rng or random.Random()
        self._now = now
        self._state: dict[Key, JobRuntime] = {}
        self.scheduler: Scheduler[Key] = Scheduler(
            self.check,
            workers=workers,
            clock=lambda: self._now().timestamp(),
            on_lag=metrics.check_lag.observe,
        )

    # Feeding ------------------------------------------------------------------------------------

    def on_change(self, job: MediaJob, old: MediaJob | None) -> None:
        """Store listener: keep the heap in step with what the watch reports."""
        key = job.key
        if not job.ended and not job.spec.suspend:
            self._job_processing.set()  # the listing runs as soon as there is a job to list
        if job.ended:
            self._state.pop(key, None)
        elif job.new_attempt or (old is not None and old.attempt != job.attempt):
            self._state.pop(key, None)  # a fresh attempt starts with a fresh NCA backoff
            self.scheduler.schedule(key, self._now().timestamp(), earlier_only=True)
            return
        elif not self._polling:
            return
        if job.recheck_pending:
            self.scheduler.schedule(key, URGENT, earlier_only=True)  # a person is waiting
        elif job.ended or job.spec.suspend:
            self.scheduler.cancel(key)
        elif not self.scheduler.is_scheduled(key):
            now = self._now()
            listed = self._listed.state(job.spec.external_job_id, now, self._listing_valid())
            if listed == "done" and self._hint(job, now):
                return  # NCA listed it done before its row was mirrored (a fresh row): check it now
            at = first_check_at(job.spec.started_at, now, self._timing, self._rng, self._gap(job, now))
            self.scheduler.schedule(key, at.timestamp())

    def on_remove(self, key: Key) -> None:
        self.scheduler.cancel(key)
        self._state.pop(key, None)
        self._first_status.pop(key, None)

    async def run(self) -> None:
        self._store.subscribe(self.on_change, self.on_remove)
        for job in self._store:
            self.on_change(job, None)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.scheduler.run())
                group.create_task(self._resync_forever())
                group.create_task(self._first_status_forever())
                if self._polling:
                    group.create_task(self._tune_forever())
                if self._polling and self._listing_per_job_hour is not None:
                    group.create_task(self._list_forever())
        finally:
            self._store.unsubscribe(self.on_change, self.on_remove)

    # The budget and NCA's listing ----------------------------------------------------------------

    def _listing_valid(self) -> timedelta:
        """How long a listed state stands: an interval, and a period so none lapses between two."""
        return self._timing.interval + self._listing_every

    def _weight(self, job: MediaJob, now: datetime) -> float:
        return weight(self._listed.state(job.spec.external_job_id, now, self._listing_valid()))

    def _gap(self, job: MediaJob, now: datetime) -> timedelta | None:
        """This job's share of the Spaces budget, as a time between checks; None without one."""
        if self._budget is None:
            return None
        total, rate = self._share
        job_weight = self._weight(job, now)
        return budget_gap(
            total_weight=max(total, job_weight),
            job_weight=job_weight,
            rate=rate or self._budget.rate * PLANNED_SHARE,
            timing=self._timing,
        )

    def _count_load(self) -> None:
        """Recount the weights and raise the budget to what the age-based schedule needs."""
        now = self._now()
        weights_and_caps: list[tuple[float, float]] = []
        young = 0
        for job in self._processing_jobs():
            interval = check_interval(now - job.spec.started_at, self._timing)
            weights_and_caps.append((self._weight(job, now), interval.total_seconds()))
            young += interval == self._timing.interval
        if self._budget is not None:
            self._budget.require(required_rate(young, len(weights_and_caps) - young, self._timing))
            self._share = share_left(weights_and_caps, self._budget.rate * PLANNED_SHARE)
            self._metrics.spaces_budget.set(self._budget.rate)

    def _processing_jobs(self) -> Iterator[MediaJob]:
        return (job for job in self._store if not job.ended and not job.spec.suspend)

    async def _tune_forever(self) -> None:
        while True:
            self._count_load()
            await asyncio.sleep(max(1.0, min(5.0, self._timing.floor.total_seconds())))

    async def _list_forever(self) -> None:
        """One NCA listing a period while jobs are processing: the jobs it shows done are checked
        now, the rest keep waiting. The first comes as soon as a job is processing, not a period
        later: the watch wakes it."""
        assert self._listing_per_job_hour is not None
        while True:
            if next(self._processing_jobs(), None) is None:
                self._job_processing.clear()
                await self._job_processing.wait()
            self._listing_every = listing_period(
                sum(1 for _ in self._processing_jobs()), self._timing, per_job_hour=self._listing_per_job_hour
            )
            listing = await self._nca.jobs_listing(self._listing_valid().total_seconds())
            if isinstance(listing, NcaListing):
                self._metrics.nca_listings.labels(result="ok").inc()
                self.on_listing(listing)
            else:
                self._metrics.nca_listings.labels(result="error").inc()
                log.info("NCA listing failed (%s); per-job status calls go on as scheduled", listing.reason)
            await asyncio.sleep(self._listing_every.total_seconds())

    def on_listing(self, listing: NcaListing) -> None:
        now = self._now()
        self._listed.merge(listing, now, self._listing_valid())
        done = {job_id for job_id, state in listing.states.items() if state == "done"}
        if not done:
            return
        for job in self._store:
            if not job.ended and job.spec.external_job_id in done and not job.spec.suspend:
                self._hint(job, now)

    def _hint(self, job: MediaJob, now: datetime) -> bool:
        """Check a job NCA listed done at once, unless it was hinted already or NCA's own answer
        to the last hint said "not done"; False when it was not hinted."""
        rt = self._runtime(job, now)
        if rt.nca_hinted or (rt.hint_refused_until is not None and now < rt.hint_refused_until):
            return False
        rt.nca_hinted = True
        self._metrics.nca_hints.inc()
        self.scheduler.schedule(job.key, URGENT, earlier_only=True)
        return True

    async def _first_status_forever(self) -> None:
        """A new job's first status (Processing, its conditions) in its own lane, one at a time."""
        while True:
            while not self._first_status:
                self._first_status_wake.clear()
                await self._first_status_wake.wait()
            key = next(iter(self._first_status))
            del self._first_status[key]
            job = self._store.get(key)
            if job is None or job.status.initialized or job.ended or job.new_attempt:
                continue
            rt = self._state.get(job.key)
            await self._record(job, {"checks": rt.checks if rt else job.status.checks}, defer=False)

    async def _resync_forever(self) -> None:
        """A watch re-list does not send DELETED for objects that vanished meanwhile: prune them."""
        while True:
            await asyncio.sleep(self._resync_every)
            try:
                keys, snapshot = await self._kube.list_mediajob_keys(self._namespace)
            except KubeError as exc:
                log.warning("resync list failed, will retry: %s", exc)
                continue
            gone = self._store.retain(keys, snapshot)
            if gone:
                log.info("pruned %d MediaJobs that vanished without a DELETED event", len(gone))

    # One check ----------------------------------------------------------------------------------

    async def check(self, key: Key) -> float | None:
        with self._metrics.check_duration.time():
            return await self._check(key)

    async def _check(self, key: Key) -> float | None:
        job = self._store.get(key)
        if job is None:
            return None
        if job.ended and not job.recheck_pending:
            return None
        if job.phase == "Completed":  # final: a recheck only re-tries Airtable (a pending or rejected write)
            self._writeback.kick(job)
            await self._record(job, {})
            return None
        if job.new_attempt:
            return await self._start_attempt(job)
        if job.spec.suspend and not job.ended:
            await self._record(job, {})
            return None
        now = self._now()
        rt = self._runtime(job, now)
        jlog = logs.for_job(log, job)
        recheck = job.recheck_pending

        spaces_result: SpacesResult | None = None
        try:
            url = expected_output_url(
                self._spaces_base_url, job.spec.operation, job.spec.external_job_id, job.spec.output_url
            )
            if url:
                spaces_result = await self._spaces.head(url)
        except UnsafeIdError as exc:
            jlog.warning("no output URL: %s", exc)
        except UnsafeUrlError as exc:
            jlog.warning("not checking Spaces: %s", exc)
        listed = self._listed.state(job.spec.external_job_id, now, self._listing_valid())
        nca_due = recheck or rt.nca_hinted or rt.nca_next_at is None or now >= rt.nca_next_at
        if isinstance(spaces_result, SpacesUnknown) and not rt.nca_pending:
            nca_due = True  # Spaces cannot answer: NCA is the only other witness (then its backoff)
        if listed in ("queued", "running") and not recheck:
            nca_due = False  # the listing already answered for it, at no call per job
        hinted, rt.nca_hinted = rt.nca_hinted, False
        nca_result: NcaStatus | None = None
        if should_ask_nca(spaces_result, nca_due=nca_due):
            nca_result = await self._nca.job_status(job.spec.external_job_id)

        now = self._now()
        decision = decide(job, Observation(spaces_result, nca_result), now=now, max_age=self._timing.max_age)
        rt.checks = max(rt.checks, job.status.checks) + 1
        self._metrics.checks.labels(result=check_result(spaces_result, nca_result, decision)).inc()
        if job.ended:  # a recheck of a Failed or TimedOut job: it may still have completed
            return await self._recheck_ended(job, decision, rt.checks)

        if isinstance(decision, Complete | Fail | TimeOut):
            detected_from = decision.appeared_at if isinstance(decision, Complete) else None
            try:
                updated = await self._transitions.apply(
                    job, decision, checks=rt.checks, detected_from=detected_from
                )
                if updated is not None:
                    return None
            except KubeError as exc:
                jlog.warning("could not record %s, will check again: %s", type(decision).__name__, exc)
            return self._retry(job, rt, now)

        if isinstance(nca_result, NcaPending | NcaNotFound):
            rt.nca_pending += 1
            rt.nca_next_at = nca_next_at(now, rt.nca_pending, self._timing)
        if hinted and isinstance(nca_result, NcaPending | NcaNotFound | NcaUnknown):
            # The listing came from another worker or an older file, or NCA could not answer:
            # the next hint waits as long as the next status call would.
            later = now + self._timing.interval
            rt.hint_refused_until = later if isinstance(nca_result, NcaUnknown) else rt.nca_next_at
        if isinstance(decision, Wait) and decision.error:
            rt.failures += 1
            jlog.info("check could not conclude (%s); retry %d", decision.message, rt.failures)
            if rt.failures >= PERSISTENT_ERRORS and not rt.reported_error:
                rt.reported_error = True
                await self._writer.announce(
                    job,
                    Event(
                        Reason.CHECK_FAILING,
                        f"{rt.failures} checks in a row could not conclude: {decision.message}",
                        warning=True,
                    ),
                )
            due = retry_at(job.spec.started_at, now, rt.failures, self._timing, self._rng)
        else:
            rt.failures, rt.reported_error = 0, False
            due = next_check_at(job.spec.started_at, now, self._timing, self._rng, self._gap(job, now))

        message = decision.message if isinstance(decision, Wait) else ""
        if not await self._record(job, {"checks": rt.checks}, message=message):
            return self._retry(job, rt, now)
        return due.timestamp()

    def _runtime(self, job: MediaJob, now: datetime) -> JobRuntime:
        """A job's memory; with NCA's listing on, its first status call waits an interval for it."""
        rt = self._state.get(job.key)
        if rt is None:
            rt = self._state[job.key] = JobRuntime(checks=job.status.checks)
            if self._listing_per_job_hour is not None and self._polling:
                rt.nca_next_at = now + self._timing.interval
        return rt

    def _retry(self, job: MediaJob, rt: JobRuntime, now: datetime) -> float:
        rt.failures += 1
        return retry_at(job.spec.started_at, now, rt.failures, self._timing, self._rng).timestamp()

    async def _record(
        self, job: MediaJob, fields: dict[str, Any], *, message: str = "", defer: bool = True
    ) -> bool:
        """Write what changed besides the check count: first status, generation, recheck token.

        A first status with nothing else to say goes to its own lane (`defer`), so the check
        does not wait for the write. Returns False when the write failed and the check should be
        retried.
        """
        if defer and not job.status.initialized and not job.recheck_pending:
            self._first_status[job.key] = None
            self._first_status_wake.set()
            return True
        patch: dict[str, Any] = {}
        if not job.status.initialized:
            message = message or "waiting for output"
            patch = initial_status(job, now=self._now(), checks=fields.get("checks", 0), message=message)
        if job.status.observed_generation != job.generation:
            patch["observedGeneration"] = job.generation
        if job.recheck_pending:
            patch["lastHandledRecheckAt"] = job.recheck_token
        if not patch:
            return True
        patch.update(fields)
        try:
            await self._writer.write(job, patch)
        except (Conflict, NotFound):
            return True  # the watch brings the newer object, which reschedules as needed
        except KubeError as exc:
            logs.for_job(log, job).warning("status write failed, will retry: %s", exc)
            return False
        return True

    async def _recheck_ended(self, job: MediaJob, decision: object, checks: int) -> float | None:
        """A Failed or TimedOut job was checked again; output found means Completed after all."""
        self._state.pop(job.key, None)
        if isinstance(decision, Complete):
            try:
                updated = await self._transitions.apply(
                    job, decision, checks=checks, detected_from=decision.appeared_at
                )
            except KubeError as exc:
                logs.for_job(log, job).warning("could not record the late completion, will retry: %s", exc)
                return self._retry(job, JobRuntime(), self._now())
            if updated is not None:
                return None
        logs.for_job(log, job).info("recheck of a %s job found no output", job.phase)
        self._writeback.kick(job)
        if not await self._record(job, {"checks": checks}):
            return self._retry(job, JobRuntime(), self._now())
        return None

    async def _start_attempt(self, job: MediaJob) -> float | None:
        """The app sent the job again (mirror patched the spec): a fresh Processing attempt."""
        now = self._now()
        message = f"re-submitted (attempt {job.attempt}): tracking NCA job {job.spec.external_job_id}"
        patch = initial_status(job, now=now, checks=0, message=message)
        if job.recheck_pending:
            patch["lastHandledRecheckAt"] = job.recheck_token
        self._state.pop(job.key, None)
        try:
            await self._writer.write(job, patch, event=Event(Reason.RESUBMITTED, message))
        except (Conflict, NotFound):
            return None  # the watch brings the newer object, which reschedules as needed
        except KubeError as exc:
            logs.for_job(log, job).warning("could not start the new attempt, will retry: %s", exc)
            return self._retry(job, JobRuntime(), now)
        logs.for_job(log, job).info("%s", message)
        if not self._polling:
            return None
        return first_check_at(job.spec.started_at, self._now(), self._timing, self._rng).timestamp()

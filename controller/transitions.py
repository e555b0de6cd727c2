"""The one place where a job's phase changes, and the one funnel for status writes and Events.

Every status write and every Event of the controller goes through `StatusWriter` (as Flux's
summarize-and-patch): it patches, keeps the store in step with the answer, and posts the Event
that goes with the change, scrubbed of secrets. Polling, the webhook, the mirror, the write-back
and the invalid-spec report all use it; nothing else calls the API's status or Event endpoints.

The status patch carries the resourceVersion the decision was made on, so when two replicas or
two paths (webhook and poll) race, the API server lets exactly one win; the loser re-reads the
job, sees it has ended, and does nothing. That is what makes "one transition, one Airtable
write" hold without any lock between replicas.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from controller import logs
from controller.clients.kube import Conflict, KubeClient, KubeError, NotFound
from controller.decide import Complete, Transition
from controller.metrics import Metrics
from controller.model import InvalidResource, MediaJob, utcnow
from controller.status import transition_status
from controller.store import JobStore
from controller.vocabulary import COMPONENT, Reason

log = logging.getLogger(__name__)


class EventRecorder:
    """Kubernetes Events on MediaJobs: best effort, never fatal, never with a secret."""

    def __init__(self, kube: KubeClient, *, host: str, secrets: Iterable[str]) -> None:
        self._kube = kube
        self._host = host
        self._scrub = logs.ScrubSecrets(secrets)

    async def record(self, job: MediaJob, *, warning: bool, reason: str, message: str) -> None:
        await self.record_ref(job.ref(), warning=warning, reason=reason, message=message)

    async def record_ref(self, ref: Mapping[str, str], *, warning: bool, reason: str, message: str) -> None:
        """An Event on any object, also one that cannot be parsed as a MediaJob."""
        try:
            await self._kube.post_event(
                ref,
                type_="Warning" if warning else "Normal",
                reason=reason,
                message=self._scrub.scrub(message),
                component=COMPONENT,
                host=self._host,
                now=utcnow(),
            )
        except KubeError as exc:
            log.warning(
                "could not post Event %s on %s/%s: %s", reason, ref.get("namespace"), ref.get("name"), exc
            )


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    reason: str
    message: str
    warning: bool = False


class StatusWriter:
    """Patch a status, keep the store in step, and post the Event that goes with it.

    `guard=True` sends the resourceVersion the change was decided on, so a stale decision loses
    with Conflict; NotFound, Conflict and other KubeErrors reach the caller, which knows whether
    to retry. The Event is posted only after the status was written.
    """

    def __init__(self, kube: KubeClient, store: JobStore, events: EventRecorder) -> None:
        self._kube = kube
        self._store = store
        self.events = events

    async def write(
        self,
        job: MediaJob,
        patch: Mapping[str, Any],
        *,
        guard: bool = True,
        event: Event | None = None,
    ) -> MediaJob:
        raw = await self._kube.patch_mediajob_status(
            job.namespace, job.name, patch, resource_version=job.resource_version if guard else None
        )
        updated = MediaJob.from_object(raw)
        self._store.put(updated)
        if event is not None:
            try:
                await self.announce(updated, event)
            except Exception:  # the status is written: a failing Event must not undo it for the caller
                log.exception("could not post Event %s on %s/%s", event.reason, *updated.key)
        return updated

    async def announce(self, job: MediaJob, event: Event) -> None:
        """An Event without a status change (a persistent check error)."""
        await self.events.record(job, warning=event.warning, reason=event.reason, message=event.message)


def still_applies(decided_on: MediaJob, fresh: MediaJob, decision: Transition) -> bool:
    """After a 409: may the decision made on one version be applied to a newer one? Pure.

    Never to another attempt (its results belong to another NCA job), never over Completed,
    and only a completion may follow Failed or TimedOut.
    """
    if fresh.uid != decided_on.uid or fresh.attempt != decided_on.attempt:
        return False
    if fresh.spec.external_job_id != decided_on.spec.external_job_id:
        return False
    if fresh.phase == "Completed":
        return False
    return isinstance(decision, Complete) or not fresh.ended


class Transitions:
    def __init__(
        self,
        *,
        kube: KubeClient,
        store: JobStore,
        writer: StatusWriter,
        metrics: Metrics,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._kube = kube
        self._store = store
        self._writer = writer
        self._metrics = metrics
        self._now = now

    async def apply(
        self,
        job: MediaJob,
        decision: Transition,
        *,
        checks: int,
        extra: Mapping[str, Any] | None = None,
        detected_from: datetime | None = None,
    ) -> MediaJob | None:
        """Patch the final phase; None if the job ended meanwhile or is gone."""
        jlog = logs.for_job(log, job)
        current = job
        for _ in range(3):
            now = self._now()
            status = transition_status(current, decision, now=now, checks=max(checks, current.status.checks))
            if current.recheck_pending:
                status["lastHandledRecheckAt"] = current.recheck_token
            status.update(extra or {})
            try:
                updated = await self._writer.write(current, status, event=self._event(decision))
            except NotFound:
                jlog.info("job is gone; transition %s dropped", type(decision).__name__)
                return None
            except Conflict:
                fresh = await self._refetch(current)
                if fresh is None or not still_applies(job, fresh, decision):
                    jlog.info("job changed meanwhile; %s no longer applies", type(decision).__name__)
                    return None
                current = fresh
                continue
            # The transition is recorded: a failing metric must not undo it for the caller.
            try:
                self._count(decision, now, detected_from)
            except Exception:
                jlog.exception("could not count the transition %s", type(decision).__name__)
            if isinstance(decision, Complete):
                logs.for_job(log, updated).info("completed via %s: %s", decision.via, decision.url)
            else:
                logs.for_job(log, updated).info("%s: %s", decision.reason, decision.message)
            return updated
        jlog.warning("gave up after repeated conflicts; the next check will retry")
        return None

    async def _refetch(self, job: MediaJob) -> MediaJob | None:
        try:
            fresh = MediaJob.from_object(await self._kube.get_mediajob(job.namespace, job.name))
        except (NotFound, InvalidResource):
            return None
        self._store.put(fresh)
        return fresh

    def _count(self, decision: Transition, now: datetime, detected_from: datetime | None) -> None:
        if isinstance(decision, Complete):
            self._metrics.completions.labels(via=decision.via).inc()
            start = decision.appeared_at or detected_from
            if start is not None:
                latency = max((now - start).total_seconds(), 0.0)
                self._metrics.detection_latency.labels(via=decision.via).observe(latency)
        else:
            self._metrics.failures.labels(reason=decision.reason).inc()

    @staticmethod
    def _event(decision: Transition) -> Event:
        if isinstance(decision, Complete):
            return Event(Reason.COMPLETED, f"Output found via {decision.via}: {decision.url}")
        return Event(decision.reason, decision.message, warning=True)

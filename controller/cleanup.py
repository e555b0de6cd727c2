"""Deleting ended MediaJobs a while after Airtable was synced, like a Job's ttlSecondsAfterFinished.

Without it every replica's view, and the leader's per-job memory, grows forever. The mirror does
not recreate a deleted job, because its Jobs row is no longer `processing`. Deleting a MediaJob
never changes Airtable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from controller import logs
from controller.clients.kube import Conflict, KubeClient, KubeError, NotFound
from controller.model import MediaJob, utcnow
from controller.store import JobStore

log = logging.getLogger(__name__)


def expired(job: MediaJob, *, now: datetime, ttl: timedelta) -> bool:
    """Ended, Airtable done (synced, or the target rejected), and the TTL has passed. Pure."""
    if not job.ended or job.recheck_pending:
        return False
    written = job.status.jobs_row_written_at
    return written is not None and now - written >= ttl


class Cleanup:
    def __init__(
        self,
        *,
        kube: KubeClient,
        store: JobStore,
        ttl: timedelta,
        every: float,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._kube = kube
        self._store = store
        self._ttl = ttl
        self._every = every
        self._now = now

    async def run(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self._every)

    async def sweep(self) -> None:
        """Delete every expired job once; the watch's DELETED event prunes the memory."""
        now = self._now()
        for job in self._store:
            if not expired(job, now=now, ttl=self._ttl):
                continue
            try:
                await self._kube.delete_mediajob(
                    job.namespace, job.name, uid=job.uid, resource_version=job.resource_version
                )
            except (Conflict, NotFound):
                continue  # changed (a re-submission, a recheck) or already gone
            except KubeError as exc:
                log.warning("could not delete the ended MediaJob %s/%s: %s", job.namespace, job.name, exc)
                continue
            logs.for_job(log, job).info("deleted: ended and synced more than %s ago", self._ttl)
            self._store.remove(job.key)

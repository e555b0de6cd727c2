"""The replica's in-memory view of all MediaJobs, fed by kopf's watch.

Every replica keeps it, so that the webhook receiver can find a job by its NCA id without an API
call, and so that a new leader starts with a warm view. Listeners (the scheduler and the
write-back, on the leader) are told about each change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from controller.model import InvalidResource, MediaJob

Key = tuple[str, str]
Listener = Callable[[MediaJob, MediaJob | None], None]
log = logging.getLogger(__name__)


def newer_or_same(candidate: str, current: str) -> bool:
    """resourceVersions are etcd revisions; a late watch event must not roll a job back."""
    if candidate.isdigit() and current.isdigit():
        return int(candidate) >= int(current)
    return True


class JobStore:
    def __init__(self) -> None:
        self._jobs: dict[Key, MediaJob] = {}
        self._by_external: dict[str, set[Key]] = {}
        self._invalid: dict[Key, str] = {}
        self._listeners: list[Listener] = []
        self._removal_listeners: list[Callable[[Key], None]] = []

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[MediaJob]:
        return iter(list(self._jobs.values()))

    def get(self, key: Key) -> MediaJob | None:
        return self._jobs.get(key)

    def subscribe(self, on_change: Listener, on_remove: Callable[[Key], None]) -> None:
        self._listeners.append(on_change)
        self._removal_listeners.append(on_remove)

    def unsubscribe(self, on_change: Listener, on_remove: Callable[[Key], None]) -> None:
        if on_change in self._listeners:
            self._listeners.remove(on_change)
        if on_remove in self._removal_listeners:
            self._removal_listeners.remove(on_remove)

    def find_external(self, external_job_id: str) -> list[MediaJob]:
        return [self._jobs[k] for k in self._by_external.get(external_job_id, ()) if k in self._jobs]

    def observe(self, event_type: str | None, obj: dict[str, Any]) -> str | None:
        """Apply one watch event; returns a reason if the object is invalid (first time only)."""
        meta = obj.get("metadata") or {}
        key: Key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self._invalid.pop(key, None)
            self.remove(key)
            return None
        try:
            job = MediaJob.from_object(obj)
        except InvalidResource as exc:
            first = self._invalid.get(key) != str(exc)
            self._invalid[key] = str(exc)
            self.remove(key)
            return str(exc) if first else None
        self._invalid.pop(key, None)
        self.put(job)
        return None

    def put(self, job: MediaJob) -> None:
        old = self._jobs.get(job.key)
        if old is not None:
            if old.uid == job.uid and not newer_or_same(job.resource_version, old.resource_version):
                return
            if old.spec.external_job_id != job.spec.external_job_id:
                self._unindex(old)
        self._jobs[job.key] = job
        self._by_external.setdefault(job.spec.external_job_id, set()).add(job.key)
        for listener in list(self._listeners):
            try:
                listener(job, old)
            except Exception:
                log.exception("a store listener failed for %s/%s", *job.key)

    def remove(self, key: Key) -> None:
        old = self._jobs.pop(key, None)
        if old is None:
            return
        self._unindex(old)
        for listener in list(self._removal_listeners):
            listener(key)

    def retain(self, keys: set[Key], snapshot: str) -> list[Key]:
        """Drop jobs missing from a full list: a watch re-list does not send DELETED for them.

        Only jobs the list could have seen go: one created or changed after the list's snapshot
        (a higher resourceVersion) is missing from it only because the list was older.
        """
        if not snapshot.isdigit():
            return []
        gone = [
            k
            for k, job in self._jobs.items()
            if k not in keys and job.resource_version.isdigit() and int(job.resource_version) <= int(snapshot)
        ]
        for key in gone:
            self.remove(key)
        return gone

    def _unindex(self, job: MediaJob) -> None:
        keys = self._by_external.get(job.spec.external_job_id)
        if keys:
            keys.discard(job.key)
            if not keys:
                del self._by_external[job.spec.external_job_id]

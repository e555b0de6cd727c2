"""Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.

kubernetes_asyncio ships a LeaseLock, but it cannot release the Lease on shutdown, puts no
timeout on a renew (a black-holed API server would keep a stale leader acting past its
deadline), writes local time as UTC and needs the whole generated client. This is the same
algorithm in one small class:

- a candidate takes the Lease when it is free, released, or not renewed for `lease_duration`
  (measured on the candidate's own clock from when it last saw the record change, so clock skew
  between nodes does not matter);
- every write is a PUT with the resourceVersion that was read, so two candidates cannot both win;
- the leader renews every `retry_period`; if it cannot renew within `renew_deadline` it has lost,
  and must stop at once (before any other candidate may take over at `lease_duration`);
- on a graceful stop the leader releases the Lease, so the next one takes over at its next retry.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime
from typing import Any

from controller.clients.kube import Conflict, KubeClient, KubeError, NotFound
from controller.model import utcnow

log = logging.getLogger(__name__)


def micro_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        kube: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self._kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._duration = lease_duration
        self._deadline = renew_deadline
        self._retry = retry_period
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._lease: dict[str, Any] | None = None
        self.is_leader = False

    async def acquire(self) -> None:
        announced: str | None = None
        while True:
            if await self._try_acquire_or_renew(deadline=time.monotonic() + self._retry):
                log.info("acquired Lease %s/%s as %s", self.namespace, self.name, self.identity)
                self.is_leader = True
                return
            holder = self._holder()
            if holder != announced:
                log.info("Lease %s/%s is held by %s; waiting", self.namespace, self.name, holder)
                announced = holder
            await asyncio.sleep(self._retry * (1 + 0.2 * random.random()))

    async def hold(self) -> None:
        """Renew until renewing fails for `renew_deadline`; returning means leadership is lost."""
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(self._retry)
            while True:
                remaining = last_renew + self._deadline - time.monotonic()
                if remaining <= 0:
                    self._lose("could not renew Lease %s/%s within %.1f s: leadership lost", self._deadline)
                    return
                if await self._try_acquire_or_renew(deadline=last_renew + self._deadline):
                    last_renew = time.monotonic()
                    break
                if self._holder() not in (self.identity, ""):
                    self._lose("Lease %s/%s was taken by %s: leadership lost", self._holder())
                    return
                await asyncio.sleep(min(self._retry / 4, max(remaining, 0.0)))

    def _lose(self, message: str, *args: Any) -> None:
        self.is_leader = False
        log.error(message, self.namespace, self.name, *args)

    async def release(self) -> None:
        """Give the Lease up so that the next candidate need not wait for it to expire."""
        if not self.is_leader or self._lease is None:
            return
        self.is_leader = False
        lease = dict(self._lease)
        spec = dict(lease.get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            return
        now = micro_time(utcnow())
        spec.update(holderIdentity="", leaseDurationSeconds=1, renewTime=now, acquireTime=now)
        lease["spec"] = spec
        try:
            await self._kube.replace_lease(self.namespace, self.name, lease, timeout=self._retry)
            log.info("released Lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)

    def _holder(self) -> str:
        spec = (self._lease or {}).get("spec") or {}
        return str(spec.get("holderIdentity") or "")

    def _left(self, deadline: float) -> float:
        """Every API call of an attempt shares one deadline, so an attempt never outlives it."""
        return max(deadline - time.monotonic(), 0.01)

    async def _try_acquire_or_renew(self, *, deadline: float) -> bool:
        now = micro_time(utcnow())
        try:
            lease = await self._kube.get_lease(self.namespace, self.name, timeout=self._left(deadline))
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": round(self._duration),
                    "acquireTime": now,
                    "renewTime": now,
                    "leaseTransitions": 0,
                },
            }
            try:
                created = await self._kube.create_lease(self.namespace, body, timeout=self._left(deadline))
            except KubeError as exc:
                log.debug("creating the Lease failed: %s", exc)
                return False
            self._observe(created)
            return True
        except KubeError as exc:
            log.warning("reading Lease %s/%s failed: %s", self.namespace, self.name, exc)
            return False

        self._observe(lease)
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        held_by_me = holder == self.identity
        duration = float(spec.get("leaseDurationSeconds") or self._duration)
        if holder and not held_by_me and time.monotonic() < self._observed_at + duration:
            return False
        if held_by_me:
            spec["renewTime"] = now
        else:
            spec.update(
                holderIdentity=self.identity,
                acquireTime=now,
                renewTime=now,
                leaseTransitions=int(spec.get("leaseTransitions") or 0) + 1,
            )
        spec["leaseDurationSeconds"] = round(self._duration)
        body = {**lease, "spec": spec}
        try:
            replaced = await self._kube.replace_lease(
                self.namespace, self.name, body, timeout=self._left(deadline)
            )
        except Conflict:
            return False
        except KubeError as exc:
            log.warning("updating Lease %s/%s failed: %s", self.namespace, self.name, exc)
            return False
        self._observe(replaced)
        return True

    def _observe(self, lease: dict[str, Any]) -> None:
        self._lease = lease
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("acquireTime"))
        if record != self._observed:
            self._observed = record
            self._observed_at = time.monotonic()

"""The kopf registrations, and nothing else: each handler hands over to the Runtime.

kopf is used for what it does best, a robust watch of the MediaJobs and an orderly start and
stop. There are no per-object timers or change handlers, so kopf adds no finalizers and writes
no annotations: the checks run in the Runtime's own scheduler.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import kopf

from controller.http import PortUnavailable
from controller.runtime import Runtime
from controller.vocabulary import GROUP, PLURAL, VERSION


@dataclasses.dataclass
class Memo:
    """kopf's memo: the replica's Runtime, shared by reference across kopf's shallow copies."""

    runtime: Runtime


def build_registry() -> kopf.OperatorRegistry:
    """A fresh registry per operator, so tests can run several operators in one process."""
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def startup(memo: Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.networking.request_timeout = 60
        # No cluster-wide scans of namespaces and CRDs: the shipped Role is namespaced, and the
        # one resource watched is known up front.
        settings.scanning.disabled = True
        try:
            await memo.runtime.start()
        except PortUnavailable as exc:  # HTTP_PORT or METRICS_PORT is taken, or not ours
            memo.runtime.startup_failure = str(exc)
            raise kopf.PermanentError(memo.runtime.startup_failure) from None

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: Memo, **_: Any) -> None:
        await memo.runtime.close()

    @kopf.on.login(registry=registry)
    def login(memo: Memo, **_: Any) -> kopf.ConnectionInfo:
        return memo.runtime.clients.kube.login()

    # async: kopf runs a sync handler in a thread pool, away from the loop that owns the JobStore,
    # the scheduler's asyncio.Event and the tasks that Runtime.observe creates.
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def observe(event: kopf.RawEvent, memo: Memo, **_: Any) -> None:
        memo.runtime.observe(event.get("type"), dict(event["object"]))

    return registry

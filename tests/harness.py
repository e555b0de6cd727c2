"""Running the real operator in the test's event loop, against the control plane and a World."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import kopf

from controller.clients.kube import KubeClient, NotFound
from controller.naming import resource_name
from controller.operator import Memo, build_registry
from controller.runtime import Runtime
from controller.settings import Settings
from sandbox.world import SeededJob, World

T = TypeVar("T")
WEBHOOK_TOKEN = "hook-test-token-0123456789"

FAST = {
    "POLLING_INTERVAL_MINUTES": "0.017",  # 1.02 s: under a second is refused (contract section 7)
    "POLLING_SLOW_INTERVAL_MINUTES": "0.05",
    "AIRTABLE_PENALTY_SECONDS": "1",
    "HTTP_PORT": "0",
    "METRICS_PORT": "0",
    "LOG_FORMAT": "text",
}


def fast_for(extra: dict[str, str]) -> dict[str, str]:
    """FAST, without its slow interval when a test's interval is longer (that would be refused)."""
    fast = dict(FAST)
    if float(extra.get("POLLING_INTERVAL_MINUTES", 0)) > float(fast["POLLING_SLOW_INTERVAL_MINUTES"]):
        del fast["POLLING_SLOW_INTERVAL_MINUTES"]
    return fast


def settings_for(world: World, namespace: str, **extra: str) -> Settings:
    env = world.env(WATCH_NAMESPACE=namespace, WEBHOOK_TOKEN=WEBHOOK_TOKEN, **{**fast_for(extra), **extra})
    return Settings.from_env(env)


class Halfway(random.Random):
    """Every draw 0.5: a job's first check falls halfway through its first gap, never at once.

    With the default (uniform) draws, a test with a 10-minute interval still sees a job's first
    check within its few seconds about once in a few hundred runs: a flake, not a finding.
    """

    def random(self) -> float:
        return 0.5


@contextlib.asynccontextmanager
async def running(settings: Settings, *, rng: random.Random | None = None) -> AsyncIterator[Runtime]:
    """The operator as `python -m controller` runs it, inside this event loop."""
    stop = asyncio.Event()
    runtime = Runtime(settings, stop=stop, rng=rng)
    assert settings.watch_namespace
    task = asyncio.create_task(
        kopf.operator(
            registry=build_registry(),
            memo=Memo(runtime=runtime),
            standalone=True,
            namespaces=[settings.watch_namespace],
            stop_flag=stop,
        )
    )
    await until(lambda: (runtime.http.port != 0 and runtime.is_leader) or task.done(), timeout=30)
    if task.done():
        task.result()
    try:
        yield runtime
    finally:
        stop.set()
        async with asyncio.timeout(30):
            await task


async def until(check: Callable[[], Any], *, timeout: float = 20, every: float = 0.05) -> Any:
    """Wait for a truthy value from a (sync or async) check; fail with the last value."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while time.monotonic() < deadline:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")


async def mediajob(kube: KubeClient, namespace: str, job: SeededJob) -> dict[str, Any] | None:
    try:
        return await kube.get_mediajob(namespace, resource_name(job.record_id))
    except NotFound:
        return None


async def phase_of(kube: KubeClient, namespace: str, job: SeededJob) -> str | None:
    obj = await mediajob(kube, namespace, job)
    return ((obj or {}).get("status") or {}).get("phase")


async def wait_phase(
    kube: KubeClient, namespace: str, job: SeededJob, phase: str, timeout: float = 20
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await mediajob(kube, namespace, job)
        return obj if ((obj or {}).get("status") or {}).get("phase") == phase else None

    result: dict[str, Any] = await until(check, timeout=timeout, every=0.1)
    return result


async def wait_synced(
    kube: KubeClient, namespace: str, job: SeededJob, timeout: float = 20
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        obj = await mediajob(kube, namespace, job)
        return obj if ((obj or {}).get("status") or {}).get("airtableSynced") else None

    result: dict[str, Any] = await until(check, timeout=timeout, every=0.1)
    return result

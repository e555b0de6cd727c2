"""An early webhook while Airtable paused the base reads nothing; polling completes the job.

Found by the chaos soak (docs/soak.md): after a 429 both replicas paused for 30 s; early webhooks
queued their Jobs-row reads meanwhile, and when the pause ended the two replicas' reads together
went over the base's 5 requests per second, which started the next penalty, again and again.
"""

import httpx
import pytest

from controller.clients.kube import KubeClient
from sandbox.airtable import RATE_LIMIT_BODY
from sandbox.world import World
from tests.cluster.test_lifecycle import hook_url, payload
from tests.harness import running, settings_for, until, wait_synced


async def test_an_early_webhook_during_an_airtable_pause_is_left_to_polling(
    world: World, namespace: str, kube: KubeClient
) -> None:
    settings = settings_for(world, namespace, AIRTABLE_PENALTY_SECONDS="6")
    async with running(settings) as runtime:
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= 1)
        world.airtable.faults.fail_next(1, 429, body=RATE_LIMIT_BODY)
        await until(lambda: runtime.clients.airtable.paused_for > 1, timeout=10)
        job = world.add_job("combine", drop_webhook=True)
        world.nca_sim.finish_now(job.job_id)
        before = len(world.airtable.requests)
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(hook_url(runtime), json=payload(job, job.output_url or ""))
        assert answer.status_code == 202
        assert runtime.clients.airtable.paused_for > 0
        await until(lambda: runtime.metrics.webhooks.labels(result="unknown_job")._value.get() == 1)
        assert len(world.airtable.requests) == before  # no read queued behind the pause
        obj = await wait_synced(kube, namespace, job, timeout=30)
    assert (obj["status"]["phase"], obj["status"]["completedVia"]) == ("Completed", "spaces")
    assert world.airtable.writes_for(job.record_id) == 1
    assert world.airtable.writes_for(job.target_id or "") == 1


@pytest.mark.parametrize(
    ("rate", "jobs_sent", "vias"),
    [
        # the default leaves 0.5/s of the base's 5: one row read (that job completes by its
        # webhook), the other two are left to polling
        ("4.5", 3, ["spaces", "spaces", "webhook"]),
        # nothing left: no replica reads a row for an early webhook (none completes by it)
        ("5", 2, ["spaces", "spaces"]),
    ],
)
async def test_a_burst_of_early_webhooks_reads_rows_within_the_leaders_leftover_rate(
    world: World, namespace: str, kube: KubeClient, rate: str, jobs_sent: int, vias: list[str]
) -> None:
    settings = settings_for(
        world, namespace, POLLING_INTERVAL_MINUTES="0.05", AIRTABLE_REQUESTS_PER_SECOND=rate
    )
    async with running(settings) as runtime:
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= 1)
        jobs = [world.add_job("concatenate", drop_webhook=True) for _ in range(jobs_sent)]
        for job in jobs:
            world.nca_sim.finish_now(job.job_id)
        async with httpx.AsyncClient(timeout=5) as client:
            for job in jobs:
                answer = await client.post(hook_url(runtime), json=payload(job, job.output_url or ""))
                assert answer.status_code in (200, 202), answer.text
        await until(lambda: runtime.metrics.webhooks.labels(result="unknown_job")._value.get() == 2)
        done = [await wait_synced(kube, namespace, job, timeout=30) for job in jobs]
    assert sorted(o["status"]["completedVia"] for o in done) == vias
    assert all(world.airtable.writes_for(job.record_id) == 1 for job in jobs)

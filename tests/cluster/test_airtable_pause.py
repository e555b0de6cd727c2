"""An early webhook while Airtable paused the base reads nothing; polling completes the job.

Found by the chaos soak (docs/soak.md): after a 429 both replicas paused for 30 s; early webhooks
queued their Jobs-row reads meanwhile, and when the pause ended the two replicas' reads together
went over the base's 5 requests per second, which started the next penalty, again and again.
"""

import httpx

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


async def test_a_burst_of_early_webhooks_reads_one_row_per_second_and_polling_finds_the_rest(
    world: World, namespace: str, kube: KubeClient
) -> None:
    async with running(settings_for(world, namespace, POLLING_INTERVAL_MINUTES="0.05")) as runtime:
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= 1)
        jobs = [world.add_job("concatenate", drop_webhook=True) for _ in range(3)]
        for job in jobs:
            world.nca_sim.finish_now(job.job_id)
        async with httpx.AsyncClient(timeout=5) as client:
            for job in jobs:
                await client.post(hook_url(runtime), json=payload(job, job.output_url or ""))
        await until(lambda: runtime.metrics.webhooks.labels(result="unknown_job")._value.get() == 2)
        done = [await wait_synced(kube, namespace, job, timeout=30) for job in jobs]
    assert sorted(o["status"]["completedVia"] for o in done) == ["spaces", "spaces", "webhook"]
    assert all(world.airtable.writes_for(job.record_id) == 1 for job in jobs)


async def test_with_no_rate_left_by_the_leader_early_webhooks_read_no_row(
    world: World, namespace: str, kube: KubeClient
) -> None:
    """AIRTABLE_REQUESTS_PER_SECOND=5 leaves nothing of the base's 5/s: no replica reads a row
    for an early webhook, and polling still completes every job, each written once."""
    settings = settings_for(
        world, namespace, POLLING_INTERVAL_MINUTES="0.05", AIRTABLE_REQUESTS_PER_SECOND="5"
    )
    async with running(settings) as runtime:
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= 1)
        jobs = [world.add_job("concatenate", drop_webhook=True) for _ in range(2)]
        for job in jobs:
            world.nca_sim.finish_now(job.job_id)
        async with httpx.AsyncClient(timeout=5) as client:
            for job in jobs:
                answer = await client.post(hook_url(runtime), json=payload(job, job.output_url or ""))
                assert answer.status_code == 202, answer.text
        assert runtime.metrics.webhooks.labels(result="unknown_job")._value.get() == 2
        ids = {job.record_id for job in jobs}
        row_reads = [
            r
            for r in world.airtable.requests
            if any(i in v for vs in r.query.values() for v in vs for i in ids)
        ]
        assert row_reads == []
        done = [await wait_synced(kube, namespace, job, timeout=30) for job in jobs]
    assert [o["status"]["completedVia"] for o in done] == ["spaces", "spaces"]
    assert all(world.airtable.writes_for(job.record_id) == 1 for job in jobs)

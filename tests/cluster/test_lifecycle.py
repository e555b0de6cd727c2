"""Contract section 2 end to end: late results, re-submissions, Airtable never clobbered,
rejected targets, early webhooks and clean-up, with the real operator, API server and World."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from controller.clients.kube import KubeClient
from controller.naming import resource_name
from controller.runtime import Runtime
from controller.vocabulary import ANNOTATION_RECHECK
from sandbox.controlplane import ControlPlane
from sandbox.world import SeededJob, World
from tests.harness import (
    WEBHOOK_TOKEN,
    mediajob,
    phase_of,
    running,
    settings_for,
    until,
    wait_phase,
    wait_synced,
)
from tests.samples import nca_webhook_body

# No poll during the test (the budget may not check more often either): only what the test does counts.
SLOW = {"POLLING_INTERVAL_MINUTES": "10", "POLLING_MIN_INTERVAL_SECONDS": "600"}


def hook_url(runtime: Runtime) -> str:
    return f"http://127.0.0.1:{runtime.http.port}/webhooks/nca?token={WEBHOOK_TOKEN}"


def payload(job: SeededJob, url: str, **changes: object) -> dict[str, object]:
    compose = {"endpoint": "/v1/ffmpeg/compose", "response": [{"file_url": url}]}
    return nca_webhook_body(**{"id": job.record_id, "job_id": job.job_id, **compose, **changes})


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


def events(controlplane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    )["items"]
    return items


async def recheck(kube: KubeClient, namespace: str, job: SeededJob, token: str) -> None:
    await kube.patch_mediajob(
        namespace, resource_name(job.record_id), {"metadata": {"annotations": {ANNOTATION_RECHECK: token}}}
    )


@pytest.mark.parametrize("late", ["webhook", "recheck-spaces", "recheck-nca"])
async def test_a_timed_out_job_still_completes(
    world: World, namespace: str, kube: KubeClient, late: str
) -> None:
    job = world.add_job("combine", created=datetime.now(UTC) - timedelta(seconds=5), drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")  # pinned: no result in time
    world.airtable.set_fields(world.base_id, "Jobs", job.record_id, {"Notes": "sent by the app"})
    env = {"POLLING_MAX_AGE_HOURS": "0.002", "POLLING_SLOW_INTERVAL_MINUTES": "10"}
    async with running(settings_for(world, namespace, **env)) as runtime:
        timed_out = await wait_synced(kube, namespace, job, timeout=30)
        assert timed_out["status"]["phase"] == "TimedOut"
        assert world.jobs_row(job)["Status"] == "failed"
        if late == "webhook":
            async with httpx.AsyncClient(timeout=5) as client:
                answer = await client.post(hook_url(runtime), json=payload(job, job.output_url or ""))
            assert answer.status_code in (200, 202)
        elif late == "recheck-spaces":
            world.spaces.put_object(f"{job.job_id}_output_0.mp4")
            await recheck(kube, namespace, job, "late-1")
        else:
            world.nca_sim.set_status(job.job_id, "done")  # NCA done with code 200; Spaces...
            world.spaces.objects.clear()  # ...does not have it (a different bucket, a lag)
            await recheck(kube, namespace, job, "late-1")
        obj = await wait_phase(kube, namespace, job, "Completed", timeout=15)
        obj = await wait_synced(kube, namespace, job, timeout=20)
    via = {"webhook": "webhook", "recheck-spaces": "spaces", "recheck-nca": "nca-status"}[late]
    assert obj["status"]["completedVia"] == via
    assert condition(obj, "Ready")["status"] == "True"
    row = world.jobs_row(job)
    assert row["Status"] == "completed"
    lines = row["Notes"].splitlines()
    assert lines[0] == "sent by the app"  # appended to, never replaced
    assert "Timed out" in lines[1]
    assert "polling stopped, a late result" in lines[1]
    assert "Completed" in lines[2]
    assert len(lines) == 3
    assert world.airtable.writes_for(job.record_id) == 2  # one per transition
    assert world.airtable.writes_for(job.target_id or "") == 1
    assert world.target_row(job)["Status"] == "combined"


async def test_a_recheck_of_a_timed_out_job_without_output_changes_nothing(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", created=datetime.now(UTC) - timedelta(seconds=5), drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    env = {"POLLING_MAX_AGE_HOURS": "0.002", "POLLING_SLOW_INTERVAL_MINUTES": "10"}
    async with running(settings_for(world, namespace, **env)):
        await wait_synced(kube, namespace, job, timeout=30)
        calls = world.nca_sim.status_calls(job.job_id)
        await recheck(kube, namespace, job, "r1")

        async def handled() -> bool:
            obj = await mediajob(kube, namespace, job)
            return bool(obj and obj["status"].get("lastHandledRecheckAt") == "r1")

        await until(handled, timeout=10)
        assert world.nca_sim.status_calls(job.job_id) > calls  # a real check, not only a re-sync
    assert await phase_of(kube, namespace, job) == "TimedOut"
    assert world.airtable.writes_for(job.record_id) == 1


async def test_a_failure_records_how_it_was_learned(world: World, namespace: str, kube: KubeClient) -> None:
    polled = world.add_job("combine", fail_message="ffmpeg exploded", drop_webhook=True)
    hooked = world.add_job("concatenate", register_in_nca=False, job_id="hook-fail-1")
    async with running(settings_for(world, namespace)) as runtime:
        await until(lambda: runtime.store.get((namespace, resource_name(hooked.record_id))))
        async with httpx.AsyncClient(timeout=5) as client:
            await client.post(
                hook_url(runtime), json=payload(hooked, "", code=500, response=None, message="bad input")
            )
        by_poll = await wait_synced(kube, namespace, polled)
        by_hook = await wait_synced(kube, namespace, hooked)
    assert (by_poll["status"]["phase"], by_poll["status"]["completedVia"]) == ("Failed", "nca-status")
    assert (by_hook["status"]["phase"], by_hook["status"]["completedVia"]) == ("Failed", "webhook")


async def test_a_new_external_job_id_starts_a_new_attempt(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("concatenate", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")  # the first NCA job never finishes
    async with running(settings_for(world, namespace)) as runtime:
        first = await wait_phase(kube, namespace, job, "Processing")
        assert first["status"]["attempt"] == 1
        second = world.nca_sim.add_job(caller_id=job.record_id, drop_webhook=True)
        world.airtable.set_fields(world.base_id, "Jobs", job.record_id, {"External Job ID": second.job_id})
        obj = await wait_synced(kube, namespace, job, timeout=30)
        async with httpx.AsyncClient(timeout=5) as client:
            old = await client.post(hook_url(runtime), json=payload(job, "https://x/old.mp4"))
        # the Jobs row is read to look for an early webhook: that may finish after the answer
        await until(lambda: runtime.metrics.webhooks.labels(result="unknown_job")._value.get() == 1)
        after = await mediajob(kube, namespace, job)
    assert obj["status"]["attempt"] == 2
    assert obj["metadata"]["generation"] > first["metadata"]["generation"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["spec"]["externalJobId"] == second.job_id
    assert obj["metadata"]["labels"]["media.phi.dev/external-job-id"] == second.job_id
    assert obj["status"]["outputUrl"].endswith(f"{second.job_id}.mp4")
    assert old.status_code == 202  # the old id's result is ignored
    assert after is not None
    assert after["status"]["outputUrl"] == obj["status"]["outputUrl"]
    assert world.jobs_row(job)["Status"] == "completed"
    assert second.job_id in world.jobs_row(job)["Response Payload"]
    assert world.airtable.writes_for(job.record_id) == 1


async def test_a_row_sent_back_to_processing_starts_a_new_attempt(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    job = world.add_job("combine", fail_message="ffmpeg exploded", drop_webhook=True)
    async with running(settings_for(world, namespace)):
        failed = await wait_synced(kube, namespace, job)
        assert failed["status"]["phase"] == "Failed"
        await asyncio.sleep(2)  # several mirror cycles: a written result is not a re-submission
        assert (await mediajob(kube, namespace, job) or {})["status"]["attempt"] == 1
        # the app retries the same NCA job id, which now succeeds
        world.nca_sim.jobs.pop(job.job_id)
        world.nca_sim.add_job(
            job.job_id, endpoint="/v1/ffmpeg/compose", caller_id=job.record_id, drop_webhook=True
        )
        world.airtable.set_fields(world.base_id, "Jobs", job.record_id, {"Status": "processing"})
        obj = await wait_phase(kube, namespace, job, "Completed", timeout=30)
        obj = await wait_synced(kube, namespace, job, timeout=20)
    assert obj["status"]["attempt"] == 2
    assert "failedAt" not in obj["status"]  # the first attempt's result is gone
    row = world.jobs_row(job)
    assert row["Status"] == "completed"
    assert [line.split(": ", 1)[1].split(":")[0] for line in row["Notes"].splitlines()] == [
        "Failed",
        "Completed",
    ]
    assert world.airtable.writes_for(job.record_id) == 2
    reasons = {e["reason"] for e in events(controlplane, namespace)}
    assert "Resubmitted" in reasons


async def test_a_pending_write_is_not_a_resubmission(world: World, namespace: str, kube: KubeClient) -> None:
    job = world.add_job("concatenate", drop_webhook=True)
    world.airtable.faults.fail_next(12, 503, path_contains="/Videos")  # the write-back waits a while
    async with running(settings_for(world, namespace)):
        await wait_phase(kube, namespace, job, "Completed")
        # twelve retries back off up to 10 s each (about 50 s in all, more on a loaded machine)
        obj = await wait_synced(kube, namespace, job, timeout=150)
    assert obj["status"]["attempt"] == 1
    assert world.airtable.writes_for(job.record_id) == 1


async def test_a_row_ended_by_someone_else_is_left_alone(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    async with running(settings_for(world, namespace)):
        await wait_phase(kube, namespace, job, "Processing")
        world.airtable.faults.fail_next(100000, 503, path_contains="/Jobs")  # nobody reads the Jobs table
        await asyncio.sleep(1)
        world.airtable.set_fields(
            world.base_id, "Jobs", job.record_id, {"Status": "failed", "Notes": "cancelled by Ann"}
        )
        world.nca_sim.finish_now(job.job_id)
        await wait_phase(kube, namespace, job, "Completed", timeout=20)
        world.airtable.faults.clear()
        obj = await wait_synced(kube, namespace, job, timeout=60)
    assert (condition(obj, "Synced")["status"], condition(obj, "Synced")["reason"]) == (
        "True",
        "EndedInAirtable",
    )
    row = world.jobs_row(job)
    assert (row["Status"], row["Notes"]) == ("failed", "cancelled by Ann")
    assert world.airtable.writes_for(job.record_id) == 0
    assert world.airtable.writes_for(job.target_id or "") == 0


@pytest.mark.parametrize(
    ("broken", "error"),
    [("deleted row", "ROW_DOES_NOT_EXIST"), ("renamed field", "UNKNOWN_FIELD_NAME")],
)
async def test_a_rejected_target_does_not_hold_back_the_jobs_row(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, broken: str, error: str
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    assert job.target_id is not None
    world.nca_sim.set_status(job.job_id, "running")
    async with running(settings_for(world, namespace)):
        await wait_phase(kube, namespace, job, "Processing")
        target = world.target_row(job)
        if broken == "deleted row":
            world.airtable.delete_row(world.base_id, "Segments", job.target_id)  # deleted by hand
        else:  # someone renamed the attachment field
            world.airtable.set_schema(world.base_id, "Segments", ["Name", "Status", "Voiceover+Video"])
        world.nca_sim.finish_now(job.job_id)

        async def rejected() -> dict[str, Any] | None:
            obj = await mediajob(kube, namespace, job)
            if obj and any(c.get("reason") == "TargetRejected" for c in obj["status"].get("conditions", [])):
                return obj
            return None

        obj = await until(rejected, timeout=30)
        row = world.jobs_row(job)
        assert row["Status"] == "completed"
        assert f"Segments row {job.target_id}" in row["Notes"]
        assert error in row["Notes"]
        assert condition(obj, "Synced")["status"] == "False"
        assert obj["status"]["phase"] == "Completed"
        requests = len(world.airtable.write_log)
        await asyncio.sleep(3)
        assert len(world.airtable.write_log) == requests  # automatic retries stopped
        warned = [e for e in events(controlplane, namespace) if e["reason"] == "TargetRejected"]
        assert [e["type"] for e in warned] == ["Warning"]
        # the row is fixed; a recheck tries the target again
        if broken == "deleted row":
            world.airtable.add_record(world.base_id, "Segments", target, record_id=job.target_id)
        else:
            world.airtable.set_schema(world.base_id, "Segments", ["Name", "Status", "Voiceover + Video"])
        await recheck(kube, namespace, job, "retry-target")
        obj = await wait_synced(kube, namespace, job, timeout=20)
    assert condition(obj, "Ready")["status"] == "True"
    assert world.target_row(job)["Status"] == "combined"
    assert world.airtable.writes_for(job.record_id) == 1


async def test_an_early_webhook_completes_the_job_within_seconds(
    world: World, namespace: str, kube: KubeClient
) -> None:
    async with running(settings_for(world, namespace, **SLOW)) as runtime:
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= 1)
        job = world.add_job("combine", drop_webhook=True)  # the mirror's next cycle is minutes away
        world.nca_sim.set_status(job.job_id, "running")
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(hook_url(runtime), json=payload(job, job.output_url or ""))
            stranger = await client.post(
                hook_url(runtime),
                json=payload(job, "https://x/y.mp4", id="recNOSUCHROWaaaaa", job_id="other-1"),
            )
        obj = await wait_synced(kube, namespace, job, timeout=10)
        await until(lambda: runtime.metrics.webhooks.labels(result="unknown_job")._value.get() == 1)
    assert answer.status_code in (200, 202)
    assert (obj["status"]["phase"], obj["status"]["completedVia"]) == ("Completed", "webhook")
    assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mediajob-controller"
    assert stranger.status_code == 202
    assert len(await kube.list_mediajobs(namespace)) == 1
    assert world.airtable.writes_for(job.record_id) == 1
    assert world.airtable.writes_for(job.target_id or "") == 1


async def test_ended_jobs_are_deleted_after_the_ttl_and_memory_shrinks(
    world: World, namespace: str, kube: KubeClient
) -> None:
    jobs = [world.add_job("concatenate", drop_webhook=True) for _ in range(3)]
    pending = world.add_job("concatenate", drop_webhook=True)
    world.nca_sim.set_status(pending.job_id, "running")
    ttl = {"MEDIAJOB_TTL_AFTER_FINISHED_HOURS": "0.001"}  # 3.6 s
    async with running(settings_for(world, namespace, **ttl)) as runtime:
        for job in jobs:
            await wait_synced(kube, namespace, job)
        assert runtime.mirror is not None
        assert runtime.writeback is not None
        assert len(runtime.mirror._created) == 4
        assert runtime.writeback.remembered == 4

        async def gone() -> bool:
            return all([await mediajob(kube, namespace, j) is None for j in jobs])

        await until(gone, timeout=20)
        cycles = runtime.mirror.cycles
        await until(lambda: runtime.mirror is not None and runtime.mirror.cycles >= cycles + 3, timeout=10)
        assert await gone()  # not recreated
        assert await phase_of(kube, namespace, pending) == "Processing"  # unfinished jobs stay
        assert len(runtime.store) == 1
        assert len(runtime.mirror._created) == 1
        assert runtime.writeback.remembered == 1
    assert all(world.jobs_row(j)["Status"] == "completed" for j in jobs)  # Airtable unchanged


async def test_an_early_webhook_of_a_resubmitted_job_starts_and_completes_its_attempt(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("concatenate", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    async with running(settings_for(world, namespace, **SLOW)) as runtime:
        await until(lambda: runtime.store.get((namespace, resource_name(job.record_id))))
        second = world.nca_sim.add_job(caller_id=job.record_id, drop_webhook=True)
        world.airtable.set_fields(world.base_id, "Jobs", job.record_id, {"External Job ID": second.job_id})
        url = f"{world.spaces.base_url}/{second.job_id}.mp4"
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.post(
                hook_url(runtime), json=payload(job, url, job_id=second.job_id, response=url)
            )
        obj = await wait_synced(kube, namespace, job, timeout=10)  # the mirror's next cycle is minutes away
    assert answer.status_code in (200, 202)
    assert (obj["status"]["phase"], obj["status"]["completedVia"]) == ("Completed", "webhook")
    assert (obj["status"]["attempt"], obj["spec"]["externalJobId"]) == (2, second.job_id)
    assert obj["metadata"]["labels"]["media.phi.dev/external-job-id"] == second.job_id
    assert obj["status"]["outputUrl"] == url
    assert world.airtable.writes_for(job.record_id) == 1

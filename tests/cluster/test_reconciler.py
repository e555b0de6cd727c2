"""The reconciler end to end: real operator, real API server, simulated Airtable, NCA and Spaces.

Each test seeds Airtable Jobs rows in `processing`; the mirror creates the MediaJobs, the
scheduler checks them, and the write-back updates Airtable. Intervals are fractions of a minute
(POLLING_INTERVAL_MINUTES=0.017 is about 1 s) so that every path runs in seconds.
"""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from controller.clients.kube import KubeClient
from controller.naming import resource_name
from controller.vocabulary import ANNOTATION_RECHECK
from controller.writeback import note_line
from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.harness import Halfway, mediajob, phase_of, running, settings_for, until, wait_phase, wait_synced


def condition(obj: dict, kind: str) -> dict:  # type: ignore[type-arg]
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


async def test_spaces_hit_completes_and_writes_airtable_once(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", queued_s=0.5, running_s=0.5, drop_webhook=True)
    async with running(settings_for(world, namespace)):
        obj = await wait_synced(kube, namespace, job)
    status = obj["status"]
    assert (status["phase"], status["completedVia"], status["outputUrl"]) == (
        "Completed",
        "spaces",
        job.output_url,
    )
    assert condition(obj, "Ready")["status"] == "True"
    assert condition(obj, "Synced")["status"] == "True"
    assert obj["metadata"]["labels"]["media.phi.dev/external-job-id"] == job.job_id
    assert obj["metadata"]["labels"]["media.phi.dev/airtable-record"] == job.record_id
    row = world.jobs_row(job)
    assert row["Status"] == "completed"
    assert json.loads(row["Response Payload"])["output_url"] == job.output_url
    assert "found on Spaces" in row["Notes"]
    assert world.target_row(job)["Status"] == "combined"
    assert world.airtable.writes_for(job.record_id) == 1
    assert world.airtable.writes_for(job.target_id or "") == 1  # type: ignore[arg-type]
    assert obj["status"]["checks"] >= 1


@pytest.mark.parametrize(
    ("operation", "target_fields"),
    [
        ("combine", {"Status": "combined", "Voiceover + Video": "url"}),
        ("concatenate", {"Combined Segments Video": "url"}),
        ("add_music", {"Video + Music": "url"}),
        ("transcribe", None),
    ],
)
async def test_exact_airtable_fields_per_operation(
    world: World, namespace: str, kube: KubeClient, operation: str, target_fields: dict[str, str] | None
) -> None:
    job = world.add_job(operation, drop_webhook=True)
    async with running(settings_for(world, namespace)):
        obj = await wait_synced(kube, namespace, job)
    url = obj["status"]["outputUrl"]
    via = obj["status"]["completedVia"]
    assert via == (
        "nca-status" if operation == "transcribe" else "spaces"
    )  # no key to predict for unknown ops
    writes = [entry for entry in world.airtable.write_log]
    jobs_writes = [fields for _, table, rid, fields in writes if rid == job.record_id]
    assert len(jobs_writes) == 1
    assert set(jobs_writes[0]) == {"Status", "Response Payload", "Notes"}
    assert jobs_writes[0]["Status"] == "completed"
    assert json.loads(jobs_writes[0]["Response Payload"]) == {
        "job_id": job.job_id,
        "output_url": url,
        "completed_via": via,
        "completed_at": obj["status"]["completedAt"],
        "source": "mediajob-controller",
    }
    target_writes = [(table, fields) for _, table, rid, fields in writes if rid == job.target_id]
    if target_fields is None:
        assert target_writes == []
        return
    assert len(target_writes) == 1
    table, fields = target_writes[0]
    assert table == job.target_table
    expected = {k: ([{"url": url}] if v == "url" else v) for k, v in target_fields.items()}
    assert fields == expected
    stored = world.target_row(job)
    attachment = next(k for k, v in target_fields.items() if v == "url")
    assert stored[attachment][0]["url"] == url


async def test_nca_done_completes_via_nca_status(world: World, namespace: str, kube: KubeClient) -> None:
    job = world.add_job("concatenate", upload=False, drop_webhook=True)  # NCA says done; Spaces never has it
    async with running(settings_for(world, namespace)):
        obj = await wait_synced(kube, namespace, job)
    assert (obj["status"]["phase"], obj["status"]["completedVia"]) == ("Completed", "nca-status")
    assert obj["status"]["outputUrl"] == job.output_url
    assert world.jobs_row(job)["Status"] == "completed"
    assert "job-status API" in world.jobs_row(job)["Notes"]


async def test_nca_failure_fails_the_job(world: World, namespace: str, kube: KubeClient) -> None:
    job = world.add_job(
        "combine",
        fail_message="404 Client Error: File not found for url: http://x/missing.mp4",
        drop_webhook=True,
    )
    async with running(settings_for(world, namespace)):
        obj = await wait_synced(kube, namespace, job)
    assert obj["status"]["phase"] == "Failed"
    assert obj["status"]["reason"] == "Failed"
    assert "404 Client Error" in obj["status"]["message"]
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == ("False", "Failed")
    assert condition(obj, "Synced")["status"] == "True"
    row = world.jobs_row(job)
    assert row["Status"] == "failed"
    assert "404 Client Error" in row["Notes"]
    assert world.target_row(job)["Status"] == "pending"  # untouched
    assert world.airtable.writes_for(job.target_id or "") == 0  # type: ignore[arg-type]


async def test_nca_404_for_a_while_never_fails_then_done(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("concatenate", register_in_nca=False, job_id="lost-job-0001")
    async with running(settings_for(world, namespace)):
        await until(lambda: world.nca_sim.count("POST") >= 3, timeout=20)
        assert await phase_of(kube, namespace, job) == "Processing"
        nca_job = world.nca_sim.add_job(
            "lost-job-0001", caller_id=job.record_id, upload=False, drop_webhook=True
        )
        nca_job.caller_id = job.record_id
        obj = await wait_synced(kube, namespace, job, timeout=30)
    assert (obj["status"]["phase"], obj["status"]["completedVia"]) == ("Completed", "nca-status")


async def test_nca_down_then_back(world: World, namespace: str, kube: KubeClient) -> None:
    job = world.add_job("concatenate", upload=False, drop_webhook=True)
    world.nca_sim.faults.fail_next(4, 500)
    world.nca_sim.faults.drop_next(2)
    async with running(settings_for(world, namespace)):
        obj = await wait_synced(kube, namespace, job, timeout=40)
    assert obj["status"]["completedVia"] == "nca-status"
    assert world.nca_sim.faults.pending == 0


async def test_spaces_503_is_retried_not_missing(world: World, namespace: str, kube: KubeClient) -> None:
    job = world.add_job("add_music", drop_webhook=True, upload=False)
    world.nca_sim.set_status(job.job_id, "running")  # NCA cannot settle it: only Spaces can
    world.spaces.put_object(f"{job.job_id}.mp4")
    world.spaces.slow_down_next(5)
    async with running(settings_for(world, namespace)):
        await until(lambda: world.spaces.slowed_down >= 3, timeout=20)
        assert await phase_of(kube, namespace, job) in (None, "Processing")
        obj = await wait_synced(kube, namespace, job, timeout=40)
    assert (obj["status"]["phase"], obj["status"]["completedVia"]) == ("Completed", "spaces")
    assert world.spaces.slowed_down == 5


@pytest.mark.parametrize("fault", [429, 500])
async def test_airtable_failing_during_write_back(
    world: World, namespace: str, kube: KubeClient, fault: int
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.airtable.faults.fail_next(3, fault, path_contains="/Segments")
    async with running(settings_for(world, namespace)):
        obj = await wait_phase(kube, namespace, job, "Completed")
        obj = await wait_synced(kube, namespace, job, timeout=40)
    assert condition(obj, "Ready")["status"] == "True"
    assert world.airtable.writes_for(job.record_id) == 1
    assert world.airtable.writes_for(job.target_id or "") == 1  # type: ignore[arg-type]
    assert world.airtable.faults.pending == 0


async def test_a_job_with_no_result_times_out(world: World, namespace: str, kube: KubeClient) -> None:
    created = datetime.now(UTC) - timedelta(seconds=2)
    job = world.add_job("combine", created=created, drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")  # pinned: never finishes
    async with running(settings_for(world, namespace, POLLING_MAX_AGE_HOURS="0.002")):  # 7.2 s
        obj = await wait_synced(kube, namespace, job, timeout=30)
    assert obj["status"]["phase"] == "TimedOut"
    assert (condition(obj, "Ready")["status"], condition(obj, "Ready")["reason"]) == ("False", "TimedOut")
    submitted = datetime.fromisoformat(obj["spec"]["submittedAt"].replace("Z", "+00:00"))
    failed = datetime.fromisoformat(obj["status"]["failedAt"].replace("Z", "+00:00"))
    assert failed - submitted >= timedelta(seconds=7)  # 7.2 s, written to the second
    row = world.jobs_row(job)
    assert row["Status"] == "failed"
    assert "mediajob-controller: Timed out: no output after 0.002 h" in row["Notes"]
    assert "polling stopped, a late result (webhook or recheck) will still be taken" in row["Notes"]


async def test_restart_between_status_patch_and_airtable_write(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.airtable.faults.fail_next(1000, 503, path_contains="/Segments")
    settings = settings_for(world, namespace)
    async with running(settings):
        await wait_phase(kube, namespace, job, "Completed")
        await asyncio.sleep(1)
    obj = await mediajob(kube, namespace, job)
    assert obj is not None
    assert obj["status"]["airtableSynced"] is False
    assert world.writes(job) == 0
    world.airtable.faults.clear()
    async with running(settings):
        await wait_synced(kube, namespace, job)
    assert world.airtable.writes_for(job.record_id) == 1
    assert world.airtable.writes_for(job.target_id or "") == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("written", ["target", "target and Jobs row"])
async def test_restart_after_airtable_write_but_before_synced_does_not_write_again(
    world: World, namespace: str, kube: KubeClient, written: str
) -> None:
    """A previous leader wrote Airtable and died before recording it: the next one must not repeat it."""
    job = world.add_job("concatenate", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    settings = settings_for(world, namespace)
    async with running(settings):
        await until(lambda: mediajob(kube, namespace, job))
        world.airtable.faults.fail_next(1000, 503, path_contains="/Jobs")  # the write-back cannot start
        world.nca_sim.finish_now(job.job_id)
        await wait_phase(kube, namespace, job, "Completed")
    # what the dead leader would have done next, without recording it in the status:
    assert job.target_table is not None
    assert job.target_id is not None
    world.airtable.set_fields(
        world.base_id, job.target_table, job.target_id, {"Combined Segments Video": [{"url": job.output_url}]}
    )
    if written == "target and Jobs row":
        note = note_line(datetime.now(UTC), "Completed: output file found on Spaces by polling.")
        world.airtable.set_fields(
            world.base_id, "Jobs", job.record_id, {"Status": "completed", "Notes": note}
        )
    world.airtable.faults.clear()
    async with running(settings):
        obj = await wait_synced(kube, namespace, job)
    assert obj["status"]["airtableSynced"] is True
    assert condition(obj, "Synced")["reason"] == "AirtableUpdated"
    assert world.airtable.writes_for(job.target_id) == 0  # already true: never written again
    assert world.airtable.writes_for(job.record_id) == (0 if written == "target and Jobs row" else 1)


async def test_recheck_annotation_runs_a_check_at_once(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    slow = settings_for(world, namespace, POLLING_INTERVAL_MINUTES="60", POLLING_MIN_INTERVAL_SECONDS="3600")
    async with running(slow, rng=Halfway()) as runtime:  # its first regular check: 30 minutes away
        await until(lambda: runtime.store.get((namespace, resource_name(job.record_id))) is not None)
        world.spaces.put_object(f"{job.job_id}_output_0.mp4")
        await asyncio.sleep(1)
        assert await phase_of(kube, namespace, job) in (None, "Processing")
        token = str(time.time())
        await kube.patch_mediajob(
            namespace,
            resource_name(job.record_id),
            {"metadata": {"annotations": {ANNOTATION_RECHECK: token}}},
        )
        obj = await wait_phase(kube, namespace, job, "Completed", timeout=10)
    assert obj["status"]["lastHandledRecheckAt"] == token
    assert obj["status"]["completedVia"] == "spaces"


async def test_recheck_with_nothing_new_records_the_token(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "queued")
    slow = settings_for(world, namespace, POLLING_INTERVAL_MINUTES="10", POLLING_MIN_INTERVAL_SECONDS="600")
    async with running(slow) as runtime:
        await until(lambda: runtime.store.get((namespace, resource_name(job.record_id))) is not None)
        calls = world.nca_sim.status_calls(job.job_id)
        await kube.patch_mediajob(
            namespace, resource_name(job.record_id), {"metadata": {"annotations": {ANNOTATION_RECHECK: "1"}}}
        )

        async def handled() -> bool:
            obj = await mediajob(kube, namespace, job)
            return bool(obj and (obj.get("status") or {}).get("lastHandledRecheckAt") == "1")

        await until(handled, timeout=10)
        assert world.nca_sim.status_calls(job.job_id) > calls  # the recheck asked NCA despite its backoff
        assert await phase_of(kube, namespace, job) == "Processing"


async def test_recheck_of_an_ended_synced_job_changes_nothing_but_the_token(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("concatenate", drop_webhook=True)
    async with running(settings_for(world, namespace)):
        await wait_synced(kube, namespace, job)
        writes = world.writes(job)
        await kube.patch_mediajob(
            namespace, resource_name(job.record_id), {"metadata": {"annotations": {ANNOTATION_RECHECK: "r2"}}}
        )

        async def handled() -> bool:
            obj = await mediajob(kube, namespace, job)
            return bool(obj and obj["status"].get("lastHandledRecheckAt") == "r2")

        await until(handled, timeout=10)
    assert world.writes(job) == writes


async def test_a_check_that_changes_nothing_writes_nothing(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    async with running(settings_for(world, namespace)) as runtime:
        first = await wait_phase(kube, namespace, job, "Processing")
        checks_before = (
            runtime.metrics.checks.labels(result="pending")._value.get()
            + runtime.metrics.checks.labels(result="missing")._value.get()
        )
        await asyncio.sleep(4)  # several intervals of 1 s
        checks_after = (
            runtime.metrics.checks.labels(result="pending")._value.get()
            + runtime.metrics.checks.labels(result="missing")._value.get()
        )
        later = await mediajob(kube, namespace, job)
    assert later is not None
    assert checks_after - checks_before >= 3
    assert later["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]


async def test_kubectl_wait_returns_when_the_job_is_ready(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    job = world.add_job("add_music", queued_s=1, running_s=1, drop_webhook=True)
    async with running(settings_for(world, namespace)) as runtime:
        await until(lambda: runtime.store.get((namespace, resource_name(job.record_id))) is not None)
        name = f"mediajob/{resource_name(job.record_id)}"
        result = await asyncio.to_thread(
            controlplane.kubectl, "wait", "--for=condition=Ready", name, "-n", namespace, "--timeout=30s"
        )
    assert "condition met" in result.stdout
    assert world.jobs_row(job)["Status"] == "completed"


async def test_transitions_post_events(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    ok = world.add_job("concatenate", drop_webhook=True)
    bad = world.add_job("combine", fail_message="ffmpeg exploded", drop_webhook=True)
    async with running(settings_for(world, namespace)):
        await wait_synced(kube, namespace, ok)
        await wait_synced(kube, namespace, bad)
    events = json.loads(controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    seen = {(e["involvedObject"]["name"], e["type"], e["reason"]) for e in events}
    assert (resource_name(ok.record_id), "Normal", "Completed") in seen
    assert (resource_name(bad.record_id), "Warning", "Failed") in seen


async def test_persistent_check_errors_post_one_warning_event(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.spaces.faults.fail_next(1000, 500)
    world.nca_sim.faults.fail_next(1000, 502)
    async with running(settings_for(world, namespace)):

        def warned() -> bool:
            events = json.loads(controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)[
                "items"
            ]
            return any(e["reason"] == "CheckFailing" for e in events)

        await until(lambda: asyncio.to_thread(warned), timeout=30, every=0.5)
        assert await phase_of(kube, namespace, job) == "Processing"
    events = json.loads(controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
    failing = [e for e in events if e["reason"] == "CheckFailing"]
    assert len(failing) == 1
    assert "Spaces: HTTP 500" in failing[0]["message"]
    assert "NCA: HTTP 502" in failing[0]["message"]


async def test_a_resource_the_controller_cannot_use_gets_an_invalid_spec_event(
    world: World, namespace: str, controlplane: ControlPlane
) -> None:
    body = {
        "apiVersion": "media.phi.dev/v1alpha1",
        "kind": "MediaJob",
        "metadata": {"name": "by-hand"},
        "spec": {
            "airtableRecordId": "recAbCdEfGhIjKlMn",
            "externalJobId": "a..b",  # the schema allows it; the controller refuses '..' in ids
            "operation": "combine",
            "submittedAt": "2026-11-28T17:41:05Z",
        },
    }
    controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    async with running(settings_for(world, namespace)) as runtime:

        def reported() -> list[dict]:  # type: ignore[type-arg]
            events = json.loads(controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)[
                "items"
            ]
            return [e for e in events if e["reason"] == "InvalidSpec"]

        events = await until(lambda: asyncio.to_thread(reported), timeout=20, every=0.5)
        assert runtime.store.get((namespace, "by-hand")) is None
    assert "unsafe external job id" in events[0]["message"]
    assert events[0]["type"] == "Warning"


async def test_a_job_that_vanished_without_a_deleted_event_is_pruned(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("combine", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    async with running(settings_for(world, namespace)) as runtime:
        real = await until(lambda: mediajob(kube, namespace, job))
        phantom = json.loads(json.dumps(real))
        phantom["metadata"].update(name="recphantomaaaaaaa-0000", uid="phantom", resourceVersion="1")
        runtime.store.observe(None, phantom)  # as if the watch had missed its DELETED event
        assert runtime.store.get((namespace, "recphantomaaaaaaa-0000")) is not None
        await until(lambda: runtime.store.get((namespace, "recphantomaaaaaaa-0000")) is None, timeout=15)
        assert runtime.store.get((namespace, resource_name(job.record_id))) is not None


async def test_nca_listing_stands_in_for_per_job_status_calls(
    world: World, namespace: str, kube: KubeClient
) -> None:
    """Jobs NCA lists as queued or running cost no status call each; the listing is one call."""
    jobs = [world.add_job("concatenate", drop_webhook=True) for _ in range(4)]
    for job in jobs:
        world.nca_sim.set_status(job.job_id, "running" if jobs.index(job) % 2 else "queued")
    settings = settings_for(
        world, namespace, POLLING_INTERVAL_MINUTES="0.5", POLLING_MIN_INTERVAL_SECONDS="2"
    )
    async with running(settings) as runtime:
        await until(lambda: world.nca_sim.listing_calls >= 1, timeout=15)
        await asyncio.sleep(1)  # checks that began before the first listing have ended
        before = sum(world.nca_sim.status_calls(job.job_id) for job in jobs)
        checks = world.spaces.count("HEAD")
        await asyncio.sleep(12)
        after = sum(world.nca_sim.status_calls(job.job_id) for job in jobs)
        assert world.spaces.count("HEAD") > checks + len(jobs)  # Spaces is still looked at, often
        assert after == before  # but NCA only through its listing
        assert world.nca_sim.listing_calls >= 1
        text = runtime.metrics.render().decode()
    assert 'mediajob_nca_listings_total{result="ok"}' in text


async def test_a_failure_nca_lists_reaches_the_row_within_a_listing_period(
    world: World, namespace: str, kube: KubeClient
) -> None:
    """Only NCA can show a failure; its listing points at the job long before the per-job backoff."""
    job = world.add_job("combine", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "running")
    settings = settings_for(
        world, namespace, POLLING_INTERVAL_MINUTES="0.1", POLLING_MIN_INTERVAL_SECONDS="2"
    )
    async with running(settings) as runtime:
        await until(lambda: world.nca_sim.status_calls(job.job_id) >= 1 or world.nca_sim.listing_calls >= 1)
        await asyncio.sleep(14)  # the per-job backoff is now 24 s and more away
        calls = world.nca_sim.status_calls(job.job_id)
        world.nca_sim.finish_now(job.job_id, fail_message="ffmpeg exited with code 1")
        failed_at = time.monotonic()
        await wait_phase(kube, namespace, job, "Failed", timeout=15)
        assert time.monotonic() - failed_at <= 8  # one listing period (6 s) and a check
        await until(lambda: world.jobs_row(job)["Status"] == "failed", timeout=10)
        assert world.nca_sim.status_calls(job.job_id) == calls + 1  # the one call the hint asked for
        assert runtime.metrics.nca_hints._value.get() == 1


def hand_made_mediajob(name: str, record_id: str, external_job_id: str) -> str:
    return json.dumps(
        {
            "apiVersion": "media.phi.dev/v1alpha1",
            "kind": "MediaJob",
            "metadata": {"name": name},
            "spec": {
                "airtableRecordId": record_id,
                "externalJobId": external_job_id,
                "operation": "concatenate",
                "submittedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        }
    )


async def test_the_first_nca_listing_comes_as_soon_as_a_job_is_processing(
    world: World, namespace: str, controlplane: ControlPlane
) -> None:
    """Issue [1 of 2]: no listing while nothing processes; the first one when the first job
    appears, not a period later; with one job the next within 15 s, not an interval (2 min)."""
    settings = settings_for(world, namespace, POLLING_INTERVAL_MINUTES="2")
    async with running(settings) as runtime:
        await until(lambda: runtime.reconciler is not None, timeout=15)
        await asyncio.sleep(6)  # past the floor (5 s), where the old loop looked, found none, slept 2 min
        assert world.nca_sim.listing_calls == 0
        nca_job = world.nca_sim.add_job(queued_s=0, running_s=600, drop_webhook=True)
        manifest = hand_made_mediajob("first-listing", "recFirstListing01", nca_job.job_id)
        controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
        appeared = time.monotonic()
        await until(lambda: world.nca_sim.listing_calls >= 1, timeout=15)
        assert time.monotonic() - appeared <= 3
        await until(lambda: world.nca_sim.listing_calls >= 2, timeout=25)
        assert time.monotonic() - appeared <= 15 + 3


async def test_a_job_nca_listed_done_before_it_was_mirrored_is_checked_at_once(
    world: World, namespace: str, controlplane: ControlPlane
) -> None:
    """A fresh row whose job NCA already finished (failed: only NCA can tell) does not wait for
    its first check somewhere in a 30 s gap, nor for the next listing: the listing's `done` is
    remembered and hints the job the moment its MediaJob appears."""
    settings = settings_for(world, namespace, POLLING_INTERVAL_MINUTES="1", POLLING_MIN_INTERVAL_SECONDS="30")
    async with running(settings) as runtime:
        await until(lambda: runtime.reconciler is not None, timeout=15)
        busy = world.nca_sim.add_job(queued_s=0, running_s=600, drop_webhook=True)
        manifest = hand_made_mediajob("busy", "recBusyJob0000001", busy.job_id)
        controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
        await until(lambda: world.nca_sim.listing_calls >= 1, timeout=15)
        late = world.nca_sim.add_job(queued_s=0, running_s=600, drop_webhook=True)
        world.nca_sim.finish_now(late.job_id, fail_message="ffmpeg exited with code 1")
        listed = world.nca_sim.listing_calls
        await until(lambda: world.nca_sim.listing_calls > listed, timeout=20)  # NCA has said "done"
        manifest = hand_made_mediajob("late", "recLateJob0000001", late.job_id)
        controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest)
        appeared = time.monotonic()

        def failed() -> bool:
            job = runtime.store.get((namespace, "late"))
            return job is not None and job.phase == "Failed"

        await until(failed, timeout=20)
        assert time.monotonic() - appeared <= 4, "waited for a first check or the next listing"
        assert world.nca_sim.status_calls(late.job_id) == 1  # the one call the hint asked for
        assert runtime.metrics.nca_hints._value.get() == 1


async def test_nca_listing_off_keeps_per_job_status_calls(
    world: World, namespace: str, kube: KubeClient
) -> None:
    job = world.add_job("concatenate", drop_webhook=True)
    world.nca_sim.set_status(job.job_id, "queued")
    settings = settings_for(world, namespace, POLLING_INTERVAL_MINUTES="0.05", NCA_LISTING_ENABLED="false")
    async with running(settings):
        await until(lambda: world.nca_sim.status_calls(job.job_id) >= 2, timeout=20)
    assert world.nca_sim.listing_calls == 0

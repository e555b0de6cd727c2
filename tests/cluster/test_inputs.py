"""Contract section 7 on the real control plane: inputs never stop the controller.

Poison rows sit beside good rows in the Airtable simulator; the operator runs in this event loop
against the real kube-apiserver, so a row that escaped its scope would end the leader's work
(and, in a process, exit it with 1).
"""

import asyncio
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller import mirror as mirror_module
from controller.clients.kube import KubeClient
from controller.decide import Complete
from controller.metrics import Metrics
from controller.mirror import NOTE_PREFIX
from controller.model import JobSpec, MediaJob, new_object
from controller.naming import resource_name
from controller.rows import JobRow, parse_job_row
from controller.store import JobStore
from controller.transitions import EventRecorder, StatusWriter, Transitions
from sandbox.controlplane import ControlPlane
from sandbox.world import World
from tests.cluster.test_leader import env_for
from tests.harness import running, settings_for, until, wait_synced
from tests.processes import ControllerProcess, controllers

POISON: dict[str, dict[str, Any]] = {
    "deep json": {
        "Request Payload": '{"operation":"combine","x":' + "[" * 3000 + "]" * 3000 + "}",
    },
    "99,999 brackets": {"Request Payload": "[" * 99_999},
    "deep python literal": {
        "Request Payload": "{'operation': 'combine', 'x': " + "(" * 3000 + ")" * 3000 + "}"
    },
    "year 0001": {"Created Time": "0001-01-01T00:00:00+01:00"},
    "year 9999": {"Created Time": "9999-12-31T23:59:59Z"},
    "junk": {"Request Payload": "\x00\udcff\ufeff{]", "Created Time": "\u0660\u0661"},
    "newline in segment id": {
        "Request Payload": json.dumps({"operation": "combine", "segment_id": "recAAAAAAAAAAAAAA\n"})
    },
    "external id with a newline": {"External Job ID": "job-1\nx"},
}


def poison_row(world: World, fields: dict[str, Any]) -> str:
    base = {
        "Status": "processing",
        "External Job ID": "poison-job-1",
        "Request Payload": json.dumps({"operation": "concatenate"}),
        "Created Time": "2026-11-28T17:41:05.000Z",
    }
    return world.airtable.add_record(world.base_id, "Jobs", {**base, **fields})


async def test_poison_rows_get_one_note_each_and_good_rows_complete(
    world: World, namespace: str, kube: KubeClient
) -> None:
    good_before = [world.add_job(op, drop_webhook=True) for op in ("combine", "concatenate", "add_music")]
    poison = {case: poison_row(world, fields) for case, fields in POISON.items()}
    good_after = [world.add_job(op, drop_webhook=True) for op in ("combine", "concatenate", "add_music")]
    async with running(settings_for(world, namespace)) as runtime:
        for job in good_before + good_after:
            await wait_synced(kube, namespace, job, timeout=60)
        mirror = runtime.mirror
        assert mirror is not None
        cycles = mirror.cycles
        await until(lambda: mirror.cycles >= cycles + 3, timeout=30)  # more cycles see the same rows
        assert runtime.is_leader
        assert runtime._leadership is not None
        assert not runtime._leadership.done()
        assert runtime.exit_code == 0
        assert not runtime.stop_flag.is_set()
    for case, record_id in poison.items():
        notes = world.airtable.get_fields(world.base_id, "Jobs", record_id).get("Notes", "")
        assert notes.count(NOTE_PREFIX) == 1, (case, notes)
        assert world.airtable.writes_for(record_id) == 1, case
        assert world.airtable.get_fields(world.base_id, "Jobs", record_id)["Status"] == "processing"
    for job in good_before + good_after:
        assert world.jobs_row(job)["Status"] == "completed"
    names = {item["metadata"]["name"] for item in await kube.list_mediajobs(namespace)}
    assert len(names) == len(good_before + good_after)


def by_hand(name: str, **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "media.phi.dev/v1alpha1",
            "kind": "MediaJob",
            "metadata": {"name": name},
            "spec": {
                "airtableRecordId": "recAbCdEfGhIjKlMn",
                "externalJobId": "by-hand-1",
                "operation": "combine",
                "submittedAt": "2026-11-28T17:41:05Z",
                **spec,
            },
        }
    )


async def test_an_invalid_spec_seen_by_the_watch_gets_an_event_from_the_loop(
    world: World, namespace: str, controlplane: ControlPlane
) -> None:
    """Created while leading, so only kopf's watch handler sees it: it must run on the loop.

    A sync handler runs in a worker thread, where Runtime.observe's asyncio.create_task raises
    RuntimeError: the Event is never posted.
    """
    async with running(settings_for(world, namespace)) as runtime:
        assert runtime.is_leader
        threads: set[int] = set()
        observe = runtime.observe

        def on_loop_thread(event_type: str | None, body: dict[str, Any]) -> None:
            threads.add(threading.get_ident())
            observe(event_type, body)

        runtime.observe = on_loop_thread  # type: ignore[method-assign]
        controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=by_hand("dots", externalJobId="a..b"))
        controlplane.kubectl(
            "apply",
            "-n",
            namespace,
            "-f",
            "-",
            input=by_hand("far-future", submittedAt="9999-12-31T23:59:59Z"),
        )

        def reported() -> dict[str, str]:
            events = json.loads(controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)[
                "items"
            ]
            return {e["involvedObject"]["name"]: e["message"] for e in events if e["reason"] == "InvalidSpec"}

        events = await until(lambda: _two(reported), timeout=20, every=0.5)
        assert runtime.exit_code == 0
    assert threads == {threading.get_ident()}  # every watch event was handled on the loop's thread
    assert "unsafe external job id" in events["dots"]
    assert "submittedAt is outside" in events["far-future"]


async def _two(reported: Any) -> dict[str, str] | None:
    found: dict[str, str] = await asyncio.to_thread(reported)
    return found if len(found) == 2 else None


async def test_poison_rows_never_stop_a_replica_process(
    world: World, namespace: str, kube: KubeClient, controlplane: ControlPlane, tmp_path: Path
) -> None:
    """As deployed: two replicas with leader election; before, each leader in turn exited with 1."""
    poison = [poison_row(world, fields) for fields in POISON.values()]
    good = [world.add_job(op, drop_webhook=True) for op in ("combine", "concatenate", "add_music")]
    env = env_for(world, namespace, controlplane.kubeconfig)
    a, b = ControllerProcess("poison-a", env, tmp_path), ControllerProcess("poison-b", env, tmp_path)
    with controllers(a, b):
        for job in good:
            await wait_synced(kube, namespace, job, timeout=60)
        await until(
            lambda: all("mediajob-controller cannot track" in w_notes(world, r) for r in poison), timeout=30
        )
        await asyncio.sleep(3)  # a few more mirror cycles over the same rows
        assert (a.returncode, b.returncode) == (None, None), a.log()[-2000:] + b.log()[-2000:]
    for record_id in poison:
        assert w_notes(world, record_id).count(NOTE_PREFIX) == 1
    assert "leader work crashed" not in a.log() + b.log()


def w_notes(world: World, record_id: str) -> str:
    notes: str = world.airtable.get_fields(world.base_id, "Jobs", record_id).get("Notes", "")
    return notes


async def test_a_metric_failure_after_the_status_patch_loses_neither_the_job_nor_its_event(
    namespace: str, kube: KubeClient, controlplane: ControlPlane
) -> None:
    """A naive Last-Modified (as `-0000` gave) made _count raise after the patch: Event and result lost."""
    spec = JobSpec(
        airtable_record_id="recAbCdEfGhIjKlMn",
        external_job_id="naive-date-1",
        operation="concatenate",
        submitted_at=datetime(2026, 11, 28, tzinfo=UTC),
    )
    name = resource_name(spec.airtable_record_id)
    job = MediaJob.from_object(await kube.create_mediajob(new_object(name, namespace, spec)))
    store = JobStore()
    writer = StatusWriter(kube, store, EventRecorder(kube, host="test", secrets=()))
    transitions = Transitions(kube=kube, store=store, writer=writer, metrics=Metrics())
    naive = datetime(2026, 11, 29, 10, 0)  # the point of the test
    updated = await transitions.apply(job, Complete("http://x/naive-date-1.mp4", "spaces", naive), checks=1)
    assert updated is not None
    assert updated.status.phase == "Completed"
    assert store.get(job.key) == updated

    def events() -> list[str]:
        items = json.loads(controlplane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout)[
            "items"
        ]
        return [e["reason"] for e in items if e["involvedObject"]["name"] == name]

    assert await until(lambda: asyncio.to_thread(events)) == ["Completed"]


async def test_a_row_that_trips_an_unforeseen_error_gets_a_note_and_the_mirror_goes_on(
    world: World, namespace: str, kube: KubeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror's last line of defence: a bug in reading one row is that row's problem only."""
    tripwire = poison_row(world, {"External Job ID": "trips-a-bug"})

    def parse_with_a_bug(record: Any) -> JobRow:
        if record.get("fields", {}).get("External Job ID") == "trips-a-bug":
            raise ZeroDivisionError("a bug in the parser")
        return parse_job_row(record)

    monkeypatch.setattr(mirror_module, "parse_job_row", parse_with_a_bug)
    good = world.add_job("concatenate", drop_webhook=True)
    async with running(settings_for(world, namespace)) as runtime:
        await wait_synced(kube, namespace, good)
        mirror = runtime.mirror
        assert mirror is not None
        cycles = mirror.cycles
        await until(lambda: mirror.cycles >= cycles + 2)
        assert runtime.exit_code == 0
    notes = w_notes(world, tripwire)
    assert notes.count(NOTE_PREFIX) == 1
    assert "could not be read (ZeroDivisionError)" in notes
    assert world.airtable.writes_for(tripwire) == 1

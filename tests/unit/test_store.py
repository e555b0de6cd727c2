from typing import Any

from controller.model import MediaJob
from controller.store import JobStore, newer_or_same


def obj(
    name: str, rv: str, *, job_id: str = "job-1", phase: str | None = None, uid: str = "u", **spec: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv, "generation": 1},
        "spec": {
            "airtableRecordId": "recJOBaaaaaaaaaaa",
            "externalJobId": job_id,
            "operation": "combine",
            "submittedAt": "2026-11-29T00:00:00Z",
            **spec,
        },
        "status": {"phase": phase} if phase else {},
    }


def test_listeners_see_changes_and_removals() -> None:
    store = JobStore()
    seen: list[tuple[str, str | None]] = []
    removed: list[tuple[str, str]] = []
    store.subscribe(
        lambda job, old: seen.append((job.resource_version, old and old.resource_version)), removed.append
    )
    store.observe("ADDED", obj("a", "1"))
    store.observe("MODIFIED", obj("a", "2"))
    store.observe("DELETED", obj("a", "3"))
    assert seen == [("1", None), ("2", "1")]
    assert removed == [("ns", "a")]
    assert len(store) == 0


def test_a_late_older_event_does_not_roll_a_job_back() -> None:
    store = JobStore()
    store.observe("MODIFIED", obj("a", "10", phase="Completed"))
    store.observe("MODIFIED", obj("a", "9", phase="Processing"))
    job = store.get(("ns", "a"))
    assert job is not None
    assert job.status.phase == "Completed"
    # a recreated object (new uid) starts its own history
    store.observe("ADDED", obj("a", "5", uid="u2"))
    assert store.get(("ns", "a")).resource_version == "5"  # type: ignore[union-attr]


def test_find_by_external_id_follows_changes() -> None:
    store = JobStore()
    store.observe(None, obj("a", "1", job_id="x"))
    store.observe(None, obj("b", "1", job_id="x"))
    assert {j.name for j in store.find_external("x")} == {"a", "b"}
    store.observe(None, obj("a", "2", job_id="y"))
    assert [j.name for j in store.find_external("x")] == ["b"]
    assert [j.name for j in store.find_external("y")] == ["a"]


def test_invalid_resources_are_reported_once_and_dropped() -> None:
    store = JobStore()
    store.observe(None, obj("a", "1"))
    bad = obj("a", "2", externalJobId="../x")
    first = store.observe(None, bad)
    second = store.observe(None, obj("a", "3", externalJobId="../x"))
    assert first is not None
    assert "unsafe external job id" in first
    assert second is None
    assert store.get(("ns", "a")) is None


def test_retain_prunes_what_a_relist_no_longer_has() -> None:
    store = JobStore()
    for name in "abc":
        store.observe(None, obj(name, "1"))
    removed: list[tuple[str, str]] = []
    store.subscribe(lambda job, old: None, removed.append)
    assert store.retain({("ns", "a"), ("ns", "c")}, "5") == [("ns", "b")]
    assert removed == [("ns", "b")]
    assert sorted(j.name for j in store) == ["a", "c"]


def test_retain_keeps_what_is_newer_than_the_list() -> None:
    """A job created while the list was on its way is missing from it, but not gone."""
    store = JobStore()
    store.observe(None, obj("old", "4"))
    store.observe(None, obj("new", "7"))
    assert store.retain(set(), "5") == [("ns", "old")]
    assert [j.name for j in store] == ["new"]
    assert store.retain(set(), "opaque") == []


def test_newer_or_same() -> None:
    assert newer_or_same("10", "9")
    assert newer_or_same("10", "10")
    assert not newer_or_same("9", "10")
    assert newer_or_same("opaque", "10")


def test_views_are_parsed_once() -> None:
    job = MediaJob.from_object(obj("a", "1", phase="Completed"))
    assert job.status.terminal
    assert job.needs_sync

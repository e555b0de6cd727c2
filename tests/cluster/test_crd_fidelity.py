"""The project's CRD on a real API server: validation, printer columns, status subresource, conflicts."""

import json
from pathlib import Path

import pytest

from controller.clients.kube import Conflict, KubeClient
from controller.vocabulary import OPERATIONS, SEGMENTS, VIDEOS
from sandbox.controlplane import ControlPlane
from tests.samples import mediajob_body

REPO = Path(__file__).resolve().parents[2]


def manifest(name: str, **spec: object) -> str:
    return json.dumps(mediajob_body(name, **spec))


def test_the_crd_applies_cleanly_again(controlplane: ControlPlane) -> None:
    result = controlplane.kubectl("apply", "-f", str(REPO / "crds"))
    assert "mediajobs.media.phi.dev" in result.stdout
    names = controlplane.kubectl("api-resources", "--api-group=media.phi.dev", "-o", "wide").stdout
    assert "mj" in names
    assert "media" in names


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"airtableRecordId": "rec123"}, "spec.airtableRecordId in body should match '^rec[A-Za-z0-9]{14}$'"),
        ({"externalJobId": "../../etc"}, "spec.externalJobId in body should match"),
        ({"submittedAt": None}, "spec.submittedAt: Required value"),
        (
            {"target": {"table": "Jobs", "recordId": "recSEGaaaaaaaaaaa"}},
            'spec.target.table: Unsupported value: "Jobs"',
        ),
        ({"suspend": "yes"}, "spec.suspend: Invalid value"),
    ],
)
def test_an_invalid_mediajob_is_rejected_with_the_schema_message(
    controlplane: ControlPlane, namespace: str, spec: dict[str, object], message: str
) -> None:
    body = json.loads(manifest("bad"))
    body["spec"].update(spec)
    body["spec"] = {k: v for k, v in body["spec"].items() if v is not None}
    result = controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert message in result.stderr


def test_printer_columns_with_both_names(controlplane: ControlPlane, namespace: str) -> None:
    controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("recabcdefghijklmn-0001"))
    status = {
        "status": {
            "phase": "Completed",
            "completedVia": "webhook",
            "conditions": [
                {
                    "type": "Synced",
                    "status": "True",
                    "reason": "AirtableUpdated",
                    "message": "ok",
                    "lastTransitionTime": "2026-11-29T00:00:00Z",
                }
            ],
        }
    }
    controlplane.kubectl(
        "patch",
        "mj",
        "recabcdefghijklmn-0001",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
    )
    for resource in ("mediajobs", "mj", "media"):
        lines = controlplane.kubectl("get", resource, "-n", namespace).stdout.splitlines()
        assert lines[0].split() == ["NAME", "PHASE", "OPERATION", "EXTERNAL-ID", "VIA", "SYNCED", "AGE"]
        row = lines[1].split()
        assert row[:6] == [
            "recabcdefghijklmn-0001",
            "Completed",
            "combine",
            "d0451a2c-fe2a-4cb9-8740-bfd1a0b36aba",
            "webhook",
            "True",
        ]


async def test_status_and_spec_are_separate(controlplane: ControlPlane, namespace: str) -> None:
    controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("recabcdefghijklmn-0002"))
    kube = KubeClient()
    try:
        # a status patch that also tries to change the spec: only the status changes
        patched = await kube._call(
            "PATCH",
            f"/apis/media.phi.dev/v1alpha1/namespaces/{namespace}/mediajobs/recabcdefghijklmn-0002/status",
            json={"spec": {"operation": "hacked"}, "status": {"phase": "Failed"}},
        )
        assert patched["spec"]["operation"] == "combine"
        assert patched["status"]["phase"] == "Failed"
        generation = patched["metadata"]["generation"]
        # a main-resource patch that also tries to change the status: only the spec changes
        patched = await kube.patch_mediajob(
            namespace, "recabcdefghijklmn-0002", {"spec": {"suspend": True}, "status": {"phase": "Completed"}}
        )
        assert patched["spec"]["suspend"] is True
        assert patched["status"]["phase"] == "Failed"
        assert patched["metadata"]["generation"] == generation + 1
    finally:
        await kube.close()


async def test_a_stale_resource_version_gets_409(controlplane: ControlPlane, namespace: str) -> None:
    controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=manifest("recabcdefghijklmn-0003"))
    kube = KubeClient()
    try:
        first = await kube.get_mediajob(namespace, "recabcdefghijklmn-0003")
        stale = first["metadata"]["resourceVersion"]
        await kube.patch_mediajob_status(
            namespace, "recabcdefghijklmn-0003", {"phase": "Processing"}, resource_version=stale
        )
        with pytest.raises(Conflict):
            await kube.patch_mediajob_status(
                namespace, "recabcdefghijklmn-0003", {"phase": "Completed"}, resource_version=stale
            )
        current = await kube.get_mediajob(namespace, "recabcdefghijklmn-0003")
        assert current["status"]["phase"] == "Processing"
    finally:
        await kube.close()


def test_unknown_fields_are_refused_or_pruned(controlplane: ControlPlane, namespace: str) -> None:
    body = json.loads(manifest("recabcdefghijklmn-0004"))
    body["spec"]["surprise"] = "dropped"
    strict = controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert strict.returncode != 0
    assert 'unknown field "spec.surprise"' in strict.stderr
    controlplane.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-", input=json.dumps(body))
    got = json.loads(
        controlplane.kubectl("get", "mj", "recabcdefghijklmn-0004", "-n", namespace, "-o", "json").stdout
    )
    assert "surprise" not in got["spec"]
    assert got["spec"]["suspend"] is False  # the schema default


SEG = {"table": "Segments", "recordId": "recSEGaaaaaaaaaaa"}
VID = {"table": "Videos", "recordId": "recVIDaaaaaaaaaaa"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"operation": "combine", "target": VID}, "combine writes its output to a Segment"),
        (
            {"operation": "concatenate", "target": SEG},
            "concatenate and add_music write their output to a Video",
        ),
        (
            {"operation": "add_music", "target": SEG},
            "concatenate and add_music write their output to a Video",
        ),
        ({"externalJobId": "x" * 64}, "spec.externalJobId"),
        ({"externalJobId": "trailing-"}, "spec.externalJobId in body should match"),
        ({"externalJobId": "job-1\n"}, "spec.externalJobId in body should match"),
        ({"airtableRecordId": "recAbCdEfGhIjKlMn\n"}, "spec.airtableRecordId in body should match"),
    ],
)
def test_operation_and_target_table_must_agree_and_the_external_id_is_a_label(
    controlplane: ControlPlane, namespace: str, spec: dict[str, object], message: str
) -> None:
    body = json.loads(manifest("bad"))
    body["spec"].update(spec)
    result = controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    "spec",
    [
        {"operation": "combine", "target": SEG},
        {"operation": "concatenate", "target": VID},
        {"operation": "add_music", "target": VID},
        {"operation": "combine"},
        {"operation": "transcribe", "target": SEG},
        {"operation": "transcribe", "target": VID},
        {"operation": "transcribe", "externalJobId": "a" * 63},
    ],
)
def test_consistent_specs_are_accepted(
    controlplane: ControlPlane, namespace: str, spec: dict[str, object]
) -> None:
    body = json.loads(manifest("good"))
    body["spec"].pop("target", None)
    body["spec"].update(spec)
    controlplane.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


@pytest.mark.parametrize(
    ("operation", "table"),
    [(op, table) for op in OPERATIONS for table in (SEGMENTS, VIDEOS)],
)
def test_the_crd_rules_agree_with_the_table_of_operations(
    controlplane: ControlPlane, namespace: str, operation: str, table: str
) -> None:
    """controller.vocabulary.OPERATIONS is the one table: the API server must accept exactly its targets."""
    body = json.loads(manifest("op"))
    body["spec"].update(operation=operation, target={"table": table, "recordId": "recTGTaaaaaaaaaaa"})
    result = controlplane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(body), check=False
    )
    expected = OPERATIONS[operation].target_table == table
    assert (result.returncode == 0) == expected, result.stderr

"""The CRD's own schema, checked with a JSON-schema validator (the API server tier checks it for real)."""

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.samples import mediajob_body

CRD = yaml.safe_load((Path(__file__).parents[2] / "crds" / "mediajobs.media.phi.dev.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]


def good() -> dict[str, Any]:
    return {**mediajob_body(), "status": {"phase": "Completed", "completedVia": "spaces", "checks": 3}}


def validate(obj: dict[str, Any]) -> None:
    jsonschema.validate(obj, SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def test_names_and_subresources_follow_the_contract() -> None:
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == "mediajobs.media.phi.dev"
    assert (CRD["spec"]["group"], VERSION["name"], names["kind"]) == ("media.phi.dev", "v1alpha1", "MediaJob")
    assert (names["plural"], names["singular"], names["shortNames"], names["categories"]) == (
        "mediajobs",
        "mediajob",
        ["mj"],
        ["media"],
    )
    assert CRD["spec"]["scope"] == "Namespaced"
    assert VERSION["subresources"] == {"status": {}}
    columns = [c["name"] for c in VERSION["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["Phase", "Operation", "External-ID", "Via", "Synced", "Age"]  # the contract's
    wide = [c["name"] for c in VERSION["additionalPrinterColumns"] if c.get("priority") == 1]
    assert wide == ["Ready", "Reason", "Message"]  # kubectl get -o wide


def walk(schema: dict[str, Any], path: str = "") -> list[str]:
    missing = [] if "description" in schema or path in ("", ".metadata") else [path]
    for key, sub in schema.get("properties", {}).items():
        missing += walk(sub, f"{path}.{key}")
    if "items" in schema:
        missing += walk(schema["items"], f"{path}[]")
    return missing


def test_every_field_has_a_description() -> None:
    assert walk(SCHEMA) == []


def test_a_good_object_is_accepted() -> None:
    validate(good())


def mutate(path: str, value: Any) -> dict[str, Any]:
    obj = good()
    *parents, leaf = path.split(".")
    node = obj
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return obj


DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("spec.airtableRecordId", "rec123"),
        ("spec.airtableRecordId", "RECAbCdEfGhIjKlMn"),
        ("spec.externalJobId", "../../etc/passwd"),
        ("spec.externalJobId", "a b"),
        ("spec.externalJobId", "x" * 129),
        ("spec.airtableRecordId", DELETE),
        ("spec.externalJobId", DELETE),
        ("spec.operation", DELETE),
        ("spec.submittedAt", DELETE),
        ("spec.submittedAt", "yesterday"),
        ("spec.target", {"table": "Jobs", "recordId": "recSEGaaaaaaaaaaa"}),
        ("spec.target", {"table": "Segments"}),
        ("spec.outputUrl", "file:///etc/passwd"),
        ("spec.suspend", "yes"),
        ("status.phase", "Done"),
        ("status.completedVia", "email"),
        ("status.checks", -1),
        ("spec", DELETE),
    ],
)
def test_bad_objects_are_rejected(path: str, value: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        validate(mutate(path, value))

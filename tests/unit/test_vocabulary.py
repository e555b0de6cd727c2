"""One table of operations: the simulators and the derived names agree with it."""

from __future__ import annotations

import pytest

from controller.naming import expected_output_url
from controller.rows import parse_job_row
from controller.vocabulary import OPERATIONS, Operation
from controller.writeback import planned_writes
from sandbox import world
from tests.unit.helpers import job


@pytest.mark.parametrize("op", OPERATIONS.values(), ids=list(OPERATIONS))
def test_the_simulated_nca_and_airtable_agree_with_the_table(op: Operation) -> None:
    assert world.ENDPOINT_BY_OPERATION[op.name] == op.endpoint
    assert world.TABLE_BY_OPERATION[op.name] == op.target_table
    assert world.LINK_FIELD[op.target_table] == op.link_field
    assert world.PAYLOAD_KEY[op.target_table] == op.payload_key
    assert op.attachment_field in world.SCHEMA[op.target_table]
    assert op.link_field in world.SCHEMA["Jobs"]


@pytest.mark.parametrize(
    ("operation", "url"),
    [
        ("combine", "https://b.example/k/job-1_output_0.mp4"),
        ("concatenate", "https://b.example/k/job-1.mp4"),
        ("add_music", "https://b.example/k/job-1.mp4"),
        ("transcribe", None),
    ],
)
def test_the_output_key_comes_from_the_table(operation: str, url: str | None) -> None:
    assert expected_output_url("https://b.example/k/", operation, "job-1") == url


@pytest.mark.parametrize("op", OPERATIONS.values(), ids=list(OPERATIONS))
def test_the_target_row_and_its_write_come_from_the_table(op: Operation) -> None:
    row = parse_job_row(
        {
            "id": "recJOBaaaaaaaaaaa",
            "createdTime": "2026-01-01T00:00:00.000Z",
            "fields": {
                "Status": "processing",
                "External Job ID": "job-1",
                "Request Payload": f'{{"operation": "{op.name}", "{op.payload_key}": "recTGTaaaaaaaaaaa"}}',
                "Created Time": "2026-01-01T00:00:00.000Z",
            },
        }
    )
    assert row.target is not None
    assert (row.target.table, row.target.record_id) == (op.target_table, "recTGTaaaaaaaaaaa")
    done = job(
        operation=op.name,
        target={"table": row.target.table, "recordId": row.target.record_id},
        status={"phase": "Completed", "outputUrl": "https://b.example/k/o.mp4"},
    )
    target_write = planned_writes(done)[0]
    assert target_write.table == op.target_table
    assert target_write.fields[op.attachment_field] == [{"url": "https://b.example/k/o.mp4"}]
    assert target_write.fields.get("Status") == op.target_status

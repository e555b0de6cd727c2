"""What the leader knows of Jobs rows: learned from REST rows, kept exact by webhook payloads."""

from typing import Any

import pytest

from controller.airtable_push import spec_covers, webhook_spec
from controller.jobrows import DELETED, KnownRows, RowFacts, facts_from_rest, merge_payload_cells

IDS = {"Status": "fldS", "External Job ID": "fldE", "Notes": "fldN"}
KNOWN = RowFacts("processing", "job-1", "first line")


@pytest.mark.parametrize(
    ("prior", "cells", "expected"),
    [
        (KNOWN, {"fldN": "first line\nby hand"}, RowFacts("processing", "job-1", "first line\nby hand")),
        (KNOWN, {"fldS": {"id": "sel1", "name": "failed"}}, RowFacts("failed", "job-1", "first line")),
        (KNOWN, {"fldN": None}, RowFacts("processing", "job-1", None)),  # cleared
        (KNOWN, {"fldX": "another field"}, KNOWN),  # nothing the write-back reads changed
        (None, {"fldS": "processing", "fldE": "job-2"}, None),  # Notes never seen: unknown
        (None, {"fldS": "processing", "fldE": "job-2", "fldN": ""}, RowFacts("processing", "job-2", None)),
    ],
)
def test_merge_payload_cells(
    prior: RowFacts | None, cells: dict[str, Any], expected: RowFacts | None
) -> None:
    assert merge_payload_cells(prior, cells, IDS) == expected


def test_a_rest_row_leaves_empty_cells_out() -> None:
    assert facts_from_rest({"Status": "processing"}) == RowFacts("processing", None, None)
    assert facts_from_rest({"Status": "completed", "Notes": "x"}).as_row() == {
        "Status": "completed",
        "Notes": "x",
    }


def payload(table: dict[str, Any]) -> dict[str, Any]:
    return {"changedTablesById": {"tblJobs": table}}


def test_payloads_apply_in_order_and_deleted_rows_are_known_as_deleted() -> None:
    rows = KnownRows()
    rows.learn_rest(
        [{"id": "recA", "fields": {"Status": "processing", "External Job ID": "a"}}, {"id": "recB"}]
    )
    rows.learn_payloads(
        [
            payload({"changedRecordsById": {"recA": {"current": {"cellValuesByFieldId": {"fldN": "one"}}}}}),
            payload({"changedRecordsById": {"recA": {"current": {"cellValuesByFieldId": {"fldN": "two"}}}}}),
            payload({"destroyedRecordIds": ["recC"]}),
            {"changedTablesById": {"tblOther": {"destroyedRecordIds": ["recA"]}}},  # another table
            None,  # junk is skipped
        ],
        "tblJobs",
        IDS,
    )
    assert rows.as_of("recA") == RowFacts("processing", "a", "two")
    assert rows.as_of("recB") is None  # a REST record without fields is not learned
    known_c = rows.as_of("recC")
    assert known_c == RowFacts(DELETED, None, None)
    assert known_c.as_row() is None


def test_a_created_row_without_every_field_stays_unknown_until_read() -> None:
    rows = KnownRows()
    rows.learn_payloads(
        [payload({"createdRecordsById": {"recN": {"cellValuesByFieldId": {"fldS": "processing"}}}})],
        "tblJobs",
        IDS,
    )
    assert rows.as_of("recN") is None


def test_memory_is_bounded_oldest_first() -> None:
    rows = KnownRows(max_rows=2)
    for rid in ("recA", "recB", "recA", "recC"):
        rows.learn(rid, KNOWN)
    assert (rows.as_of("recA"), rows.as_of("recB"), len(rows)) == (KNOWN, None, 2)


WANT = webhook_spec("tblJobs", {"Status": "fldS", "Notes": "fldN"})


@pytest.mark.parametrize(
    ("have", "adopted"),
    [
        (WANT, True),
        ({"options": {"filters": {"dataTypes": ["tableData"], "recordChangeScope": "tblJobs"}}}, True),  # all
        (  # an earlier version's webhook: it does not watch Notes
            {
                "options": {
                    "filters": {
                        "dataTypes": ["tableData"],
                        "recordChangeScope": "tblJobs",
                        "watchDataInFieldIds": ["fldS"],
                    }
                }
            },
            False,
        ),
        ({"options": {"filters": {"dataTypes": ["tableData"], "recordChangeScope": "tblOther"}}}, False),
        ({"options": {"filters": {"dataTypes": ["tableFields"], "recordChangeScope": "tblJobs"}}}, False),
        (
            {
                "options": {
                    "filters": {
                        "dataTypes": ["tableData"],
                        "recordChangeScope": "tblJobs",
                        "changeTypes": ["add"],
                    }
                }
            },
            False,
        ),
        (None, False),
        ({"options": []}, False),
    ],
)
def test_which_webhooks_may_be_adopted(have: Any, adopted: bool) -> None:
    assert spec_covers(have, WANT) is adopted

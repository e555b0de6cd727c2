import json
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.rows import RowError, Target, parse_job_row

REC = "recJOBaaaaaaaaaaa"
SEG = "recSEGaaaaaaaaaaa"
VID = "recVIDaaaaaaaaaaa"
JOB = "d0451a2c-fe2a-4cb9-8740-bfd1a0b36aba"


def row(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Status": "processing",
        "External Job ID": JOB,
        "Request Payload": json.dumps({"operation": "combine", "segment_id": SEG}),
        "Created Time": "2026-11-28T17:41:05.000Z",
    }
    base.update(fields)
    return {
        "id": REC,
        "createdTime": "2026-11-28T17:41:05.000Z",
        "fields": {k: v for k, v in base.items() if v is not None},
    }


def test_a_good_row() -> None:
    parsed = parse_job_row(row())
    assert parsed.record_id == REC
    assert parsed.external_job_id == JOB
    assert parsed.operation == "combine"
    assert parsed.submitted_at == datetime(2026, 11, 28, 17, 41, 5, tzinfo=UTC)
    assert parsed.target == Target("Segments", SEG)


@pytest.mark.parametrize(
    ("fields", "target"),
    [
        ({"Segment": [SEG], "Request Payload": '{"operation": "combine"}'}, Target("Segments", SEG)),
        ({"Segment": ["recOTHERaaaaaaaaa"]}, Target("Segments", "recOTHERaaaaaaaaa")),  # link wins
        (
            {"Request Payload": json.dumps({"operation": "concatenate", "video_id": VID})},
            Target("Videos", VID),
        ),
        ({"Video": [VID], "Request Payload": "{'operation': 'add_music'}"}, Target("Videos", VID)),
        ({"Request Payload": "{'operation': 'transcribe', 'segment_id': '" + SEG + "'}"}, None),
        ({"Request Payload": '{"operation": "combine"}'}, None),  # no target: only the Jobs row
    ],
)
def test_targets(fields: dict[str, Any], target: Target | None) -> None:
    assert parse_job_row(row(**fields)).target == target


def test_python_literal_payload_with_true_and_none() -> None:
    parsed = parse_job_row(
        row(
            **{
                "Request Payload": "{'operation': 'combine', 'x': True, 'y': None, 'segment_id': '"
                + SEG
                + "'}"
            }
        )
    )
    assert parsed.operation == "combine"


def test_created_time_falls_back_to_record_created_time() -> None:
    record = row(**{"Created Time": None})
    assert parse_job_row(record).submitted_at == datetime(2026, 11, 28, 17, 41, 5, tzinfo=UTC)


BAD: list[tuple[str, Any, str]] = [
    ("not a dict", ["rec"], "not a record object"),
    ("no id", {"fields": {}}, "record id"),
    ("bad id", {"id": "row-1", "fields": {}}, "record id"),
    ("no fields", {"id": REC}, "no fields object"),
    ("missing external id", row(**{"External Job ID": None}), "External Job ID"),
    ("blank external id", row(**{"External Job ID": "   "}), "is empty"),
    ("numeric external id", row(**{"External Job ID": 42}), "must be text"),
    ("path in external id", row(**{"External Job ID": "../../etc/passwd"}), "unsafe external job id"),
    ("slash in external id", row(**{"External Job ID": "a/b"}), "unsafe external job id"),
    ("space in external id", row(**{"External Job ID": "a b"}), "unsafe external job id"),
    ("long external id", row(**{"External Job ID": "a" * 129}), "unsafe external job id"),
    ("no payload", row(**{"Request Payload": None}), "Request Payload"),
    ("garbage payload", row(**{"Request Payload": "operation=combine"}), "neither a JSON object"),
    ("json list payload", row(**{"Request Payload": "[1, 2]"}), "must be an object"),
    ("json string payload", row(**{"Request Payload": '"combine"'}), "must be an object"),
    ("code in payload", row(**{"Request Payload": "__import__('os').system('id')"}), "neither a JSON object"),
    ("payload without operation", row(**{"Request Payload": '{"segment_id": "x"}'}), "no 'operation'"),
    ("numeric operation", row(**{"Request Payload": '{"operation": 7}'}), "no 'operation'"),
    ("huge payload", row(**{"Request Payload": "{" + " " * 100_001 + "}"}), "longer than"),
    ("bad created time", row(**{"Created Time": "yesterday"}), "ISO-8601"),
    ("bad segment link", row(Segment=["nope"]), "target"),
    (
        "bad video id in payload",
        row(**{"Request Payload": '{"operation": "concatenate", "video_id": "v1"}'}),
        "target",
    ),
    ("link is not a list", row(Segment=123), "link to another record"),
    ("status not text", row(Status=["processing"]), "must be text"),
    # Section 7: inputs that used to escape as RecursionError or OverflowError and end the mirror.
    (
        "deeply nested json payload",
        row(**{"Request Payload": '{"operation":"combine","x":' + "[" * 3000 + "]" * 3000 + "}"}),
        "nested deeper than",
    ),
    ("99,999 brackets", row(**{"Request Payload": "[" * 99_999}), "nested deeper than"),
    (
        "deeply nested python literal",
        row(**{"Request Payload": "{'operation': 'combine', 'x': " + "(" * 3000 + ")" * 3000 + "}"}),
        "nested deeper than",
    ),
    ("created in year 0", row(**{"Created Time": "0001-01-01T00:00:00+01:00"}), "is outside"),
    ("created in year 1", row(**{"Created Time": "0001-01-01T00:00:00Z"}), "is outside"),
    ("created in year 9999", row(**{"Created Time": "9999-12-31T23:59:59Z"}), "is outside"),
    ("created far behind", row(**{"Created Time": "9999-12-31T23:59:59-01:00"}), "is outside"),
    ("record id with a newline", {**row(), "id": REC + "\n"}, "record id"),
    ("segment link with a newline", row(Segment=[SEG + "\n"]), "target"),
    (
        "segment id with a newline",
        row(**{"Request Payload": json.dumps({"operation": "combine", "segment_id": SEG + "\n"})}),
        "target",
    ),
    ("external id with an inner newline", row(**{"External Job ID": "ab\ncd"}), "unsafe external job id"),
    ("external id longer than a label", row(**{"External Job ID": "a" * 64}), "unsafe external job id"),
]


@pytest.mark.parametrize(("case", "record", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_rows_give_a_typed_error_naming_the_record(case: str, record: Any, words: str) -> None:
    with pytest.raises(RowError) as info:
        parse_job_row(record)
    message = str(info.value)
    assert words in message
    if isinstance(record, dict) and record.get("id") == REC:
        assert info.value.record_id == REC
        assert REC in message


def test_literal_eval_is_used_not_eval(tmp_path: Any) -> None:
    marker = tmp_path / "pwned"
    payload = f"open({str(marker)!r}, 'w').write('x')"
    with pytest.raises(RowError):
        parse_job_row(row(**{"Request Payload": payload}))
    assert not marker.exists()

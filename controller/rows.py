"""Airtable Jobs row → the spec of a MediaJob, or a typed error that names the record.

Rows are written by several generations of code, by hand and by scripts, so nothing in them is
trusted: every field is checked, and `Request Payload` is parsed as JSON or as a Python literal
(with `ast.literal_eval`, never `eval`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from controller.naming import UnsafeIdError, check_external_job_id, check_record_id
from controller.vocabulary import (
    FIELD_CREATED,
    FIELD_EXTERNAL_ID,
    FIELD_NOTES,
    FIELD_REQUEST,
    FIELD_SEGMENT,
    FIELD_STATUS,
    FIELD_VIDEO,
    OPERATIONS,
)

# Only these fields are fetched by the mirror: less to transfer, less to trust.
MIRROR_FIELDS = (
    FIELD_STATUS,
    FIELD_EXTERNAL_ID,
    FIELD_REQUEST,
    FIELD_CREATED,
    FIELD_SEGMENT,
    FIELD_VIDEO,
    FIELD_NOTES,
)

_MAX_PAYLOAD = 100_000
# Real payloads nest two or three levels; a bound far above that keeps json and ast from
# recursing into a stack overflow on a hostile or broken row.
MAX_PAYLOAD_DEPTH = 32
# Any real Created Time lies well inside this window; outside it, date arithmetic (the job's
# deadline, its age) could overflow. The bounds leave room for POLLING_MAX_AGE_HOURS' maximum.
EARLIEST_SUBMITTED = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_SUBMITTED = datetime(2200, 1, 1, tzinfo=UTC)


class RowError(ValueError):
    """A Jobs row that cannot become a MediaJob; the row stays untouched apart from its Notes."""

    def __init__(self, record_id: str, field: str | None, reason: str) -> None:
        where = f" field {field!r}:" if field else ""
        super().__init__(f"Jobs row {record_id}:{where} {reason}")
        self.record_id = record_id
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    table: str  # logical table: "Segments" or "Videos"
    record_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class JobRow:
    record_id: str
    external_job_id: str
    operation: str
    submitted_at: datetime
    target: Target | None
    status: str


def parse_job_row(record: Any) -> JobRow:
    """Parse one record as pyairtable returns it: `{"id", "createdTime", "fields"}`."""
    if not isinstance(record, dict):
        raise RowError("<unknown>", None, f"not a record object: {type(record).__name__}")
    raw_id = record.get("id")
    try:
        record_id = check_record_id(raw_id if isinstance(raw_id, str) else "")
    except UnsafeIdError:
        raise RowError(
            "<unknown>", None, f"record id {str(raw_id)[:40]!r} is not an Airtable record id"
        ) from None
    fields = record.get("fields")
    if not isinstance(fields, dict):
        raise RowError(record_id, None, "record has no fields object")

    status = fields.get(FIELD_STATUS, "")
    if not isinstance(status, str):
        raise RowError(record_id, FIELD_STATUS, "must be text")

    external = fields.get(FIELD_EXTERNAL_ID)
    if external is None or (isinstance(external, str) and not external.strip()):
        raise RowError(record_id, FIELD_EXTERNAL_ID, "is empty")
    if not isinstance(external, str):
        raise RowError(record_id, FIELD_EXTERNAL_ID, "must be text")
    try:
        check_external_job_id(external.strip())
    except UnsafeIdError as exc:
        raise RowError(record_id, FIELD_EXTERNAL_ID, str(exc)) from None

    payload = parse_request_payload(record_id, fields.get(FIELD_REQUEST))
    operation = payload.get("operation")
    if not isinstance(operation, str) or not operation.strip():
        raise RowError(record_id, FIELD_REQUEST, "has no 'operation' text")
    operation = operation.strip()
    if len(operation) > 63:
        raise RowError(record_id, FIELD_REQUEST, "'operation' is longer than 63 characters")

    submitted = _parse_time(record_id, fields.get(FIELD_CREATED, record.get("createdTime")))
    return JobRow(
        record_id=record_id,
        external_job_id=external.strip(),
        operation=operation,
        submitted_at=submitted,
        target=_target(record_id, operation, fields, payload),
        status=status,
    )


def parse_request_payload(record_id: str, raw: Any) -> dict[str, Any]:
    """JSON first; older code wrote `str(dict)`, so a Python literal dict is accepted too."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise RowError(record_id, FIELD_REQUEST, "is empty")
    if not isinstance(raw, str):
        raise RowError(record_id, FIELD_REQUEST, f"must be text, not {type(raw).__name__}")
    if len(raw) > _MAX_PAYLOAD:
        raise RowError(record_id, FIELD_REQUEST, f"is longer than {_MAX_PAYLOAD} characters")
    if nesting_depth(raw) > MAX_PAYLOAD_DEPTH:
        raise RowError(record_id, FIELD_REQUEST, f"is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    value: Any
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError, MemoryError):
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, OverflowError):
            raise RowError(
                record_id, FIELD_REQUEST, "is neither a JSON object nor a Python dict literal"
            ) from None
    if not isinstance(value, dict):
        raise RowError(record_id, FIELD_REQUEST, f"must be an object, not {type(value).__name__}")
    return value


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside string literals, counted before any parser recurses."""
    depth = deepest = 0
    quote = ""  # the open string's quote character, or "#" inside a Python comment
    escaped = False
    for ch in text:
        if quote:
            if ch == "\n":  # neither JSON nor a one-line Python string spans lines
                quote, escaped = "", False
            elif escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
        elif ch in "\"'#":
            quote = ch
        elif ch in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]})":
            depth = max(depth - 1, 0)
    return deepest


def submitted_in_range(moment: datetime) -> bool:
    """True when a submission time is plausible and safe for date arithmetic."""
    return EARLIEST_SUBMITTED <= moment < LATEST_SUBMITTED


def _parse_time(record_id: str, raw: Any) -> datetime:
    if not isinstance(raw, str) or not raw.strip():
        raise RowError(record_id, FIELD_CREATED, "is empty")
    text = raw.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise RowError(record_id, FIELD_CREATED, f"is not an ISO-8601 time: {text!r:.40}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    with contextlib.suppress(OverflowError):  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        parsed = parsed.astimezone(UTC)
    if not submitted_in_range(parsed):
        raise RowError(
            record_id,
            FIELD_CREATED,
            f"is outside {EARLIEST_SUBMITTED.year}-{LATEST_SUBMITTED.year - 1}: {text!r:.40}",
        )
    return parsed


def _target(record_id: str, operation: str, fields: dict[str, Any], payload: dict[str, Any]) -> Target | None:
    """The row that receives the output: the link field first, the payload's id second."""
    known = OPERATIONS.get(operation)
    if known is None:
        return None
    field = known.link_field
    link = fields.get(field)
    candidate: Any = None
    if isinstance(link, list) and link:
        candidate = link[0]
    elif isinstance(link, str) and link:
        candidate = link
    elif link not in (None, [], ""):
        raise RowError(record_id, field, "must be a link to another record")
    if candidate is None:
        candidate = payload.get(known.payload_key)
        field = FIELD_REQUEST
        if candidate is None:
            return None
    try:
        return Target(table=known.target_table, record_id=check_record_id(candidate))
    except UnsafeIdError as exc:
        raise RowError(record_id, field, f"target {exc}") from None


def append_note(existing: Any, line: str) -> str:
    """Notes is appended to, never replaced (contract section 4): the row's history is the app's."""
    text = existing.rstrip() if isinstance(existing, str) else ""
    return f"{text}\n{line}" if text else line

"""Names and URLs derived from a job: the resource name and the expected Spaces object.

Both are pure so that the mirror, the webhook receiver, the CLI and the benchmark agree on them.
"""

from __future__ import annotations

import re

from controller.vocabulary import OPERATIONS

# Matched whole with `fullmatch`: `$` would also match before a trailing newline.
RECORD_ID = re.compile(r"rec[A-Za-z0-9]{14}")
# A label value (contract section 1): 1-63 characters, alphanumeric at both ends.
EXTERNAL_JOB_ID = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?")
_NAME = re.compile(r"rec([a-z0-9]{14})-([0-9a-f]{4})")


class UnsafeIdError(ValueError):
    """An id that could escape a URL path or a label, refused before any use."""


def check_record_id(record_id: str) -> str:
    if not isinstance(record_id, str) or not RECORD_ID.fullmatch(record_id):
        raise UnsafeIdError(f"not an Airtable record id (rec + 14 letters or digits): {record_id!r:.60}")
    return record_id


def check_external_job_id(job_id: str) -> str:
    """NCA job ids end up in object keys and label values, so only a safe charset is accepted."""
    if not isinstance(job_id, str) or not EXTERNAL_JOB_ID.fullmatch(job_id) or ".." in job_id:
        raise UnsafeIdError(
            "unsafe external job id (1-63 of A-Z a-z 0-9 . _ -, alphanumeric at both ends,"
            f" no '..'): {job_id!r:.60}"
        )
    return job_id


def resource_name(record_id: str) -> str:
    """`recAbC...` → `recabc...-XXXX`: lower-cased, plus the upper-case positions as hex.

    Kubernetes names are lower case and Airtable ids are not, so the case pattern is kept
    in a 14-bit mask: the name is deterministic, reversible and distinct for ids that differ
    only in letter case.
    """
    check_record_id(record_id)
    tail = record_id[3:]
    mask = sum(1 << i for i, ch in enumerate(tail) if ch.isupper())
    return f"rec{tail.lower()}-{mask:04x}"


def record_id_from_name(name: str) -> str | None:
    match = _NAME.fullmatch(name)
    if not match:
        return None
    tail, mask = match.group(1), int(match.group(2), 16)
    if mask >> len(tail):
        return None
    if any(ch.isdigit() and mask & (1 << i) for i, ch in enumerate(tail)):
        return None
    return "rec" + "".join(ch.upper() if mask & (1 << i) else ch for i, ch in enumerate(tail))


def expected_output_url(
    spaces_base_url: str, operation: str, external_job_id: str, override: str | None = None
) -> str | None:
    """The URL NCA uploads to; None when the operation's key is unknown (ask NCA instead)."""
    if override:
        return override
    known = OPERATIONS.get(operation)
    if known is None:
        return None
    key = known.output_key.format(job_id=check_external_job_id(external_job_id))
    return f"{spaces_base_url.rstrip('/')}/{key}"

"""Builders shared by the unit tests."""

from datetime import UTC, datetime, timedelta
from typing import Any

from controller.model import MediaJob

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
JOB_ID = "d0451a2c-fe2a-4cb9-8740-bfd1a0b36aba"
RECORD = "recJOBaaaaaaaaaaa"
SEGMENT = "recSEGaaaaaaaaaaa"
VIDEO = "recVIDaaaaaaaaaaa"


def job(
    *,
    age: timedelta = timedelta(minutes=10),
    operation: str = "combine",
    status: dict[str, Any] | None = None,
    target: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    generation: int = 1,
    resubmitted_at: str | None = None,
) -> MediaJob:
    if target is None:
        target = (
            {"table": "Segments", "recordId": SEGMENT}
            if operation == "combine"
            else {"table": "Videos", "recordId": VIDEO}
        )
    return MediaJob.from_object(
        {
            "metadata": {
                "name": "recjobaaaaaaaaaaa-0007",
                "namespace": "media",
                "uid": "u-1",
                "resourceVersion": "100",
                "generation": generation,
                "annotations": annotations or {},
            },
            "spec": {
                "airtableRecordId": RECORD,
                "externalJobId": JOB_ID,
                "operation": operation,
                "submittedAt": (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "target": target,
                **({"resubmittedAt": resubmitted_at} if resubmitted_at else {}),
            },
            "status": status or {},
        }
    )

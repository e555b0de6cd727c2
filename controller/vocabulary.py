"""The words the controller shares with its users and the systems around it, each spelt once.

The API names, labels and annotations; the condition types and reasons (as Flux keeps them in
`condition_types.go`), which status, the write-back, the alerts and `kubectl wait` all branch on,
so a misspelt string would silently never match; Airtable's field names; and one table of the
NCA operations this controller understands. Pure constants: every layer may import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

GROUP: Final = "media.phi.dev"
VERSION: Final = "v1alpha1"
PLURAL: Final = "mediajobs"
KIND: Final = "MediaJob"
LABEL_RECORD: Final = f"{GROUP}/airtable-record"
LABEL_EXTERNAL_ID: Final = f"{GROUP}/external-job-id"
ANNOTATION_RECHECK: Final = f"{GROUP}/recheck-requested-at"
ANNOTATION_AIRTABLE_PING: Final = f"{GROUP}/airtable-ping-at"

COMPONENT: Final = "mediajob-controller"  # the Events' source, the Notes' author, the managed-by value
MANAGED_BY: Final = ("app.kubernetes.io/managed-by", COMPONENT)


class Condition:
    """The condition types of a MediaJob's status (the contract's two, kstatus' two)."""

    READY: Final = "Ready"
    SYNCED: Final = "Synced"
    RECONCILING: Final = "Reconciling"
    STALLED: Final = "Stalled"


class Reason:
    """Every `reason` the controller writes into a status, a condition or an Event."""

    PROCESSING: Final = "Processing"
    RESUBMITTED: Final = "Resubmitted"
    COMPLETED: Final = "Completed"
    FAILED: Final = "Failed"
    TIMED_OUT: Final = "TimedOut"
    PENDING: Final = "Pending"  # ended, the write-back has not run yet
    AIRTABLE_UPDATED: Final = "AirtableUpdated"
    AIRTABLE_ERROR: Final = "AirtableError"
    ENDED_IN_AIRTABLE: Final = "EndedInAirtable"  # someone else ended the Jobs row: left as it is
    TARGET_REJECTED: Final = "TargetRejected"
    INVALID_SPEC: Final = "InvalidSpec"  # Events only, from here on
    CHECK_FAILING: Final = "CheckFailing"
    AIRTABLE_WRITE_FAILING: Final = "AirtableWriteFailing"


STALLED_REASONS: Final = (Reason.FAILED, Reason.TIMED_OUT, Reason.TARGET_REJECTED)

# Airtable's Jobs table (contract section 3)
FIELD_STATUS: Final = "Status"
FIELD_EXTERNAL_ID: Final = "External Job ID"
FIELD_REQUEST: Final = "Request Payload"
FIELD_RESPONSE: Final = "Response Payload"
FIELD_NOTES: Final = "Notes"
FIELD_CREATED: Final = "Created Time"
FIELD_SEGMENT: Final = "Segment"
FIELD_VIDEO: Final = "Video"
SEGMENTS: Final = "Segments"
VIDEOS: Final = "Videos"


@dataclasses.dataclass(frozen=True, slots=True)
class Operation:
    """What one NCA operation means for this controller, from its submission to its write-back."""

    name: str
    endpoint: str  # the NCA endpoint that runs it
    output_key: str  # the object key NCA uploads to, from `{job_id}`
    target_table: str  # the table whose row receives the output
    link_field: str  # the Jobs row's link to that row
    payload_key: str  # the Request Payload's key for that row's id, when the link is empty
    attachment_field: str  # the target row's field that gets the output
    target_status: str | None = None  # the target row's Status once it has the output


OPERATIONS: Final[Mapping[str, Operation]] = MappingProxyType(
    {
        op.name: op
        for op in (
            Operation(
                "combine",
                "/v1/ffmpeg/compose",
                "{job_id}_output_0.mp4",
                SEGMENTS,
                FIELD_SEGMENT,
                "segment_id",
                "Voiceover + Video",
                target_status="combined",
            ),
            Operation(
                "concatenate",
                "/v1/video/concatenate",
                "{job_id}.mp4",
                VIDEOS,
                FIELD_VIDEO,
                "video_id",
                "Combined Segments Video",
            ),
            Operation(
                "add_music", "/audio-mixing", "{job_id}.mp4", VIDEOS, FIELD_VIDEO, "video_id", "Video + Music"
            ),
        )
    }
)

"""One simulated world: Airtable, NCA and Spaces on loopback, and jobs seeded across all three.

The tests, the demo and the benchmark all build their scenarios here, so a job looks the same
everywhere: a Jobs row in `processing` linked to its Segment or Video row, an NCA job with a
timeline, and (when NCA finishes) an object on Spaces and an optional webhook.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from .airtable import AirtableSimulator
from .nca import AUDIO_MIXING, COMPOSE, CONCATENATE, NcaSimulator
from .spaces import SpacesSimulator

ENDPOINT_BY_OPERATION = {"combine": COMPOSE, "concatenate": CONCATENATE, "add_music": AUDIO_MIXING}
TABLE_BY_OPERATION = {"combine": "Segments", "concatenate": "Videos", "add_music": "Videos"}
LINK_FIELD = {"Segments": "Segment", "Videos": "Video"}
PAYLOAD_KEY = {"Segments": "segment_id", "Videos": "video_id"}

AIRTABLE_KEY = "patSandboxWorld.0123456789abcdef"
NCA_KEY = "nca-sandbox-world-key-0123"
BASE_ID = "appSANDBOXworld01"
# The base's schema as contract section 4 gives it: a real base has every field before any row
# uses it, and the webhooks API (and its field ids) needs the schema from the start.
SCHEMA = {
    "Jobs": (
        "Status",
        "External Job ID",
        "Request Payload",
        "Response Payload",
        "Notes",
        "Created Time",
        "Segment",
        "Video",
    ),
    "Segments": ("Name", "Status", "Voiceover + Video"),
    "Videos": ("Name", "Combined Segments Video", "Video + Music"),
}


@dataclasses.dataclass(frozen=True)
class SeededJob:
    record_id: str
    job_id: str
    operation: str
    target_table: str | None
    target_id: str | None
    output_url: str | None  # where NCA will upload, when it does


class World:
    def __init__(
        self,
        *,
        airtable_rate_limit: float = 5.0,
        airtable_penalty_s: float = 30.0,
        spaces_missing_status: int = 404,
        base_id: str = BASE_ID,
        host: str = "127.0.0.1",
        ports: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        self.base_id = base_id
        self.host = host
        self._nca_port = ports[1]
        self.spaces = SpacesSimulator(missing_status=spaces_missing_status, host=host, port=ports[2])
        self.airtable = AirtableSimulator(
            AIRTABLE_KEY,
            rate_limit_per_s=airtable_rate_limit,
            penalty_s=airtable_penalty_s,
            host=host,
            port=ports[0],
        )
        for table, fields in SCHEMA.items():
            self.airtable.set_schema(base_id, table, fields)
        self.nca: NcaSimulator | None = None
        self.jobs: list[SeededJob] = []

    async def start(self) -> World:
        await self.spaces.start()
        await self.airtable.start()
        self.nca = NcaSimulator(
            NCA_KEY,
            spaces=self.spaces,
            spaces_base_url=self.spaces.base_url,
            host=self.host,
            port=self._nca_port,
        )
        await self.nca.start()
        return self

    async def stop(self) -> None:
        if self.nca is not None:
            await self.nca.stop()
        await self.airtable.stop()
        await self.spaces.stop()

    async def __aenter__(self) -> World:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def nca_sim(self) -> NcaSimulator:
        if self.nca is None:
            raise RuntimeError("the world is not started")
        return self.nca

    def env(self, **extra: str) -> dict[str, str]:
        """The controller's environment (contract section 5) pointing at this world."""
        env = {
            "AIRTABLE_API_KEY": AIRTABLE_KEY,
            "AIRTABLE_BASE_ID": self.base_id,
            "AIRTABLE_API_URL": self.airtable.url,
            "NCA_API_URL": self.nca_sim.url,
            "NCA_API_KEY": NCA_KEY,
            "SPACES_BASE_URL": self.spaces.base_url,
        }
        env.update(extra)
        return env

    def add_job(
        self,
        operation: str = "combine",
        *,
        created: datetime | None = None,
        job_id: str | None = None,
        link: bool = True,
        webhook_url: str | None = None,
        register_in_nca: bool = True,
        **nca: Any,
    ) -> SeededJob:
        """A Jobs row in `processing`, its target row, and the NCA job (timeline in `nca`)."""
        table = TABLE_BY_OPERATION.get(operation)
        target_id = None
        if table is not None:
            fields: dict[str, Any] = {"Name": f"{operation} target"}
            if table == "Segments":
                fields["Status"] = "pending"
            target_id = self.airtable.add_record(self.base_id, table, fields)
        nca_job = None
        if register_in_nca:
            nca_job = self.nca_sim.add_job(
                job_id,
                endpoint=ENDPOINT_BY_OPERATION.get(operation, CONCATENATE),
                webhook_url=webhook_url,
                **nca,
            )
            job_id = nca_job.job_id
        if job_id is None:
            raise ValueError("a job that NCA does not know still needs a job_id")
        payload: dict[str, Any] = {"operation": operation}
        row: dict[str, Any] = {
            "Status": "processing",
            "External Job ID": job_id,
            "Created Time": (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        }
        if table is not None and target_id is not None:
            if link:
                row[LINK_FIELD[table]] = [target_id]
            else:
                payload[PAYLOAD_KEY[table]] = target_id
        row["Request Payload"] = json.dumps(payload)
        record_id = self.airtable.add_record(self.base_id, "Jobs", row, created_time=created)
        if nca_job is not None:
            nca_job.caller_id = record_id
        urls = self.nca_sim.output_urls_for(nca_job) if nca_job is not None else []
        job = SeededJob(record_id, job_id, operation, table, target_id, urls[0] if urls else None)
        self.jobs.append(job)
        return job

    def jobs_row(self, job: SeededJob) -> dict[str, Any]:
        return self.airtable.get_fields(self.base_id, "Jobs", job.record_id)

    def target_row(self, job: SeededJob) -> dict[str, Any]:
        if job.target_table is None or job.target_id is None:
            return {}
        return self.airtable.get_fields(self.base_id, job.target_table, job.target_id)

    def writes(self, job: SeededJob) -> int:
        """Write requests that touched the job's rows (Jobs and target)."""
        count = self.airtable.writes_for(job.record_id)
        return count + (self.airtable.writes_for(job.target_id) if job.target_id else 0)

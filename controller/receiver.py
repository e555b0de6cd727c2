"""The NCA webhook's meaning: a payload becomes a transition through the shared state machine.

`http.py` owns the transport (the token, the body limits, the answer budget); this module owns
what a webhook says about a job, the early webhook that beats the mirror included.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from typing import Any

from controller import logs
from controller.clients.airtable import AirtableClient
from controller.clients.kube import KubeClient, KubeError
from controller.decide import Ignore, Wait, decide_webhook
from controller.metrics import Metrics
from controller.mirror import ensure_mediajob
from controller.model import InvalidResource, MediaJob, utcnow
from controller.naming import RECORD_ID, UnsafeIdError, check_external_job_id, resource_name
from controller.observations import PayloadError, parse_result_payload
from controller.rows import MAX_PAYLOAD_DEPTH, MIRROR_FIELDS, RowError, nesting_depth, parse_job_row
from controller.store import JobStore
from controller.transitions import Transitions
from controller.vocabulary import LABEL_EXTERNAL_ID

log = logging.getLogger(__name__)
AIRTABLE_BASE_RATE = 5.0  # requests per second per base: Airtable's documented limit


def adoption_interval(leader_rate: float) -> float | None:
    """Seconds between two early-webhook row reads on one replica, or None for none at all.

    A follower's reads do not pass the leader's limiter, so they get what the leader leaves free
    of the base's 5 requests a second (the leader spends AIRTABLE_REQUESTS_PER_SECOND): one read
    every 2 s at the default 4.5. One base, one budget: with no room left, early webhooks are left
    to the mirror and the poller. Pure.
    """
    spare = AIRTABLE_BASE_RATE - leader_rate
    return 1.0 / spare if spare >= 0.1 else None


class WebhookReceiver:
    """Turns one NCA webhook payload into a transition through the shared state machine.

    A webhook may beat the mirror (fast jobs finish in a second): then the receiver reads the
    Jobs row named by the payload's `id` and creates the MediaJob itself, exactly as the mirror
    would, and records the result on it. Airtable is still written only by the leader's
    write-back, fed by the watch, so there is one write per transition whichever path won.
    """

    def __init__(
        self,
        *,
        store: JobStore,
        kube: KubeClient,
        transitions: Transitions,
        metrics: Metrics,
        namespace: str | None,
        airtable: AirtableClient,
        home_namespace: str,
        jobs_table: str = "Jobs",
        leader_rate: float = 4.5,
    ) -> None:
        self._store = store
        self._kube = kube
        self._transitions = transitions
        self._metrics = metrics
        self._namespace = namespace
        self._airtable = airtable
        self._jobs_table = jobs_table
        self._home = home_namespace
        self._next_adoption = 0.0
        self._adoption_interval = adoption_interval(leader_rate)

    async def receive(self, payload: dict[str, Any], arrived: datetime) -> tuple[int, str]:
        """Returns (HTTP status, result word) for a payload whose shape was already checked."""
        job_id, record_id = payload["job_id"], payload["id"]
        outcome = parse_result_payload(payload)
        jobs = await self._find(job_id)
        if not jobs:
            early = await self._adopt(record_id, job_id)
            if early is None:
                self._metrics.webhooks.labels(result="unknown_job").inc()
                log.info(
                    "webhook for NCA job %s: record %.20r is not a processing Jobs row for it;"
                    " acknowledged, nothing created",
                    job_id,
                    record_id,
                )
                return 202, "unknown-job"
            jobs = [early]
        matching = [j for j in jobs if j.spec.airtable_record_id == record_id]
        if not matching:
            self._metrics.webhooks.labels(result="id_mismatch").inc()
            log.warning(
                "webhook for NCA job %s names record %s, which is not the job's record", job_id, record_id
            )
            return 409, "record-mismatch"
        job = matching[0]
        decision = decide_webhook(job, outcome)
        if isinstance(decision, Ignore | Wait):
            self._metrics.webhooks.labels(result="already_ended").inc()
            logs.for_job(log, job).info("webhook after the job ended (%s): acknowledged", job.status.phase)
            return 200, "already-ended"
        updated = await self._transitions.apply(
            job, decision, checks=job.status.checks, detected_from=arrived
        )
        result = "recorded" if updated is not None else "already-ended"
        self._metrics.webhooks.labels(result=result.replace("-", "_")).inc()
        return 200, result

    async def _adopt(self, record_id: str, job_id: str) -> MediaJob | None:
        """An early webhook: create the job's MediaJob from its Jobs row, if that row is processing."""
        if not RECORD_ID.fullmatch(record_id):
            return None
        now = time.monotonic()
        interval = self._adoption_interval
        if interval is None or self._airtable.paused_for > 0 or now < self._next_adoption:
            # A follower's row reads are not paced together with the leader's: queued or in a
            # burst, they push the base over 5 requests per second and start a 30 s penalty,
            # which makes the mirror lag and more webhooks early (found by the chaos soak). So at
            # most one read per `adoption_interval` (the share the leader leaves free), none
            # while paused, and never a queue: the mirror and the poller still find the job.
            log.info("webhook for NCA job %s before the mirror: Airtable busy, left to polling", job_id)
            return None
        self._next_adoption = now + interval
        rows = await self._airtable.get_records(self._jobs_table, [record_id], fields=MIRROR_FIELDS)
        fields = rows.get(record_id)
        if fields is None:
            return None
        try:
            row = parse_job_row({"id": record_id, "fields": fields})
        except RowError:
            return None  # the mirror writes the row's Note
        if row.status != "processing" or row.external_job_id != job_id:
            return None  # ended, or an earlier attempt's result
        name = resource_name(record_id)
        job = self._store.get((self._home, name))
        for _ in range(2):  # a second look only after losing the race to create it
            ensured = await ensure_mediajob(self._kube, self._home, row, job, now=utcnow())
            if ensured.raw is not None:
                job = MediaJob.from_object(ensured.raw)
            elif ensured.action == "raced" and job is None:  # the mirror was just faster
                job = MediaJob.from_object(await self._kube.get_mediajob(self._home, name))
                continue
            break
        if job is None or job.spec.external_job_id != job_id:
            return None  # not ours to re-submit, or changed meanwhile: polling finds it
        self._store.put(job)
        logs.for_job(log, job).info("webhook arrived before the mirror: took the job from its Jobs row")
        return job

    async def _find(self, job_id: str) -> list[MediaJob]:
        jobs = self._store.find_external(job_id)
        if jobs:
            return jobs
        # The watch may lag a just-created job: ask the API server before saying "unknown".
        try:
            items = await self._kube.list_mediajobs(
                self._namespace, label_selector=f"{LABEL_EXTERNAL_ID}={job_id}"
            )
        except KubeError as exc:
            log.warning("could not look up NCA job %s: %s", job_id, exc)
            return []
        found = []
        for item in items:
            try:
                found.append(MediaJob.from_object(item))
            except InvalidResource:
                continue
        return found


def parse_body(raw: bytes) -> Any:
    """JSON with its nesting bounded first, so that no body can overflow the parser's stack."""
    if nesting_depth(raw.decode("utf-8", "replace")) > MAX_PAYLOAD_DEPTH:
        raise PayloadError(f"body is nested deeper than {MAX_PAYLOAD_DEPTH} levels")
    try:
        return json.loads(raw)
    except (RecursionError, MemoryError):  # not expected after the bound; still the body's fault
        raise PayloadError("body is not valid JSON") from None


def check_payload(body: Any) -> dict[str, Any]:
    """The webhook's minimal shape (contract section 4); raises PayloadError with the reason."""
    if not isinstance(body, dict):
        raise PayloadError("body must be a JSON object")
    for field in ("job_id", "id"):
        if not isinstance(body.get(field), str) or not body[field]:
            raise PayloadError(f"'{field}' must be a non-empty string")
    try:
        check_external_job_id(body["job_id"])
    except UnsafeIdError as exc:
        raise PayloadError(str(exc)) from None
    parse_result_payload(body)
    return body

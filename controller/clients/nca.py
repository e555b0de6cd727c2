"""The NCA toolkit's job-status API: its two requests, answered as `controller.observations` values.

Transport failures and HTTP errors become `NcaUnknown` here; the bodies are parsed there.
"""

from __future__ import annotations

from typing import Any

import httpx

from controller.clients import RequestObserver, ignore_request
from controller.naming import check_external_job_id
from controller.observations import (
    NcaListing,
    NcaNotFound,
    NcaStatus,
    NcaUnknown,
    parse_listing_body,
    parse_status_body,
)

SYSTEM = "nca"
STATUS_PATH = "/v1/toolkit/job/status"
LISTING_PATH = "/v1/toolkit/jobs/status"


class NcaClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_connections: int = 10,
        observe: RequestObserver = ignore_request,
    ) -> None:
        self._observe = observe
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"X-API-Key": api_key, "User-Agent": "mediajob-controller"},
            follow_redirects=False,
        )

    async def close(self) -> None:
        await self._http.aclose()

    async def job_status(self, job_id: str) -> NcaStatus:
        check_external_job_id(job_id)
        answer = await self._post(STATUS_PATH, {"job_id": job_id})
        if isinstance(answer, NcaUnknown | NcaNotFound):
            return answer
        return parse_status_body(answer)

    async def jobs_listing(self, since_seconds: float) -> NcaListing | NcaUnknown:
        """Every job whose file changed within `since_seconds`, in the jobs folder that all of the
        container's workers share."""
        answer = await self._post(LISTING_PATH, {"since_seconds": max(1, round(since_seconds))})
        if isinstance(answer, NcaNotFound):
            # Each listing writes its own job file before it reads the folder, so a 404 ("Jobs
            # directory not found") is never "no jobs yet": the folder went missing (a volume?).
            return NcaUnknown("listing answered HTTP 404: NCA's jobs folder is missing")
        if isinstance(answer, NcaUnknown):
            return answer
        return parse_listing_body(answer)

    async def _post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON answer of a 200, else what went wrong; NCA records each call on its disk."""
        try:
            response = await self._http.post(path, json=body)
        except httpx.TimeoutException:
            self._observe(SYSTEM, "timeout")
            return NcaUnknown("timeout")
        except httpx.TransportError as exc:
            self._observe(SYSTEM, "connection")
            return NcaUnknown(f"connection error: {type(exc).__name__}")
        self._observe(SYSTEM, str(response.status_code))
        status = response.status_code
        if status == 404:
            return NcaNotFound()
        if status == 401:
            return NcaUnknown("NCA rejected the API key (HTTP 401)")
        if status != 200:
            return NcaUnknown(f"HTTP {status}")
        try:
            return response.json()
        except (ValueError, RecursionError, MemoryError):  # a deeply nested answer overflows the parser
            return NcaUnknown("status answer is not JSON")

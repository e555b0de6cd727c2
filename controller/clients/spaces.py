"""DigitalOcean Spaces (S3-compatible): does the expected output object exist yet?

The URLs checked here come partly from outside (NCA payloads, hand-written specs), so every URL
is matched against the configured bucket before a request is made: this client can never be
turned into a tool that probes other hosts.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urlsplit

import httpx

from controller.budget import SpacesBudget
from controller.clients import RequestObserver, ignore_request
from controller.observations import (
    ObjectFound,
    ObjectMissing,
    SpacesResult,
    SpacesUnknown,
    parse_http_date,
    parse_size,
)

SYSTEM = "spaces"


class UnsafeUrlError(ValueError):
    """A URL outside the configured bucket; refused before any request."""


class SpacesClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        max_connections: int = 20,
        observe: RequestObserver = ignore_request,
        budget: SpacesBudget | None = None,
    ) -> None:
        base = urlsplit(base_url)
        if base.scheme not in ("http", "https") or not base.hostname:
            raise ValueError("the Spaces base URL must be an http(s) URL with a host")
        self._scheme = base.scheme
        self._netloc = base.netloc.lower()
        self._prefix = base.path.rstrip("/") + "/"
        self._observe = observe
        self._budget = budget
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            headers={"User-Agent": "mediajob-controller"},
        )

    async def close(self) -> None:
        await self._http.aclose()

    def check_url(self, url: str) -> str:
        """Accept only URLs in the configured bucket, with the configured scheme and host."""
        parts = urlsplit(url)
        if parts.scheme != self._scheme:
            raise UnsafeUrlError(
                f"refused URL with scheme {parts.scheme!r}: only {self._scheme!r} is allowed"
            )
        if parts.netloc.lower() != self._netloc or parts.username or parts.password:
            raise UnsafeUrlError(
                f"refused URL to host {parts.hostname!r}: only the Spaces bucket host is allowed"
            )
        if parts.query or parts.fragment:
            raise UnsafeUrlError("refused URL with a query or fragment")
        path = unquote(parts.path)
        segments = path.split("/")
        if ".." in segments or "." in segments or "\\" in path or "\x00" in path:
            raise UnsafeUrlError("refused URL with a '..' or '.' path segment")
        if (
            not path.startswith(self._prefix)
            or posixpath.normpath(path) + ("/" if path.endswith("/") else "") != path
        ):
            raise UnsafeUrlError("refused URL outside the configured bucket path")
        if len(path) == len(self._prefix):
            raise UnsafeUrlError("refused URL without an object key")
        return url

    async def head(self, url: str) -> SpacesResult:
        """HEAD the object. Raises UnsafeUrlError before any request for a foreign URL."""
        self.check_url(url)
        if self._budget is not None:
            await self._budget.acquire()
        try:
            response = await self._http.head(url)
        except httpx.TimeoutException:
            self._observe(SYSTEM, "timeout")
            return SpacesUnknown(url, "timeout")
        except httpx.TransportError as exc:
            self._observe(SYSTEM, "connection")
            return SpacesUnknown(url, f"connection error: {type(exc).__name__}")
        self._observe(SYSTEM, str(response.status_code))
        status = response.status_code
        if status == 200:
            headers = response.headers
            return ObjectFound(
                url, parse_http_date(headers.get("Last-Modified")), parse_size(headers.get("Content-Length"))
            )
        if status in (403, 404):
            return ObjectMissing(url, status)
        if status == 503:
            if self._budget is not None:
                self._budget.slow_down()
            return SpacesUnknown(url, "503 Slow Down")
        return SpacesUnknown(url, f"HTTP {status}")

"""A public-read S3/DigitalOcean Spaces bucket on loopback.

NCA uploads outputs here; the controller HEADs them to learn a job finished
without asking NCA. Objects can be scheduled to appear at a wall-clock time, so
tests can check the "not there yet" and "appeared while we were waiting" cases.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from xml.sax.saxutils import escape

from aiohttp import web

from ._server import LoopbackServer

log = logging.getLogger(__name__)

_MISSING_CODES = {
    404: ("NoSuchKey", "The specified key does not exist."),
    403: ("AccessDenied", ""),
}


@dataclass
class SpacesObject:
    """An object as the simulated bucket holds it."""

    key: str
    size: int
    at: float
    content_type: str
    etag: str

    @property
    def last_modified(self) -> str:
        return formatdate(self.at, usegmt=True)


class SpacesSimulator(LoopbackServer):
    """Path-style bucket at ``{url}/{bucket}/{key}``: HEAD and GET only, like a public bucket."""

    def __init__(
        self,
        bucket: str = "phi-bucket",
        *,
        missing_status: int = 404,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        if missing_status not in _MISSING_CODES:
            raise ValueError("missing_status must be 404 or 403")
        self.bucket = bucket
        self.missing_status = missing_status
        self.objects: dict[str, SpacesObject] = {}
        self.slowed_down = 0
        self._slow_down: list[tuple[int, str | None]] = []

    @property
    def base_url(self) -> str:
        """What the controller's SPACES_BASE_URL is set to."""
        return f"{self.url}/{self.bucket}"

    def url_for(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def put_object(
        self,
        key: str,
        size: int = 1234,
        at: float | None = None,
        content_type: str = "video/mp4",
    ) -> SpacesObject:
        """Store ``key``; it is visible from wall time ``at`` (default: now) on."""
        when = time.time() if at is None else at
        etag = hashlib.md5(f"{key}:{size}:{when}".encode(), usedforsecurity=False).hexdigest()
        obj = SpacesObject(key=key, size=size, at=when, content_type=content_type, etag=etag)
        self.objects[key] = obj
        return obj

    def delete_object(self, key: str) -> None:
        self.objects.pop(key, None)

    def exists(self, key: str, now: float | None = None) -> bool:
        obj = self.objects.get(key)
        return obj is not None and obj.at <= (time.time() if now is None else now)

    def slow_down_next(self, count: int, path_contains: str | None = None) -> None:
        """Answer the next ``count`` matching requests 503 SlowDown."""
        self._slow_down.append((count, path_contains))

    def head_count(self, key: str) -> int:
        """How many HEAD requests asked for ``key``."""
        path = f"/{self.bucket}/{key}"
        return sum(1 for r in self.requests if r.method == "HEAD" and r.path == path)

    def _setup_routes(self, app: web.Application) -> None:
        app.router.add_route("HEAD", "/{bucket}/{key:.+}", self._handle_object)
        app.router.add_route("GET", "/{bucket}/{key:.+}", self._handle_object)

    def _take_slow_down(self, path: str) -> bool:
        for index, (remaining, needle) in enumerate(self._slow_down):
            if needle is None or needle in path:
                if remaining <= 1:
                    del self._slow_down[index]
                else:
                    self._slow_down[index] = (remaining - 1, needle)
                return True
        return False

    async def _handle_object(self, request: web.Request) -> web.StreamResponse:
        head = request.method == "HEAD"
        bucket = request.match_info["bucket"]
        key = request.match_info["key"]
        if self._take_slow_down(request.path):
            self.slowed_down += 1
            log.debug("spaces: SlowDown for %s %s", request.method, key)
            return self._error(503, "SlowDown", "Please reduce your request rate.", key=None, head=head)
        if bucket != self.bucket:
            return self._error(
                404, "NoSuchBucket", "The specified bucket does not exist.", key=None, head=head
            )
        obj = self.objects.get(key)
        if obj is None or obj.at > time.time():
            code, message = _MISSING_CODES[self.missing_status]
            return self._error(self.missing_status, code, message, key=key, head=head)
        headers = {
            "Last-Modified": obj.last_modified,
            "ETag": f'"{obj.etag}"',
            "Content-Type": obj.content_type,
            "Accept-Ranges": "bytes",
            "x-amz-request-id": _request_id(),
        }
        if head:
            headers["Content-Length"] = str(obj.size)
            return web.Response(status=200, headers=headers)
        return web.Response(status=200, body=bytes(obj.size), headers=headers)

    def _error(self, status: int, code: str, message: str, *, key: str | None, head: bool) -> web.Response:
        request_id = _request_id()
        headers = {"x-amz-request-id": request_id}
        if head:
            return web.Response(status=status, headers=headers)
        parts = [f"<Code>{code}</Code>"]
        if message:
            parts.append(f"<Message>{escape(message)}</Message>")
        if key is not None:
            parts.append(f"<Key>{escape(key)}</Key>")
        parts.append(f"<BucketName>{escape(self.bucket)}</BucketName>")
        parts.append(f"<RequestId>{request_id}</RequestId>")
        body = '<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>"
        return web.Response(status=status, text=body, content_type="application/xml", headers=headers)


def _request_id() -> str:
    return f"tx{uuid.uuid4().hex[:21]}-{uuid.uuid4().hex[:10]}-nyc3c"

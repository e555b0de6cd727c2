"""The few Kubernetes API calls the controller makes itself, beside kopf's own watch.

kopf watches the MediaJobs; the status patches, the mirror's creates, the Lease and the Events go
through this client. It shares one login with kopf (`KubeLogin`: every kubeconfig kubectl takes,
or the pod's rotating service-account token), so there is one source of credentials, and it puts
a hard timeout on every call: the Lease must be able to give up before the renew deadline, which
the generated clients do not do by default.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import kopf

from controller.clients import RequestObserver, ignore_request
from controller.clients.login import KubeLogin
from controller.vocabulary import GROUP, PLURAL, VERSION

SYSTEM = "kubernetes"
log = logging.getLogger(__name__)


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API: HTTP {status}: {message}")
        self.status = status


class Conflict(KubeError):
    """409: someone else changed the object first (optimistic concurrency)."""


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class KubeUnavailable(KubeError):
    """No answer, a timeout or a 5xx: the API server may be back later."""


Login = Callable[[], kopf.ConnectionInfo]


def default_login() -> kopf.ConnectionInfo:
    """$KUBECONFIG, then the pod's service account, then ~/.kube/config (controller-runtime's order)."""
    return KubeLogin(in_cluster_first=True)()


class KubeClient:
    def __init__(
        self,
        login: Login = default_login,
        *,
        timeout: float = 10.0,
        observe: RequestObserver = ignore_request,
    ) -> None:
        self._login = login
        self._timeout = timeout
        self._observe = observe
        self._tmp = tempfile.TemporaryDirectory(prefix="mediajob-kube-")
        self.info = login()
        self._http = self._connect(self.info)

    @property
    def default_namespace(self) -> str | None:
        return self.info.default_namespace

    async def close(self) -> None:
        await self._http.aclose()
        self._tmp.cleanup()

    def login(self) -> kopf.ConnectionInfo:
        """Fresh credentials, for kopf's login handler too: after a 401 kopf asks again, and a
        cached answer would only repeat the 401."""
        self.info = self._login()
        self._http.headers.update(self.info.as_http_headers())
        return self.info

    # MediaJobs -----------------------------------------------------------------------------

    async def get_mediajob(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("GET", _path(PLURAL, namespace, name))

    async def _pages(
        self, namespace: str | None, params: dict[str, str], accept: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """The MediaJob list page by page (with `continue`), so a big list never sits in memory at once."""
        while True:
            page = await self._call("GET", _path(PLURAL, namespace), params=params, accept=accept)
            yield page
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params = {**params, "continue": token}

    async def iter_mediajobs(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        params = {"limit": "500"}
        if label_selector:
            params["labelSelector"] = label_selector
        async for page in self._pages(namespace, params):
            yield list(page.get("items") or [])

    async def list_mediajobs(
        self, namespace: str | None, *, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        async for page in self.iter_mediajobs(namespace, label_selector=label_selector):
            items.extend(page)
        return items

    async def list_mediajob_keys(self, namespace: str | None) -> tuple[set[tuple[str, str]], str]:
        """(namespace, name) of every MediaJob, and the list's resourceVersion; metadata only."""
        keys: set[tuple[str, str]] = set()
        accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
        snapshot = ""
        async for page in self._pages(namespace, {"limit": "1000"}, accept):
            for item in page.get("items") or []:
                meta = item.get("metadata") or {}
                keys.add((meta.get("namespace", ""), meta.get("name", "")))
            snapshot = snapshot or str((page.get("metadata") or {}).get("resourceVersion") or "")
        return keys, snapshot

    async def create_mediajob(self, body: Mapping[str, Any]) -> dict[str, Any]:
        namespace = body["metadata"]["namespace"]
        return await self._call("POST", _path(PLURAL, namespace), json=body)

    async def patch_mediajob_status(
        self, namespace: str, name: str, status: Mapping[str, Any], *, resource_version: str | None
    ) -> dict[str, Any]:
        """Merge-patch the status; with a resourceVersion it fails with Conflict if stale."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return await self._call("PATCH", _path(PLURAL, namespace, name) + "/status", json=body)

    async def patch_mediajob(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", _path(PLURAL, namespace, name), json=patch)

    async def delete_mediajob(self, namespace: str, name: str, *, uid: str, resource_version: str) -> None:
        """Delete exactly the version that was judged expired: a changed job answers 409."""
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid, "resourceVersion": resource_version},
            "propagationPolicy": "Background",
        }
        await self._call("DELETE", _path(PLURAL, namespace, name), json=body)

    # Events ----------------------------------------------------------------------------------

    async def post_event(
        self,
        ref: Mapping[str, str],
        *,
        type_: str,
        reason: str,
        message: str,
        component: str,
        host: str,
        now: datetime,
    ) -> None:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        micro = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        namespace = ref["namespace"]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{ref['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": dict(ref),
            "reason": reason,
            "message": message[:1024],
            "type": type_,
            "source": {"component": component, "host": host},
            "reportingComponent": component,
            "reportingInstance": host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": micro,
            "action": reason,
            "count": 1,
        }
        await self._call("POST", _path("events", namespace), json=body)

    # Leases ------------------------------------------------------------------------------------

    async def get_lease(self, namespace: str, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        return await self._call("GET", _path("leases", namespace, name), timeout=timeout)

    async def create_lease(
        self, namespace: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        return await self._call("POST", _path("leases", namespace), json=body, timeout=timeout)

    async def replace_lease(
        self, namespace: str, name: str, body: Mapping[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        """PUT with the body's resourceVersion: a stale read loses with Conflict."""
        return await self._call("PUT", _path("leases", namespace, name), json=body, timeout=timeout)

    # Secrets (the Airtable webhook's MAC secret and cursor) ---------------------------------------

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call("GET", _path("secrets", namespace, name))

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("POST", _path("secrets", namespace), json=body)

    async def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call("PATCH", _path("secrets", namespace, name), json=patch)

    # Plumbing ------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float | None = None,
        accept: str | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": accept} if accept else {}
        if method == "PATCH":  # every PATCH here is a JSON merge patch; httpx labels other JSON bodies
            headers["Content-Type"] = "application/merge-patch+json"
        expiration = self.info.expiration
        if expiration is not None and datetime.now(UTC) >= _aware(expiration):
            await asyncio.to_thread(self.login)
        for attempt in (1, 2):
            try:
                response = await self._http.request(
                    method,
                    path,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=timeout or self._timeout,
                )
            except httpx.TimeoutException:
                self._observe(SYSTEM, "timeout")
                raise KubeUnavailable(0, f"{method} {path}: timeout") from None
            except httpx.TransportError as exc:
                self._observe(SYSTEM, "connection")
                raise KubeUnavailable(0, f"{method} {path}: {type(exc).__name__}") from None
            self._observe(SYSTEM, str(response.status_code))
            if response.status_code != 401 or attempt == 2:
                break
            # Tokens rotate on disk and exec credentials expire: log in again once.
            await asyncio.to_thread(self.login)
        if response.status_code >= 300:
            raise _error(method, path, response)
        data = response.json()
        return data if isinstance(data, dict) else {}

    def _connect(self, info: kopf.ConnectionInfo) -> httpx.AsyncClient:
        context = ssl.create_default_context()
        if info.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif info.ca_path:
            context.load_verify_locations(cafile=str(info.ca_path))
        elif info.ca_data:
            context.load_verify_locations(cadata=_pem(info.ca_data).decode())
        cert = self._material("cert", info.certificate_path, info.certificate_data)
        key = self._material("key", info.private_key_path, info.private_key_data)
        if cert and key:
            context.load_cert_chain(cert, key)
        return httpx.AsyncClient(
            base_url=info.server.rstrip("/"),
            verify=context,
            headers={"Accept": "application/json", **info.as_http_headers()},
            timeout=self._timeout,
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    def _material(self, kind: str, path: Any, data: str | bytes | None) -> str | None:
        if path:
            return str(path)
        if not data:
            return None
        target = Path(self._tmp.name) / f"client.{kind}"
        target.write_bytes(_pem(data))
        target.chmod(0o600)
        return str(target)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _pem(data: str | bytes) -> bytes:
    """Kubeconfig `*-data` fields are base64 of PEM; accept raw PEM as well."""
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----") else base64.b64decode(raw)


def _error(method: str, path: str, response: httpx.Response) -> KubeError:
    try:
        body = response.json()
        message = body.get("message", "") if isinstance(body, dict) else ""
    except ValueError:
        message = response.text[:200]
    text = f"{method} {path}: {message}"
    status = response.status_code
    if status == 409:
        return Conflict(status, text)
    if status == 404:
        return NotFound(status, text)
    if status >= 500 or status == 429:
        return KubeUnavailable(status, text)
    return KubeError(status, text)


# The API group and version of each resource the client touches, by plural.
_GROUP_VERSION = {
    PLURAL: f"apis/{GROUP}/{VERSION}",
    "leases": "apis/coordination.k8s.io/v1",
    "secrets": "api/v1",
    "events": "api/v1",
}


def _path(plural: str, namespace: str | None, name: str | None = None) -> str:
    """Without a namespace, across all namespaces; each segment quoted."""
    scope = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    path = f"/{_GROUP_VERSION[plural]}{scope}/{plural}"
    return f"{path}/{quote(name, safe='')}" if name else path

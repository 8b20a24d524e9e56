"""A thin asyncio client for the few Kubernetes REST calls the operator makes.

Why not the ``kubernetes`` client: it is synchronous (every call would need a thread) and its generated
models add nothing for unstructured children. The operator uses the very credentials kopf logs in with
(a ``kopf.ConnectionInfo``, from ``kopf.login_via_client`` in production) and speaks plain REST through
aiohttp: GET, POST (create), PATCH (JSON merge patch). No PUT and no server-side apply are needed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import kopf

MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(Exception):
    """A request the API server refused; the message is the server's, which never holds Secret data."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def _materialise(data: str | bytes | None, suffix: str) -> str | None:
    """Write inline PEM data to a private temp file (ssl needs paths for client certificates)."""
    if data is None:
        return None
    raw = data.encode() if isinstance(data, str) else data
    if not raw.lstrip().startswith(b"-----"):
        raw = base64.b64decode(raw)
    fd, path = tempfile.mkstemp(prefix="usync-kube-", suffix=suffix)
    with os.fdopen(fd, "wb") as handle:
        handle.write(raw)
    return path


def ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    """The TLS settings for the API server described by ``info`` (False for plain http)."""
    if not info.server.startswith("https://"):
        return False
    if info.ca_data is not None:
        raw = info.ca_data.encode() if isinstance(info.ca_data, str) else info.ca_data
        pem = raw if raw.lstrip().startswith(b"-----") else base64.b64decode(raw)
        context = ssl.create_default_context(cadata=pem.decode())
    elif info.ca_path is not None:
        context = ssl.create_default_context(cafile=os.fsdecode(info.ca_path))
    else:
        context = ssl.create_default_context()
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = info.certificate_path or _materialise(info.certificate_data, ".crt")
    key = info.private_key_path or _materialise(info.private_key_data, ".key")
    if cert is not None:
        context.load_cert_chain(os.fsdecode(cert), os.fsdecode(key) if key is not None else None)
    return context


class KubeApi:
    """GET/POST/PATCH against the API server; counts requests by method (for metrics and benchmarks)."""

    def __init__(
        self,
        connection: Callable[[], kopf.ConnectionInfo | None],
        *,
        timeout: float = 30.0,
        limit: int = 32,
    ) -> None:
        self._connection = connection
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None
        self._session_info: kopf.ConnectionInfo | None = None
        self._lock = asyncio.Lock()
        self.requests: Counter[str] = Counter()

    async def _ensure(self) -> tuple[aiohttp.ClientSession, kopf.ConnectionInfo]:
        info = self._connection()
        if info is None:
            raise KubeApiError(0, "NotLoggedIn", "no Kubernetes credentials yet")
        async with self._lock:
            if self._session is None or self._session_info is not info:
                if self._session is not None:
                    await self._session.close()
                connector = aiohttp.TCPConnector(ssl=ssl_context(info), limit=self._limit)
                self._session = aiohttp.ClientSession(
                    base_url=None, connector=connector, timeout=self._timeout, trust_env=info.trust_env
                )
                self._session_info = info
            return self._session, info

    @staticmethod
    def _headers(info: kopf.ConnectionInfo) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        elif info.username and info.password:
            raw = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
            headers["Authorization"] = f"Basic {raw}"
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        session, info = await self._ensure()
        headers = self._headers(info)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        self.requests[method] += 1
        url = info.server.rstrip("/") + path
        async with session.request(method, url, data=data, headers=headers, params=params) as response:
            text = await response.text()
            if response.status >= 400:
                try:
                    payload = json.loads(text)
                    reason = str(payload.get("reason") or response.reason)
                    message = str(payload.get("message") or "")
                except ValueError:
                    reason, message = str(response.reason), text[:200]
                raise KubeApiError(response.status, reason, message)
            result = json.loads(text) if text else {}
            return result if isinstance(result, dict) else {}

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(self, path: str, *, label_selector: str | None = None) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", path, params=params)
        items = result.get("items") or []
        return [item for item in items if isinstance(item, dict)]

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", path, body=dict(body))

    async def merge_patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", path, body=dict(body), content_type=MERGE_PATCH)

    async def delete(self, path: str) -> bool:
        """Delete the object at ``path``; False when it was already gone."""
        try:
            await self.request("DELETE", path)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

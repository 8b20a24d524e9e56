"""A thin asyncio client for the few Kubernetes REST calls the operator makes.

Why not the ``kubernetes`` client: it is synchronous (every call would need a thread) and its generated
models add nothing for unstructured children. The operator uses the very credentials kopf logs in with
(a ``kopf.ConnectionInfo``, from ``kopf.login_via_client`` in production) and speaks plain REST through
aiohttp: GET, POST (create), PATCH (JSON merge patch). No PUT and no server-side apply are needed.

Transient failures (429, 500/502/503/504, a dropped or timed-out connection) are retried a few times with
capped exponential backoff, honouring the server's ``Retry-After``, so that one bad answer costs a second,
not a reconcile. Everything the server refuses (400, 403, 404, 409, 422, ...) is raised at once. Retrying
a POST is safe here: a create that did land answers 409 on the retry, which the reconciler resolves.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import kopf

MERGE_PATCH = "application/merge-patch+json"


RETRYABLE: Final = frozenset({429, 500, 502, 503, 504})


class KubeApiError(Exception):
    """A request the API server refused; the message is the server's, which never holds Secret data.

    ``status`` 0 means no answer at all (connection refused, dropped or timed out).
    """

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Whether asking again later may succeed without anyone changing anything."""
        return self.status == 0 or self.status in RETRYABLE


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # in all, the first one included
    first_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based); Retry-After wins, capped."""
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_delay)
        return min(self.first_delay * 2 ** (attempt - 1), self.max_delay)


def retry_after_seconds(value: str | None) -> float | None:
    """The Retry-After header as seconds (the API server sends whole seconds; dates are not used by it)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


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
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self._connection = connection
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self.retried: Counter[int] = Counter()  # retries by status (0: no answer)
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
        attempt = 1
        while True:
            try:
                return await self._once(method, path, body=body, content_type=content_type, params=params)
            except KubeApiError as exc:
                if not exc.transient or attempt >= self._retry.attempts:
                    raise
                self.retried[exc.status] += 1
                await self._sleep(self._retry.delay(attempt, exc.retry_after))
                attempt += 1

    async def _once(
        self, method: str, path: str, *, body: Any, content_type: str, params: Mapping[str, str] | None
    ) -> dict[str, Any]:
        session, info = await self._ensure()
        headers = self._headers(info)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        self.requests[method] += 1
        url = info.server.rstrip("/") + path
        try:
            async with session.request(method, url, data=data, headers=headers, params=params) as response:
                text = await response.text()
                if response.status >= 400:
                    try:
                        payload = json.loads(text)
                        reason = str(payload.get("reason") or response.reason)
                        message = str(payload.get("message") or "")
                    except (ValueError, AttributeError):
                        reason, message = str(response.reason), text[:200]
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    raise KubeApiError(response.status, reason, message, retry_after)
                result = json.loads(text) if text else {}
                return result if isinstance(result, dict) else {}
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise KubeApiError(0, "NoAnswer", f"{method} {path}: {type(exc).__name__} {exc}".strip()) from None

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

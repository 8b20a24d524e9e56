"""The HTTP session every Salesforce call goes through: one trust store, proxies, and a hard deadline per call.

Trust. The connector verifies TLS against one ``ssl.SSLContext`` held by the adapter: certifi's bundle (the
Mozilla roots that requests itself uses by default) plus ``salesforce.caFile`` when it is set. caFile ADDS to
those roots, because the usual reason to set it is a TLS-inspecting proxy whose CA must be trusted on top of
the public ones. The adapter ignores requests' ``verify`` argument, so REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in
the environment can neither replace nor widen that trust. ``insecureSkipTlsVerify`` turns verification off.

Proxies. The session keeps ``trust_env`` on, so HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment apply
whatever the TLS settings are; the tunnelled TLS session still verifies against the context above.

Deadline. requests' ``timeout`` bounds each socket operation, not the call: a server that sends one byte every
2 s keeps a 3 s timeout open for as long as it likes. Here every HTTP call has ``deadline`` seconds for all of
it: connect, TLS handshake, a proxy's CONNECT, sending the request, the status line, the headers and the whole
body (the adapter reads the body itself, inside the deadline). When the time is up a timer shuts the call's
socket down, which wakes the blocked read, and the call raises ``DeadlineExceeded`` (a requests Timeout).
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import requests
import requests.utils
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.salesforce.types import ErrorClass, SalesforceError

log = get_logger(__name__)

_RETRY_CUT_SECONDS = 0.05  # how soon the watchdog looks again when the call has no socket yet (still connecting)


class DeadlineExceeded(requests.exceptions.Timeout):
    """An HTTP call did not get its whole answer within the deadline."""


class _Call:
    """One HTTP call in flight: the socket it is using, and whether the watchdog cut it."""

    __slots__ = ("done", "expired", "sock", "timer")

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.done = False
        self.expired = False
        self.timer: threading.Timer | None = None


# Guards every _Call's fields and the owner mark on connections, so that the watchdog never shuts down a
# socket that its call has already handed back to the pool (where another thread may take it).
_LOCK = threading.Lock()
_CURRENT = threading.local()  # .call: the _Call this thread is making
_OWNER = "_salesforce_deadline_call"


def _register(sock: socket.socket | None) -> None:
    """The socket the current thread's call now uses (TCP first, then the TLS socket over it)."""
    call = getattr(_CURRENT, "call", None)
    if call is not None and sock is not None:
        with _LOCK:
            call.sock = sock


def _arm(call: _Call, seconds: float) -> None:
    """Start (or restart) the watchdog of ``call``; the caller holds _LOCK or owns ``call`` alone."""
    timer = threading.Timer(seconds, _cut, (call,))
    timer.daemon = True
    call.timer = timer
    timer.start()


def _cut(call: _Call) -> None:
    """The watchdog: the deadline of ``call`` is up; shut its socket down so that the blocked read returns."""
    with _LOCK:
        if call.done:
            return
        call.expired = True
        if call.sock is None:  # between sockets (resolving, or the pool's hand-over); look again shortly
            _arm(call, _RETRY_CUT_SECONDS)
            return
        # socket.socket.shutdown, not SSLSocket.shutdown: the TLS object stays intact for the reading thread,
        # which sees an end of stream. The socket object stays valid even after http.client "closed" it for
        # a Connection: close answer (the response still holds it).
        with contextlib.suppress(OSError):
            socket.socket.shutdown(call.sock, socket.SHUT_RDWR)


def _finish(call: _Call) -> bool:
    """Stop the watchdog of ``call``; True when it had cut the call (the deadline was reached)."""
    with _LOCK:
        call.done = True
        if call.timer is not None:
            call.timer.cancel()
        return call.expired


class _DeadlineSSLSocket(ssl.SSLSocket):
    """Registers itself before the TLS handshake, so that a dripping handshake can be cut too."""

    def do_handshake(self, block: bool = False) -> None:
        _register(self)
        super().do_handshake(block)


class _DeadlineHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock


class _DeadlineHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _register(sock)
        return sock


class _DeadlineHTTPConnectionPool(HTTPConnectionPool):
    """A pool whose connections report their sockets to the call that holds them, for the watchdog."""

    ConnectionCls: Any = _DeadlineHTTPConnection

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        call = getattr(_CURRENT, "call", None)
        with _LOCK:
            setattr(conn, _OWNER, call)
            if call is not None:
                call.sock = getattr(conn, "sock", None)  # a kept-alive connection's socket; None for a new one
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            with _LOCK:
                call = getattr(conn, _OWNER, None)
                if call is not None:
                    call.sock = None
                setattr(conn, _OWNER, None)
        super()._put_conn(conn)


class _DeadlineHTTPSConnectionPool(_DeadlineHTTPConnectionPool, HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOL_CLASSES: dict[str, type[HTTPConnectionPool]] = {
    "http": _DeadlineHTTPConnectionPool,
    "https": _DeadlineHTTPSConnectionPool,
}


class DeadlineAdapter(HTTPAdapter):
    """Sends every request with a hard deadline and does TLS with ``ssl_context`` (its roots, its verify mode).

    The body is always read here (``stream`` is ignored), so ``response.content`` is complete when ``send``
    returns, or ``DeadlineExceeded`` was raised. requests' ``verify`` and ``cert`` arguments are ignored: the
    context is the only trust. The adapter sets the context's ``sslsocket_class`` (to cut a TLS handshake).
    """

    def __init__(self, deadline_seconds: float, ssl_context: ssl.SSLContext, pool_maxsize: int = 16) -> None:
        if deadline_seconds <= 0:
            raise ValueError(f"deadline_seconds must be > 0, got {deadline_seconds}")
        self.deadline_seconds = float(deadline_seconds)
        self.ssl_context = ssl_context
        self.verify = ssl_context.verify_mode != ssl.CERT_NONE
        ssl_context.sslsocket_class = _DeadlineSSLSocket
        super().__init__(pool_connections=4, pool_maxsize=pool_maxsize)

    # ---- trust: the adapter's own, whatever requests passes as ``verify``

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOL_CLASSES

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOL_CLASSES
        return manager

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[Any, Any]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, self.verify, None)
        if host_params.get("scheme") == "https":
            pool_kwargs["ssl_context"] = self.ssl_context
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, self.verify, None)
        conn.ca_certs = None  # the context already holds every trusted root
        conn.ca_cert_dir = None

    # ---- the deadline

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        limit = self.deadline_seconds
        call = _Call()
        _arm(call, limit)
        _CURRENT.call = call
        started = time.monotonic()
        try:
            response = super().send(request, stream=True, timeout=limit, verify=True, cert=None, proxies=proxies)
            _CURRENT.call = None
            _ = response.content  # the whole body, while the watchdog is armed
        except Exception:
            _CURRENT.call = None
            if _finish(call):
                raise self._exceeded(request, started) from None
            raise
        if _finish(call):
            response.close()
            raise self._exceeded(request, started)
        return response

    def _exceeded(self, request: requests.PreparedRequest, started: float) -> DeadlineExceeded:
        return DeadlineExceeded(
            f"the {self.deadline_seconds:g} s deadline (salesforce.requestTimeoutSeconds) was reached after "
            f"{time.monotonic() - started:.1f} s without a complete answer",
            request=request,
        )


def trust_context(ca_file: Path | None) -> ssl.SSLContext:
    """The roots the connector trusts: certifi's bundle (requests' default), plus ``ca_file`` (PEM) when given."""
    context = ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)
    if ca_file is None:
        return context
    if not Path(ca_file).is_file():
        raise SalesforceError(
            f"salesforce.caFile: {ca_file} is not a readable file", error_class=ErrorClass.CONFIGURATION
        )
    try:
        context.load_verify_locations(cafile=str(ca_file))
    except (OSError, ssl.SSLError):
        raise SalesforceError(
            f"salesforce.caFile: {ca_file} holds no PEM certificate that can be loaded",
            error_class=ErrorClass.CONFIGURATION,
        ) from None
    return context


def insecure_context() -> ssl.SSLContext:
    """A TLS context that verifies nothing (``salesforce.insecureSkipTlsVerify``: a lab only)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_context(*, ca_file: Path | None, insecure_skip_tls_verify: bool) -> ssl.SSLContext:
    """The TLS context of the connector's sessions: certifi's roots + ``ca_file`` (loading them takes ~20 ms, so
    one client's sessions share one), or none verified (``insecureSkipTlsVerify``, said in a warning)."""
    if insecure_skip_tls_verify:
        log.warning("salesforce.tls_verification_disabled", reason="salesforce.insecureSkipTlsVerify is true")
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return insecure_context()
    return trust_context(ca_file)


def build_session(
    *,
    ca_file: Path | None,
    insecure_skip_tls_verify: bool,
    timeout: float,
    pool_maxsize: int = 16,
    context: ssl.SSLContext | None = None,
) -> requests.Session:
    """A requests session whose every call has ``timeout`` seconds in all and trusts certifi's roots + ``ca_file``
    (or uses ``context``, a ``tls_context`` built for them).

    Proxies come from the environment (``trust_env`` stays on); see the module docstring.
    """
    if context is None:
        context = tls_context(ca_file=ca_file, insecure_skip_tls_verify=insecure_skip_tls_verify)
    session = requests.Session()
    adapter = DeadlineAdapter(timeout, context, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.verify = adapter.verify  # informative only: the adapter decides
    return session

"""A ledger that cannot hang the worker (issue 11, item 10).

PostgreSQL sessions carry connect, statement, lock and idle-in-transaction timeouts and TCP
keepalives; every answer the worker waits for has a deadline. With the database blackholed (a TCP
proxy that stops forwarding without closing anything, what a dropped network path looks like),
POST answers 503, /readyz fails, /metrics still answers with stale ledger gauges, /livez stays up,
and everything recovers, without a restart, once the path is back.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import sqlalchemy.exc
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import text
from structlog.testing import capture_logs

from unsubscribe_sync.api.config import ConfigError, LedgerConfig, parse_config
from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.ledger.connect import open_ledger
from unsubscribe_sync.ledger.engine import (
    create_ledger_engine,
    postgres_connect_args,
    response_deadline,
    session_settings,
)
from unsubscribe_sync.worker.app import create_app

TOKEN = "timeouts-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "pw-n3ver-echo-me"


# -- the settings, as pure functions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "settings", "in_url", "expected"),
    [
        (
            "defaults fit a webhook worker: 5 s connect, keepalives after 30 s idle, dead after 3 misses",
            {},
            (),
            {
                "connect_timeout": 5,
                "keepalives": 1,
                "keepalives_idle": 30,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": 30_000,
            },
        ),
        (
            "configured values are used",
            {"connectTimeoutSeconds": 2, "keepalivesIdleSeconds": 5, "tcpUserTimeoutSeconds": 0},
            (),
            {
                "connect_timeout": 2,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 10,
                "keepalives_count": 3,
                "tcp_user_timeout": 0,
            },
        ),
        (
            "a parameter the ledger URL sets itself is left to the URL",
            {},
            ("connect_timeout", "keepalives_idle"),
            {"keepalives": 1, "keepalives_interval": 10, "keepalives_count": 3, "tcp_user_timeout": 30_000},
        ),
    ],
)
def test_postgres_connect_args(case: str, settings: dict[str, Any], in_url: tuple[str, ...], expected: Any) -> None:
    assert postgres_connect_args(LedgerConfig(**settings), in_url) == expected, case


@pytest.mark.parametrize(
    ("case", "settings", "expected"),
    [
        (
            "defaults: statements 30 s, lock waits 10 s, an abandoned transaction 60 s",
            {},
            {"statement_timeout": "30000", "lock_timeout": "10000", "idle_in_transaction_session_timeout": "60000"},
        ),
        (
            "fractions of a second are kept (milliseconds)",
            {"statementTimeoutSeconds": 1.5, "lockTimeoutSeconds": 0.25, "idleInTransactionTimeoutSeconds": 2},
            {"statement_timeout": "1500", "lock_timeout": "250", "idle_in_transaction_session_timeout": "2000"},
        ),
    ],
)
def test_session_settings(case: str, settings: dict[str, Any], expected: dict[str, str]) -> None:
    assert session_settings(LedgerConfig(**settings)) == expected, case


@pytest.mark.parametrize(
    ("case", "settings", "expected"),
    [
        ("by default a little longer than the statement timeout (the server's own error comes first)", {}, 35.0),
        ("follows a shorter statement timeout", {"statementTimeoutSeconds": 2}, 7.0),
        ("an explicit response timeout wins", {"responseTimeoutSeconds": 1.5}, 1.5),
    ],
)
def test_response_deadline(case: str, settings: dict[str, Any], expected: float) -> None:
    assert response_deadline(LedgerConfig(**settings)) == expected, case


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("connectTimeoutSeconds", 1),  # libpq's floor is 2 s
        ("statementTimeoutSeconds", 0),
        ("lockTimeoutSeconds", -1),
        ("idleInTransactionTimeoutSeconds", 0),
        ("keepalivesIdleSeconds", 0),
        ("keepalivesIntervalSeconds", 0),
        ("keepalivesCount", 0),
        ("tcpUserTimeoutSeconds", -1),
        ("poolTimeoutSeconds", 0),
        ("responseTimeoutSeconds", 0),
    ],
)
def test_bad_timeout_keys_are_refused_naming_the_key(key: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"ledger\.{key}"):
        parse_config({"ledger": {key: value}})


# -- a real PostgreSQL ----------------------------------------------------------------------------------------------


def _show(engine: Any, name: str) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text(f"SHOW {name}")).scalar())


@pytest.mark.postgres
def test_sessions_carry_the_timeouts(postgres_url: str) -> None:
    default = create_ledger_engine(postgres_url)
    try:
        assert _show(default, "statement_timeout") == "30s"
        assert _show(default, "lock_timeout") == "10s"
        assert _show(default, "idle_in_transaction_session_timeout") == "1min"
        with default.connect() as conn:
            params = conn.connection.dbapi_connection.info.get_parameters()  # type: ignore[union-attr]
        assert params["connect_timeout"] == "5" and params["keepalives"] == "1"
        assert params["keepalives_idle"] == "30" and params["keepalives_count"] == "3"
    finally:
        default.dispose()
    settings = LedgerConfig(url=postgres_url, statementTimeoutSeconds=7, lockTimeoutSeconds=3)
    configured = create_ledger_engine(postgres_url, settings=settings)
    try:
        assert _show(configured, "statement_timeout") == "7s"
        assert _show(configured, "lock_timeout") == "3s"
    finally:
        configured.dispose()


@pytest.mark.postgres
async def test_a_lock_held_elsewhere_fails_the_ingest_after_lock_timeout(postgres_url: str) -> None:
    ledger = open_ledger(LedgerConfig(url=postgres_url, lockTimeoutSeconds=0.2))
    try:
        with psycopg.connect(postgres_url) as holder:
            holder.execute("LOCK TABLE unsubscribes IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(sqlalchemy.exc.OperationalError, match="lock timeout"):
                await asyncio.to_thread(ledger.ingest, [Unsubscribe(email="locked@example.com")])
            holder.rollback()
        assert (await asyncio.to_thread(ledger.ingest, [Unsubscribe(email="locked@example.com")])).stored == 1
    finally:
        ledger.close()


class BlackholeProxy:
    """A TCP proxy on 127.0.0.1 that can stop forwarding without closing anything, then forward again.

    While blackholed it accepts connections and reads nothing: to a client this looks like a network
    path that drops packets (no reset, no FIN), the case TCP alone takes many minutes to notice. It
    runs its own event loop in a thread, so the code under test may block its callers.
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blackhole-proxy", daemon=True)
        self._flowing = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    def start(self) -> None:
        self._thread.start()
        self._call(self._start())

    def blackhole(self) -> None:
        self._call(self._set(False))

    def restore(self) -> None:
        self._call(self._set(True))

    def close(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set(self, flowing: bool) -> None:
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _close(self) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._flowing.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(*self._upstream)
            except OSError:
                return
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    return
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()


def _through(url: str, port: int, password: str | None = None) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    auth = f"{user}:{password}@" if password else f"{user}@"
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{port}"))


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[BlackholeProxy]:
    parts = urlsplit(postgres_url)
    p = BlackholeProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    p.start()
    yield p
    p.close()


FAST = {
    "connectTimeoutSeconds": 2,
    "statementTimeoutSeconds": 1,
    "responseTimeoutSeconds": 1,
    "poolTimeoutSeconds": 1,
}


@pytest.mark.postgres
async def test_a_blackholed_database_cannot_hang_a_ledger_call_and_it_recovers(
    postgres_url: str, proxy: BlackholeProxy
) -> None:
    ledger = open_ledger(LedgerConfig(url=_through(postgres_url, proxy.port), **FAST))
    try:
        assert (await asyncio.to_thread(ledger.ingest, [Unsubscribe(email="before@example.com")])).stored == 1
        proxy.blackhole()
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            await asyncio.to_thread(ledger.ping)
        with pytest.raises(sqlalchemy.exc.DBAPIError):
            await asyncio.to_thread(ledger.ingest, [Unsubscribe(email="during@example.com")])
        proxy.restore()
        await _eventually(lambda: asyncio.to_thread(ledger.ping))
        assert (await asyncio.to_thread(ledger.ingest, [Unsubscribe(email="after@example.com")])).stored == 1
        assert ledger.lookup("during@example.com") is None
        assert ledger.lookup("before@example.com") is not None and ledger.lookup("after@example.com") is not None
    finally:
        ledger.close()


async def _eventually(attempt: Callable[[], Awaitable[Any]], tries: int = 50) -> Any:
    """The first result of ``attempt`` that does not raise (a recovering path may fail a call or two)."""
    for n in range(tries):
        try:
            return await attempt()
        except Exception:
            if n == tries - 1:
                raise
            await asyncio.sleep(0.1)


def _config(tmp_path: Path, ledger_url: str) -> Any:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return parse_config(
        {
            "ledger": {"url": ledger_url, **FAST},
            "worker": {"tokenFile": str(token_file), "listen": "127.0.0.1:0", "maxQueueWaitSeconds": 2},
            "salesforce": {"credentialsDir": str(tmp_path / "none")},
        }
    )


@pytest.fixture
async def blackholed_worker(
    tmp_path: Path, postgres_url: str, proxy: BlackholeProxy
) -> AsyncIterator[tuple[TestClient[Any, Any], Ledger]]:
    config = _config(tmp_path, _through(postgres_url, proxy.port, PASSWORD))
    ledger = open_ledger(config.ledger)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config, ledger=ledger, push=False)))
    await client.start_server()
    try:
        yield client, ledger
    finally:
        proxy.restore()
        await client.close()
        ledger.close()


async def _answer_when(
    client: TestClient[Any, Any], method: str, path: str, wanted: Callable[[int, str], bool], **kwargs: Any
) -> tuple[int, str]:
    """Repeat a request until its answer is ``wanted`` (bounded): recovery may take a call or two."""
    for _ in range(50):
        resp = await client.request(method, path, **kwargs)
        body = await resp.text()
        if wanted(resp.status, body):
            break
        await asyncio.sleep(0.1)
    return resp.status, body


@pytest.mark.postgres
async def test_worker_with_a_blackholed_database_answers_and_recovers_without_restart(
    blackholed_worker: tuple[TestClient[Any, Any], Ledger], proxy: BlackholeProxy
) -> None:
    client, ledger = blackholed_worker
    seen: list[str] = []
    with capture_logs() as logs:
        ok = await client.post(
            "/v1/unsubscribes", json={"email": "before@example.com", "salesforceId": "003000000000001"}, headers=AUTH
        )
        assert ok.status == 202
        metrics = await (await client.get("/metrics")).text()
        assert "unsubscribe_sync_ledger_up 1.0" in metrics and "unsubscribe_sync_push_backlog 1.0" in metrics

        proxy.blackhole()
        refused = await client.post("/v1/unsubscribes", json={"email": "during@example.com"}, headers=AUTH)
        seen.append(await refused.text())
        assert refused.status == 503 and int(refused.headers["Retry-After"]) >= 1
        ready = await client.get("/readyz")
        seen.append(await ready.text())
        assert ready.status == 503
        scrape = await client.get("/metrics")
        stale = await scrape.text()
        seen.append(stale)
        assert scrape.status == 200
        assert "unsubscribe_sync_ledger_up 0.0" in stale
        assert "unsubscribe_sync_push_backlog 1.0" in stale  # the last known figure, marked stale by ledger_up 0
        assert "unsubscribe_sync_http_requests_total" in stale
        assert (await client.get("/livez")).status == 200

        proxy.restore()
        status, body = await _answer_when(client, "GET", "/readyz", lambda status, _: status == 200)
        assert status == 200, body
        status, body = await _answer_when(
            client,
            "POST",
            "/v1/unsubscribes",
            lambda status, _: status == 202,
            json={"email": "after@example.com"},
            headers=AUTH,
        )
        assert status == 202, body
        _, fresh = await _answer_when(client, "GET", "/metrics", lambda _, body: "ledger_up 1.0" in body)
        assert "unsubscribe_sync_ledger_up 1.0" in fresh
    assert ledger.lookup("during@example.com") is None  # a 503 stored nothing
    assert ledger.lookup("after@example.com") is not None
    for text_seen in seen:
        assert PASSWORD not in text_seen
    for event in logs:
        assert PASSWORD not in repr(event)


@pytest.mark.postgres
async def test_probes_answer_while_every_ledger_thread_is_blocked(
    blackholed_worker: tuple[TestClient[Any, Any], Ledger], proxy: BlackholeProxy
) -> None:
    """Lookups and POSTs blocked on the ledger hold all its threads; the probes have threads of their own."""
    client, _ = blackholed_worker
    proxy.blackhole()
    blocked = [
        asyncio.create_task(client.get(f"/v1/unsubscribes/l{i}@example.com", headers=AUTH)) for i in range(20)
    ] + [
        asyncio.create_task(client.post("/v1/unsubscribes", json={"email": f"b{i}@example.com"}, headers=AUTH))
        for i in range(20)
    ]
    await asyncio.sleep(0.1)  # the requests are in (a head start, not a measurement)
    assert (await client.get("/readyz")).status == 503
    scrape = await client.get("/metrics")
    assert scrape.status == 200 and "unsubscribe_sync_ledger_up 0.0" in await scrape.text()
    proxy.restore()
    answers = [await b for b in blocked]
    posts = answers[20:]
    assert {a.status for a in posts} <= {202, 503}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in posts if a.status == 503)

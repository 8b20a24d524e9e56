"""Database engines for the ledger: one code path for SQLite (embedded default) and PostgreSQL (psycopg 3).

A PostgreSQL ledger must not be able to hang the worker. Three layers, each for a different failure:

- the server's own timeouts (``statement_timeout``, ``lock_timeout``,
  ``idle_in_transaction_session_timeout``), set on every session: a slow query or a lock held
  elsewhere fails with the server's error and the connection stays usable;
- TCP keepalives and ``tcp_user_timeout`` (libpq connect parameters): the kernel notices a dead
  peer on an idle or unacknowledged connection (a pooled connection to a failed-over primary);
- a client-side deadline on every answer (``response_deadline``): when no answer comes back at all
  (a blackholed path: no reset, no FIN, data acknowledged by a middlebox), the watchdog shuts the
  connection's socket down, the waiting thread gets an error, and the pool drops the connection.
  psycopg has no per-query client timeout, and nothing else frees a thread stuck in libpq.

``connect_timeout`` bounds a new connection, ``pool_timeout`` the wait for a free one. Neither the
URL nor a driver message with the URL in it is ever echoed: it may hold a password.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DataError, DisconnectionError

from unsubscribe_sync.api.config import ConfigError, LedgerConfig
from unsubscribe_sync.logs import get_logger

log = get_logger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
RESPONSE_MARGIN_SECONDS = 5.0  # the client deadline trails statement_timeout, so the server's clearer error comes first


def driver_url(url: str) -> str:
    """The SQLAlchemy URL for a ledger URL: ``postgresql://`` is served by psycopg 3, SQLite by the stdlib."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise ConfigError("ledger URL must start with sqlite:// or postgresql://")


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite://")


# -- decisions (pure) ----------------------------------------------------------------------------------------------


def postgres_connect_args(settings: LedgerConfig, in_url: Collection[str] = ()) -> dict[str, Any]:
    """libpq connection parameters for the timeouts and keepalives; those the URL sets itself are left to it."""
    args: dict[str, Any] = {
        "connect_timeout": settings.connectTimeoutSeconds,
        "keepalives": 1,
        "keepalives_idle": settings.keepalivesIdleSeconds,
        "keepalives_interval": settings.keepalivesIntervalSeconds,
        "keepalives_count": settings.keepalivesCount,
        "tcp_user_timeout": settings.tcpUserTimeoutSeconds * 1000,
    }
    return {key: value for key, value in args.items() if key not in in_url}


def session_settings(settings: LedgerConfig) -> dict[str, str]:
    """Server settings for every session (milliseconds), set after connecting.

    Set with ``set_config`` rather than the ``options`` startup parameter, which connection poolers
    such as PgBouncer refuse.
    """

    def ms(seconds: float) -> str:
        return str(round(seconds * 1000))

    return {
        "statement_timeout": ms(settings.statementTimeoutSeconds),
        "lock_timeout": ms(settings.lockTimeoutSeconds),
        "idle_in_transaction_session_timeout": ms(settings.idleInTransactionTimeoutSeconds),
    }


def response_deadline(settings: LedgerConfig) -> float:
    """Seconds the worker waits for any one answer from PostgreSQL before it drops the connection."""
    if settings.responseTimeoutSeconds is not None:
        return settings.responseTimeoutSeconds
    return settings.statementTimeoutSeconds + RESPONSE_MARGIN_SECONDS


def refused_data(exc: BaseException) -> str | None:
    """What the database refused, when ``exc`` means the data itself cannot be stored; None otherwise.

    Only errors a retry would repeat count: a value the database cannot hold (DataError: NUL in a
    PostgreSQL text, a value over a column's length, ...) or a character no encoding can carry (a
    lone surrogate). Anything else, constraint races included, is the database's state, not the
    data's fault: the caller should retry, so no unsubscribe is dropped on a guess. The text is the
    driver's first line only: never the statement or its parameters.
    """
    if isinstance(exc, DataError):
        lines = str(exc.orig).strip().splitlines()
        return lines[0] if lines and lines[0] else type(exc.orig).__name__
    if isinstance(exc, UnicodeError):
        return str(exc)
    return None


# -- the client-side deadline ---------------------------------------------------------------------------------------


def _sever(dbapi_connection: Any) -> None:
    """Shut the connection's socket down: a thread blocked reading from it wakes with an error at once."""
    try:
        fd = dbapi_connection.fileno()
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception as exc:  # already closed: nothing left to free
        log.debug("ledger_sever_skipped", error=type(exc).__name__)


class Watchdog:
    """Deadlines on database answers, enforced from one background thread.

    ``arm`` before a round trip, ``disarm`` after it; a connection still armed past its deadline is
    severed. Arming, disarming and severing share one lock, so a connection disarmed in time is never
    severed afterwards.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, Any, float]] = {}
        self._thread: threading.Thread | None = None
        self._wake_at: float | None = None  # when the thread wakes next (None: only when notified)

    def arm(self, dbapi_connection: Any, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._cond:
            self._armed[id(dbapi_connection)] = (deadline, dbapi_connection, seconds)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ledger-watchdog", daemon=True)
                self._thread.start()
            if self._wake_at is None or deadline < self._wake_at:  # else the thread wakes in time anyway
                self._wake_at = deadline
                self._cond.notify()

    def disarm(self, dbapi_connection: Any) -> None:
        if dbapi_connection is None:
            return
        with self._cond:
            self._armed.pop(id(dbapi_connection), None)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for key, (deadline, conn, seconds) in list(self._armed.items()):
                    if deadline <= now:
                        del self._armed[key]
                        log.warning("ledger_answer_overdue", seconds=seconds)
                        _sever(conn)
                self._wake_at = min((deadline for deadline, _, _ in self._armed.values()), default=None)
                self._cond.wait(None if self._wake_at is None else max(0.0, self._wake_at - now))


WATCHDOG = Watchdog()


def _guard_postgres(engine: Engine, settings: LedgerConfig) -> None:
    """Session timeouts on each new connection, a bounded ping on checkout, a deadline on every round trip."""
    deadline = response_deadline(settings)
    ping_deadline = min(deadline, float(settings.connectTimeoutSeconds))
    gucs = session_settings(settings)

    from unsubscribe_sync.ledger.pg_lists import QuotedTextListDumper  # psycopg only where PostgreSQL is used

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.adapters.register_dumper(list, QuotedTextListDumper)
        WATCHDOG.arm(dbapi_connection, ping_deadline)
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(
                    "SELECT " + ", ".join("set_config(%s, %s, false)" for _ in gucs),
                    [part for pair in gucs.items() for part in pair],
                )
            dbapi_connection.commit()
        finally:
            WATCHDOG.disarm(dbapi_connection)

    def on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # The pool's own pre-ping runs before any event could arm a deadline, so the ping is done here.
        WATCHDOG.arm(dbapi_connection, ping_deadline)
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the ledger did not answer a ping") from exc
        finally:
            WATCHDOG.disarm(dbapi_connection)

    def arm_connection(conn: Any, *_args: Any) -> None:
        if conn.invalidated:  # (reading conn.connection would reconnect)
            return
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is not None:
            WATCHDOG.arm(dbapi_connection, deadline)

    def disarm_connection(conn: Any, *_args: Any) -> None:
        if not conn.invalidated:
            WATCHDOG.disarm(conn.connection.dbapi_connection)

    def on_error(context: Any) -> None:
        if context.connection is not None and not context.connection.invalidated:
            WATCHDOG.disarm(context.connection.connection.dbapi_connection)

    def arm_record(dbapi_connection: Any, *_args: Any) -> None:
        WATCHDOG.arm(dbapi_connection, deadline)

    def disarm_record(dbapi_connection: Any, *_args: Any) -> None:
        WATCHDOG.disarm(dbapi_connection)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "before_cursor_execute", arm_connection)
    event.listen(engine, "after_cursor_execute", disarm_connection)
    event.listen(engine, "handle_error", on_error)
    event.listen(engine, "commit", arm_connection)  # there is no "after commit": checkin disarms
    event.listen(engine, "rollback", arm_connection)
    event.listen(engine, "reset", arm_record)  # the pool's rollback when a connection is returned
    event.listen(engine, "checkin", disarm_record)
    event.listen(engine, "invalidate", disarm_record)
    event.listen(engine, "close", disarm_record)


# -- SQLite ---------------------------------------------------------------------------------------------------------


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" hook emit BEGIN itself (the stdlib driver's implicit
    # transactions would defer locking and break BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # Write transactions take the write lock up front (BEGIN IMMEDIATE): a deferred
    # transaction that reads first and writes later cannot wait on busy_timeout when
    # another process holds the lock, it fails at once.
    mode = "IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "DEFERRED"
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_ledger_engine(url: str, *, pool_size: int = 5, settings: LedgerConfig | None = None) -> Engine:
    """An engine for the ledger URL; a bad URL raises ConfigError without echoing it (it may hold a password).

    ``settings`` carries the timeouts (``ledger.*`` config extras); the defaults apply without it.
    """
    settings = settings or LedgerConfig()
    target = driver_url(url)
    try:
        parsed = make_url(target)
    except ArgumentError:
        raise ConfigError("ledger URL is not a valid database URL") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if not database or database == ":memory:":
            raise ConfigError("ledger URL: SQLite needs a file path (sqlite:////path/to/ledger.db)")
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=settings.poolTimeoutSeconds,
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = create_engine(
        parsed,
        connect_args=postgres_connect_args(settings, parsed.query.keys()),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=settings.poolTimeoutSeconds,
        hide_parameters=True,
    )
    _guard_postgres(engine, settings)
    return engine

"""Database engines for the ledger: one code path for SQLite (embedded default) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from unsubscribe_sync.api.config import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def driver_url(url: str) -> str:
    """The SQLAlchemy URL for a ledger URL: ``postgresql://`` is served by psycopg 3, SQLite by the stdlib."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith(("postgresql+psycopg://", "sqlite://")):
        return url
    raise ConfigError("ledger URL must start with sqlite:// or postgresql://")


def is_sqlite_url(url: str) -> bool:
    return url.startswith("sqlite://")


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


def create_ledger_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine for the ledger URL; a bad URL raises ConfigError without echoing it (it may hold a password)."""
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
            hide_parameters=True,
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(
        parsed,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,
    )

"""The ledger's tables and their versioned migrations.

Times are stored as UTC epoch seconds (float) in every table: one representation on
SQLite and PostgreSQL, cheap to compare and to turn into RFC 3339 at the edges.
Salesforce IDs are stored in their 18-character form with a bytewise collation, so
ordering by ID is the same on both databases.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    false,
    func,
    inspect,
    select,
    text,
)

metadata = MetaData()

_Id = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only
_SalesforceId = String(18).with_variant(String(18, collation="C"), "postgresql")
_Email = String(320)

schema_versions = Table(
    "schema_versions",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

# One row per normalised email address: the suppression list.
unsubscribes = Table(
    "unsubscribes",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("email", _Email, nullable=False, unique=True),
    Column("unsubscribed", Boolean, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    # v3: when the act that set ``unsubscribed`` happened (its occurredAt; acts are ordered by it, ties by
    # arrival), and how many repeats of the unchanged state arrived since (a repeat adds no history row)
    Column("state_at", Float, nullable=True),
    Column("repeats", Integer, nullable=False, default=0, server_default=text("0")),
)

# One row per Salesforce record an unsubscribe applies to.
salesforce_targets = Table(
    "salesforce_targets",
    metadata,
    Column("salesforce_id", _SalesforceId, primary_key=True),
    Column("object", String(40), nullable=False),
    Column("email", _Email, nullable=False),
    Column("status", String(16), nullable=False),  # pending | pushed | failed
    Column("field", String(100), nullable=True),  # the field last set in Salesforce
    Column("last_error", Text, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # v3: the value Salesforce last confirmed for the record, and when (a nightly read older than a
    # confirmed write of false is stale: it must not suppress the address again)
    Column("confirmed_value", Boolean, nullable=True),
    Column("confirmed_at", Float, nullable=True),
    Index("ix_salesforce_targets_email", "email"),
    Index("ix_salesforce_targets_object_id", "object", "salesforce_id"),
    Index("ix_salesforce_targets_status", "status"),
)

# Writes still owed to Salesforce (the push worker's durable queue).
outbox = Table(
    "outbox",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("salesforce_id", _SalesforceId, nullable=False, unique=True),
    Column("object", String(40), nullable=False),
    Column("email", _Email, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(100), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    # v2: the value to write (True: opt out, False: a resubscribe) and a counter bumped by every act that
    # replaces the row's value, so the completion of an older, in-flight write never removes a newer one
    Column("value", Boolean, nullable=False, default=True, server_default=text("true")),
    Column("seq", Integer, nullable=False, default=0, server_default=text("0")),
    # v3: the occurredAt of the act the queued value comes from (a write of an older act never replaces a
    # newer one); the fence token, bumped by every claim (a completion must present the current one); when
    # the row was first reported stuck (retried past worker.maxAttempts on transient errors, never given up)
    Column("act_at", Float, nullable=True),
    Column("fence", Integer, nullable=False, default=0, server_default=text("0")),
    Column("stuck_at", Float, nullable=True),
    Index("ix_outbox_due", "object", "next_attempt_at", "id"),
    Index("ix_outbox_next", "next_attempt_at", "id"),
)
# v6: the queued writes of false (resubscribes), by address. Every Salesforce read (the nightly's additions, the
# poll) and every nightly plan asks which of its records and addresses have one: the outbox holds few of them,
# beside a backlog of opt-outs that was scanned whole for them, once per 2,000 records read (four times on
# PostgreSQL). Queries that read them say ``QUEUED_FALSE`` exactly, so the database can use the index.
QUEUED_FALSE = outbox.c.value == false()
ix_outbox_clears = Index("ix_outbox_clears", outbox.c.email, sqlite_where=QUEUED_FALSE, postgresql_where=QUEUED_FALSE)

# Append-only record of everything that happened to an address.
history = Table(
    "history",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("email", _Email, nullable=False),
    Column("salesforce_id", _SalesforceId, nullable=True),
    Column("source", String(200), nullable=False),
    Column("action", String(40), nullable=False),
    Column("outcome", String(40), nullable=True),
    Column("detail", Text, nullable=True),
    Column("requested_by", String(200), nullable=True),  # v2: who asked for a resubscribe
    Column("reason", Text, nullable=True),  # v2: why
    Index("ix_history_email", "email", "id"),
)

# Idempotency keys of webhook events already stored.
processed_events = Table(
    "processed_events",
    metadata,
    Column("event_id", String(200), primary_key=True),
    Column("received_at", Float, nullable=False),
    Index("ix_processed_events_received", "received_at"),
)

# Nightly sync runs.
sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("dry_run", Boolean, nullable=False),
    Column("to_salesforce", Integer, nullable=False),
    Column("from_salesforce", Integer, nullable=False),
    Column("skipped_no_salesforce_id", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("summary", Text, nullable=False),  # the run's JSON summary
    Index("ix_sync_runs_outcome", "outcome", "dry_run", "ended_at"),
)

_V1_TABLES = [unsubscribes, salesforce_targets, outbox, history, processed_events, sync_runs]


def _migrate_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=_V1_TABLES, checkfirst=True)


# Columns added by version 2 (explicit resubscribes), as (table, column, DDL type and default).
_V2_COLUMNS = [
    ("outbox", "value", "BOOLEAN NOT NULL DEFAULT true"),
    ("outbox", "seq", "INTEGER NOT NULL DEFAULT 0"),
    ("history", "requested_by", "VARCHAR(200)"),
    ("history", "reason", "TEXT"),
]


# The Salesforce poll (version 5): one row per object ("object:<name>": its watermark and last success) and
# the poller's lease ("lease": owner, expiry, fence), so exactly one replica polls and a dead one is taken over.
salesforce_poll_state = Table(
    "salesforce_poll_state",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("watermark", Float),
    Column("last_success_at", Float),
    Column("owner", String(200)),
    Column("expires_at", Float),
    Column("fence", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)


def _migrate_v5(conn: Connection) -> None:
    """The Salesforce poll's watermarks and lease (a ledger created by this release has the table already)."""
    salesforce_poll_state.create(conn, checkfirst=True)


# Email matching (version 4): one row per address whose records are still to be found (README "Matching").
# An act that changes the address's state queues (or replaces, later act wins) its row; the resolver claims
# rows under fenced leases like the outbox, finds the records by Email and queues their writes.
resolutions = Table(
    "resolutions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("email", _Email, nullable=False, unique=True),
    Column("value", Boolean, nullable=False),
    Column("act_at", Float, nullable=False),
    Column("seq", Integer, nullable=False, default=0),
    Column("received_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float, nullable=False),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", Float),
    Column("fence", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Index("ix_resolutions_due", "next_attempt_at"),
)


def _migrate_v4(conn: Connection) -> None:
    """The Email-matching queue (a ledger created by this release has the table already)."""
    resolutions.create(conn, checkfirst=True)


def _migrate_v2(conn: Connection) -> None:
    """Outbox rows carry the value to write; history rows who asked for a resubscribe and why.

    A ledger created by this release already has the columns (version 1 creates the tables as
    declared above); one created by an earlier release gets them added.
    """
    _add_columns(conn, _V2_COLUMNS)


# Columns added by version 3 (acts ordered by occurredAt, fenced leases, bounded history).
_V3_COLUMNS = [
    ("unsubscribes", "state_at", "DOUBLE PRECISION"),
    ("unsubscribes", "repeats", "INTEGER NOT NULL DEFAULT 0"),
    ("salesforce_targets", "confirmed_value", "BOOLEAN"),
    ("salesforce_targets", "confirmed_at", "DOUBLE PRECISION"),
    ("outbox", "act_at", "DOUBLE PRECISION"),
    ("outbox", "fence", "INTEGER NOT NULL DEFAULT 0"),
    ("outbox", "stuck_at", "DOUBLE PRECISION"),
]


def _add_columns(conn: Connection, columns: list[tuple[str, str, str]]) -> None:
    inspector = inspect(conn)
    for table, column, ddl in columns:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}"))


def _migrate_v3(conn: Connection) -> None:
    """Acts carry their time; outbox rows a fence and the act time; processed events an index for pruning.

    Existing rows take their best-known time: an address its last_seen, a queued write its received_at.
    """
    _add_columns(conn, _V3_COLUMNS)
    conn.execute(text("UPDATE unsubscribes SET state_at = last_seen WHERE state_at IS NULL"))
    conn.execute(text("UPDATE outbox SET act_at = received_at WHERE act_at IS NULL"))
    if "ix_processed_events_received" not in {i["name"] for i in inspect(conn).get_indexes("processed_events")}:
        conn.execute(text("CREATE INDEX ix_processed_events_received ON processed_events (received_at)"))


def _migrate_v6(conn: Connection) -> None:
    """The queued writes of false by address (a ledger created by this release has the index already)."""
    ix_outbox_clears.create(conn, checkfirst=True)


# (version, step) in order; a new schema change appends a step, never edits an old one.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _migrate_v1),
    (2, _migrate_v2),
    (3, _migrate_v3),
    (4, _migrate_v4),
    (5, _migrate_v5),
    (6, _migrate_v6),
]
LATEST_VERSION = MIGRATIONS[-1][0]

_PG_MIGRATION_LOCK = 0x5553594E  # advisory lock id: one migrator at a time across replicas


def migrate(conn: Connection) -> int:
    """Bring the schema to the latest version inside the caller's write transaction; returns that version."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
    schema_versions.create(conn, checkfirst=True)
    current = conn.execute(select(func.max(schema_versions.c.version))).scalar() or 0
    if current > LATEST_VERSION:
        raise RuntimeError(
            f"the ledger schema is at version {current}, newer than this program knows ({LATEST_VERSION})"
        )
    for version, step in MIGRATIONS:
        if version > current:
            step(conn)
            conn.execute(schema_versions.insert().values(version=version, applied_at=time.time()))
    return LATEST_VERSION

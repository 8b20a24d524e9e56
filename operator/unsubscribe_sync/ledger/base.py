"""What every part of the ledger shares: transactions, the database clock, address acts and queued writes.

Concurrency rules (PostgreSQL at READ COMMITTED, several replicas; SQLite takes the write lock up front):

- Every change to an address, and every write queued for its Salesforce records, happens under the
  address's row lock (``_apply_acts`` inserts missing rows, then ``SELECT ... FOR UPDATE``): two replicas
  acting on one address serialise, and each decides on the committed state.
- Keys are sorted before any multi-row write (addresses by email, records by Salesforce id), so two
  transactions never lock the same rows in opposite orders (no deadlock).
- Lease and retry times come from the database clock on PostgreSQL (replicas' clocks may disagree).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    String,
    Table,
    any_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement

from unsubscribe_sync.ledger.engine import SQLITE_BUSY_TIMEOUT_MS
from unsubscribe_sync.ledger.policy import (
    Act,
    ActEffect,
    AddressState,
    Merge,
    QueuedWrite,
    act_effect,
    merge_queued_write,
    state_after,
)
from unsubscribe_sync.ledger.schema import history, outbox, salesforce_targets, unsubscribes
from unsubscribe_sync.ledger.sqlite_steps import exact_real, insert_json_rows, insert_rows, json_columns, select_rows

IN_CHUNK = 500  # keys per IN (...) list: far below SQLite's bound-parameter limit
# keys per key list bound as one parameter: SQLite's JSON key list (``SQLITE_IN_KEYS``), PostgreSQL's array
# (``pg_in``) where a drain asks about many ids; no bound on either, so few statements and few driver steps
KEY_LIST_SIZE = 5_000

# PostgreSQL's selects of the ingest path, built once with an array of keys (``pg_in``): building and coercing
# the statement on every group commit cost about as much as running it.
_KEYS: BindParameter[Any] = bindparam("keys", type_=pg_dialect.ARRAY(String))
_LOCK_ADDRESSES = (
    select(unsubscribes.c.email, unsubscribes.c.unsubscribed, unsubscribes.c.state_at)
    .where(unsubscribes.c.email == any_(_KEYS))
    .order_by(unsubscribes.c.email)
    .with_for_update()
)
_TARGETS_OF = select(salesforce_targets.c.salesforce_id, salesforce_targets.c.object, salesforce_targets.c.email).where(
    salesforce_targets.c.email == any_(_KEYS)
)
_UNPUSHED_TARGETS_OF = _TARGETS_OF.where(salesforce_targets.c.status != "pushed")
_QUEUED_WRITES = select(outbox.c.salesforce_id, outbox.c.value, outbox.c.act_at).where(
    outbox.c.salesforce_id == any_(_KEYS)
)

T = TypeVar("T")
Target = tuple[str, str, str]  # (salesforce_id, object, email)


class Unindexed(ColumnElement[Any]):
    """A column the query planner must not use an index for (SQLite's unary ``+``; the column elsewhere).

    A claim scoped to a list of Salesforce ids must look them up by the unique id index: left to itself SQLite
    prefers the due index on (object, next_attempt_at) and scans every due row of the object once per chunk
    of ids (90,000 due rows, 180 chunks: seconds per claim).
    """

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


@compiles(Unindexed)
def _unindexed_default(element: Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


@compiles(Unindexed, "sqlite")
def _unindexed_sqlite(element: Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


def _pg_array(column: Any) -> Any:
    """The array type of a parameter holding values of ``column``: its element type without a length (a cast to
    ``VARCHAR(n)[]`` would cut longer values short instead of refusing them), with its collation."""
    kind = column.type
    return pg_dialect.ARRAY(String(collation=kind.collation) if isinstance(kind, String) else kind)


def pg_in(column: Any, keys: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN keys`` on PostgreSQL, as ``column = ANY(:array)``: one parameter. psycopg parses a statement
    of more than 50 parameters anew on every execution (an IN list of 500 keys cost more than running it)."""
    return column == any_(bindparam(None, list(keys), type_=_pg_array(column)))


def pg_rows(columns: dict[str, Any], rows: Sequence[Sequence[Any]]) -> Any:
    """``rows`` as a PostgreSQL table of one array parameter per column (``unnest``), its columns named by
    ``columns`` (name -> the table column whose type they have): a parameter per column whatever the rows.
    SQLAlchemy's many-row VALUES and executemany have one per value or one statement per row, and psycopg
    parses a statement of more than 50 parameters anew on every execution."""
    arrays = [bindparam(None, [row[i] for row in rows], type_=_pg_array(c)) for i, c in enumerate(columns.values())]
    return func.unnest(*arrays).table_valued(*columns).render_derived()


def pg_insert_rows(table: Table, rows: Sequence[Any], names: Sequence[str] | None = None) -> Any:
    """PostgreSQL's INSERT of ``rows`` as one statement over ``pg_rows``; ON CONFLICT and RETURNING apply.
    ``rows``: dicts with the same keys, or, with ``names``, sequences of those columns' values in that order."""
    if names is None:
        names = list(rows[0])
        rows = [[row[n] for n in names] for row in rows]
    source = pg_rows({n: table.c[n] for n in names}, rows)
    return pg_dialect.insert(table).from_select(names, select(*(source.c[n] for n in names)))


def chunks(items: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class HistoryRow(NamedTuple):
    """One history row, its fields in the table's column order (bound by position on both databases)."""

    at: float
    email: str
    salesforce_id: str | None
    source: str
    action: str
    outcome: str | None = None
    detail: str | None = None
    requested_by: str | None = None
    reason: str | None = None


_HISTORY_COLUMNS = HistoryRow._fields
# SQLite's history insert as driver SQL: the rows go straight to the driver's executemany (SQLAlchemy's
# per-row parameter processing was most of the insert's cost in a group commit of many small requests)
# sqlite_steps.insert_json_rows: the time bound once, the other columns from JSON
_SQLITE_INSERT_HISTORY = (
    f"INSERT INTO history ({', '.join(_HISTORY_COLUMNS)})"
    f" SELECT ?, {json_columns(len(_HISTORY_COLUMNS) - 1)} FROM json_each(?)"
)


_SQLITE_INSERT_ADDRESS = (
    "INSERT INTO unsubscribes (email, unsubscribed, state_at, first_seen, last_seen, repeats) {values}"
)
# SQLite's statements of the ingest path as driver SQL, run on the driver's connection inside the transaction
# (SQLAlchemy's per-statement work was most of a small group commit's CPU). A key list is one JSON array
# parameter (``json_each``): one statement text whatever the count, the unique index still used per key.
SQLITE_IN_KEYS = "(SELECT value FROM json_each(?))"
_SQLITE_LOCK_ADDRESSES = (
    f"SELECT email, unsubscribed, {exact_real('state_at')} FROM unsubscribes WHERE email IN {SQLITE_IN_KEYS}"
)
_SQLITE_UPDATE_ADDRESS = (
    "UPDATE unsubscribes SET unsubscribed = ?, state_at = ?, last_seen = ?, repeats = repeats + ? WHERE email = ?"
)
_SQLITE_TARGETS_OF = f"SELECT salesforce_id, object, email FROM salesforce_targets WHERE email IN {SQLITE_IN_KEYS}"
_SQLITE_UNPUSHED_TARGETS_OF = f"{_SQLITE_TARGETS_OF} AND status != 'pushed'"
_SQLITE_HELD_TARGETS = f"SELECT salesforce_id FROM salesforce_targets WHERE salesforce_id IN {SQLITE_IN_KEYS}"
_TARGET_COLUMNS = (
    "salesforce_id", "object", "email", "status", "field", "created_at", "updated_at", "confirmed_value",
    "confirmed_at",
)  # fmt: skip
_SQLITE_INSERT_TARGET = (  # sqlite_steps.insert_json_rows: (id, object, email) from JSON, the rest bound once
    f"INSERT INTO salesforce_targets ({', '.join(_TARGET_COLUMNS[3:])}, {', '.join(_TARGET_COLUMNS[:3])})"
    f" SELECT {', '.join('?' for _ in _TARGET_COLUMNS[3:])}, {json_columns(3)} FROM json_each(?)"
)
_SQLITE_QUEUED_WRITES = (
    f"SELECT salesforce_id, value, {exact_real('act_at')} FROM outbox WHERE salesforce_id IN {SQLITE_IN_KEYS}"
)
_OUTBOX_COLUMNS = (
    "salesforce_id", "object", "email", "value", "act_at", "seq", "received_at", "attempts", "next_attempt_at"
)  # fmt: skip
_SQLITE_INSERT_OUTBOX = f"INSERT INTO outbox ({', '.join(_OUTBOX_COLUMNS)}) {{values}}"
_SQLITE_QUEUE_WRITE = (
    f"{_SQLITE_INSERT_OUTBOX} ON CONFLICT (salesforce_id) DO UPDATE SET object = excluded.object,"
    " email = excluded.email, value = excluded.value, act_at = excluded.act_at, seq = outbox.seq + 1,"
    " received_at = excluded.received_at, attempts = 0, next_attempt_at = excluded.next_attempt_at,"
    " last_error = NULL, stuck_at = NULL"
)
_SQLITE_REFRESH_WRITE = f"{_SQLITE_INSERT_OUTBOX} ON CONFLICT (salesforce_id) DO UPDATE SET act_at = excluded.act_at"
_SQLITE_REQUEUE_TARGETS = (
    f"UPDATE salesforce_targets SET status = 'pending', last_error = NULL, updated_at = ?"
    f" WHERE salesforce_id IN {SQLITE_IN_KEYS}"
)


def driver_connection(conn: Connection) -> Any:
    """The driver's own connection under ``conn``, in the transaction ``conn`` holds."""
    return conn.connection.driver_connection


def sqlite_select_in(conn: Connection, sql: str, keys: Sequence[Any], columns: int) -> list[list[Any]]:
    """The rows of a driver select of ``columns`` columns whose one parameter is a key list (``SQLITE_IN_KEYS``),
    fetched in one driver step per ``KEY_LIST_SIZE`` keys (``sqlite_steps.select_rows``: a REAL column is selected
    as ``exact_real`` text)."""
    raw = driver_connection(conn)
    rows: list[list[Any]] = []
    for chunk in chunks(keys, KEY_LIST_SIZE):
        rows.extend(select_rows(raw, sql, (json.dumps(list(chunk)),), columns))
    return rows


def _insert_targets_sqlite(conn: Connection, targets: Sequence[Target], rest: tuple[Any, ...]) -> list[str]:
    """``LedgerBase._insert_targets`` on SQLite (the write lock held): the ids already held are read, the others
    inserted by driver ``executemany`` (the first of duplicate ids in id order, as ON CONFLICT DO NOTHING
    would keep)."""
    ordered = sorted(targets)
    held = {sid for (sid,) in sqlite_select_in(conn, _SQLITE_HELD_TARGETS, sorted({t[0] for t in ordered}), 1)}
    rows: list[Target] = []
    for target in ordered:
        if target[0] not in held:
            held.add(target[0])
            rows.append(target)
    if rows:
        insert_json_rows(driver_connection(conn), _SQLITE_INSERT_TARGET, rest, rows)
    return [row[0] for row in rows]


class LedgerBase:
    """Transactions and the shared write steps; the stores of each concern build on it."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"
        self._write_turn = threading.RLock()
        self._committed = threading.Condition()
        self._commits = 0  # write transactions this process committed (``wait_for_commit``)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def _in(self, column: Any, keys: Sequence[Any]) -> ColumnElement[bool]:
        """``column IN keys`` (``pg_in`` on PostgreSQL)."""
        return pg_in(column, keys) if self._pg else column.in_(keys)

    def _in_key_list(self, column: Any, keys: Sequence[str]) -> ColumnElement[bool]:
        """``column IN keys`` as one parameter whatever the count (callers bind ``KEY_LIST_SIZE`` keys at most):
        PostgreSQL's array (``pg_in``), SQLite's JSON key list (``SQLITE_IN_KEYS``, in Core)."""
        if self._pg:
            return pg_in(column, keys)
        return column.in_(select(literal_column("value")).select_from(func.json_each(json.dumps(list(keys)))))

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction; on SQLite this process's writers take turns on a lock first.

        SQLite has one write lock per file. A writer that finds it taken waits in SQLite's busy handler, which
        sleeps up to 100 ms between tries, so a steady stream of short transactions from one thread (the
        pusher completing a Bulk claim 2,000 rows at a time) keeps another (the nightly) waiting for seconds.
        Waiting on a lock of the process instead wakes the waiter as soon as the holder is done. Writers of
        other processes still meet SQLite's busy handler; after ``SQLITE_BUSY_TIMEOUT_MS`` without a turn the
        transaction goes ahead to it as before (its timeout then applies).
        """
        turn = not self._pg and self._write_turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            with self._engine.connect() as conn:
                conn.execution_options(ledger_write=True)
                with conn.begin():
                    yield conn
        finally:
            if turn:
                self._write_turn.release()
        with self._committed:
            self._commits += 1
            self._committed.notify_all()

    @property
    def commits(self) -> int:
        """How many write transactions this process has committed (a mark for ``wait_for_commit``)."""
        return self._commits

    def wait_for_commit(self, seen: int, timeout: float) -> int:
        """Wait until this process commits a write transaction after the mark ``seen``, or ``timeout`` seconds;
        returns the new mark (``seen`` when none came). Writers of other processes are not seen (PostgreSQL
        replicas and jobs, a ``nightly --local`` beside a SQLite worker): a waiter bounds ``timeout``."""
        with self._committed:
            self._committed.wait_for(lambda: self._commits != seen, timeout=max(0.0, timeout))
            return self._commits

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT (both have ON CONFLICT)."""
        return pg_dialect.insert(table) if self._pg else sqlite_dialect.insert(table)

    def _db_now(self, conn: Connection) -> float:
        """Now by the database's clock on PostgreSQL (shared by every replica); this host's on SQLite."""
        if self._pg:
            return float(conn.execute(text("SELECT EXTRACT(EPOCH FROM clock_timestamp())")).scalar_one())
        return time.time()

    def _insert_history(self, conn: Connection, rows: Sequence[HistoryRow]) -> None:
        """Append history rows (driver SQL on SQLite, where the columns need no conversion)."""
        if not rows:
            return
        if self._pg:
            conn.execute(pg_insert_rows(history, rows, HistoryRow._fields))
            return
        # plain tuples: the driver binds an exact tuple faster than a sequence of another type
        raw = driver_connection(conn)
        by_time: dict[float, list[tuple[Any, ...]]] = {}
        for row in rows:  # the rows of one call share their time, as a rule
            by_time.setdefault(row[0], []).append(row[1:])
        for at, same in by_time.items():
            insert_json_rows(raw, _SQLITE_INSERT_HISTORY, (at,), same)

    # -- addresses ------------------------------------------------------------------

    def _lock_addresses(self, conn: Connection, emails: Sequence[str]) -> None:
        """Lock the stored addresses of ``emails`` for this transaction, in email order (PostgreSQL; SQLite's
        transaction holds the write lock already): checks made next see every act committed before them, and
        none commits meanwhile. ``_apply_acts`` takes the same locks again, already held."""
        if not self._pg:
            return
        for chunk in chunks(sorted(set(emails))):
            conn.execute(_LOCK_ADDRESSES, {"keys": list(chunk)}).all()

    def _apply_acts(
        self, conn: Connection, acts: Sequence[tuple[str, Act]], now: float
    ) -> tuple[list[ActEffect], dict[str, AddressState]]:
        """Apply acts (email, act) in order to their addresses under row locks.

        Returns each act's effect (in the order given) and every address's state afterwards.
        """
        emails = sorted({email for email, _ in acts})
        first: dict[str, Act] = {}
        for email, act in acts:
            first.setdefault(email, act)
        if not self._pg:
            return self._apply_acts_sqlite(conn, acts, emails, first, now)
        created: set[str] = set()
        for chunk in chunks(emails):
            fresh = [
                {
                    "email": e,
                    "unsubscribed": first[e].unsubscribe,
                    "state_at": first[e].at,
                    "first_seen": now,
                    "last_seen": now,
                    "repeats": 0,
                }
                for e in chunk
            ]
            stmt = pg_insert_rows(unsubscribes, fresh).on_conflict_do_nothing(index_elements=["email"])
            created.update(conn.execute(stmt.returning(unsubscribes.c.email)).scalars())
        stored: dict[str, AddressState] = {}
        existing = [e for e in emails if e not in created]
        for chunk in chunks(existing):
            rows = conn.execute(_LOCK_ADDRESSES, {"keys": list(chunk)}).all()
            stored.update((e, AddressState(bool(u), float(s if s is not None else 0.0))) for e, u, s in rows)
        return self._decide_acts(conn, acts, emails, first, created, stored, now)

    def _apply_acts_sqlite(
        self, conn: Connection, acts: Sequence[tuple[str, Act]], emails: list[str], first: dict[str, Act], now: float
    ) -> tuple[list[ActEffect], dict[str, AddressState]]:
        """SQLite: the transaction holds the write lock (BEGIN IMMEDIATE), so the addresses are read first and
        the missing ones inserted by driver ``executemany`` (no INSERT ... RETURNING per group, whose per-row
        processing in SQLAlchemy was the largest statement cost of a group commit)."""
        stored = {
            e: AddressState(bool(u), float(s if s is not None else 0.0))
            for e, u, s in sqlite_select_in(conn, _SQLITE_LOCK_ADDRESSES, emails, 3)
        }
        created = {e for e in emails if e not in stored}
        if created:
            insert_rows(
                driver_connection(conn),
                _SQLITE_INSERT_ADDRESS,
                [(e, first[e].unsubscribe, first[e].at, now, now, 0) for e in sorted(created)],
            )
        return self._decide_acts(conn, acts, emails, first, created, stored, now)

    def _decide_acts(
        self,
        conn: Connection,
        acts: Sequence[tuple[str, Act]],
        emails: list[str],
        first: dict[str, Act],
        created: set[str],
        stored: dict[str, AddressState],
        now: float,
    ) -> tuple[list[ActEffect], dict[str, AddressState]]:
        """Each act's effect in order, from the stored states; the addresses whose state moved are updated."""
        state: dict[str, AddressState | None] = {e: stored.get(e) for e in emails}
        effects: list[ActEffect] = []
        repeats: dict[str, int] = {}
        for email, act in acts:
            effect = act_effect(state[email], act)
            effects.append(effect)
            if effect is ActEffect.REPEAT and act.unsubscribe:
                repeats[email] = repeats.get(email, 0) + 1
            state[email] = state_after(state[email], act)
        final = {e: s for e, s in state.items() if s is not None}
        changed = [
            {"b_email": e, "b_u": s.unsubscribed, "b_at": s.state_at, "b_r": repeats.get(e, 0), "b_now": now}
            for e, s in sorted(final.items())
            if e not in created or s != AddressState(first[e].unsubscribe, first[e].at) or repeats.get(e)
        ]
        if changed and not self._pg:
            driver_connection(conn).executemany(
                _SQLITE_UPDATE_ADDRESS, [(c["b_u"], c["b_at"], now, c["b_r"], c["b_email"]) for c in changed]
            )
        elif changed:  # one statement over arrays (``pg_rows``); the emails are distinct
            u = unsubscribes
            rows = pg_rows(
                {"email": u.c.email, "u": u.c.unsubscribed, "at": u.c.state_at, "r": u.c.repeats},
                [(c["b_email"], c["b_u"], c["b_at"], c["b_r"]) for c in changed],
            )
            conn.execute(
                update(u)
                .where(u.c.email == rows.c.email)
                .values(unsubscribed=rows.c.u, state_at=rows.c.at, last_seen=now, repeats=u.c.repeats + rows.c.r)
            )
        return effects, final

    def _targets_of(self, conn: Connection, emails: Sequence[str], *, unpushed_only: bool = False) -> list[Target]:
        """The Salesforce records held for ``emails`` (all, or those not confirmed pushed), by id."""
        if not emails:
            return []
        if not self._pg:
            sql = _SQLITE_UNPUSHED_TARGETS_OF if unpushed_only else _SQLITE_TARGETS_OF
            return sorted((sid, obj, email) for sid, obj, email in sqlite_select_in(conn, sql, sorted(set(emails)), 3))
        query = _UNPUSHED_TARGETS_OF if unpushed_only else _TARGETS_OF
        found: list[Target] = []
        for chunk in chunks(sorted(set(emails))):
            found.extend((sid, obj, email) for sid, obj, email in conn.execute(query, {"keys": list(chunk)}).all())
        return sorted(found)

    def _insert_targets(
        self,
        conn: Connection,
        targets: Sequence[Target],
        status: str,
        field: str | None,
        now: float,
        *,
        confirmed_at: float | None = None,
    ) -> list[str]:
        """Add records not held yet (by id); returns the ids added. ``confirmed_at``: Salesforce holds true on
        them since then (the value is recorded as confirmed)."""
        if not targets:
            return []
        # the columns after (salesforce_id, object, email), the same for every record
        rest = (status, field, now, now, None if confirmed_at is None else True, confirmed_at)
        if not self._pg:
            return _insert_targets_sqlite(conn, targets, rest)
        added: list[str] = []
        for chunk in chunks(sorted(targets)):
            rows = [(*target, *rest) for target in chunk]
            stmt = pg_insert_rows(salesforce_targets, rows, _TARGET_COLUMNS)
            stmt = stmt.on_conflict_do_nothing(index_elements=["salesforce_id"])
            added.extend(conn.execute(stmt.returning(salesforce_targets.c.salesforce_id)).scalars())
        return added

    # -- queued writes ----------------------------------------------------------------------

    def _queue_writes(self, conn: Connection, writes: Sequence[tuple[Target, bool, float]], now: float) -> int:
        """Queue a write of ``value`` (from an act at ``act_at``) on each target, merged with what is queued.

        ``merge_queued_write`` decides per record. A replaced row keeps its lease: a write of the old value
        in flight finishes, and its completion sees the bumped ``seq`` and leaves the row for the new value.
        Returns how many records now have a write queued for them by this call (inserted or replaced).
        """
        if not writes:
            return 0
        latest: dict[str, tuple[Target, bool, float]] = {}
        for target, value, act_at in writes:
            kept = latest.get(target[0])
            if kept is None or act_at >= kept[2]:
                latest[target[0]] = (target, value, act_at)
        ids = sorted(latest)
        if self._pg:
            rows: Sequence[Sequence[Any]] = [
                row for chunk in chunks(ids) for row in conn.execute(_QUEUED_WRITES, {"keys": list(chunk)}).all()
            ]
        else:
            rows = sqlite_select_in(conn, _SQLITE_QUEUED_WRITES, ids, 3)
        queued = {sid: QueuedWrite(bool(value), float(at if at is not None else 0.0)) for sid, value, at in rows}
        fresh: list[dict[str, Any]] = []
        refresh: list[dict[str, Any]] = []
        for sid in ids:
            (_, obj, email), value, act_at = latest[sid]
            merge = merge_queued_write(queued.get(sid), QueuedWrite(value, act_at))
            row = {
                "salesforce_id": sid,
                "object": obj,
                "email": email,
                "value": value,
                "act_at": act_at,
                "seq": 0,
                "received_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
            if merge in (Merge.INSERT, Merge.REPLACE):
                fresh.append(row)
            elif merge is Merge.REFRESH:
                refresh.append(row)
        if not self._pg:
            return self._store_writes_sqlite(conn, fresh, refresh, now)
        if fresh:
            stmt = pg_insert_rows(outbox, fresh)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["salesforce_id"],
                    set_={
                        "object": stmt.excluded.object,
                        "email": stmt.excluded.email,
                        "value": stmt.excluded.value,
                        "act_at": stmt.excluded.act_at,
                        "seq": outbox.c.seq + 1,
                        "received_at": stmt.excluded.received_at,
                        "attempts": 0,
                        "next_attempt_at": stmt.excluded.next_attempt_at,
                        "last_error": None,
                        "stuck_at": None,
                    },
                )
            )
            for chunk in chunks([r["salesforce_id"] for r in fresh]):
                conn.execute(
                    update(salesforce_targets)
                    .where(pg_in(salesforce_targets.c.salesforce_id, chunk))
                    .values(status="pending", last_error=None, updated_at=now)
                )
        if refresh:  # the same value from a later act: only the act time moves (a vanished row is queued again)
            stmt = pg_insert_rows(outbox, refresh)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["salesforce_id"], set_={"act_at": stmt.excluded.act_at})
            )
        return len(fresh)

    def _store_writes_sqlite(
        self, conn: Connection, fresh: list[dict[str, Any]], refresh: list[dict[str, Any]], now: float
    ) -> int:
        """``_queue_writes``' statements on SQLite, as driver SQL (the same upserts as PostgreSQL's Core)."""
        raw = driver_connection(conn)
        if fresh:
            insert_rows(raw, _SQLITE_QUEUE_WRITE, [tuple(r[c] for c in _OUTBOX_COLUMNS) for r in fresh])
            ids = [r["salesforce_id"] for r in fresh]
            for chunk in chunks(ids, KEY_LIST_SIZE):
                raw.execute(_SQLITE_REQUEUE_TARGETS, (now, json.dumps(list(chunk))))
        if refresh:
            insert_rows(raw, _SQLITE_REFRESH_WRITE, [tuple(r[c] for c in _OUTBOX_COLUMNS) for r in refresh])
        return len(fresh)

"""The ledger: unsubscribes, their Salesforce targets, the push outbox, history and nightly runs.

All SQL lives here. Methods are synchronous and thread-safe (one pooled connection per
call); async callers run them in a thread. Every write is one transaction.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

from unsubscribe_sync.ledger.engine import create_ledger_engine
from unsubscribe_sync.ledger.models import (
    ACTION_PUSH_FAILED,
    ACTION_PUSH_SKIPPED,
    ACTION_PUSHED,
    ACTION_RESUBSCRIBED,
    ACTION_UNSUBSCRIBED,
    OUTCOME_NOT_UNSUBSCRIBED,
    OUTCOME_RESUBSCRIBED,
    SOURCE_PUSH,
    SOURCE_SALESFORCE_SYNC,
    IngestResult,
    LedgerStats,
    OutboxRow,
    PushOutcome,
    Resubscribe,
    ResubscribeResult,
    Unsubscribe,
    to_epoch,
    to_rfc3339,
)
from unsubscribe_sync.ledger.schema import (
    history,
    migrate,
    outbox,
    processed_events,
    salesforce_targets,
    sync_runs,
    unsubscribes,
)

_IN_CHUNK = 500  # ids per IN (...) list: far below SQLite's bound-parameter limit


class _Event(Protocol):
    @property
    def event_id(self) -> str | None: ...


E = TypeVar("E", bound=_Event)
_Target = tuple[str, str, str]  # (salesforce_id, object, email)


def _chunks(items: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def normalize_email(email: str) -> str:
    """The ledger key of an address: trimmed, Unicode NFC, lower-cased (suppression ignores case and form)."""
    return unicodedata.normalize("NFC", email.strip()).lower()


def _pushed_detail(field: str, salesforce_id: str, cleared: Collection[str]) -> str:
    """History detail of a successful write: the field, and "= false" when a resubscribe cleared it."""
    return f"{field} = false" if salesforce_id in cleared else field


def _failure_text(code: str | None, message: str | None) -> str:
    return ": ".join(part for part in (code, message) if part) or "unknown error"


class Ledger:
    """The durable store behind the worker and the nightly sync."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, pool_size: int = 5) -> Ledger:
        """Open the ledger at ``url`` (sqlite:// or postgresql://), creating/migrating its schema."""
        ledger = cls(create_ledger_engine(url, pool_size=pool_size))
        if migrate_schema:
            ledger.migrate()
        return ledger

    def close(self) -> None:
        self._engine.dispose()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    # -- plumbing -------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(ledger_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    def _insert(self, table: Any) -> Any:
        """The dialect's INSERT (both have ON CONFLICT)."""
        return pg_dialect.insert(table) if self._pg else sqlite_dialect.insert(table)

    def migrate(self) -> int:
        with self._write() as conn:
            return migrate(conn)

    def ping(self) -> None:
        """Raise when the ledger cannot be read (used by /readyz)."""
        with self._read() as conn:
            conn.execute(select(func.count()).select_from(outbox).where(outbox.c.id < 0)).scalar()

    # -- webhook ingest ---------------------------------------------------------

    def ingest(self, items: Sequence[Unsubscribe], *, received_at: float | None = None) -> IngestResult:
        """Store validated unsubscribes in one transaction (idempotent by eventId and by email + ID)."""
        now = time.time() if received_at is None else received_at
        result = IngestResult()
        if not items:
            return result
        items = [
            replace(i, email=normalize_email(i.email)) if i.email != normalize_email(i.email) else i for i in items
        ]
        with self._write() as conn:
            kept = self._drop_replayed(conn, items, now, result)
            if not kept:
                return result
            reopened = self._emails_not_unsubscribed(conn, {item.email for item in kept})
            self._upsert_unsubscribes(conn, (item.email for item in kept), now)
            targets: dict[str, Unsubscribe] = {}
            for item in kept:
                if item.salesforce_id is not None:
                    targets.setdefault(item.salesforce_id, item)
            new_ids = self._insert_targets(conn, targets.values(), "pending", None, now)
            if new_ids:
                conn.execute(
                    self._insert(outbox).on_conflict_do_nothing(index_elements=["salesforce_id"]),
                    [
                        {
                            "salesforce_id": sid,
                            "object": targets[sid].object,
                            "email": targets[sid].email,
                            "received_at": now,
                            "attempts": 0,
                            "next_attempt_at": now,
                        }
                        for sid in new_ids
                    ],
                )
            again: list[_Target] = []
            requeued: set[str] = set()  # addresses whose records are written again
            if reopened:  # unsubscribed again after a resubscribe: set the field again on all their records
                queued = set(new_ids)
                again = [t for t in self._live_targets(conn, reopened) if t[0] not in queued]
                self._enqueue(conn, again, True, now)
                requeued = {email for _, _, email in again}
            rows = []
            for item in kept:
                at = item.occurred_at if item.occurred_at is not None else now
                rows.append(self._history_row(at, item.email, item.salesforce_id, item.source, ACTION_UNSUBSCRIBED))
                if item.salesforce_id is None and item.email not in requeued:
                    result.skipped_no_salesforce_id += 1
                    rows.append(
                        self._history_row(
                            now, item.email, None, SOURCE_PUSH, ACTION_PUSH_SKIPPED, "skipped", "no Salesforce ID"
                        )
                    )
            conn.execute(history.insert(), rows)
            result.stored = len(kept)
            result.enqueued = len(new_ids) + len(again)
        return result

    def _drop_replayed(
        self, conn: Connection, items: Sequence[E], now: float, result: IngestResult | ResubscribeResult
    ) -> list[E]:
        event_ids = list(dict.fromkeys(item.event_id for item in items if item.event_id))
        new_events: set[str] = set()
        if event_ids:
            stmt = (
                self._insert(processed_events)
                .on_conflict_do_nothing(index_elements=["event_id"])
                .returning(processed_events.c.event_id)
            )
            new_events = set(conn.execute(stmt, [{"event_id": e, "received_at": now} for e in event_ids]).scalars())
        kept: list[E] = []
        seen: set[str] = set()
        for item in items:
            if item.event_id:
                if item.event_id not in new_events or item.event_id in seen:
                    result.replayed += 1
                    continue
                seen.add(item.event_id)
            kept.append(item)
        return kept

    def _upsert_unsubscribes(self, conn: Connection, emails: Iterable[str], now: float) -> None:
        unique = list(dict.fromkeys(emails))
        if not unique:
            return
        stmt = self._insert(unsubscribes)
        stmt = stmt.on_conflict_do_update(
            index_elements=["email"], set_={"unsubscribed": True, "last_seen": stmt.excluded.last_seen}
        )
        conn.execute(stmt, [{"email": e, "unsubscribed": True, "first_seen": now, "last_seen": now} for e in unique])

    def _insert_targets(
        self, conn: Connection, items: Iterable[Unsubscribe], status: str, field: str | None, now: float
    ) -> list[str]:
        rows = [
            {
                "salesforce_id": item.salesforce_id,
                "object": item.object,
                "email": item.email,
                "status": status,
                "field": field,
                "created_at": now,
                "updated_at": now,
            }
            for item in items
        ]
        if not rows:
            return []
        stmt = (
            self._insert(salesforce_targets)
            .on_conflict_do_nothing(index_elements=["salesforce_id"])
            .returning(salesforce_targets.c.salesforce_id)
        )
        return list(conn.execute(stmt, rows).scalars())

    @staticmethod
    def _history_row(
        at: float,
        email: str,
        salesforce_id: str | None,
        source: str,
        action: str,
        outcome: str | None = None,
        detail: str | None = None,
        requested_by: str | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        return {
            "at": at,
            "email": email,
            "salesforce_id": salesforce_id,
            "source": source,
            "action": action,
            "outcome": outcome,
            "detail": detail,
            "requested_by": requested_by,
            "reason": reason,
        }

    def _emails_not_unsubscribed(self, conn: Connection, emails: Collection[str]) -> set[str]:
        """Those of ``emails`` the ledger holds as not unsubscribed (resubscribed)."""
        found: set[str] = set()
        for chunk in _chunks(sorted(emails)):
            found.update(
                conn.execute(
                    select(unsubscribes.c.email).where(
                        unsubscribes.c.email.in_(chunk), unsubscribes.c.unsubscribed.is_(False)
                    )
                ).scalars()
            )
        return found

    def _live_targets(self, conn: Connection, emails: Collection[str]) -> list[_Target]:
        """The Salesforce records of ``emails`` that can still be written (not failed for good)."""
        t = salesforce_targets
        found: list[_Target] = []
        for chunk in _chunks(sorted(emails)):
            found.extend(
                (sid, obj, email)
                for sid, obj, email in conn.execute(
                    select(t.c.salesforce_id, t.c.object, t.c.email)
                    .where(t.c.email.in_(chunk), t.c.status != "failed")
                    .order_by(t.c.salesforce_id)
                ).all()
            )
        return found

    def _enqueue(self, conn: Connection, targets: Sequence[_Target], value: bool, now: float) -> None:
        """Queue a write of ``value`` on each target, replacing a write still queued for it (the latest act wins).

        A replaced row keeps its lease: a write of the old value in flight finishes first, and its completion
        sees the bumped ``seq`` and puts the row back for the new value instead of removing it.
        """
        if not targets:
            return
        stmt = self._insert(outbox)
        stmt = stmt.on_conflict_do_update(
            index_elements=["salesforce_id"],
            set_={
                "object": stmt.excluded.object,
                "email": stmt.excluded.email,
                "value": stmt.excluded.value,
                "seq": outbox.c.seq + 1,
                "received_at": stmt.excluded.received_at,
                "attempts": 0,
                "next_attempt_at": stmt.excluded.next_attempt_at,
                "last_error": None,
            },
        )
        conn.execute(
            stmt,
            [
                {
                    "salesforce_id": sid,
                    "object": obj,
                    "email": email,
                    "value": value,
                    "seq": 0,
                    "received_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for sid, obj, email in targets
            ],
        )
        for chunk in _chunks([sid for sid, _, _ in targets]):
            conn.execute(
                update(salesforce_targets)
                .where(salesforce_targets.c.salesforce_id.in_(chunk))
                .values(status="pending", last_error=None, updated_at=now)
            )

    # -- resubscribes --------------------------------------------------------------

    def resubscribe(self, items: Sequence[Resubscribe], *, received_at: float | None = None) -> ResubscribeResult:
        """Store validated resubscribes in one transaction (idempotent by eventId).

        Per item: the address is marked not unsubscribed (an address never seen is recorded as not
        unsubscribed, so the request is on file), a ``resubscribed`` history row names who asked and why
        (outcome ``resubscribed``, or ``not_unsubscribed`` when the address was not suppressed), and a write
        of false is queued for each of the address's Salesforce records (plus ``salesforceId`` when given
        and not held by another address), replacing any opt-out write still queued for them.
        """
        now = time.time() if received_at is None else received_at
        result = ResubscribeResult()
        if not items:
            return result
        items = [replace(i, email=normalize_email(i.email)) for i in items]
        with self._write() as conn:
            kept = self._drop_replayed(conn, items, now, result)
            if not kept:
                return result
            emails = list(dict.fromkeys(item.email for item in kept))
            suppressed: dict[str, bool] = {}
            for chunk in _chunks(emails):
                suppressed.update(
                    (email, bool(flag))
                    for email, flag in conn.execute(
                        select(unsubscribes.c.email, unsubscribes.c.unsubscribed).where(unsubscribes.c.email.in_(chunk))
                    ).all()
                )
            new = [e for e in emails if e not in suppressed]
            if new:
                conn.execute(
                    unsubscribes.insert(),
                    [{"email": e, "unsubscribed": False, "first_seen": now, "last_seen": now} for e in new],
                )
            for chunk in _chunks([e for e in emails if e in suppressed]):
                conn.execute(
                    update(unsubscribes)
                    .where(unsubscribes.c.email.in_(chunk))
                    .values(unsubscribed=False, last_seen=now)
                )
            named = {i.salesforce_id: i for i in kept if i.salesforce_id is not None}
            self._insert_targets(
                conn,
                (Unsubscribe(i.email, i.salesforce_id, i.object, source=i.source) for i in named.values()),
                "pending",
                None,
                now,
            )
            targets = self._live_targets(conn, emails)
            self._enqueue(conn, targets, False, now)
            rows = []
            for item in kept:
                at = item.occurred_at if item.occurred_at is not None else now
                was = suppressed.get(item.email, False)
                suppressed[item.email] = False  # a second item of the batch finds the address resubscribed
                outcome = OUTCOME_RESUBSCRIBED if was else OUTCOME_NOT_UNSUBSCRIBED
                if was:
                    result.resubscribed += 1
                else:
                    result.not_unsubscribed += 1
                rows.append(
                    self._history_row(
                        at,
                        item.email,
                        item.salesforce_id,
                        item.source,
                        ACTION_RESUBSCRIBED,
                        outcome,
                        f"by {item.requested_by}: {item.reason}",
                        item.requested_by,
                        item.reason,
                    )
                )
            conn.execute(history.insert(), rows)
            result.stored = len(kept)
            result.enqueued = len(targets)
        return result

    def pending_clears(self) -> tuple[set[str], set[str]]:
        """(Salesforce ids, emails) of the records, of any object, with a resubscribe's write of false queued."""
        with self._read() as conn:
            rows = conn.execute(select(outbox.c.salesforce_id, outbox.c.email).where(outbox.c.value.is_(False))).all()
        return {sid for sid, _ in rows}, {email for _, email in rows}

    # -- reads for the API ---------------------------------------------------------

    def lookup(self, email: str) -> dict[str, Any] | None:
        """The suppression status, Salesforce targets and history of one address; None when unknown."""
        key = normalize_email(email)
        with self._read() as conn:
            row = conn.execute(select(unsubscribes).where(unsubscribes.c.email == key)).mappings().first()
            if row is None:
                return None
            targets = conn.execute(
                select(salesforce_targets)
                .where(salesforce_targets.c.email == key)
                .order_by(salesforce_targets.c.salesforce_id)
            ).mappings()
            events = conn.execute(select(history).where(history.c.email == key).order_by(history.c.id)).mappings()
            return {
                "email": row["email"],
                "unsubscribed": bool(row["unsubscribed"]),
                "firstSeen": to_rfc3339(row["first_seen"]),
                "lastSeen": to_rfc3339(row["last_seen"]),
                "salesforce": [
                    {
                        "id": t["salesforce_id"],
                        "object": t["object"],
                        "status": t["status"],
                        "field": t["field"],
                        "lastError": t["last_error"],
                    }
                    for t in targets
                ],
                "history": [
                    {
                        "at": to_rfc3339(h["at"]),
                        "source": h["source"],
                        "action": h["action"],
                        **({"salesforceId": h["salesforce_id"]} if h["salesforce_id"] else {}),
                        **({"outcome": h["outcome"]} if h["outcome"] else {}),
                        **({"detail": h["detail"]} if h["detail"] else {}),
                        **({"requestedBy": h["requested_by"]} if h["requested_by"] else {}),
                        **({"reason": h["reason"]} if h["reason"] else {}),
                    }
                    for h in events
                ],
            }

    def list_unsubscribes(self, *, limit: int, after: int = 0) -> tuple[list[dict[str, Any]], int | None]:
        """One page of addresses in insertion order (keyset paging); returns (items, key of the next page)."""
        with self._read() as conn:
            rows = conn.execute(
                select(unsubscribes).where(unsubscribes.c.id > after).order_by(unsubscribes.c.id).limit(limit + 1)
            ).mappings()
            page = list(rows)
        more = len(page) > limit
        page = page[:limit]
        items = [
            {
                "email": r["email"],
                "unsubscribed": bool(r["unsubscribed"]),
                "firstSeen": to_rfc3339(r["first_seen"]),
                "lastSeen": to_rfc3339(r["last_seen"]),
            }
            for r in page
        ]
        return items, (int(page[-1]["id"]) if more and page else None)

    def stats(self) -> LedgerStats:
        with self._read() as conn:
            backlog, oldest = conn.execute(select(func.count(), func.min(outbox.c.received_at))).one()
            by_status: dict[str, int] = dict(
                conn.execute(
                    select(salesforce_targets.c.status, func.count()).group_by(salesforce_targets.c.status)
                ).all()
            )
        return LedgerStats(backlog=int(backlog), oldest_pending_received_at=oldest, by_status=by_status)

    def backlog(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)).scalar() or 0)

    def table_counts(self) -> dict[str, int]:
        """Row counts per table (for checks that a refused request changed nothing)."""
        tables = (unsubscribes, salesforce_targets, outbox, history, processed_events, sync_runs)
        with self._read() as conn:
            return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0) for t in tables}

    # -- the push outbox -------------------------------------------------------------

    def claim(self, owner: str, limit: int, lease_seconds: float, *, now: float | None = None) -> list[OutboxRow]:
        """Lease up to ``limit`` due pushes of one object and one value (those of the oldest due row).

        On PostgreSQL rows are locked with SKIP LOCKED so replicas never claim the same row;
        a lease that expires (its worker died) makes the row claimable again.
        """
        now = time.time() if now is None else now
        due = and_(
            outbox.c.next_attempt_at <= now,
            or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at < now),
        )
        with self._write() as conn:
            first = conn.execute(
                select(outbox.c.object, outbox.c.value)
                .where(due)
                .order_by(outbox.c.next_attempt_at, outbox.c.id)
                .limit(1)
            ).first()
            if first is None:
                return []
            object_name, value = first
            rows = conn.execute(
                select(
                    outbox.c.id,
                    outbox.c.salesforce_id,
                    outbox.c.object,
                    outbox.c.email,
                    outbox.c.received_at,
                    outbox.c.attempts,
                    outbox.c.value,
                    outbox.c.seq,
                )
                .where(due, outbox.c.object == object_name, outbox.c.value == bool(value))
                .order_by(outbox.c.next_attempt_at, outbox.c.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            conn.execute(
                update(outbox)
                .where(outbox.c.id.in_([r.id for r in rows]))
                .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
            )
        return [
            OutboxRow(r.id, r.salesforce_id, r.object, r.email, r.received_at, r.attempts, bool(r.value), r.seq)
            for r in rows
        ]

    def complete(self, owner: str, outcomes: Sequence[PushOutcome], *, field: str, source: str = SOURCE_PUSH) -> None:
        """Record the outcome of claimed pushes in one transaction.

        Pushed and failed rows leave the outbox (Salesforce answered for them); retried rows
        get their next attempt time and lose the lease, if this worker still holds it. A row whose
        value a newer act replaced while it was being written (its ``seq`` moved on) stays, due now,
        for the new value: the write is recorded in the history only.
        """
        if not outcomes:
            return
        now = time.time()
        with self._write() as conn:
            current: dict[int, int] = {}
            for chunk in _chunks([o.row.id for o in outcomes]):
                current.update(
                    conn.execute(
                        select(outbox.c.id, outbox.c.seq).where(outbox.c.id.in_(chunk)).with_for_update()
                    ).all()
                )
            replaced = [o for o in outcomes if o.row.id in current and current[o.row.id] != o.row.seq]
            if replaced:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == bindparam("b_id"), outbox.c.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None, next_attempt_at=now),
                    [{"b_id": o.row.id} for o in replaced],
                )
                rows = [
                    self._push_history(now, o.row, field, source, o.error if o.status == "failed" else None)
                    for o in replaced
                    if o.status != "retry"
                ]
                if rows:
                    conn.execute(history.insert(), rows)
            skip = {o.row.id for o in replaced}
            outcomes = [o for o in outcomes if o.row.id not in skip]
            done = [o for o in outcomes if o.status != "retry"]
            for chunk in _chunks([o.row.id for o in done]):
                conn.execute(delete(outbox).where(outbox.c.id.in_(chunk)))
            self._set_targets(
                conn,
                [(o.row.salesforce_id, o.row.email, o.error if o.status == "failed" else None) for o in done],
                field,
                source,
                now,
                cleared={o.row.salesforce_id for o in done if not o.row.value},
            )
            retries = [o for o in outcomes if o.status == "retry"]
            if retries:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id == bindparam("b_id"), outbox.c.lease_owner == owner)
                    .values(
                        attempts=outbox.c.attempts + 1,
                        next_attempt_at=bindparam("b_next"),
                        last_error=bindparam("b_error"),
                        lease_owner=None,
                        lease_expires_at=None,
                    ),
                    [{"b_id": o.row.id, "b_next": o.next_attempt_at or now, "b_error": o.error} for o in retries],
                )

    def _set_targets(
        self,
        conn: Connection,
        results: Sequence[tuple[str, str, str | None]],
        field: str,
        source: str,
        now: float,
        *,
        cleared: Collection[str] = (),
    ) -> None:
        """Mark targets pushed (error None) or failed (error text), with one history row each.

        ``cleared``: ids whose write set the field to false (a resubscribe), not true.
        """
        if not results:
            return
        pushed = [{"b_sid": sid} for sid, _, error in results if error is None]
        failed = [{"b_sid": sid, "b_error": error} for sid, _, error in results if error is not None]
        if pushed:
            conn.execute(
                update(salesforce_targets)
                .where(salesforce_targets.c.salesforce_id == bindparam("b_sid"))
                .values(status="pushed", field=field, last_error=None, updated_at=now),
                pushed,
            )
        if failed:
            conn.execute(
                update(salesforce_targets)
                .where(salesforce_targets.c.salesforce_id == bindparam("b_sid"))
                .values(status="failed", last_error=bindparam("b_error"), updated_at=now),
                failed,
            )
        conn.execute(
            history.insert(),
            [
                self._history_row(
                    now, email, sid, source, ACTION_PUSHED, "success", _pushed_detail(field, sid, cleared)
                )
                if error is None
                else self._history_row(now, email, sid, source, ACTION_PUSH_FAILED, "failed", error)
                for sid, email, error in results
            ],
        )

    def _push_history(self, now: float, row: OutboxRow, field: str, source: str, error: str | None) -> dict[str, Any]:
        if error is None:
            detail = _pushed_detail(field, row.salesforce_id, () if row.value else (row.salesforce_id,))
            return self._history_row(now, row.email, row.salesforce_id, source, ACTION_PUSHED, "success", detail)
        return self._history_row(now, row.email, row.salesforce_id, source, ACTION_PUSH_FAILED, "failed", error)

    def release(self, owner: str, row_ids: Sequence[int], *, error: str | None = None) -> None:
        """Give leased rows back untouched (the call failed as a whole, or the worker is stopping)."""
        with self._write() as conn:
            for chunk in _chunks(list(row_ids)):
                conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_(chunk), outbox.c.lease_owner == owner)
                    .values(lease_owner=None, lease_expires_at=None, last_error=error)
                )

    def release_all_leases(self) -> int:
        """Clear every lease (only safe when this process is the ledger's single worker: SQLite)."""
        with self._write() as conn:
            res = conn.execute(
                update(outbox).where(outbox.c.lease_owner.is_not(None)).values(lease_owner=None, lease_expires_at=None)
            )
            return int(res.rowcount or 0)

    # -- the nightly sync --------------------------------------------------------------

    def iter_targets(
        self, object_name: str, *, include_failed: bool = True, page_size: int = 5000
    ) -> Iterator[tuple[str, str]]:
        """(salesforce_id, email) of the targets of ``object_name``, ordered by ID (bytewise), streamed in pages.

        Only targets of addresses that are unsubscribed: a resubscribed address's records are never set again.
        ``include_failed=False`` leaves out records whose write failed for good (deleted, converted, ...).
        """
        t = salesforce_targets
        suppressed = (
            select(unsubscribes.c.id).where(unsubscribes.c.email == t.c.email, unsubscribes.c.unsubscribed).exists()
        )
        after = ""
        while True:
            query = select(t.c.salesforce_id, t.c.email).where(
                t.c.object == object_name, t.c.salesforce_id > after, suppressed
            )
            if not include_failed:
                query = query.where(t.c.status != "failed")
            with self._read() as conn:
                page = conn.execute(query.order_by(t.c.salesforce_id).limit(page_size)).all()
            yield from ((sid, email) for sid, email in page)
            if len(page) < page_size:
                return
            after = page[-1][0]

    def still_to_set(self, ids: Sequence[str]) -> list[str]:
        """Those of ``ids`` (in order) whose address is still unsubscribed and that have no resubscribe's write of
        false queued: the nightly re-checks its plan just before writing, so a resubscribe that arrived meanwhile
        is not overwritten."""
        keep: set[str] = set()
        t = salesforce_targets
        suppressed = (
            select(unsubscribes.c.id).where(unsubscribes.c.email == t.c.email, unsubscribes.c.unsubscribed).exists()
        )
        clearing = select(outbox.c.id).where(outbox.c.salesforce_id == t.c.salesforce_id, outbox.c.value.is_(False))
        with self._read() as conn:
            for chunk in _chunks(list(ids)):
                keep.update(
                    conn.execute(
                        select(t.c.salesforce_id).where(t.c.salesforce_id.in_(chunk), suppressed, ~clearing.exists())
                    ).scalars()
                )
        return [sid for sid in ids if sid in keep]

    def count_without_salesforce_id(self) -> int:
        """Unsubscribed addresses with no Salesforce record to write (reported as skipped)."""
        no_target = (
            ~select(salesforce_targets.c.salesforce_id)
            .where(salesforce_targets.c.email == unsubscribes.c.email)
            .exists()
        )
        with self._read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(unsubscribes).where(unsubscribes.c.unsubscribed, no_target)
                ).scalar()
                or 0
            )

    def add_salesforce_opt_outs(
        self,
        records: Sequence[tuple[str, str, str | None]],
        source: str = SOURCE_SALESFORCE_SYNC,
        *,
        field: str | None = None,
    ) -> int:
        """Add Salesforce records whose opt-out is already true: (salesforce_id, object, email).

        Adds the address to the suppression list, the record as a target already pushed, and a
        history row; a pending push of that record is dropped (Salesforce already has it).
        A record of a resubscribed address is a new opt-out made in Salesforce and suppresses the
        address again, except while a resubscribe's write of false to that record or address is
        still queued (that write is on its way; the record is left alone).
        Records without an email cannot suppress anything and are ignored. Returns how many
        records were new to the ledger (or suppress a resubscribed address again); calling it
        again with the same records adds nothing.
        """
        now = time.time()
        items: dict[str, Unsubscribe] = {}
        for sid, object_name, email in records:
            if email and email.strip():
                items.setdefault(sid, Unsubscribe(normalize_email(email), sid, object_name, None, source))
        if not items:
            return 0
        with self._write() as conn:
            clearing: set[str] = set()  # ids and emails with a resubscribe write still queued
            for chunk in _chunks(list(items)):
                emails = list({items[sid].email for sid in chunk})
                for sid, email in conn.execute(
                    select(outbox.c.salesforce_id, outbox.c.email).where(
                        outbox.c.value.is_(False),
                        or_(outbox.c.salesforce_id.in_(chunk), outbox.c.email.in_(emails)),
                    )
                ).all():
                    clearing.update((sid, email))
            items = {sid: i for sid, i in items.items() if sid not in clearing and i.email not in clearing}
            if not items:
                return 0
            reopened = self._emails_not_unsubscribed(conn, {i.email for i in items.values()})
            self._upsert_unsubscribes(conn, (i.email for i in items.values()), now)
            new_ids = set(self._insert_targets(conn, items.values(), "pushed", field, now))
            existing = [sid for sid in items if sid not in new_ids]
            for chunk in _chunks(existing):
                conn.execute(
                    update(salesforce_targets)
                    .where(salesforce_targets.c.salesforce_id.in_(chunk), salesforce_targets.c.status != "pushed")
                    .values(status="pushed", last_error=None, updated_at=now, **({"field": field} if field else {}))
                )
                conn.execute(delete(outbox).where(outbox.c.salesforce_id.in_(chunk)))
            added = sorted(new_ids | {sid for sid in existing if items[sid].email in reopened})
            if added:
                conn.execute(
                    history.insert(),
                    [
                        self._history_row(now, items[sid].email, sid, source, ACTION_UNSUBSCRIBED, "in_salesforce")
                        for sid in added
                    ],
                )
        return len(added)

    def mark_targets(
        self,
        ids: Sequence[str],
        results: Sequence[Any],
        *,
        field: str,
        source: str = SOURCE_SALESFORCE_SYNC,
    ) -> dict[str, int]:
        """Record write results for targets (``ids`` in the order written, ``results`` RecordResult-like).

        Success marks the target pushed; a PERMANENT or CONFIGURATION failure marks it failed
        (with the reason in its history); other failures leave it as it was (retried later).
        A pending push of a record settled here is dropped (not a queued resubscribe: that write
        is newer than this one and still has to happen). Returns counts by outcome.
        """
        if len(ids) != len(results):
            raise ValueError(f"mark_targets: {len(ids)} ids but {len(results)} results")
        settled: list[tuple[str, str | None]] = []
        counts = {"pushed": 0, "failed": 0, "retry": 0}
        for sid, res in zip(ids, results, strict=True):
            if res.success:
                settled.append((sid, None))
                counts["pushed"] += 1
            elif str(getattr(res, "error_class", "") or "permanent") in ("permanent", "configuration"):
                settled.append((sid, _failure_text(res.error_code, res.message)))
                counts["failed"] += 1
            else:
                counts["retry"] += 1
        if not settled:
            return counts
        now = time.time()
        with self._write() as conn:
            emails: dict[str, str] = {}
            for chunk in _chunks([sid for sid, _ in settled]):
                emails.update(
                    conn.execute(
                        select(salesforce_targets.c.salesforce_id, salesforce_targets.c.email).where(
                            salesforce_targets.c.salesforce_id.in_(chunk)
                        )
                    ).all()
                )
                conn.execute(delete(outbox).where(outbox.c.salesforce_id.in_(chunk), outbox.c.value.is_(True)))
            known = [(sid, emails[sid], error) for sid, error in settled if sid in emails]
            self._set_targets(conn, known, field, source, now)
        return counts

    def record_sync_run(
        self,
        summary: dict[str, Any],
        *,
        started_at: datetime | float,
        ended_at: datetime | float,
        outcome: str,
        dry_run: bool,
    ) -> None:
        """Store one nightly run (outcome "Succeeded" or "Failed") with its summary counts."""
        with self._write() as conn:
            conn.execute(
                sync_runs.insert().values(
                    started_at=to_epoch(started_at),
                    ended_at=to_epoch(ended_at),
                    outcome=outcome,
                    dry_run=dry_run,
                    to_salesforce=int(summary.get("toSalesforce", 0) or 0),
                    from_salesforce=int(summary.get("fromSalesforce", 0) or 0),
                    skipped_no_salesforce_id=int(summary.get("skippedNoSalesforceId", 0) or 0),
                    failed=int(summary.get("failed", 0) or 0),
                    summary=json.dumps(summary, default=str),
                )
            )

    def last_sync_run(self, successful_only: bool = False, *, include_dry_run: bool = False) -> dict[str, Any] | None:
        """The latest nightly run (by end time), or None; dry runs are left out unless asked for."""
        query = select(sync_runs).order_by(sync_runs.c.ended_at.desc(), sync_runs.c.id.desc()).limit(1)
        if successful_only:
            query = query.where(sync_runs.c.outcome == "Succeeded")
        if not include_dry_run:
            query = query.where(sync_runs.c.dry_run.is_(False))
        with self._read() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        return {
            "startedAt": to_rfc3339(row["started_at"]),
            "endedAt": to_rfc3339(row["ended_at"]),
            "startedAtEpoch": row["started_at"],
            "endedAtEpoch": row["ended_at"],
            "outcome": row["outcome"],
            "dryRun": bool(row["dry_run"]),
            "counts": {
                "toSalesforce": row["to_salesforce"],
                "fromSalesforce": row["from_salesforce"],
                "skippedNoSalesforceId": row["skipped_no_salesforce_id"],
                "failed": row["failed"],
            },
            "summary": json.loads(row["summary"]),
        }

    def nightly_totals(self) -> dict[str, int]:
        """Records written in each direction by all (non-dry) nightly runs: toSalesforce, fromSalesforce."""
        with self._read() as conn:
            to_sf, from_sf = conn.execute(
                select(
                    func.coalesce(func.sum(sync_runs.c.to_salesforce), 0),
                    func.coalesce(func.sum(sync_runs.c.from_salesforce), 0),
                ).where(sync_runs.c.dry_run.is_(False))
            ).one()
        return {"toSalesforce": int(to_sf), "fromSalesforce": int(from_sf)}

"""The outbox: every write owed to Salesforce, claimed under fenced leases by whichever writer drains it.

A claim takes up to N due rows of one object and one value, bumps each row's ``fence`` and leases them to
one claim token until a time by the database clock. The writer renews the lease while its call runs
(``renew``); the completion (``complete``) and every release present the fence, and a row whose fence moved
on (its lease expired and another writer claimed it) is not touched: that result is not trusted, the row
is written again by its new holder, never marked done on a stale answer.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, or_, select, update

from unsubscribe_sync.ledger.base import (
    KEY_LIST_SIZE,
    SQLITE_IN_KEYS,
    HistoryRow,
    LedgerBase,
    Unindexed,
    chunks,
    driver_connection,
    pg_in,
    pg_rows,
    sqlite_select_in,
)
from unsubscribe_sync.ledger.models import (
    ACTION_PUSH_FAILED,
    ACTION_PUSH_STUCK,
    ACTION_PUSHED,
    SOURCE_PUSH,
    LedgerStats,
    OutboxRow,
    PushOutcome,
)
from unsubscribe_sync.ledger.policy import Merge, QueuedWrite, claim_size, merge_queued_write
from unsubscribe_sync.ledger.schema import QUEUED_FALSE, outbox, salesforce_targets, unsubscribes
from unsubscribe_sync.ledger.sqlite_steps import exact_real, select_rows


class Claim(list[OutboxRow]):
    """The rows leased to one writer (a list, in due order), with the token its renewals and releases present."""

    def __init__(self, token: str, rows: list[OutboxRow], lease_expires_at: float, *, bulk: bool = False) -> None:
        super().__init__(rows)
        self.token = token
        self.lease_expires_at = lease_expires_at  # by the database clock
        self.bulk = bulk  # the object's due rows exceeded the bulk threshold: a bulk-sized claim, one Bulk job

    @property
    def rows(self) -> list[OutboxRow]:
        return list(self)


@dataclass(slots=True)
class Completion:
    """What a completion could record: rows settled, rows left for a newer value, rows whose fence was lost."""

    settled: int = 0
    replaced: int = 0
    lost: int = 0
    lost_ids: set[int] = field(default_factory=set)  # rows whose fence moved on: re-queued, their answer untrusted


def _pushed_detail(field: str, value: bool) -> str:
    """History detail of a successful write: the field, and "= false" when a resubscribe cleared it."""
    return field if value else f"{field} = false"


class OutboxStore(LedgerBase):
    def claim(
        self,
        owner: str,
        limit: int,
        lease_seconds: float,
        *,
        now: float | None = None,
        bulk_threshold: int | None = None,
        bulk_limit: int = 0,
        among: Sequence[str] | None = None,
    ) -> Claim:
        """Lease up to ``limit`` due writes of one object and one value: those of the oldest due row (on PostgreSQL,
        of the oldest due row of a kind no other claim in flight is taking: ``_free_kind``).

        With ``bulk_threshold``: when more than that many rows of that object and value are due, up to
        ``bulk_limit`` are leased instead (``Claim.bulk``: one Bulk 2.0 job writes them). ``among``: only rows
        of these Salesforce ids (the nightly drains what it queued). On PostgreSQL rows are locked with SKIP
        LOCKED so writers never claim the same row; a lease that expires (its writer died or stalled) makes
        the row claimable again, with a new fence.
        """
        token = f"{owner}/{uuid.uuid4().hex[:12]}"
        # scoped to ids: KEY_LIST_SIZE ids a statement, one parameter (a key list: a drain's 150,000 ids were 300
        # statements of 500 literal keys each, per step of every claim)
        scopes: list[Any] = (
            [None]
            if among is None
            else [self._in_key_list(outbox.c.salesforce_id, c) for c in chunks(sorted(among), KEY_LIST_SIZE)]
        )
        with self._write() as conn:
            now = self._db_now(conn) if now is None else now
            expires = now + lease_seconds
            # scoped to ids, the due and same-object terms must not steer SQLite off the id index (Unindexed)
            column = (lambda c: c) if among is None else Unindexed
            due = and_(
                column(outbox.c.next_attempt_at) <= now,
                or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at < now),
            )

            def where(scope: Any, *more: Any) -> Any:
                return and_(due, *more) if scope is None else and_(due, scope, *more)

            def oldest(*more: Any) -> Any:
                first = None
                for scope in scopes:
                    found = conn.execute(
                        select(outbox.c.object, outbox.c.value, outbox.c.next_attempt_at, outbox.c.id)
                        .where(where(scope, *more))
                        .order_by(outbox.c.next_attempt_at, outbox.c.id)
                        .limit(1)
                    ).first()
                    if found is not None and (first is None or (found[2], found[3]) < (first[2], first[3])):
                        first = found
                return first

            first = oldest()
            if first is None:
                return Claim(token, [], expires)
            if self._pg:
                first = _free_kind(conn, first, oldest)
            object_name, value = first[0], bool(first[1])
            same = (column(outbox.c.object) == object_name, column(outbox.c.value) == value)
            waiting = 0
            if bulk_threshold is not None and bulk_limit > limit:
                enough = max(bulk_threshold, 2 * bulk_limit) + 1  # claim_size needs no more
                for scope in scopes:
                    waiting += conn.execute(
                        select(func.count()).select_from(
                            select(outbox.c.id).where(where(scope, *same)).limit(enough - waiting).subquery()
                        )
                    ).scalar_one()
                    if waiting >= enough:
                        break
            size = claim_size(waiting, limit=limit, bulk_threshold=bulk_threshold, bulk_limit=bulk_limit)
            bulk, limit = size.bulk, size.rows
            ids: list[int] = []
            for scope in scopes:
                chosen = (
                    select(outbox.c.id)
                    .where(where(scope, *same))
                    .order_by(outbox.c.next_attempt_at, outbox.c.id)
                    .limit(limit - len(ids))
                    .with_for_update(skip_locked=True)
                )
                if self._pg:
                    ids.extend(conn.execute(chosen).scalars())
                else:  # one driver step, not one per row (sqlite_steps)
                    inner = chosen.subquery()
                    ids.extend(json.loads(conn.execute(select(func.json_group_array(inner.c.id))).scalar_one()))
                if len(ids) >= limit:
                    break
            if not ids:
                return Claim(token, [], expires)
            claimed = _claim_rows(conn, ids, token, expires, pg=self._pg)
        position = {row_id: n for n, row_id in enumerate(ids)}
        claimed.sort(key=lambda r: position[r.id])  # due order
        return Claim(token, claimed, expires, bulk=bulk)

    def renew(self, claim: Claim, lease_seconds: float) -> tuple[set[int], float]:
        """Extend the lease of a claim's rows; returns (ids still held, new expiry by the database clock).

        A row missing from the result was claimed by another writer after this lease expired: the caller
        must not trust its write to that row.
        """
        with self._write() as conn:
            expires = self._db_now(conn) + lease_seconds
            held: set[int] = set()
            if not self._pg:  # a lease renewed and read back in a few driver steps (sqlite_steps)
                raw = driver_connection(conn)
                for chunk in chunks([r.id for r in claim.rows], KEY_LIST_SIZE):
                    keys = json.dumps(list(chunk))
                    raw.execute(_SQLITE_RENEW, (expires, keys, claim.token))
                    held.update(i for (i,) in select_rows(raw, _SQLITE_HELD, (keys, claim.token), 1))
                return held, expires
            for chunk in chunks([r.id for r in claim.rows]):
                held.update(
                    conn.execute(
                        update(outbox)
                        .where(self._in(outbox.c.id, chunk), outbox.c.lease_owner == claim.token)
                        .values(lease_expires_at=expires)
                        .returning(outbox.c.id)
                    ).scalars()
                )
        return held, expires

    def complete(
        self, claim: Claim, outcomes: Sequence[PushOutcome], *, field: str, source: str = SOURCE_PUSH
    ) -> Completion:
        """Record the outcomes of a claim's writes in one transaction, fenced.

        Pushed and failed rows leave the outbox (Salesforce answered for them) and their records are marked;
        retried rows get their next attempt time; held rows go back untouched. A row a newer act replaced
        while it was being written (its ``seq`` moved on) stays, due now, for the new value: the write is
        recorded in the history and as the record's confirmed value only. A row whose fence moved on (another
        writer holds it) is left alone: nothing is recorded for it.
        """
        result = Completion()
        if not outcomes:
            return result
        with self._write() as conn:
            now = self._db_now(conn)
            ordered = sorted(outcomes, key=lambda o: o.row.salesforce_id)
            ids = [o.row.id for o in ordered]
            current = self._current(conn, ids) if self._pg else _current_sqlite(conn, ids)
            done: list[PushOutcome] = []
            replaced: list[PushOutcome] = []
            retries: list[PushOutcome] = []
            held: list[PushOutcome] = []
            lost: list[OutboxRow] = []
            for o in ordered:
                state = current.get(o.row.id)
                if state is None or state[0] != o.row.fence:
                    result.lost += 1
                    result.lost_ids.add(o.row.id)
                    lost.append(o.row)
                elif state[1] != o.row.seq:
                    replaced.append(o)
                elif o.status in ("pushed", "failed"):
                    done.append(o)
                elif o.status == "retry":
                    retries.append(o)
                else:
                    held.append(o)
            if self._pg:
                self._settle_core(conn, claim.token, now, done, replaced + held, retries)
                answered = [o for o in done + replaced if o.status in ("pushed", "failed")]
            else:
                # the settled writes' history rows are copied from their outbox rows in SQL, before the delete
                _push_history_sqlite(conn, now, [o for o in done if o.status == "pushed"], field, source)
                _settle_sqlite(conn, claim.token, now, done, replaced + held, retries)
                answered = [o for o in done if o.status == "failed"]
                answered += [o for o in replaced if o.status in ("pushed", "failed")]
            if self._pg:
                self._mark_records(conn, done, replaced, field, now)
            else:
                _mark_records_sqlite(conn, done, replaced, field, now)
            rows = [self._push_history(now, o, field, source) for o in answered]
            rows += [
                HistoryRow(
                    now,
                    o.row.email,
                    o.row.salesforce_id,
                    source,
                    ACTION_PUSH_STUCK,
                    "retrying",
                    f"retried {o.row.attempts + 1} times, still retrying: {o.error}",
                )
                for o in retries
                if o.stuck and not o.row.stuck
            ]
            self._insert_history(conn, rows)
            self._requeue(conn, lost, now)
            result.settled = len(done)
            result.replaced = len(replaced)
        return result

    def _settle_core(
        self,
        conn: Connection,
        token: str,
        now: float,
        done: Sequence[PushOutcome],
        release: Sequence[PushOutcome],
        retries: Sequence[PushOutcome],
    ) -> None:
        """A completion's outbox statements (PostgreSQL): settled rows deleted, replaced and held rows released
        due now (only while this claim still leases them), retried rows given their next attempt."""
        for chunk in chunks([o.row.id for o in done]):
            conn.execute(delete(outbox).where(self._in(outbox.c.id, chunk)))
        self._release_rows(conn, [o.row.id for o in release], now, token, due_now=True)
        if retries:
            conn.execute(
                update(outbox)
                .where(outbox.c.id == bindparam("b_id"))
                .values(
                    attempts=outbox.c.attempts + 1,
                    next_attempt_at=bindparam("b_next"),
                    last_error=bindparam("b_error"),
                    stuck_at=func.coalesce(outbox.c.stuck_at, bindparam("b_stuck")),
                    lease_owner=None,
                    lease_expires_at=None,
                ),
                [
                    {
                        "b_id": o.row.id,
                        "b_next": o.next_attempt_at or now,
                        "b_error": o.error,
                        "b_stuck": now if o.stuck else None,
                    }
                    for o in retries
                ],
            )

    @staticmethod
    def _current(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        """(fence, seq) of rows still in the outbox, locked for this transaction (in id order)."""
        found: dict[int, tuple[int, int]] = {}
        for chunk in chunks(sorted(ids)):
            found.update(
                (i, (f, s))
                for i, f, s in conn.execute(
                    select(outbox.c.id, outbox.c.fence, outbox.c.seq)
                    .where(pg_in(outbox.c.id, chunk))
                    .order_by(outbox.c.id)
                    .with_for_update()
                ).all()
            )
        return found

    def _release_rows(
        self, conn: Connection, ids: Sequence[int], now: float, token: str, *, due_now: bool, error: str | None = None
    ) -> None:
        values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None}
        if due_now:
            values["next_attempt_at"] = now
        if error is not None:
            values["last_error"] = error
        for chunk in chunks(list(ids)):
            conn.execute(
                update(outbox).where(self._in(outbox.c.id, chunk), outbox.c.lease_owner == token).values(**values)
            )

    @staticmethod
    def _mark_records(
        conn: Connection, done: Sequence[PushOutcome], replaced: Sequence[PushOutcome], field: str, now: float
    ) -> None:
        """Targets of settled rows: pushed (with the value Salesforce now holds) or failed with the reason.

        Each kind is one UPDATE over arrays of ids and values (``pg_rows``), not one statement per record."""
        t = salesforce_targets
        pushed = [(o.row.salesforce_id, o.row.value) for o in done if o.status == "pushed"]
        failed = [(o.row.salesforce_id, o.error) for o in done if o.status == "failed"]
        confirmed = [(o.row.salesforce_id, o.row.value) for o in replaced if o.status == "pushed"]
        if pushed:
            rows = pg_rows({"sid": t.c.salesforce_id, "value": t.c.confirmed_value}, pushed)
            conn.execute(
                update(t)
                .where(t.c.salesforce_id == rows.c.sid)
                .values(
                    status="pushed", field=field, last_error=None, updated_at=now, confirmed_value=rows.c.value,
                    confirmed_at=now,
                )
            )  # fmt: skip
        if failed:
            rows = pg_rows({"sid": t.c.salesforce_id, "error": t.c.last_error}, failed)
            conn.execute(
                update(t)
                .where(t.c.salesforce_id == rows.c.sid)
                .values(status="failed", last_error=rows.c.error, updated_at=now)
            )
        if confirmed:
            rows = pg_rows({"sid": t.c.salesforce_id, "value": t.c.confirmed_value}, confirmed)
            conn.execute(
                update(t).where(t.c.salesforce_id == rows.c.sid).values(confirmed_value=rows.c.value, confirmed_at=now)
            )

    @staticmethod
    def _push_history(now: float, outcome: PushOutcome, field: str, source: str) -> HistoryRow:
        row = outcome.row
        if outcome.status == "pushed":
            detail = _pushed_detail(field, row.value)
            return HistoryRow(now, row.email, row.salesforce_id, source, ACTION_PUSHED, "success", detail)
        return HistoryRow(now, row.email, row.salesforce_id, source, ACTION_PUSH_FAILED, "failed", outcome.error)

    def requeue_lost(self, rows: Sequence[OutboxRow]) -> int:
        """Rows whose lease was lost while their write was in flight: have them written again, due now.

        The stale write may land after the new holder's, so one more write of the record's current value
        must follow it. A row still queued (perhaps held by another writer) gets its ``seq`` bumped and is due
        now: its holder's completion then leaves it for one more write. A row already settled by the other
        writer is queued again with the value the ledger last confirmed for the record. Returns rows re-queued.
        """
        if not rows:
            return 0
        with self._write() as conn:
            return self._requeue(conn, rows, self._db_now(conn))

    def _requeue(self, conn: Connection, rows: Sequence[OutboxRow], now: float) -> int:
        if not rows:
            return 0
        by_sid = {r.salesforce_id: r for r in rows}
        sids = sorted(by_sid)
        queued: set[str] = set()
        for chunk in chunks(sids):
            queued.update(
                conn.execute(select(outbox.c.salesforce_id).where(self._in(outbox.c.salesforce_id, chunk))).scalars()
            )
            conn.execute(
                update(outbox)
                .where(self._in(outbox.c.salesforce_id, chunk))
                .values(seq=outbox.c.seq + 1, next_attempt_at=now)
            )
        gone = [sid for sid in sids if sid not in queued]
        confirmed: dict[str, bool] = {}
        for chunk in chunks(gone):
            confirmed.update(
                (sid, bool(v))
                for sid, v in conn.execute(
                    select(salesforce_targets.c.salesforce_id, salesforce_targets.c.confirmed_value).where(
                        self._in(salesforce_targets.c.salesforce_id, chunk),
                        salesforce_targets.c.confirmed_value.is_not(None),
                    )
                ).all()
            )
        fresh = [
            {
                "salesforce_id": sid,
                "object": by_sid[sid].object,
                "email": by_sid[sid].email,
                "value": confirmed.get(sid, by_sid[sid].value),
                "act_at": 0.0,  # any newer act replaces it
                "seq": 0,
                "received_at": now,
                "attempts": 0,
                "next_attempt_at": now,
            }
            for sid in gone
        ]
        if fresh:
            conn.execute(self._insert(outbox).on_conflict_do_nothing(index_elements=["salesforce_id"]), fresh)
        return len(sids)

    def release(self, claim: Claim, *, error: str | None = None, rows: Sequence[OutboxRow] | None = None) -> None:
        """Give a claim's rows (or some of them) back untouched: the call failed as a whole, or the writer stops."""
        ids = [r.id for r in (claim.rows if rows is None else rows)]
        with self._write() as conn:
            self._release_rows(conn, ids, 0.0, claim.token, due_now=False, error=error)

    def release_all_leases(self) -> int:
        """Clear every lease (only safe when this process is the ledger's single worker: SQLite)."""
        with self._write() as conn:
            res = conn.execute(
                update(outbox).where(outbox.c.lease_owner.is_not(None)).values(lease_owner=None, lease_expires_at=None)
            )
            return int(res.rowcount or 0)

    # -- reads ---------------------------------------------------------------------------

    def stats(self) -> LedgerStats:
        with self._read() as conn:
            backlog, oldest = conn.execute(select(func.count(), func.min(outbox.c.received_at))).one()
            stuck, oldest_stuck = conn.execute(
                select(func.count(), func.min(outbox.c.received_at)).where(outbox.c.stuck_at.is_not(None))
            ).one()
            by_status: dict[str, int] = dict(
                conn.execute(
                    select(salesforce_targets.c.status, func.count()).group_by(salesforce_targets.c.status)
                ).all()
            )
        return LedgerStats(
            backlog=int(backlog),
            oldest_pending_received_at=oldest,
            by_status=by_status,
            stuck=int(stuck),
            oldest_stuck_received_at=oldest_stuck,
        )

    def backlog(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)).scalar() or 0)

    def queue_nightly_writes(self, ids: Sequence[str], *, read_at: float | None = None) -> tuple[list[str], int, int]:
        """Queue the nightly's writes of true on ``ids`` (records of unsubscribed addresses Salesforce lacks).

        Each write's act time is its address's ``state_at``, merged by the one queue rule (``_queue_writes``):
        a newer resubscribe queued meanwhile is never replaced, and a record already queued with true is not
        queued twice. Records whose address is no longer unsubscribed, or that have a resubscribe's write of
        false queued, are left out. A record Salesforce confirmed true after ``read_at`` (when the nightly
        read Salesforce; a push settled it since) is already set: it is not written again. Returns (ids now owed
        a write of true, ids left out for a resubscribe, ids already confirmed true since the read).
        """
        wanted, owed, confirmed = self._nightly_writes_owed(sorted(set(ids)), read_at)
        if wanted:
            owed |= self._queue_nightly_writes(wanted, read_at, confirmed)
        kept = [sid for sid in ids if sid in owed]
        return kept, len(set(ids)) - len(owed) - len(confirmed), len(confirmed)

    def _nightly_writes_owed(self, ids: Sequence[str], read_at: float | None) -> tuple[list[str], set[str], list[str]]:
        """Read before the write lock: (ids that may need a write queued, ids already owed a write of true that
        the queue rule would keep as it is, ids confirmed true since ``read_at``).

        At volume most of the nightly's writes are already queued (a backlog the push is draining): they are
        settled by this read, and the pusher's claims and completions are not held off the write lock meanwhile.
        A row that changes after the read needs nothing from the nightly: a completion wrote it, a newer act
        (which queued its own write) replaced it.
        """
        wanted: list[str] = []
        owed: set[str] = set()
        confirmed: list[str] = []
        with self._read() as conn:
            for sid, _, _, at, value, confirmed_at, queued_value, queued_at in self._nightly_candidates(conn, ids):
                if _confirmed_since(value, confirmed_at, read_at):
                    confirmed.append(sid)
                elif (
                    queued_value
                    and merge_queued_write(
                        QueuedWrite(True, float(queued_at)), QueuedWrite(True, float(at if at is not None else 0.0))
                    )
                    is Merge.KEEP
                ):
                    owed.add(sid)
                else:
                    wanted.append(sid)
        return wanted, owed, confirmed

    def _nightly_candidates(self, conn: Connection, ids: Sequence[str]) -> Iterator[Any]:
        """(id, object, address, the address's state time, confirmed value and time, queued value and act time)
        of the targets ``ids`` whose address is unsubscribed."""
        t, u = salesforce_targets, unsubscribes
        columns = (t.c.salesforce_id, t.c.object, t.c.email, u.c.state_at, t.c.confirmed_value, t.c.confirmed_at)
        joined = t.join(u, u.c.email == t.c.email).outerjoin(outbox, outbox.c.salesforce_id == t.c.salesforce_id)
        for chunk in chunks(ids):
            yield from conn.execute(
                select(*columns, outbox.c.value, outbox.c.act_at)
                .select_from(joined)
                .where(self._in(t.c.salesforce_id, chunk), u.c.unsubscribed)
            ).all()

    def _queue_nightly_writes(self, ids: Sequence[str], read_at: float | None, confirmed: list[str]) -> set[str]:
        """Queue the writes of true the read could not settle (under the write lock, read again); returns the
        ids owed one now. Ids confirmed true since ``read_at`` meanwhile are added to ``confirmed``."""
        writes: list[tuple[tuple[str, str, str], bool, float]] = []
        owed: set[str] = set()
        with self._write() as conn:
            now = self._db_now(conn)
            for sid, obj, email, at, value, confirmed_at, _, _ in self._nightly_candidates(conn, ids):
                if _confirmed_since(value, confirmed_at, read_at):
                    confirmed.append(sid)
                else:
                    writes.append(((sid, obj, email), True, float(at if at is not None else 0.0)))
            self._queue_writes(conn, writes, now)
            for chunk in chunks(sorted(w[0][0] for w in writes)):
                owed.update(
                    conn.execute(
                        select(outbox.c.salesforce_id).where(
                            self._in(outbox.c.salesforce_id, chunk), outbox.c.value.is_(True)
                        )
                    ).scalars()
                )
        return owed

    def queued_true(self, ids: Sequence[str]) -> tuple[set[str], float | None]:
        """Of ``ids``, those with a write of true still queued, and the earliest time one of them is due."""
        found: set[str] = set()
        earliest: float | None = None
        with self._read() as conn:
            if not self._pg:  # a few driver steps (sqlite_steps), not one per row
                for sid, at in sqlite_select_in(conn, _SQLITE_QUEUED_TRUE, sorted(set(ids)), 2):
                    found.add(sid)
                    earliest = _earliest(earliest, float(at))
                return found, earliest
            for chunk in chunks(sorted(set(ids)), KEY_LIST_SIZE):
                for sid, at in conn.execute(
                    select(outbox.c.salesforce_id, outbox.c.next_attempt_at).where(
                        self._in(outbox.c.salesforce_id, chunk), outbox.c.value.is_(True)
                    )
                ).all():
                    found.add(sid)
                    earliest = _earliest(earliest, at)
        return found, earliest

    def count_queued_true(self, ids: Sequence[str]) -> tuple[int, float | None, float | None]:
        """How many of ``ids`` (unique) have a write of true still queued, the earliest time one of them is due,
        and the earliest time one can be claimed (due, and any lease another writer holds on it expired).

        What ``queued_true`` says without building the set: a drain asks it between claims.
        """
        claimable = case(
            (outbox.c.lease_expires_at > outbox.c.next_attempt_at, outbox.c.lease_expires_at),
            else_=outbox.c.next_attempt_at,
        )
        count, due, free = 0, None, None
        with self._read() as conn:
            raw = None if self._pg else driver_connection(conn)
            for chunk in chunks(ids, KEY_LIST_SIZE):  # one statement per key list: a drain asks this between claims
                if raw is not None:
                    n, due_at, free_at = raw.execute(_SQLITE_COUNT_QUEUED_TRUE, (json.dumps(list(chunk)),)).fetchone()
                else:
                    n, due_at, free_at = conn.execute(
                        select(func.count(), func.min(outbox.c.next_attempt_at), func.min(claimable)).where(
                            self._in(outbox.c.salesforce_id, chunk), outbox.c.value.is_(True)
                        )
                    ).one()
                count += n
                due = _earliest(due, due_at)
                free = _earliest(free, free_at)
        return count, due, free

    def pending_clears(self) -> tuple[set[str], set[str]]:
        """(Salesforce ids, emails) of the records, of any object, with a resubscribe's write of false queued."""
        with self._read() as conn:
            rows = conn.execute(select(outbox.c.salesforce_id, outbox.c.email).where(QUEUED_FALSE)).all()
        return {sid for sid, _ in rows}, {email for _, email in rows}


# SQLite's statements of a claim and a completion as driver SQL, run on the driver's connection inside the
# transaction (SQLAlchemy's per-row processing of a Bulk-sized claim and of its completion, tens of thousands
# of rows, was most of their cost). The same statements as PostgreSQL's Core, key lists as one JSON array; a
# claim's rows are leased, then read back as one JSON array (``sqlite_steps``), not returned row by row.
_PG_CLAIM_ROWS = (
    "UPDATE outbox SET fence = fence + 1, lease_owner = %s, lease_expires_at = %s WHERE id = ANY(%s)"
    " RETURNING id, salesforce_id, object, email, received_at, attempts, value, seq, fence, stuck_at"
)
_SQLITE_LEASE_ROWS = (
    f"UPDATE outbox SET fence = fence + 1, lease_owner = ?, lease_expires_at = ? WHERE id IN {SQLITE_IN_KEYS}"
)
_SQLITE_CLAIMED_ROWS = (
    f"SELECT id, salesforce_id, object, email, {exact_real('received_at')}, attempts, value, seq, fence,"
    f" stuck_at IS NOT NULL FROM outbox WHERE id IN {SQLITE_IN_KEYS}"
)
_SQLITE_RENEW = f"UPDATE outbox SET lease_expires_at = ? WHERE id IN {SQLITE_IN_KEYS} AND lease_owner = ?"
_SQLITE_HELD = f"SELECT id FROM outbox WHERE id IN {SQLITE_IN_KEYS} AND lease_owner = ?"
_SQLITE_CURRENT = f"SELECT id, fence, seq FROM outbox WHERE id IN {SQLITE_IN_KEYS}"
_SQLITE_QUEUED_TRUE = (
    f"SELECT salesforce_id, {exact_real('next_attempt_at')} FROM outbox WHERE salesforce_id IN {SQLITE_IN_KEYS}"
    " AND value IS 1"
)
_SQLITE_COUNT_QUEUED_TRUE = (
    "SELECT count(*), min(next_attempt_at), min(CASE WHEN lease_expires_at > next_attempt_at THEN lease_expires_at"
    f" ELSE next_attempt_at END) FROM outbox WHERE salesforce_id IN {SQLITE_IN_KEYS} AND value IS 1"
)
_SQLITE_DELETE_ROWS = f"DELETE FROM outbox WHERE id IN {SQLITE_IN_KEYS}"
_SQLITE_RELEASE_DUE_NOW = (
    "UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL, next_attempt_at = ?"
    f" WHERE id IN {SQLITE_IN_KEYS} AND lease_owner = ?"
)
_SQLITE_PUSHED_HISTORY = (
    "INSERT INTO history (at, email, salesforce_id, source, action, outcome, detail)"
    f" SELECT ?, email, salesforce_id, ?, ?, 'success', ? FROM outbox WHERE id IN {SQLITE_IN_KEYS}"
    " ORDER BY salesforce_id"
)
_SQLITE_RETRY = (
    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
    " stuck_at = coalesce(stuck_at, ?), lease_owner = NULL, lease_expires_at = NULL WHERE id = ?"
)
_SQLITE_MARK_PUSHED = (
    "UPDATE salesforce_targets SET status = 'pushed', field = ?, last_error = NULL, updated_at = ?,"
    f" confirmed_value = ?, confirmed_at = ? WHERE salesforce_id IN {SQLITE_IN_KEYS}"
)
_SQLITE_MARK_FAILED = (
    "UPDATE salesforce_targets SET status = 'failed', last_error = ?, updated_at = ? WHERE salesforce_id = ?"
)
_SQLITE_MARK_CONFIRMED = (
    f"UPDATE salesforce_targets SET confirmed_value = ?, confirmed_at = ? WHERE salesforce_id IN {SQLITE_IN_KEYS}"
)


CLAIM_LOCK_CLASS = 0x75737963  # the first key of the claims' advisory locks (PostgreSQL)


def _claim_lock(object_name: str, value: bool) -> Any:
    """The advisory lock a claim of one object and value holds until it commits (PostgreSQL)."""
    return (CLAIM_LOCK_CLASS, func.hashtext(f"{object_name}:{value}"))


def _free_kind(conn: Connection, first: Any, oldest: Any) -> Any:
    """The oldest due row of an object and value no other claim in flight is taking, locked for this claim;
    when every kind due is being taken, ``first``'s, once that claim commits (PostgreSQL).

    Claims of one kind take turns: the next one sees the rows the last one leased, and takes the rows after
    them. Without the turns, a claim beside one in flight picked the same object (the oldest row's), found all
    its rows locked and came back empty, and its lane slept with another object's rows due.
    """
    busy: list[Any] = []
    candidate = first
    while candidate is not None:
        key = _claim_lock(candidate[0], bool(candidate[1]))
        if conn.execute(select(func.pg_try_advisory_xact_lock(*key))).scalar_one():
            return candidate
        busy.append(or_(outbox.c.object != candidate[0], outbox.c.value != candidate[1]))
        candidate = oldest(*busy)
    conn.execute(select(func.pg_advisory_xact_lock(*_claim_lock(first[0], bool(first[1]))))).scalar_one()
    return first


def _claim_rows(conn: Connection, ids: Sequence[int], token: str, expires: float, *, pg: bool) -> list[OutboxRow]:
    """Lease the rows ``ids`` (fence bumped) and return them, chunk by chunk, as driver SQL (the rows locked on
    PostgreSQL, the write lock held on SQLite): each chunk's rows become OutboxRows at once, so a Bulk-sized
    claim never holds its result rows and the OutboxRows together."""
    raw = driver_connection(conn)
    out: list[OutboxRow] = []
    intern = sys.intern
    for chunk in chunks(ids, KEY_LIST_SIZE):
        if pg:
            out.extend(
                OutboxRow(rid, sid, intern(obj), email, received, attempts, bool(value), seq, fence, stuck is not None)
                for rid, sid, obj, email, received, attempts, value, seq, fence, stuck in raw.execute(
                    _PG_CLAIM_ROWS, (token, expires, list(chunk))
                ).fetchall()
            )
            continue
        keys = json.dumps(list(chunk))
        raw.execute(_SQLITE_LEASE_ROWS, (token, expires, keys))  # the write lock is held: read back below
        out.extend(
            OutboxRow(rid, sid, intern(obj), email, float(received), attempts, bool(value), seq, fence, bool(stuck))
            for rid, sid, obj, email, received, attempts, value, seq, fence, stuck in select_rows(
                raw, _SQLITE_CLAIMED_ROWS, (keys,), 10
            )
        )
    return out


def _current_sqlite(conn: Connection, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """``OutboxStore._current`` on SQLite (the transaction holds the write lock: nothing to lock per row)."""
    return {i: (f, q) for i, f, q in sqlite_select_in(conn, _SQLITE_CURRENT, sorted(ids), 3)}


def _push_history_sqlite(conn: Connection, now: float, pushed: Sequence[PushOutcome], field: str, source: str) -> None:
    """The history rows of settled successful writes (``OutboxStore._push_history``), each copied from its outbox
    row (its act: the seq the write carried) by SQLite, in Salesforce id order, before the rows are deleted."""
    raw = driver_connection(conn)
    for value in (True, False):
        ids = [o.row.id for o in pushed if bool(o.row.value) == value]
        for chunk in chunks(ids, KEY_LIST_SIZE):
            raw.execute(
                _SQLITE_PUSHED_HISTORY, (now, source, ACTION_PUSHED, _pushed_detail(field, value), json.dumps(chunk))
            )


def _settle_sqlite(
    conn: Connection,
    token: str,
    now: float,
    done: Sequence[PushOutcome],
    release: Sequence[PushOutcome],
    retries: Sequence[PushOutcome],
) -> None:
    """A completion's outbox statements on SQLite: settled rows deleted, replaced and held rows released due
    now (only while this claim still leases them), retried rows given their next attempt."""
    raw = driver_connection(conn)
    for chunk in chunks([o.row.id for o in done], KEY_LIST_SIZE):
        raw.execute(_SQLITE_DELETE_ROWS, (json.dumps(list(chunk)),))
    for chunk in chunks([o.row.id for o in release], KEY_LIST_SIZE):
        raw.execute(_SQLITE_RELEASE_DUE_NOW, (now, json.dumps(list(chunk)), token))
    if retries:
        raw.executemany(
            _SQLITE_RETRY,
            [(o.next_attempt_at or now, o.error, now if o.stuck else None, o.row.id) for o in retries],
        )


def _mark_records_sqlite(
    conn: Connection, done: Sequence[PushOutcome], replaced: Sequence[PushOutcome], field: str, now: float
) -> None:
    """``OutboxStore._mark_records`` on SQLite as driver SQL: the pushed and confirmed records one statement per
    chunk of ids of one value (a claim's rows share one), the failed ones row by row (each has its reason)."""
    raw = driver_connection(conn)
    for value in (True, False):
        pushed = [o.row.salesforce_id for o in done if o.status == "pushed" and bool(o.row.value) == value]
        for chunk in chunks(pushed, KEY_LIST_SIZE):
            raw.execute(_SQLITE_MARK_PUSHED, (field, now, value, now, json.dumps(list(chunk))))
        confirmed = [o.row.salesforce_id for o in replaced if o.status == "pushed" and bool(o.row.value) == value]
        for chunk in chunks(confirmed, KEY_LIST_SIZE):
            raw.execute(_SQLITE_MARK_CONFIRMED, (value, now, json.dumps(list(chunk))))
    failed = [(o.error, now, o.row.salesforce_id) for o in done if o.status == "failed"]
    if failed:
        raw.executemany(_SQLITE_MARK_FAILED, failed)


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _confirmed_since(value: bool | None, confirmed_at: float | None, read_at: float | None) -> bool:
    """Salesforce confirmed the record true after the nightly read it: a write of true is already done."""
    return bool(value) and read_at is not None and confirmed_at is not None and confirmed_at >= read_at

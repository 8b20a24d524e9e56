"""The ledger: unsubscribes, their Salesforce targets, the push outbox, history and nightly runs.

The stores of each concern live beside this module (``intake``: acts on addresses; ``outbox``: the writes
owed to Salesforce under fenced leases; ``policy``: the pure ordering rules they share); this class joins
them with the read models, the nightly's reads and writes, and the runs. Methods are synchronous and
thread-safe (one pooled connection per call); async callers run them in a thread. Every write is one
transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, delete, func, or_, select, update

from unsubscribe_sync.api.addresses import normalize_email
from unsubscribe_sync.ledger.base import (
    SQLITE_IN_KEYS,
    HistoryRow,
    Target,
    chunks,
    driver_connection,
    pg_in,
    sqlite_select_in,
)
from unsubscribe_sync.ledger.engine import create_ledger_engine
from unsubscribe_sync.ledger.intake import IntakeStore
from unsubscribe_sync.ledger.models import (
    ACTION_UNSUBSCRIBED,
    SOURCE_SALESFORCE_SYNC,
    OptOutsAdded,
    to_epoch,
    to_rfc3339,
)
from unsubscribe_sync.ledger.outbox import OutboxStore
from unsubscribe_sync.ledger.policy import (
    Act,
    ActEffect,
    Confirmed,
    SalesforceRead,
    is_own_value,
    judge_salesforce_read,
)
from unsubscribe_sync.ledger.poll_state import PollStateStore
from unsubscribe_sync.ledger.schema import (
    QUEUED_FALSE,
    history,
    migrate,
    outbox,
    processed_events,
    salesforce_targets,
    sync_runs,
    unsubscribes,
)
from unsubscribe_sync.ledger.sqlite_steps import exact_real, select_rows

DEFAULT_HISTORY_LIMIT = 100

# ``add_salesforce_opt_outs``' statements on SQLite as driver SQL (key lists as one JSON array, ``SQLITE_IN_KEYS``)
_SQLITE_QUEUED_FALSE = "SELECT salesforce_id, email FROM outbox WHERE value = 0"  # QUEUED_FALSE: ix_outbox_clears
_SQLITE_ANY_RESOLVING_FALSE = "SELECT 1 FROM resolutions WHERE value IS 0 LIMIT 1"  # none: nothing to look up
_SQLITE_CONFIRMED = (
    f"SELECT salesforce_id, confirmed_value, {exact_real('confirmed_at')}, email FROM salesforce_targets"
    f" WHERE salesforce_id IN {SQLITE_IN_KEYS} AND confirmed_value IS NOT NULL"
)
_SQLITE_HOLD_AS_PUSHED = (
    "UPDATE salesforce_targets SET status = 'pushed', last_error = NULL, updated_at = ?, confirmed_value = 1,"
    f" confirmed_at = ?, field = coalesce(?, field) WHERE salesforce_id IN {SQLITE_IN_KEYS}"
)
# ``iter_targets``' page as driver SQL (the same text on both databases but for the join that keeps SQLite's
# plan on the targets' (object, id) index, and the placeholders): the targets of one object after a key, of
# unsubscribed addresses, in id order, with whether a write of true is owed to each
_TARGET_PAGE_OF = (
    "SELECT t.salesforce_id, t.email, COALESCE(o.value = TRUE AND o.act_at >= u.state_at, FALSE)"
    " FROM salesforce_targets AS t {join} unsubscribes AS u ON u.email = t.email AND u.unsubscribed = TRUE"
    " LEFT JOIN outbox AS o ON o.salesforce_id = t.salesforce_id"
    " WHERE t.object = {p} AND t.salesforce_id > {p} {open}ORDER BY t.salesforce_id LIMIT {p}"
)


def _target_page(pg: bool, include_failed: bool) -> str:
    return _TARGET_PAGE_OF.format(
        join="JOIN" if pg else "CROSS JOIN",
        p="%s" if pg else "?",
        open="" if include_failed else "AND t.status != 'failed' ",  # not failed for good
    )


_SQLITE_DROP_QUEUED_TRUE = (  # not while a writer holds it: its completion settles it
    "DELETE FROM outbox WHERE value IS 1 AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
    f" AND salesforce_id IN {SQLITE_IN_KEYS}"
)


def _hold_as_pushed_sqlite(
    conn: Connection, ids: Sequence[str], new: set[str], field: str | None, now: float, at: float
) -> None:
    """``Ledger._hold_as_pushed`` on SQLite, as driver SQL."""
    raw = driver_connection(conn)
    for chunk in chunks(ids):
        held = [sid for sid in chunk if sid not in new]
        if held:
            raw.execute(_SQLITE_HOLD_AS_PUSHED, (now, at, field or None, json.dumps(held)))
        raw.execute(_SQLITE_DROP_QUEUED_TRUE, (now, json.dumps(list(chunk))))


__all__ = ["Ledger", "normalize_email"]


class WriteDecisionLike(Protocol):
    """A write outcome as the write-outcome rule states it (``salesforce.errors.decide_write``)."""

    @property
    def status(self) -> str: ...

    @property
    def reason(self) -> str | None: ...


class Ledger(IntakeStore, OutboxStore, PollStateStore):
    """The durable store behind the worker and the nightly sync."""

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, pool_size: int = 5) -> Ledger:
        """Open the ledger at ``url`` (sqlite:// or postgresql://), creating/migrating its schema."""
        ledger = cls(create_ledger_engine(url, pool_size=pool_size))
        if migrate_schema:
            ledger.migrate()
        return ledger

    def close(self) -> None:
        self._engine.dispose()

    def migrate(self) -> int:
        with self._write() as conn:
            return migrate(conn)

    def ping(self) -> None:
        """Raise when the ledger cannot be read (used by /readyz)."""
        with self._read() as conn:
            conn.execute(select(func.count()).select_from(outbox).where(outbox.c.id < 0)).scalar()

    # -- reads for the API ---------------------------------------------------------

    def lookup(
        self, email: str, *, history_limit: int = DEFAULT_HISTORY_LIMIT, history_before: int | None = None
    ) -> dict[str, Any] | None:
        """The suppression status, Salesforce targets and history of one address; None when unknown.

        The history is paged, newest first: at most ``history_limit`` rows, older than the row id
        ``history_before`` when given; ``historyNext`` is the id to pass for the next page (None at the end).
        """
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
            query = select(history).where(history.c.email == key)
            if history_before is not None:
                query = query.where(history.c.id < history_before)
            events = list(conn.execute(query.order_by(history.c.id.desc()).limit(history_limit + 1)).mappings())
            more = len(events) > history_limit
            events = events[:history_limit]
            return {
                "email": row["email"],
                "unsubscribed": bool(row["unsubscribed"]),
                "firstSeen": to_rfc3339(row["first_seen"]),
                "lastSeen": to_rfc3339(row["last_seen"]),
                **({"stateAt": to_rfc3339(row["state_at"])} if row["state_at"] is not None else {}),
                "repeats": int(row["repeats"] or 0),
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
                "historyNext": int(events[-1]["id"]) if more and events else None,
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

    def table_counts(self) -> dict[str, int]:
        """Row counts per table (for checks that a refused request changed nothing)."""
        tables = (unsubscribes, salesforce_targets, outbox, history, processed_events, sync_runs)
        with self._read() as conn:
            return {t.name: int(conn.execute(select(func.count()).select_from(t)).scalar() or 0) for t in tables}

    # -- the push outbox -------------------------------------------------------------

    # -- the nightly sync --------------------------------------------------------------

    def iter_targets(
        self, object_name: str, *, include_failed: bool = True, page_size: int = 5000
    ) -> Iterator[tuple[str, str, bool]]:
        """(salesforce_id, email, owed) of the targets of ``object_name``, ordered by ID (bytewise), in pages.

        Only targets of addresses that are unsubscribed: a resubscribed address's records are never set again.
        ``include_failed=False`` leaves out records whose write failed for good (deleted, converted, ...).
        ``owed``: a write of true is queued for the record that the queue rule keeps as it is (from an act at
        least as recent as the address's state): the nightly need not queue one. Keyset pages of driver SQL,
        plain tuples (on SQLite ``owed`` is 0 or 1).
        """
        sql = _target_page(self._pg, include_failed)
        after = ""
        while True:
            with self._read() as conn:
                raw = driver_connection(conn)
                if self._pg:
                    page = raw.execute(sql, (object_name, after, page_size)).fetchall()
                else:  # one driver step per page (sqlite_steps), sorted here: an aggregate keeps no promised order
                    page = [
                        (sid, email, bool(owed))
                        for sid, email, owed in select_rows(raw, sql, (object_name, after, page_size), 3)
                    ]
                    page.sort()
            yield from page
            if len(page) < page_size:
                return
            after = page[-1][0]

    def unsubscribed_among(self, emails: Iterable[str]) -> set[str]:
        """The addresses of ``emails``, as given, that are unsubscribed (each normalised as ``lookup`` does).

        One read for the lot: one ``IN (...)`` query per 500 distinct addresses, whatever the dialect.
        """
        given: dict[str, list[str]] = {}
        for email in emails:
            given.setdefault(normalize_email(email), []).append(email)
        if not given:
            return set()
        found: list[str] = []
        with self._read() as conn:
            for keys in chunks(sorted(given)):
                found.extend(
                    conn.execute(
                        select(unsubscribes.c.email).where(
                            self._in(unsubscribes.c.email, keys), unsubscribes.c.unsubscribed
                        )
                    ).scalars()
                )
        return {email for key in found for email in given[key]}

    def confirmed_true_among(self, records: Iterable[tuple[str, str | None]]) -> set[str]:
        """Of (Salesforce id, address) pairs, the ids whose record Salesforce last confirmed true for that address
        (normalised): a Salesforce opt-out that is this ledger's own value (``judge_salesforce_read``)."""
        wanted = {sid: normalize_email(email) for sid, email in records if email and email.strip()}
        if not wanted:
            return set()
        with self._read() as conn:
            confirmed = self._confirmed_of(conn, sorted(wanted))
        return {sid for sid, c in confirmed.items() if is_own_value(c, wanted[sid])}

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
        read_at: float | None = None,
    ) -> OptOutsAdded:
        """Add Salesforce records whose opt-out was true when read at ``read_at``: (salesforce_id, object, email).

        Each is an unsubscribe act at ``read_at`` on its address (under the address's row lock): the address
        is suppressed, the record held as already pushed, a history row added, and a queued write of true to
        the record dropped (Salesforce has it; one a writer holds is left to its completion). Left alone
        (counted ``pending_resubscribe``): a record whose id or address has a resubscribe's write of false
        queued (Salesforce has not seen it yet), one whose write of false Salesforce confirmed after the read
        began (the read predates it), and one whose address was resubscribed after the read (the later act
        wins). Records without an email are ignored. Calling it
        again with the same records adds nothing.
        """
        result = OptOutsAdded()
        items: dict[str, Target] = {}
        for sid, object_name, email in records:
            if email and email.strip():
                items.setdefault(sid, (sid, object_name, normalize_email(email)))
        if not items:
            return result
        with self._write() as conn:
            now = self._db_now(conn)
            at = now if read_at is None else read_at
            ids = sorted(items)
            # the addresses first: a resubscribe committing between the checks and the act would otherwise be
            # missed by the checks (its write of false queued) and lose to this older read
            self._lock_addresses(conn, [t[2] for t in items.values()])
            check = self._opt_out_checks if self._pg else self._opt_out_checks_sqlite
            clearing, confirmed = check(conn, ids, items)
            current: list[Target] = []
            for sid in ids:
                read = judge_salesforce_read(
                    clearing_queued=sid in clearing or items[sid][2] in clearing,
                    confirmed=confirmed.get(sid),
                    email=items[sid][2],
                    read_at=at,
                )
                if read is SalesforceRead.NEWS:
                    current.append(items[sid])
                elif read is SalesforceRead.OWN_VALUE:
                    result.in_sync += 1
                else:
                    result.pending_resubscribe += 1
            if not current:
                return result
            effects, _ = self._apply_acts(conn, [(t[2], Act(True, at)) for t in current], now)
            applied = [t for t, e in zip(current, effects, strict=True) if e is not ActEffect.SUPERSEDED]
            result.pending_resubscribe += len(current) - len(applied)
            suppressed_again = {
                t[0] for t, e in zip(current, effects, strict=True) if e in (ActEffect.NEW, ActEffect.CHANGES)
            }
            new_ids = set(self._insert_targets(conn, applied, "pushed", field, now, confirmed_at=at))
            held = [x[0] for x in applied]
            if self._pg:
                self._hold_as_pushed(conn, held, new_ids, field, now, at)
            else:
                _hold_as_pushed_sqlite(conn, held, new_ids, field, now, at)
            added = [x for x in applied if x[0] in new_ids or x[0] in suppressed_again]
            self._insert_history(
                conn,
                [HistoryRow(now, email, sid, source, ACTION_UNSUBSCRIBED, "in_salesforce") for sid, _, email in added],
            )
            result.added = len(added)
        return result

    def _opt_out_checks(
        self, conn: Connection, ids: Sequence[str], items: dict[str, Target]
    ) -> tuple[set[str], dict[str, Confirmed]]:
        """(ids and addresses with a write of false queued or resolving, what Salesforce confirmed per id)."""
        clearing: set[str] = set()
        emails = sorted({items[sid][2] for sid in ids})
        # one statement: the id's unique index and the address's ix_outbox_clears (arrays: one parameter each)
        for sid, email in conn.execute(
            select(outbox.c.salesforce_id, outbox.c.email).where(
                QUEUED_FALSE, or_(pg_in(outbox.c.salesforce_id, ids), pg_in(outbox.c.email, emails))
            )
        ).all():
            clearing.update((sid, email))
        clearing.update(self._resolving_false(conn, emails))  # Email mode: records not found yet
        return clearing, self._confirmed_of(conn, ids)

    def _opt_out_checks_sqlite(
        self, conn: Connection, ids: Sequence[str], items: dict[str, Target]
    ) -> tuple[set[str], dict[str, Confirmed]]:
        """``_opt_out_checks`` on SQLite as driver SQL (the write lock held). The outbox has no index on the
        address, so its writes of false are read in one pass (they are few) instead of one scan per chunk."""
        wanted_ids = set(ids)
        wanted_emails = {items[sid][2] for sid in ids}
        raw = driver_connection(conn)
        clearing: set[str] = set()
        for sid, email in raw.execute(_SQLITE_QUEUED_FALSE).fetchall():
            if sid in wanted_ids or email in wanted_emails:
                clearing.update((sid, email))
        if raw.execute(_SQLITE_ANY_RESOLVING_FALSE).fetchone() is not None:  # Email mode: records not found yet
            clearing.update(self._resolving_false(conn, sorted(wanted_emails)))
        return clearing, self._confirmed_of(conn, ids)

    def _confirmed_of(self, conn: Connection, ids: Sequence[str]) -> dict[str, Confirmed]:
        """What Salesforce last confirmed for the targets among ``ids`` (value, when, for which address). A value
        confirmed at no known time counts as old as can be: it never makes a read stale."""
        if not self._pg:
            rows = [
                (sid, value, None if at is None else float(at), email)
                for sid, value, at, email in sqlite_select_in(conn, _SQLITE_CONFIRMED, list(ids), 4)
            ]
        else:
            t = salesforce_targets
            rows = []
            for chunk in chunks(ids):
                rows.extend(
                    conn.execute(
                        select(t.c.salesforce_id, t.c.confirmed_value, t.c.confirmed_at, t.c.email).where(
                            self._in(t.c.salesforce_id, chunk), t.c.confirmed_value.is_not(None)
                        )
                    ).all()
                )
        never = float("-inf")
        return {sid: Confirmed(bool(value), never if at is None else at, email) for sid, value, at, email in rows}

    @staticmethod
    def _hold_as_pushed(
        conn: Connection, ids: Sequence[str], new: set[str], field: str | None, now: float, at: float
    ) -> None:
        """The records are held as pushed (Salesforce has true since ``at``); a queued write of true is dropped
        unless a writer holds it (its completion settles it: taking the row away would make the writer re-queue
        it as a lost lease, one more write). Those of ``new`` were inserted so by this transaction: their rows
        need no update."""
        t = salesforce_targets
        for chunk in chunks(ids):
            held = [sid for sid in chunk if sid not in new]
            if held:
                conn.execute(
                    update(t)
                    .where(pg_in(t.c.salesforce_id, held))
                    .values(
                        status="pushed",
                        last_error=None,
                        updated_at=now,
                        confirmed_value=True,
                        confirmed_at=at,
                        **({"field": field} if field else {}),
                    )
                )
            conn.execute(
                delete(outbox).where(
                    pg_in(outbox.c.salesforce_id, chunk),
                    outbox.c.value.is_(True),
                    or_(outbox.c.lease_expires_at.is_(None), outbox.c.lease_expires_at < now),
                )
            )

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

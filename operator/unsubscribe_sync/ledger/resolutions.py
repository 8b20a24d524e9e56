"""Email matching's queue: addresses whose Salesforce records are still to be found (README "Matching").

In Email mode an act that changes an address's state queues a resolution in the act's own transaction
(``queue_resolutions``, called from intake). The resolver (worker/resolver.py) claims due rows under fenced
leases, exactly like the outbox, asks Salesforce which records carry each address, and completes the rows
(``complete_resolutions``): the records found become targets and get their write queued through the outbox
(the one writer), each appears in the address's history. A row replaced by a newer act while it was being
resolved keeps the new value and stays due; a row whose fence moved on (another resolver holds it) is left
alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, or_, select, update

from unsubscribe_sync.ledger.base import HistoryRow, LedgerBase, Target, chunks
from unsubscribe_sync.ledger.models import ACTION_PUSH_SKIPPED, SOURCE_PUSH
from unsubscribe_sync.ledger.policy import Merge, QueuedWrite, merge_queued_write
from unsubscribe_sync.ledger.schema import outbox, resolutions, salesforce_targets, unsubscribes

ACTION_EMAIL_MATCHED = "email_matched"  # a record found by the address (history: record ID, object)
DETAIL_NO_MATCH = "no matching record"
ACTION_RESOLVE_FAILED = "resolve_failed"  # Salesforce refused the lookup of the address's records (the reason)


def resolution_replaces(existing: QueuedWrite, new: QueuedWrite) -> bool:
    """Whether a new act replaces the resolution queued for its address: the queued-write rule of
    ledger/policy.py (the one home of "latest act wins, ties by arrival"), so a resolution and the writes it
    queues can never disagree on which act is the latest."""
    return merge_queued_write(existing, new) in (Merge.REPLACE, Merge.REFRESH)


@dataclass(frozen=True, slots=True)
class ResolutionRow:
    id: int
    email: str
    value: bool
    act_at: float
    seq: int
    fence: int
    attempts: int


@dataclass(slots=True)
class ResolutionClaim:
    token: str
    rows: list[ResolutionRow] = field(default_factory=list)


@dataclass(slots=True)
class ResolutionResult:
    """What a completion recorded: addresses settled, records matched (per address), writes queued."""

    settled: int = 0
    replaced: int = 0
    lost: int = 0
    unmatched: int = 0
    queued_writes: int = 0
    matches_per_address: list[int] = field(default_factory=list)
    matched_by_object: dict[str, int] = field(default_factory=dict)


class ResolutionStore(LedgerBase):
    # Set from config (matching.mode) by whoever opens the ledger; the intake queues resolutions only when True.
    match_by_email: bool = False

    def _queue_resolutions(self, conn: Connection, acts: Mapping[str, tuple[bool, float]], now: float) -> None:
        """Queue (or replace, by the one latest-act rule) the resolution of each address: email -> (value, act_at).

        Called under the addresses' row locks (the intake's transaction), so reading the queued rows and then
        inserting or replacing them cannot interleave with another act on the same address.
        """
        if not acts:
            return
        r = resolutions
        queued: dict[str, QueuedWrite] = {}
        for chunk in chunks(sorted(acts)):
            queued.update(
                (email, QueuedWrite(bool(value), float(at)))
                for email, value, at in conn.execute(
                    select(r.c.email, r.c.value, r.c.act_at).where(self._in(r.c.email, chunk))
                ).all()
            )
        fresh: list[dict[str, Any]] = []
        replacing: list[dict[str, Any]] = []
        for email, (value, act_at) in sorted(acts.items()):
            existing = queued.get(email)
            if existing is None:
                fresh.append(
                    {
                        "email": email, "value": value, "act_at": act_at, "seq": 0, "received_at": now,
                        "attempts": 0, "next_attempt_at": now, "fence": 0,
                    }
                )  # fmt: skip
            elif resolution_replaces(existing, QueuedWrite(value, act_at)):
                replacing.append({"b_email": email, "b_value": value, "b_at": act_at})
        for rows in chunks(fresh):
            conn.execute(r.insert(), list(rows))
        if replacing:
            conn.execute(
                update(r)
                .where(r.c.email == bindparam("b_email"))
                .values(
                    value=bindparam("b_value"), act_at=bindparam("b_at"), seq=r.c.seq + 1, received_at=now,
                    attempts=0, next_attempt_at=now, last_error=None,
                ),
                replacing,
            )  # fmt: skip

    def _resolving_false(self, conn: Connection, emails: Sequence[str]) -> set[str]:
        """Addresses with a resubscribe's resolution still queued: a write of false owed to records not found yet.

        Salesforce still shows those records true, so an opt-out read from them meanwhile is not news (the
        same rule as a write of false queued in the outbox; see ``judge_salesforce_read``).
        """
        found: set[str] = set()
        for chunk in chunks(sorted(set(emails))):
            found.update(
                conn.execute(
                    select(resolutions.c.email).where(
                        self._in(resolutions.c.email, chunk), resolutions.c.value.is_(False)
                    )
                ).scalars()
            )
        return found

    def claim_resolutions(
        self, owner: str, limit: int, lease_seconds: float, *, now: float | None = None
    ) -> ResolutionClaim:
        """Lease up to ``limit`` due resolutions (SKIP LOCKED on PostgreSQL); each claimed row's fence moves on."""
        token = f"{owner}/{uuid.uuid4().hex[:12]}"
        r = resolutions
        with self._write() as conn:
            now = self._db_now(conn) if now is None else now
            due = and_(r.c.next_attempt_at <= now, or_(r.c.lease_expires_at.is_(None), r.c.lease_expires_at < now))
            ids = list(
                conn.execute(
                    select(r.c.id).where(due).order_by(r.c.next_attempt_at, r.c.id).limit(limit)
                    .with_for_update(skip_locked=True)
                ).scalars()
            )  # fmt: skip
            if not ids:
                return ResolutionClaim(token)
            rows = conn.execute(
                update(r)
                .where(self._in(r.c.id, ids))
                .values(fence=r.c.fence + 1, lease_owner=token, lease_expires_at=now + lease_seconds)
                .returning(r.c.id, r.c.email, r.c.value, r.c.act_at, r.c.seq, r.c.fence, r.c.attempts)
            ).all()
        claimed = [
            ResolutionRow(x.id, x.email, bool(x.value), float(x.act_at), x.seq, x.fence, x.attempts) for x in rows
        ]
        claimed.sort(key=lambda row: row.email)
        return ResolutionClaim(token, claimed)

    def release_resolutions(
        self, claim: ResolutionClaim, error: str, delays: Sequence[float], record: bool = False
    ) -> None:
        """A failed lookup: each row is tried again after its delay (never given up), fenced.

        ``record``: a refusal worth telling (not a passing fault): each address still held gets one history row
        with the reason, the first time that reason is met (a later retry failing the same way adds none).
        """
        if not claim.rows:
            return
        r = resolutions
        reason = error[:2000]
        with self._write() as conn:
            now = self._db_now(conn)
            if record:
                before: dict[int, tuple[int, str | None]] = {}
                for id_chunk in chunks([row.id for row in claim.rows]):
                    before.update(
                        (i, (fence, last)) for i, fence, last in conn.execute(
                            select(r.c.id, r.c.fence, r.c.last_error).where(self._in(r.c.id, id_chunk))
                        ).all()
                    )  # fmt: skip
                told = [
                    HistoryRow(now, row.email, None, SOURCE_PUSH, ACTION_RESOLVE_FAILED, "failed", reason)
                    for row in claim.rows
                    if row.id in before and before[row.id][0] == row.fence and before[row.id][1] != reason
                ]
                if told:
                    self._insert_history(conn, told)
            conn.execute(
                update(r)
                .where(r.c.id == bindparam("b_id"), r.c.fence == bindparam("b_fence"))
                .values(
                    attempts=r.c.attempts + 1,
                    next_attempt_at=bindparam("b_next"),
                    last_error=reason,
                    lease_owner=None,
                    lease_expires_at=None,
                ),
                [
                    {"b_id": row.id, "b_fence": row.fence, "b_next": now + delay}
                    for row, delay in zip(claim.rows, delays, strict=True)
                ],
            )

    def complete_resolutions(
        self, claim: ResolutionClaim, matches: Mapping[str, Sequence[tuple[str, str]]]
    ) -> ResolutionResult:
        """Record what Salesforce answered for a claim: ``matches`` maps each address to (record id, object).

        One transaction, under the addresses' row locks (as intake takes them): the records become targets,
        each gets a write of the resolution's value at its act time (merged with what is queued), and a
        history row; an address with none gets one "no matching record" row (counted skipped).
        """
        result = ResolutionResult()
        if not claim.rows:
            return result
        r = resolutions
        with self._write() as conn:
            now = self._db_now(conn)
            emails = sorted({row.email for row in claim.rows})
            for chunk in chunks(emails):  # lock order: addresses first, as intake does
                conn.execute(
                    select(unsubscribes.c.email)
                    .where(self._in(unsubscribes.c.email, chunk))
                    .order_by(unsubscribes.c.email)
                    .with_for_update()
                ).all()
            current: dict[int, tuple[int, int, bool, float]] = {}
            for id_chunk in chunks([row.id for row in claim.rows]):
                current.update(
                    (i, (fence, seq, bool(value), float(at)))
                    for i, fence, seq, value, at in conn.execute(
                        select(r.c.id, r.c.fence, r.c.seq, r.c.value, r.c.act_at).where(self._in(r.c.id, id_chunk))
                    ).all()
                )
            held = [row for row in claim.rows if row.id in current and current[row.id][0] == row.fence]
            result.lost = len(claim.rows) - len(held)
            targets: list[Target] = []
            writes: list[tuple[Target, bool, float]] = []
            rows: list[HistoryRow] = []
            for row in held:
                found = sorted(set(matches.get(row.email, ())))
                result.matches_per_address.append(len(found))
                for sid, obj in found:
                    target = (sid, obj, row.email)
                    targets.append(target)
                    writes.append((target, row.value, row.act_at))
                    result.matched_by_object[obj] = result.matched_by_object.get(obj, 0) + 1
                    rows.append(HistoryRow(now, row.email, sid, SOURCE_PUSH, ACTION_EMAIL_MATCHED, "matched", obj))
                if not found:
                    result.unmatched += 1
                    rows.append(
                        HistoryRow(now, row.email, None, SOURCE_PUSH, ACTION_PUSH_SKIPPED, "skipped", DETAIL_NO_MATCH)
                    )
            # a record already confirmed at this value with nothing queued needs no second write (the act's own
            # fan-out, or the record named by salesforceId, wrote it already)
            done_ids = self._confirmed_unqueued(conn, [(t[0], v) for t, v, _ in writes])
            self._insert_targets(conn, targets, "pending", None, now)
            result.queued_writes = self._queue_writes(conn, [w for w in writes if w[0][0] not in done_ids], now)
            self._insert_history(conn, rows)
            done = [row.id for row in held if current[row.id][1] == row.seq]
            replaced = [row.id for row in held if current[row.id][1] != row.seq]
            for id_chunk in chunks(done):
                conn.execute(delete(r).where(self._in(r.c.id, id_chunk)))
            for id_chunk in chunks(replaced):  # a newer act: due again at once with its value
                conn.execute(
                    update(r)
                    .where(self._in(r.c.id, id_chunk))
                    .values(lease_owner=None, lease_expires_at=None, next_attempt_at=now, attempts=0)
                )
            result.settled, result.replaced = len(done), len(replaced)
        return result

    def _confirmed_unqueued(self, conn: Connection, wanted: Sequence[tuple[str, bool]]) -> set[str]:
        """Ids of ``wanted`` (id, value) whose record is confirmed at that value and has no write queued."""
        values = dict(wanted)
        t = salesforce_targets
        queued = select(outbox.c.id).where(outbox.c.salesforce_id == t.c.salesforce_id).exists()
        found: set[str] = set()
        for chunk in chunks(sorted(values)):
            for sid, confirmed in conn.execute(
                select(t.c.salesforce_id, t.c.confirmed_value).where(self._in(t.c.salesforce_id, chunk), ~queued)
            ).all():
                if confirmed is not None and bool(confirmed) == values[sid]:
                    found.add(sid)
        return found

    def pending_resolutions(self) -> int:
        """Addresses whose records are still to be found (a gauge)."""
        with self._read() as conn:
            return int(conn.execute(select(func.count()).select_from(resolutions)).scalar_one())

    def iter_unsubscribed_emails(self) -> Iterator[str]:
        """Every unsubscribed address, streamed (the nightly's Email-mode ledger side)."""
        with self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                select(unsubscribes.c.email).where(unsubscribes.c.unsubscribed)
            )
            for (email,) in result:
                yield str(email)

    def iter_emails_without_target(self) -> Iterator[str]:
        """Unsubscribed addresses with no Salesforce record held, streamed (an Email-mode dry run's skipped)."""
        t = salesforce_targets
        no_target = ~select(t.c.salesforce_id).where(t.c.email == unsubscribes.c.email).exists()
        with self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=5000).execute(
                select(unsubscribes.c.email).where(unsubscribes.c.unsubscribed, no_target)
            )
            for (email,) in result:
                yield str(email)

    def add_email_targets(self, targets: Sequence[Target]) -> int:
        """Add records found by address (the nightly, Email mode) whose address is still unsubscribed; returns
        how many are new. Their write is then planned by the nightly as for any held record."""
        if not targets:
            return 0
        with self._write() as conn:
            now = self._db_now(conn)
            emails = sorted({t[2] for t in targets})
            still: set[str] = set()
            for chunk in chunks(emails):
                still.update(
                    conn.execute(
                        select(unsubscribes.c.email)
                        .where(self._in(unsubscribes.c.email, chunk), unsubscribes.c.unsubscribed)
                        .order_by(unsubscribes.c.email)
                        .with_for_update()
                    ).scalars()
                )
            return len(self._insert_targets(conn, [t for t in targets if t[2] in still], "pending", None, now))

"""Intake: unsubscribes and resubscribes as acts on addresses, each queuing the Salesforce writes it implies.

An act's time is its ``occurredAt`` (the time it was received when the sender gave none). The later act
wins on both sides, whatever order they arrive in (``policy.act_effect``): a resubscribe stamped 11:00 that
arrives after an unsubscribe stamped 12:00 is recorded as superseded and changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from sqlalchemy import Connection, delete

from unsubscribe_sync.api.addresses import normalize_email
from unsubscribe_sync.ledger.base import (
    HistoryRow,
    Target,
    chunks,
    driver_connection,
    pg_insert_rows,
    sqlite_select_in,
)
from unsubscribe_sync.ledger.models import (
    ACTION_PUSH_SKIPPED,
    ACTION_RESUBSCRIBED,
    ACTION_UNSUBSCRIBED,
    OUTCOME_NOT_UNSUBSCRIBED,
    OUTCOME_RESUBSCRIBED,
    OUTCOME_SUPERSEDED,
    SOURCE_PUSH,
    IngestResult,
    Resubscribe,
    ResubscribeResult,
    Unsubscribe,
    to_rfc3339,
)
from unsubscribe_sync.ledger.policy import Act, ActEffect, AddressState
from unsubscribe_sync.ledger.resolutions import ResolutionStore
from unsubscribe_sync.ledger.schema import processed_events
from unsubscribe_sync.ledger.sqlite_steps import insert_rows

# SQLite's replay check as driver SQL (see ``ledger.base``: one JSON array parameter holds the ids)
_SQLITE_SEEN_EVENTS = "SELECT event_id FROM processed_events WHERE event_id IN (SELECT value FROM json_each(?))"
_SQLITE_INSERT_EVENT = "INSERT INTO processed_events (event_id, received_at) {values}"  # sqlite_steps.insert_rows


class _Event(Protocol):
    @property
    def event_id(self) -> str | None: ...


E = TypeVar("E", bound=_Event)
A = TypeVar("A", Unsubscribe, Resubscribe)


def _normalized(items: Sequence[A]) -> list[A]:
    """The items with their addresses normalised; an item already normal is kept as is (no copy: most are,
    the worker's validation normalises them, and a copy per item is a measurable share of a group commit)."""
    out: list[A] = []
    for item in items:
        email = normalize_email(item.email)
        out.append(item if email == item.email else item._replace(email=email))
    return out


def _superseded_detail(state_at: float) -> str:
    return f"older than the address's latest act ({to_rfc3339(state_at)}): changed nothing"


class IntakeStore(ResolutionStore):
    def _take_acts(
        self,
        conn: Connection,
        items: Sequence[A],
        unsubscribe: bool,
        now: float,
        result: IngestResult | ResubscribeResult,
    ) -> tuple[list[A], list[ActEffect], dict[str, AddressState], dict[str, Target], set[str]] | None:
        """The shared first steps of an intake: drop replays, apply the acts, add the records they name.

        Returns (items kept, each one's effect, the addresses' states after, records named by items that were
        not superseded, ids of those new to the ledger); None when every item was a replay.
        """
        kept = self._drop_replayed(conn, items, now, result)
        if not kept:
            return None
        acts = [(i.email, Act(unsubscribe, i.occurred_at if i.occurred_at is not None else now)) for i in kept]
        effects, states = self._apply_acts(conn, acts, now)
        if self.match_by_email:  # Email mode: find every record of each address whose state this changed
            changed = {
                i.email for i, e in zip(kept, effects, strict=True)
                if e is ActEffect.CHANGES or (e is ActEffect.NEW and unsubscribe)
            }  # fmt: skip
            self._queue_resolutions(
                conn, {e: (states[e].unsubscribed, states[e].state_at) for e in changed if e in states}, now
            )
        named: dict[str, Target] = {}
        for item, effect in zip(kept, effects, strict=True):
            if effect is not ActEffect.SUPERSEDED and item.salesforce_id is not None and item.object is not None:
                named.setdefault(item.salesforce_id, (item.salesforce_id, item.object, item.email))
        added = set(self._insert_targets(conn, list(named.values()), "pending", None, now))
        return kept, effects, states, named, added

    def _drop_replayed(
        self, conn: Connection, items: Sequence[E], now: float, result: IngestResult | ResubscribeResult
    ) -> list[E]:
        event_ids = sorted({item.event_id for item in items if item.event_id})
        new_events: set[str] = set()
        if event_ids and not self._pg:  # the write lock held: the ids seen are read, the new ones inserted
            seen_before = {e for (e,) in sqlite_select_in(conn, _SQLITE_SEEN_EVENTS, event_ids, 1)}
            new_events = {e for e in event_ids if e not in seen_before}
            if new_events:
                insert_rows(driver_connection(conn), _SQLITE_INSERT_EVENT, [(e, now) for e in sorted(new_events)])
            event_ids = []
        for chunk in chunks(event_ids):
            stmt = pg_insert_rows(processed_events, [{"event_id": e, "received_at": now} for e in chunk])
            stmt = stmt.on_conflict_do_nothing(index_elements=["event_id"]).returning(processed_events.c.event_id)
            new_events.update(conn.execute(stmt).scalars())
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

    def ingest(self, items: Sequence[Unsubscribe], *, received_at: float | None = None) -> IngestResult:
        """Store validated unsubscribes in one transaction (idempotent by eventId and by email + ID).

        Per address, in arrival order: an unsubscribe newer than the address's state suppresses it (when it
        was resubscribed, every record of the address is queued to be set again); one older than a later
        resubscribe is recorded as superseded. Records named by ``salesforceId`` are added and queued, and
        records of the address that failed for good are queued again. A repeat that changes nothing adds
        no history row: the address's ``repeats`` counter goes up instead.
        """
        result = IngestResult()
        if not items:
            return result
        items = _normalized(items)
        with self._write() as conn:
            now = self._db_now(conn) if received_at is None else received_at
            taken = self._take_acts(conn, items, True, now, result)
            if taken is None:
                return result
            kept, effects, states, named, added = taken
            live = [(i, e) for i, e in zip(kept, effects, strict=True) if e is not ActEffect.SUPERSEDED]
            flipped = {i.email for i, e in live if e in (ActEffect.NEW, ActEffect.CHANGES)}
            repeated = {i.email for i, e in live} - flipped
            # every record of an address that (again) suppresses; for a repeat, the ones not confirmed yet
            # (a record that failed for good is tried again: a later unsubscribe re-queues even those)
            targets = self._targets_of(conn, sorted(flipped)) + self._targets_of(
                conn, sorted(repeated), unpushed_only=True
            )
            targets += [named[sid] for sid in sorted(added)]
            writes = {t[0]: (t, True, states[t[2]].state_at) for t in targets if states[t[2]].unsubscribed}
            result.enqueued = self._queue_writes(conn, list(writes.values()), now)
            with_records = {t[2] for t in targets}
            rows = []
            for item, effect in zip(kept, effects, strict=True):
                at = item.occurred_at if item.occurred_at is not None else now
                if effect is ActEffect.SUPERSEDED:
                    result.superseded += 1
                    detail = _superseded_detail(states[item.email].state_at)
                    rows.append(
                        HistoryRow(
                            at,
                            item.email,
                            item.salesforce_id,
                            item.source,
                            ACTION_UNSUBSCRIBED,
                            OUTCOME_SUPERSEDED,
                            detail,
                        )
                    )
                    continue
                new_record = item.salesforce_id in added
                if effect is ActEffect.REPEAT and not new_record:
                    result.repeats += 1  # counted on the address (``repeats``), no history row
                    continue
                rows.append(HistoryRow(at, item.email, item.salesforce_id, item.source, ACTION_UNSUBSCRIBED))
                # (Email mode: the resolver records the address's records, or "no matching record")
                if item.salesforce_id is None and item.email not in with_records and not self.match_by_email:
                    result.skipped_no_salesforce_id += 1
                    rows.append(
                        HistoryRow(
                            now, item.email, None, SOURCE_PUSH, ACTION_PUSH_SKIPPED, "skipped", "no Salesforce ID"
                        )
                    )
            self._insert_history(conn, rows)
            result.stored = len(kept)
        return result

    def resubscribe(self, items: Sequence[Resubscribe], *, received_at: float | None = None) -> ResubscribeResult:
        """Store validated resubscribes in one transaction (idempotent by eventId).

        Per item, in arrival order: a resubscribe newer than the address's state marks it not unsubscribed
        (an address never seen is recorded as not unsubscribed, so the request is on file) and queues a
        write of false on each of its Salesforce records (plus ``salesforceId`` when given and not held by
        another address), replacing any older opt-out write still queued. One older than the address's
        latest unsubscribe is recorded as superseded and changes nothing. Each item adds a history row
        naming who asked and why (outcome ``resubscribed``, ``not_unsubscribed`` or ``superseded``).
        """
        result = ResubscribeResult()
        if not items:
            return result
        items = _normalized(items)
        with self._write() as conn:
            now = self._db_now(conn) if received_at is None else received_at
            taken = self._take_acts(conn, items, False, now, result)
            if taken is None:
                return result
            kept, effects, states, named, added = taken
            live = [(i, e) for i, e in zip(kept, effects, strict=True) if e is not ActEffect.SUPERSEDED]
            flipped = sorted({i.email for i, e in live if e is ActEffect.CHANGES})
            targets = self._targets_of(conn, flipped) + [named[sid] for sid in sorted(added)]
            writes = {t[0]: (t, False, states[t[2]].state_at) for t in targets if not states[t[2]].unsubscribed}
            result.enqueued = self._queue_writes(conn, list(writes.values()), now)
            rows = []
            for item, effect in zip(kept, effects, strict=True):
                at = item.occurred_at if item.occurred_at is not None else now
                detail = f"by {item.requested_by}: {item.reason}"
                if effect is ActEffect.SUPERSEDED:
                    outcome = OUTCOME_SUPERSEDED
                    detail = f"{detail}; {_superseded_detail(states[item.email].state_at)}"
                    result.superseded += 1
                elif effect is ActEffect.CHANGES:
                    outcome = OUTCOME_RESUBSCRIBED
                    result.resubscribed += 1
                else:
                    outcome = OUTCOME_NOT_UNSUBSCRIBED
                    result.not_unsubscribed += 1
                rows.append(
                    HistoryRow(
                        at,
                        item.email,
                        item.salesforce_id,
                        item.source,
                        ACTION_RESUBSCRIBED,
                        outcome,
                        detail,
                        item.requested_by,
                        item.reason,
                    )
                )
            self._insert_history(conn, rows)
            result.stored = len(kept)
        return result

    def prune_processed_events(self, older_than_seconds: float, *, now: float | None = None) -> int:
        """Forget event ids received more than ``older_than_seconds`` ago; returns how many.

        A replay older than the retention is stored again as a repeat: it changes nothing (the address
        keeps its state, or the later act wins), so idempotency holds in effect.
        """
        with self._write() as conn:
            cutoff = (self._db_now(conn) if now is None else now) - older_than_seconds
            res = conn.execute(delete(processed_events).where(processed_events.c.received_at < cutoff))
            return int(res.rowcount or 0)

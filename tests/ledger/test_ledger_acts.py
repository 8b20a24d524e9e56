"""Never lost, never stale (ledger side): acts in occurredAt order, fenced leases, transient never permanent,
row locks on PostgreSQL, sorted keys, bounded history. Each test names the defect it guards against."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.fixtures.ledgers import contact_id
from unsubscribe_sync.ledger import Ledger, PushOutcome, Resubscribe, Unsubscribe
from unsubscribe_sync.ledger.policy import (
    Act,
    ActEffect,
    AddressState,
    ClaimSize,
    Confirmed,
    Merge,
    QueuedWrite,
    SalesforceRead,
    act_effect,
    claim_size,
    judge_salesforce_read,
    merge_queued_write,
)
from unsubscribe_sync.salesforce.errors import decide_write
from unsubscribe_sync.salesforce.types import RecordResult

T0 = 1_780_000_000.0  # a fixed occurredAt origin (2026)


def unsub(email: str, sid: str | None = None, at: float | None = None) -> Unsubscribe:
    return Unsubscribe(email=email, salesforce_id=sid, object="Contact" if sid else None, occurred_at=at)


def resub(email: str, at: float | None = None) -> Resubscribe:
    return Resubscribe(email=email, requested_by="ops", reason="asked", occurred_at=at)


# -- the pure rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "current", "act", "effect"),
    [
        ("an unknown address takes the act", None, Act(True, T0), ActEffect.NEW),
        ("a later opposite act flips the state", AddressState(True, T0), Act(False, T0 + 1), ActEffect.CHANGES),
        ("a tie goes to the later arrival", AddressState(True, T0), Act(False, T0), ActEffect.CHANGES),
        ("an older act changes nothing", AddressState(True, T0 + 3600), Act(False, T0), ActEffect.SUPERSEDED),
        ("a later act of the same state is a repeat", AddressState(True, T0), Act(True, T0 + 5), ActEffect.REPEAT),
        ("an older repeat is superseded too", AddressState(False, T0), Act(False, T0 - 5), ActEffect.SUPERSEDED),
    ],
)
def test_act_effect(behaviour: str, current: AddressState | None, act: Act, effect: ActEffect) -> None:
    assert act_effect(current, act) is effect, behaviour


@pytest.mark.parametrize(
    ("behaviour", "existing", "new", "merge"),
    [
        ("nothing queued: queue it", None, QueuedWrite(True, T0), Merge.INSERT),
        ("a newer opposite write replaces", QueuedWrite(False, T0), QueuedWrite(True, T0 + 1), Merge.REPLACE),
        ("an older write never replaces a newer one", QueuedWrite(False, T0 + 1), QueuedWrite(True, T0), Merge.KEEP),
        (
            "the same value from a later act only moves the time",
            QueuedWrite(True, T0),
            QueuedWrite(True, T0 + 1),
            Merge.REFRESH,
        ),
        ("the same value and time changes nothing", QueuedWrite(True, T0), QueuedWrite(True, T0), Merge.KEEP),
    ],
)
def test_merge_queued_write(behaviour: str, existing: QueuedWrite | None, new: QueuedWrite, merge: Merge) -> None:
    assert merge_queued_write(existing, new) is merge, behaviour


@pytest.mark.parametrize(
    ("behaviour", "clearing", "confirmed", "read"),
    [
        ("an opt-out read with nothing of ours pending is news", False, None, SalesforceRead.NEWS),
        (
            "a queued write of false means Salesforce has not seen the resubscribe",
            True,
            None,
            SalesforceRead.PENDING_RESUBSCRIBE,
        ),
        (
            "a write of false confirmed after the read began makes the read stale",
            False,
            Confirmed(False, T0 + 1, "a@example.com"),
            SalesforceRead.PENDING_RESUBSCRIBE,
        ),
        (
            "a write of false confirmed before the read: the opt-out is new",
            False,
            Confirmed(False, T0 - 1, "a@example.com"),
            SalesforceRead.NEWS,
        ),
        (
            "the true this ledger wrote for the record and address, read back, is no act",
            False,
            Confirmed(True, T0 - 60, "a@example.com"),
            SalesforceRead.OWN_VALUE,
        ),
        (
            "a true confirmed for the record under another address: the address read is news",
            False,
            Confirmed(True, T0 - 60, "old@example.com"),
            SalesforceRead.NEWS,
        ),
        (
            "a queued write of false outranks the ledger's own true",
            True,
            Confirmed(True, T0 - 60, "a@example.com"),
            SalesforceRead.PENDING_RESUBSCRIBE,
        ),
    ],
)
def test_judge_salesforce_read(
    behaviour: str, clearing: bool, confirmed: Confirmed | None, read: SalesforceRead
) -> None:
    got = judge_salesforce_read(clearing_queued=clearing, confirmed=confirmed, email="a@example.com", read_at=T0)
    assert got is read, behaviour


@pytest.mark.parametrize(
    ("behaviour", "result", "attempts", "status", "stuck"),
    [
        ("success is pushed", RecordResult("x", True), 0, "pushed", False),
        (
            "a deleted record fails for good",
            RecordResult("x", False, "ENTITY_IS_DELETED", "deleted"),
            0,
            "failed",
            False,
        ),
        ("a locked row is retried", RecordResult("x", False, "UNABLE_TO_LOCK_ROW", "busy"), 3, "retry", False),
        (
            "a row locked past maxAttempts is stuck, still retried",
            RecordResult("x", False, "UNABLE_TO_LOCK_ROW", "b"),
            49,
            "retry",
            True,
        ),
        (
            "far past maxAttempts it is still retried",
            RecordResult("x", False, "SERVER_UNAVAILABLE", "b"),
            500,
            "retry",
            True,
        ),
        (
            "a hidden field holds the row",
            RecordResult("x", False, "INVALID_FIELD_FOR_INSERT_UPDATE", "no"),
            0,
            "held",
            False,
        ),
    ],
)
def test_write_outcome_rule(behaviour: str, result: RecordResult, attempts: int, status: str, stuck: bool) -> None:
    decision = decide_write(result, attempts, max_attempts=50)
    assert (decision.status, decision.stuck) == (status, stuck), behaviour


# -- item 3: occurredAt order --------------------------------------------------------------------------


def test_a_retried_resubscribe_stamped_before_an_unsubscribe_changes_nothing(ledger: Ledger) -> None:
    ledger.ingest([unsub("late@example.com", contact_id(1), at=T0 + 3600)])
    result = ledger.resubscribe([resub("late@example.com", at=T0)])
    assert result.superseded == 1 and result.enqueued == 0
    found = ledger.lookup("late@example.com")
    assert found is not None and found["unsubscribed"] is True
    assert found["history"][0]["outcome"] == "superseded"
    claim = ledger.claim("w", 10, 60)
    assert [r.value for r in claim] == [True]  # the opt-out write is still the one queued


def test_an_unsubscribe_older_than_a_resubscribe_arriving_later_changes_nothing(ledger: Ledger) -> None:
    ledger.resubscribe([resub("re@example.com", at=T0 + 3600)])
    result = ledger.ingest([unsub("re@example.com", contact_id(2), at=T0)])
    assert result.superseded == 1 and ledger.backlog() == 0
    found = ledger.lookup("re@example.com")
    assert found is not None and found["unsubscribed"] is False


def test_a_later_unsubscribe_wins_over_an_earlier_resubscribe_whatever_the_arrival_order(ledger: Ledger) -> None:
    ledger.ingest([unsub("x@example.com", contact_id(3), at=T0 + 7200)])
    ledger.resubscribe([resub("x@example.com", at=T0 + 3600)])
    ledger.ingest([unsub("y@example.com", contact_id(4), at=T0)])
    ledger.resubscribe([resub("y@example.com", at=T0 + 3600)])
    x, y = ledger.lookup("x@example.com"), ledger.lookup("y@example.com")
    assert x is not None and x["unsubscribed"] is True
    assert y is not None and y["unsubscribed"] is False


def _pushed(ledger: Ledger, value: bool, status: str = "pushed", error: str | None = None) -> None:
    claim = ledger.claim("w", 10, 60)
    assert [r.value for r in claim] == [value]
    ledger.complete(claim, [PushOutcome(claim[0], status, error)], field="HasOptedOutOfEmail")  # type: ignore[arg-type]


def test_a_read_of_the_opt_out_this_ledger_wrote_is_no_new_act_so_a_late_resubscribe_still_wins(
    ledger: Ledger,
) -> None:
    """Unsubscribed at T0 and pushed; a poll at T0 + 300 reads the record's true (the value the push wrote);
    the person's resubscribe of T0 + 60 arrives after the poll. The read is the ledger's own value, not an act
    at the time of the read: the resubscribe is the latest act and wins."""
    ledger.ingest([unsub("echo@example.com", contact_id(30), at=T0)])
    _pushed(ledger, True)
    read = ledger.add_salesforce_opt_outs(
        [(contact_id(30), "Contact", "Echo@Example.com")], "salesforce-poll", field="HasOptedOutOfEmail",
        read_at=T0 + 300,
    )  # fmt: skip
    assert (read.added, read.pending_resubscribe, read.in_sync) == (0, 0, 1)
    late = ledger.resubscribe([resub("echo@example.com", at=T0 + 60)])
    assert (late.resubscribed, late.superseded) == (1, 0)
    found = ledger.lookup("echo@example.com")
    assert found is not None and found["unsubscribed"] is False
    assert [r.value for r in ledger.claim("w", 10, 60)] == [False]  # Salesforce is told


def test_a_resubscribe_whose_write_of_false_failed_for_good_is_not_undone_by_reading_the_old_true(
    ledger: Ledger,
) -> None:
    """The write of false was refused for a permanent reason (recorded as failed): Salesforce still holds the
    true this ledger wrote. Reading that true is not a new opt-out: the address stays resubscribed."""
    ledger.ingest([unsub("kept@example.com", contact_id(31), at=T0)])
    _pushed(ledger, True)
    ledger.resubscribe([resub("kept@example.com", at=T0 + 60)])
    _pushed(ledger, False, "failed", "FIELD_CUSTOM_VALIDATION_EXCEPTION: refused")
    read = ledger.add_salesforce_opt_outs([(contact_id(31), "Contact", "kept@example.com")], read_at=T0 + 300)
    assert (read.added, read.in_sync) == (0, 1)
    found = ledger.lookup("kept@example.com")
    assert found is not None and found["unsubscribed"] is False
    assert found["salesforce"][0]["status"] == "failed"


def test_a_record_read_under_another_address_than_the_one_written_is_news(ledger: Ledger) -> None:
    """The record's Email changed in Salesforce since the push: its opt-out suppresses the new address too."""
    ledger.ingest([unsub("old@example.com", contact_id(32), at=T0)])
    _pushed(ledger, True)
    read = ledger.add_salesforce_opt_outs([(contact_id(32), "Contact", "new@example.com")], read_at=T0 + 300)
    assert (read.added, read.in_sync) == (1, 0)
    found = ledger.lookup("new@example.com")
    assert found is not None and found["unsubscribed"] is True


# -- item 2: fenced leases -------------------------------------------------------------------------------


def test_a_write_that_outlived_its_lease_is_not_trusted(ledger: Ledger) -> None:
    ledger.ingest([unsub("slow@example.com", contact_id(5))])
    stale = ledger.claim("slow-worker", 10, 1, now=time.time())
    fresh = ledger.claim("other", 10, 60, now=time.time() + 5)  # the lease expired: claimed again, new fence
    assert [r.salesforce_id for r in fresh] == [r.salesforce_id for r in stale]
    assert ledger.renew(stale, 60)[0] == set()  # the stale writer learns it lost the rows
    result = ledger.complete(stale, [PushOutcome(stale[0], "pushed")], field="HasOptedOutOfEmail")
    assert (result.settled, result.lost) == (0, 1)
    assert ledger.backlog() == 1  # not marked done on a stale answer
    # the stale write may land after the fresh one: the row is written once more after both
    assert ledger.complete(fresh, [PushOutcome(fresh[0], "pushed")], field="HasOptedOutOfEmail").replaced == 1
    again = ledger.claim("other", 10, 60, now=time.time() + 5)
    assert [r.salesforce_id for r in again] == [r.salesforce_id for r in stale]
    assert ledger.complete(again, [PushOutcome(again[0], "pushed")], field="HasOptedOutOfEmail").settled == 1
    assert ledger.backlog() == 0


def test_resubscribe_then_unsubscribe_while_a_write_is_in_flight_ends_opted_out(ledger: Ledger) -> None:
    ledger.ingest([unsub("flip@example.com", contact_id(6), at=T0)])
    first = ledger.claim("w", 10, 60)
    ledger.complete(first, [PushOutcome(first[0], "pushed")], field="HasOptedOutOfEmail")
    ledger.resubscribe([resub("flip@example.com", at=T0 + 10)])
    in_flight = ledger.claim("w", 10, 60)
    assert [r.value for r in in_flight] == [False]
    ledger.ingest([unsub("flip@example.com", at=T0 + 20)])  # replaces the queued value while it is written
    ledger.complete(in_flight, [PushOutcome(in_flight[0], "pushed")], field="HasOptedOutOfEmail")
    again = ledger.claim("w", 10, 60)
    assert [r.value for r in again] == [True]  # the newer value is written after the older one
    ledger.complete(again, [PushOutcome(again[0], "pushed")], field="HasOptedOutOfEmail")
    found = ledger.lookup("flip@example.com")
    assert found is not None and found["unsubscribed"] is True and ledger.backlog() == 0


# -- item 1: transient never permanent -------------------------------------------------------------------


def test_a_record_retried_past_max_attempts_is_stuck_not_failed_and_a_later_unsubscribe_requeues_failed_ones(
    ledger: Ledger,
) -> None:
    ledger.ingest([unsub("locked@example.com", contact_id(7)), unsub("gone@example.com", contact_id(8))])
    claim = ledger.claim("w", 10, 60)
    by_sid = {r.salesforce_id: r for r in claim}
    ledger.complete(
        claim,
        [
            PushOutcome(by_sid[contact_id(7)], "retry", "UNABLE_TO_LOCK_ROW", time.time(), stuck=True),
            PushOutcome(by_sid[contact_id(8)], "failed", "ENTITY_IS_DELETED: gone"),
        ],
        field="HasOptedOutOfEmail",
    )
    stats = ledger.stats()
    assert stats.backlog == 1 and stats.stuck == 1
    locked = ledger.lookup("locked@example.com")
    assert locked is not None and locked["salesforce"][0]["status"] == "pending"
    assert locked["history"][0]["action"] == "push_stuck"
    assert ledger.ingest([unsub("gone@example.com")]).enqueued == 1  # a later unsubscribe tries it again
    assert ledger.backlog() == 2


# -- item 8: bounded history and processed events ------------------------------------------------------


def test_repeats_add_no_history_and_the_history_is_paged_newest_first(ledger: Ledger) -> None:
    ledger.ingest([unsub("dup@example.com", contact_id(9))])
    for _ in range(5):
        ledger.ingest([unsub("dup@example.com", contact_id(9)) for _ in range(200)])
    ledger.resubscribe([resub("dup@example.com")])
    ledger.ingest([unsub("dup@example.com")])
    found = ledger.lookup("dup@example.com", history_limit=2)
    assert found is not None and found["repeats"] == 1000
    assert [h["action"] for h in found["history"]] == ["unsubscribed", "resubscribed"]  # newest first
    assert found["historyNext"] is not None
    rest = ledger.lookup("dup@example.com", history_limit=100, history_before=found["historyNext"])
    assert rest is not None and rest["historyNext"] is None
    assert [h["action"] for h in rest["history"]] == ["unsubscribed"]  # 1,001 identical items: one row


def test_processed_events_are_pruned_after_the_retention(ledger: Ledger) -> None:
    old = Unsubscribe(email="ev@example.com", event_id="ev-1")
    ledger.ingest([old], received_at=time.time() - 40 * 86400)
    ledger.ingest([Unsubscribe(email="ev2@example.com", event_id="ev-2")])
    assert ledger.prune_processed_events(30 * 86400) == 1
    assert ledger.table_counts()["processed_events"] == 1


# -- items 4 and 7: PostgreSQL races and lock order ----------------------------------------------------


@pytest.mark.postgres
def test_ingest_racing_a_resubscribe_on_another_replica_ends_consistent(postgres_url: str) -> None:
    replicas = [Ledger.open(postgres_url), Ledger.open(postgres_url, migrate_schema=False)]
    try:
        emails = [f"race{i}@example.com" for i in range(40)]
        replicas[0].ingest([unsub(e, contact_id(100 + i), at=T0) for i, e in enumerate(emails)])
        barrier = threading.Barrier(2)

        def unsubscribe_again() -> None:
            barrier.wait()
            replicas[0].ingest([unsub(e, at=T0 + 20) for e in emails])

        def resubscribe_all() -> None:
            barrier.wait()
            replicas[1].resubscribe([resub(e, at=T0 + 10) for e in reversed(emails)])

        threads = [threading.Thread(target=unsubscribe_again), threading.Thread(target=resubscribe_all)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # the later act (the unsubscribe at +20) wins for every address, and no write of false is left queued
        for e in emails:
            found = replicas[0].lookup(e)
            assert found is not None and found["unsubscribed"] is True, e
        assert replicas[0].pending_clears() == (set(), set())
    finally:
        for led in replicas:
            led.close()


@pytest.mark.postgres
def test_opposite_order_ingests_of_the_same_addresses_never_deadlock(postgres_url: str) -> None:
    replicas = [Ledger.open(postgres_url), Ledger.open(postgres_url, migrate_schema=False)]
    errors: list[BaseException] = []
    try:
        for round_ in range(5):
            items = [unsub(f"d{i}@example.com", contact_id(1000 + i), at=T0 + round_) for i in range(300)]
            barrier = threading.Barrier(2)

            def run(led: Ledger, batch: list[Unsubscribe], barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    led.ingest(batch)
                except BaseException as exc:  # a deadlock surfaces as an exception
                    errors.append(exc)

            threads = [
                threading.Thread(target=run, args=(replicas[0], items)),
                threading.Thread(target=run, args=(replicas[1], list(reversed(items)))),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        assert not errors, errors[0]
    finally:
        for led in replicas:
            led.close()


@pytest.mark.postgres
def test_a_salesforce_opt_out_read_before_a_resubscribe_does_not_undo_it(postgres_url: str) -> None:
    led = Ledger.open(postgres_url)
    try:
        led.ingest([unsub("sf@example.com", contact_id(20), at=T0)])
        read_at = time.time()
        led.resubscribe([resub("sf@example.com")])  # after the read began
        claim = led.claim("w", 10, 60)
        led.complete(claim, [PushOutcome(claim[0], "pushed")], field="HasOptedOutOfEmail")
        result = led.add_salesforce_opt_outs([(contact_id(20), "Contact", "sf@example.com")], read_at=read_at)
        assert (result.added, result.pending_resubscribe) == (0, 1)
        found = led.lookup("sf@example.com")
        assert found is not None and found["unsubscribed"] is False
    finally:
        led.close()


@pytest.mark.parametrize(
    ("behaviour", "waiting", "bulk_threshold", "bulk_limit", "size"),
    [
        ("at or below the threshold a claim is Collections-sized", 10_000, 10_000, 50_000, ClaimSize(200, False)),
        ("with Bulk off every claim is Collections-sized", 1_000_000, None, 50_000, ClaimSize(200, False)),
        ("a Bulk limit not above the batch turns Bulk off", 20_000, 10_000, 200, ClaimSize(200, False)),
        ("above the threshold and within the limit one job takes all", 30_000, 10_000, 50_000, ClaimSize(30_000, True)),
        ("just over the limit the rows are split evenly", 60_000, 10_000, 50_000, ClaimSize(30_000, True)),
        ("an uneven split rounds the first job up", 70_001, 10_000, 50_000, ClaimSize(35_001, True)),
        ("twice the limit is two full jobs", 100_000, 10_000, 50_000, ClaimSize(50_000, True)),
        ("past twice the limit a full job", 150_001, 10_000, 50_000, ClaimSize(50_000, True)),
    ],
)
def test_claim_size(behaviour: str, waiting: int, bulk_threshold: int | None, bulk_limit: int, size: ClaimSize) -> None:
    assert claim_size(waiting, limit=200, bulk_threshold=bulk_threshold, bulk_limit=bulk_limit) == size, behaviour


def test_a_salesforce_read_does_not_undo_a_resubscribe_committed_while_it_was_checked(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A resubscribe's transaction is open (its address locked, its write of false not yet committed) when a
    # Salesforce read of the still-opted-out record is added. Checked before it locks the address, the addition
    # missed the write of false that committed right after its check, and its read (later than the resubscribe's
    # receipt) suppressed the address again.
    sid = contact_id(40)
    ledger.ingest([unsub("race@example.com", sid, at=T0)])
    locked, checked = threading.Event(), threading.Event()
    queue_writes = type(ledger)._queue_writes
    checks = type(ledger)._opt_out_checks if ledger._pg else type(ledger)._opt_out_checks_sqlite

    def held_queue_writes(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        locked.set()
        checked.wait(1.0)  # the addition's check has run (or, when it waits for the lock, a second has passed)
        return queue_writes(self, *args, **kwargs)

    def signalled_checks(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        try:
            return checks(self, *args, **kwargs)
        finally:
            checked.set()

    monkeypatch.setattr(type(ledger), "_queue_writes", held_queue_writes)
    monkeypatch.setattr(type(ledger), "_opt_out_checks" if ledger._pg else "_opt_out_checks_sqlite", signalled_checks)
    resubscribing = threading.Thread(target=lambda: ledger.resubscribe([resub("race@example.com")]))
    resubscribing.start()
    assert locked.wait(10)
    added = ledger.add_salesforce_opt_outs([(sid, "Contact", "race@example.com")], read_at=time.time())
    resubscribing.join(10)
    assert added.added == 0 and added.pending_resubscribe == 1
    found = ledger.lookup("race@example.com")
    assert found is not None and found["unsubscribed"] is False

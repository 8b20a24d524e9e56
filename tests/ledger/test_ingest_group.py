"""One group commit holding new and known addresses, repeats and out-of-order acts: the same outcome on both
databases (SQLite reads the addresses first and inserts the missing ones; PostgreSQL inserts, then locks)."""

from __future__ import annotations

from unsubscribe_sync.ledger import Ledger, PushOutcome, Resubscribe, Unsubscribe
from unsubscribe_sync.ledger.models import to_rfc3339


def test_a_mixed_group_ends_with_each_addresss_latest_act(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe(email="known@example.com", occurred_at=100.0)], received_at=100.0)
    ledger.resubscribe(
        [Resubscribe(email="back@example.com", occurred_at=100.0, requested_by="support", reason="asked")],
        received_at=100.0,
    )
    result = ledger.ingest(
        [
            Unsubscribe(email="New@Example.com", salesforce_id="003000000000001", object="Contact", occurred_at=200.0),
            Unsubscribe(email="new@example.com", occurred_at=150.0),  # older than the act before it: superseded
            Unsubscribe(email="known@example.com", occurred_at=200.0),  # a repeat of the known state
            Unsubscribe(email="back@example.com", occurred_at=50.0),  # older than the resubscribe: superseded
            Unsubscribe(email="other@example.com", occurred_at=300.0),
        ],
        received_at=400.0,
    )

    assert (result.stored, result.superseded, result.repeats) == (5, 2, 1)
    new = ledger.lookup("new@example.com")
    assert new is not None and new["unsubscribed"] and [t["id"] for t in new["salesforce"]] == ["003000000000001"]
    assert new["stateAt"] == to_rfc3339(200.0)
    known = ledger.lookup("known@example.com")
    assert known is not None and known["unsubscribed"] and known["repeats"] == 1
    back = ledger.lookup("back@example.com")
    assert back is not None and not back["unsubscribed"]
    assert back["history"][0]["outcome"] == "superseded"  # newest first


def test_queued_writes_are_replaced_and_failed_records_queued_again(ledger: Ledger) -> None:
    """The queued-write upserts of an intake (driver SQL on SQLite, Core on PostgreSQL): a write in flight replaced
    by a newer act keeps its lease and its completion leaves the row for the new value; a record that failed for
    good is queued again by a later unsubscribe, its error cleared; a record already held is not taken over."""
    sid, failed_sid = "003000000000001", "003000000000002"
    ledger.ingest(
        [
            Unsubscribe(email="a@example.com", salesforce_id=sid, object="Contact", occurred_at=100.0),
            Unsubscribe(email="b@example.com", salesforce_id=failed_sid, object="Contact", occurred_at=100.0),
        ],
        received_at=100.0,
    )
    claim = ledger.claim("w1", 10, 60, now=100.0)
    by_id = {row.salesforce_id: row for row in claim}
    assert set(by_id) == {sid, failed_sid} and all(r.value and r.seq == 0 for r in claim)
    ledger.complete(claim, [PushOutcome(by_id[failed_sid], "failed", "ENTITY_IS_DELETED: gone")], field="F")

    ledger.resubscribe(
        [Resubscribe(email="a@example.com", occurred_at=200.0, requested_by="support", reason="asked")],
        received_at=200.0,
    )
    # the write of true in flight finishes; its row stays for the newer false
    ledger.complete(claim, [PushOutcome(by_id[sid], "pushed")], field="F")
    result = ledger.ingest(
        [
            Unsubscribe(email="b@example.com", occurred_at=300.0),  # a repeat: the failed record queued again
            Unsubscribe(email="new@example.com", salesforce_id=failed_sid, object="Contact", occurred_at=300.0),
        ],
        received_at=300.0,
    )
    assert result.enqueued == 1  # the record of b (already held: not added for new@)

    # one claim holds writes of one value: two claims take both rows
    queued = {row.salesforce_id: row for _ in range(2) for row in ledger.claim("w2", 10, 60)}
    assert not queued[sid].value and queued[sid].seq == 1 and queued[sid].attempts == 0
    assert queued[failed_sid].value and queued[failed_sid].email == "b@example.com"
    b = ledger.lookup("b@example.com")
    assert b is not None and b["salesforce"][0]["status"] == "pending" and b["salesforce"][0]["lastError"] is None
    assert ledger.lookup("new@example.com") is not None

"""One group commit holding new and known addresses, repeats and out-of-order acts: the same outcome on both
databases (SQLite reads the addresses first and inserts the missing ones; PostgreSQL inserts, then locks)."""

from __future__ import annotations

from unsubscribe_sync.ledger import Ledger, Resubscribe, Unsubscribe
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

"""The resolutions queue on each database (SQLite, PostgreSQL): one latest-act rule, fenced claims, resubscribes.

Uses the parametrised ledger fixtures (tests/fixtures/ledgers.py); the PostgreSQL cases are marked ``postgres``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.fixtures.ledgers import ledger_url  # noqa: F401  (the parametrised database)
from unsubscribe_sync.ledger import Ledger, Resubscribe, Unsubscribe

SID = "003000000000001AAA"
LEAD = "00Q000000000002AAA"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:  # noqa: F811
    led = Ledger.open(ledger_url)
    led.match_by_email = True
    yield led
    led.close()


def _resubscribe(email: str, at: float) -> Resubscribe:
    return Resubscribe(email, requested_by="jane", reason="asked", occurred_at=at)


def test_an_opt_out_read_while_a_resubscribe_is_still_being_resolved_does_not_undo_it(ledger: Ledger) -> None:
    """A record Salesforce still shows true because the resubscribe's records are not found yet is not news."""
    ledger.ingest([Unsubscribe("dee@example.com", occurred_at=100.0)])
    ledger.complete_resolutions(ledger.claim_resolutions("t", 10, 60), {})  # no record known yet
    ledger.resubscribe([_resubscribe("dee@example.com", 200.0)])
    assert ledger.pending_resolutions() == 1  # the write of false is owed, by address, not yet by record
    added = ledger.add_salesforce_opt_outs([(LEAD, "Lead", "Dee@Example.com")], read_at=300.0)
    assert added.pending_resubscribe == 1 and added.added == 0
    found = ledger.lookup("dee@example.com")
    assert found is not None and found["unsubscribed"] is False
    claim = ledger.claim_resolutions("t", 10, 60)
    assert [(r.email, r.value) for r in claim.rows] == [("dee@example.com", False)]
    ledger.complete_resolutions(claim, {"dee@example.com": [(LEAD, "Lead")]})
    assert [(r.salesforce_id, r.value) for r in ledger.claim("w", 10, 60).rows] == [(LEAD, False)]


def test_the_later_occurred_act_wins_when_the_older_one_arrives_last(ledger: Ledger) -> None:
    """Acts for one address out of occurredAt order: the resolution keeps the later-occurred value."""
    ledger.ingest([Unsubscribe("ann@example.com", occurred_at=100.0)])
    ledger.complete_resolutions(ledger.claim_resolutions("t", 10, 60), {})
    ledger.resubscribe([_resubscribe("ann@example.com", 300.0)])  # later occurred, arrives first
    ledger.ingest([Unsubscribe("ann@example.com", occurred_at=200.0)])  # older occurred, arrives last
    claim = ledger.claim_resolutions("t", 10, 60)
    assert [(r.email, r.value, r.act_at) for r in claim.rows] == [("ann@example.com", False, 300.0)]


def test_the_resolution_merge_is_the_queued_write_rule() -> None:
    """One home for "latest act wins, ties by arrival": the resolution merge asks ledger/policy.py."""
    from unsubscribe_sync.ledger.policy import Merge, QueuedWrite, merge_queued_write
    from unsubscribe_sync.ledger.resolutions import resolution_replaces

    cases = [
        (QueuedWrite(True, 100.0), QueuedWrite(False, 200.0)),
        (QueuedWrite(False, 200.0), QueuedWrite(True, 100.0)),
        (QueuedWrite(True, 100.0), QueuedWrite(False, 100.0)),
        (QueuedWrite(True, 100.0), QueuedWrite(True, 200.0)),
        (QueuedWrite(True, 200.0), QueuedWrite(True, 200.0)),
    ]
    for existing, new in cases:
        takes = merge_queued_write(existing, new) in (Merge.REPLACE, Merge.REFRESH)
        assert resolution_replaces(existing, new) is takes, (existing, new)


def test_a_lost_lease_completion_is_refused_and_the_holder_settles_it(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("c@example.com")])
    stale = ledger.claim_resolutions("one", 10, -1)  # its lease is already over
    fresh = ledger.claim_resolutions("two", 10, 60)
    assert [r.email for r in fresh.rows] == ["c@example.com"]
    assert ledger.complete_resolutions(stale, {"c@example.com": [(SID, "Contact")]}).lost == 1
    assert ledger.backlog() == 0 and ledger.pending_resolutions() == 1
    assert ledger.complete_resolutions(fresh, {"c@example.com": [(SID, "Contact")]}).settled == 1
    assert ledger.backlog() == 1 and ledger.pending_resolutions() == 0


def test_a_resolution_replaced_while_claimed_stays_due_with_the_new_value(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("b@example.com", occurred_at=100.0)])
    claim = ledger.claim_resolutions("t", 10, 60)
    ledger.resubscribe([_resubscribe("b@example.com", 200.0)])
    result = ledger.complete_resolutions(claim, {"b@example.com": [(SID, "Contact")]})
    assert (result.settled, result.replaced) == (0, 1)
    again = ledger.claim_resolutions("t", 10, 60)
    assert [(r.email, r.value) for r in again.rows] == [("b@example.com", False)]


@pytest.mark.postgres
def test_two_resolvers_racing_never_resolve_an_address_twice(ledger_url: str) -> None:  # noqa: F811
    """Two resolvers claim at once (SKIP LOCKED): each address goes to one of them, once."""
    if not ledger_url.startswith("postgresql"):
        pytest.skip("row locks and SKIP LOCKED are PostgreSQL's")
    setup = Ledger.open(ledger_url)
    setup.match_by_email = True
    emails = [f"r{i:03d}@example.com" for i in range(200)]
    setup.ingest([Unsubscribe(e) for e in emails])
    claimed: dict[str, list[str]] = {"a": [], "b": []}
    settled: dict[str, int] = {"a": 0, "b": 0}
    start = threading.Barrier(2)

    def resolver(name: str) -> None:
        led = Ledger.open(ledger_url, migrate_schema=False)
        try:
            start.wait()
            while True:
                claim = led.claim_resolutions(name, 7, 60)
                if not claim.rows:
                    return
                claimed[name].extend(r.email for r in claim.rows)
                done = led.complete_resolutions(claim, {r.email: [(_sid(r.email), "Contact")] for r in claim.rows})
                assert done.lost == 0
                settled[name] += done.settled
        finally:
            led.close()

    threads = [threading.Thread(target=resolver, args=(n,)) for n in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        both = claimed["a"] + claimed["b"]
        assert sorted(both) == emails  # every address once, by one resolver
        assert settled["a"] + settled["b"] == len(emails)
        assert setup.pending_resolutions() == 0 and setup.backlog() == len(emails)
    finally:
        setup.close()


def _sid(email: str) -> str:
    return f"003{int(email[1:4]):012d}AAA"

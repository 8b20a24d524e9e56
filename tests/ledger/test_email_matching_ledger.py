"""The resolutions queue (ledger schema v4): queued by intake in Email mode, fenced claims, later act wins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from unsubscribe_sync.ledger import Ledger, Resubscribe, Unsubscribe
from unsubscribe_sync.worker.resolver import ResolvePolicy, match_records

SID = "003000000000001AAA"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}")
    led.match_by_email = True
    yield led
    led.close()


def test_salesforce_id_mode_queues_no_resolution(tmp_path: Path) -> None:
    led = Ledger.open(f"sqlite:///{tmp_path / 'l.db'}")
    try:
        led.ingest([Unsubscribe("a@example.com")])
        assert led.pending_resolutions() == 0
    finally:
        led.close()


def test_an_unsubscribe_queues_one_resolution_and_a_repeat_none(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("A@Example.com"), Unsubscribe("a@example.com")])
    claim = ledger.claim_resolutions("t", 10, 60)
    assert [(r.email, r.value) for r in claim.rows] == [("a@example.com", True)]
    ledger.complete_resolutions(claim, {})
    ledger.ingest([Unsubscribe("a@example.com")])  # a repeat: nothing to resolve again
    assert ledger.pending_resolutions() == 0


def test_a_resolution_replaced_while_resolving_stays_due_with_the_new_value(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("b@example.com", occurred_at=100.0)])
    claim = ledger.claim_resolutions("t", 10, 60)
    ledger.resubscribe([Resubscribe("b@example.com", requested_by="x", reason="y", occurred_at=200.0)])
    result = ledger.complete_resolutions(claim, {"b@example.com": [(SID, "Contact")]})
    assert (result.settled, result.replaced) == (0, 1)
    again = ledger.claim_resolutions("t", 10, 60)
    assert [(r.email, r.value) for r in again.rows] == [("b@example.com", False)]
    ledger.complete_resolutions(again, {"b@example.com": [(SID, "Contact")]})
    rows = ledger.claim("w", 10, 60).rows
    assert [(r.salesforce_id, r.value) for r in rows] == [(SID, False)]  # the later act won


def test_a_claim_whose_fence_moved_on_records_nothing(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("c@example.com")])
    stale = ledger.claim_resolutions("one", 10, -1)  # already expired
    fresh = ledger.claim_resolutions("two", 10, 60)
    assert ledger.complete_resolutions(stale, {"c@example.com": [(SID, "Contact")]}).lost == 1
    assert ledger.backlog() == 0
    assert ledger.complete_resolutions(fresh, {"c@example.com": [(SID, "Contact")]}).settled == 1
    assert ledger.backlog() == 1


def test_a_released_resolution_is_retried_later(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("d@example.com")])
    claim = ledger.claim_resolutions("t", 10, 60)
    ledger.release_resolutions(claim, "Salesforce unavailable", [3600.0])
    assert ledger.claim_resolutions("t", 10, 60).rows == []
    assert ledger.pending_resolutions() == 1


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([("1", "Contact", "A@X.test"), ("2", "Lead", "a@x.test")], {"a@x.test": [("1", "Contact"), ("2", "Lead")]}),
        ([("1", "Contact", None), ("2", "Lead", "")], {"a@x.test": []}),
        ([("1", "Contact", "other@x.test")], {"a@x.test": []}),
        ([("1", "Contact", "a@x.test"), ("1", "Contact", "a@x.test")], {"a@x.test": [("1", "Contact")]}),
    ],
)
def test_match_records(records: list[tuple[str, str, str | None]], expected: dict[str, list[tuple[str, str]]]) -> None:
    assert match_records(["a@x.test"], records) == expected


@pytest.mark.parametrize(("attempts", "delay"), [(0, 2.0), (1, 4.0), (3, 16.0), (30, 900.0)])
def test_resolve_backoff(attempts: int, delay: float) -> None:
    assert ResolvePolicy().delay(attempts) == delay

"""The Salesforce poll's ledger state (ledger/poll_state.py): the lease, its fence, the watermarks; schema v5."""

from __future__ import annotations

import pytest

from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.ledger.poll_state import SOURCE_SALESFORCE_POLL
from unsubscribe_sync.ledger.schema import LATEST_VERSION, MIGRATIONS

SID = "003000000000001AAA"


def test_schema_has_version_5_in_order() -> None:
    versions = [v for v, _ in MIGRATIONS]
    assert 5 in versions and versions == sorted(versions) and max(versions) == LATEST_VERSION


def test_one_lease_holder_until_it_expires_or_is_released(ledger: Ledger) -> None:
    first = ledger.acquire_poll_lease("a", 60)
    assert first is not None
    assert ledger.acquire_poll_lease("b", 60) is None
    assert ledger.acquire_poll_lease("a", 60) == first  # renewal keeps the fence
    ledger.release_poll_lease("a")
    taken = ledger.acquire_poll_lease("b", 60)
    assert taken is not None and taken > first


def test_an_expired_lease_is_taken_over_with_a_new_fence(ledger: Ledger) -> None:
    first = ledger.acquire_poll_lease("a", 0.0)  # expires at once: "a" died
    second = ledger.acquire_poll_lease("b", 60)
    assert first is not None and second is not None and second > first


def test_watermark_advances_only_for_the_current_fence_and_never_back(ledger: Ledger) -> None:
    assert ledger.poll_watermark("Contact") is None
    assert ledger.poll_last_success() is None
    fence = ledger.acquire_poll_lease("a", 0.0)
    assert fence is not None
    assert ledger.advance_poll_watermark("Contact", 100.0, fence)
    assert ledger.advance_poll_watermark("Contact", 50.0, fence)
    assert ledger.poll_watermark("Contact") == 100.0
    assert ledger.poll_last_success() is not None
    newer = ledger.acquire_poll_lease("b", 60)
    assert newer is not None
    assert not ledger.advance_poll_watermark("Contact", 200.0, fence)  # "a" lost its lease: refused
    assert ledger.poll_watermark("Contact") == 100.0
    assert ledger.advance_poll_watermark("Contact", 200.0, newer)
    assert ledger.poll_watermark("Contact") == 200.0


def test_poll_opt_outs_carry_their_source_and_are_idempotent(ledger: Ledger) -> None:
    first = ledger.add_salesforce_opt_outs([(SID, "Contact", "a@example.com")], SOURCE_SALESFORCE_POLL)
    again = ledger.add_salesforce_opt_outs([(SID, "Contact", "a@example.com")], SOURCE_SALESFORCE_POLL)
    assert (first.added, again.added) == (1, 0)
    found = ledger.lookup("a@example.com")
    assert found is not None and found["unsubscribed"]
    assert [h["source"] for h in found["history"]] == ["salesforce-poll"]


@pytest.mark.postgres
def test_lease_on_postgres_two_ledgers(postgres_url: str) -> None:
    one, two = Ledger.open(postgres_url), Ledger.open(postgres_url)
    try:
        assert one.acquire_poll_lease("a", 60) is not None
        assert two.acquire_poll_lease("b", 60) is None
    finally:
        one.close()
        two.close()

"""Which of many addresses are unsubscribed, in one ledger call, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from unsubscribe_sync.ledger import Ledger, Resubscribe, Unsubscribe
from unsubscribe_sync.ledger.base import IN_CHUNK


def suppressed_by_lookup(ledger: Ledger, email: str) -> bool:
    found = ledger.lookup(email)
    return bool(found and found["unsubscribed"])


def test_returns_the_given_addresses_that_are_unsubscribed(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("a@example.com"), Unsubscribe("b@example.com"), Unsubscribe("resub@example.com")])
    ledger.resubscribe([Resubscribe("resub@example.com", "ops", "re-consented")])

    asked = ["a@example.com", "b@example.com", "resub@example.com", "never@example.com"]

    assert ledger.unsubscribed_among(asked) == {"a@example.com", "b@example.com"}


def test_addresses_are_normalised_as_lookup_does_and_returned_as_given(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("Mixed.Case@Example.COM"), Unsubscribe("user@bücher.example")])

    asked = [" mixed.case@EXAMPLE.com", "MIXED.CASE@example.com", "user@BÜCHER.example", "user@xn--bcher-kva.example"]

    assert ledger.unsubscribed_among(asked) == set(asked)
    assert all(suppressed_by_lookup(ledger, email) for email in asked)


def test_agrees_with_lookup_on_every_address(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe(f"p{n}@example.com") for n in range(0, 40, 2)])
    ledger.resubscribe([Resubscribe(f"p{n}@example.com", "ops", "re-consented") for n in range(0, 40, 8)])
    asked = [f"P{n}@Example.com" for n in range(40)]

    found = ledger.unsubscribed_among(asked)

    assert found == {email for email in asked if suppressed_by_lookup(ledger, email)}
    assert len(found) == 15


def test_nothing_asked_is_nothing_found(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("a@example.com")])
    assert ledger.unsubscribed_among([]) == set()
    assert ledger.unsubscribed_among(iter(())) == set()


def test_more_addresses_than_one_in_list_holds(ledger: Ledger) -> None:
    count = IN_CHUNK * 2 + 7
    ledger.ingest([Unsubscribe(f"many{n}@example.com") for n in range(0, count, 3)])
    asked = (f"many{n}@example.com" for n in range(count))  # any iterable, read once

    found = ledger.unsubscribed_among(asked)

    assert found == {f"many{n}@example.com" for n in range(0, count, 3)}

"""The nightly's one decision per plan entry (shared by the counting pass and the apply pass)."""

from __future__ import annotations

import pytest

from unsubscribe_sync.nightly.decisions import (
    Decision,
    PendingClears,
    decide,
    suppression_address,
)
from unsubscribe_sync.nightly.planner import Action, PlanEntry

SID = "003000000000001AAA"
OTHER = "003000000000002AAA"


def entry(action: Action, *, email: str | None = None, ledger: tuple[str, ...] = ()) -> PlanEntry:
    return PlanEntry(action, "Contact", SID, email, ledger, 0 if action is Action.TO_SALESFORCE else 1)


def clears(ids: tuple[str, ...] = (), emails: tuple[str, ...] = ()) -> PendingClears:
    return PendingClears(frozenset(ids), frozenset(emails))


NONE = clears()
CLEARING_ID = clears(ids=(SID,))
CLEARING_OTHER_ID = clears(ids=(OTHER,))
CLEARING_ADDRESS = clears(emails=("resub@example.com",))

CASES = [
    pytest.param(
        entry(Action.IN_SYNC, email="a@example.com", ledger=("a@example.com",)), NONE, False, Decision.IN_SYNC,
        id="both sides agree: in sync",
    ),
    pytest.param(
        entry(Action.IN_SYNC, email="a@example.com", ledger=("a@example.com",)), CLEARING_ID, False, Decision.IN_SYNC,
        id="both sides agree: in sync even with a write of false queued on the record",
    ),
    pytest.param(
        entry(Action.TO_SALESFORCE, ledger=("a@example.com",)), NONE, False, Decision.TO_SALESFORCE,
        id="only in the ledger: set the field in Salesforce",
    ),
    pytest.param(
        entry(Action.TO_SALESFORCE, ledger=("a@example.com",)), NONE, True, Decision.TO_SALESFORCE,
        id="only in the ledger: suppression of an address does not decide it",
    ),
    pytest.param(
        entry(Action.TO_SALESFORCE, ledger=("resub@example.com",)), CLEARING_ADDRESS, False, Decision.TO_SALESFORCE,
        id="only in the ledger: a queued clear holds back only Salesforce opt-outs",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="b@example.com"), NONE, False, Decision.FROM_SALESFORCE,
        id="opted out in Salesforce only: add it to the ledger",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="b@example.com"), NONE, True, Decision.FROM_SALESFORCE,
        id="opted out in Salesforce, id not in the ledger: suppression of its address does not decide it",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="new@example.com", ledger=("old@example.com",)), NONE, True,
        Decision.IN_SYNC,
        id="id in the ledger under another address, Salesforce's address already suppressed: in sync",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="new@example.com", ledger=("old@example.com",)), NONE, False,
        Decision.FROM_SALESFORCE,
        id="id in the ledger under another address, Salesforce's address not suppressed: add it",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="new@example.com", ledger=("old@example.com",)), CLEARING_ID, True,
        Decision.IN_SYNC,
        id="an address already suppressed is in sync before a queued clear is asked",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="b@example.com"), CLEARING_ID, False, Decision.PENDING_RESUBSCRIBE,
        id="opted out in Salesforce with a write of false queued on the record: it waits",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email=" Resub@Example.COM"), CLEARING_ADDRESS, False,
        Decision.PENDING_RESUBSCRIBE,
        id="opted out in Salesforce with a write of false queued on its address, in any case: it waits",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="b@example.com"), CLEARING_OTHER_ID, False, Decision.FROM_SALESFORCE,
        id="a write of false queued on another record does not hold this one",
    ),
    pytest.param(
        entry(Action.NO_EMAIL), NONE, False, Decision.NO_EMAIL,
        id="opted out in Salesforce with no address: nothing to suppress",
    ),
    pytest.param(
        entry(Action.NO_EMAIL), CLEARING_ID, True, Decision.NO_EMAIL,
        id="opted out in Salesforce with no address: no email even with a write of false queued",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("plan_entry", "clearing", "suppressed", "expected"), CASES)
def test_decide(plan_entry: PlanEntry, clearing: PendingClears, suppressed: bool, expected: Decision) -> None:
    assert decide(plan_entry, clearing=clearing, suppressed=suppressed, own_value=False) is expected


OWN_VALUE_CASES = [
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="b@example.com"), NONE, Decision.IN_SYNC,
        id="the true the ledger wrote for the record and address, read back: in sync, no act",
    ),
    pytest.param(
        entry(Action.FROM_SALESFORCE, email="b@example.com"), CLEARING_ID, Decision.PENDING_RESUBSCRIBE,
        id="a queued write of false outranks the ledger's own value: it waits",
    ),
    pytest.param(
        entry(Action.TO_SALESFORCE, ledger=("a@example.com",)), NONE, Decision.TO_SALESFORCE,
        id="the ledger's own value decides only Salesforce opt-outs",
    ),
    pytest.param(
        entry(Action.NO_EMAIL), NONE, Decision.NO_EMAIL,
        id="an opt-out with no address stays no email",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("plan_entry", "clearing", "expected"), OWN_VALUE_CASES)
def test_decide_with_the_ledgers_own_value(plan_entry: PlanEntry, clearing: PendingClears, expected: Decision) -> None:
    assert decide(plan_entry, clearing=clearing, suppressed=False, own_value=True) is expected


@pytest.mark.parametrize(
    ("plan_entry", "expected"),
    [
        pytest.param(
            entry(Action.FROM_SALESFORCE, email="new@example.com", ledger=("old@example.com",)), "new@example.com",
            id="an id held under another address asks about Salesforce's address",
        ),
        pytest.param(
            entry(Action.FROM_SALESFORCE, email="b@example.com"), None,
            id="an id the ledger does not hold asks nothing",
        ),
        pytest.param(entry(Action.TO_SALESFORCE, ledger=("a@example.com",)), None, id="a ledger record asks nothing"),
        pytest.param(
            entry(Action.IN_SYNC, email="a@example.com", ledger=("a@example.com",)), None,
            id="an entry in sync asks nothing",
        ),
        pytest.param(entry(Action.NO_EMAIL), None, id="an entry with no address asks nothing"),
    ],
)  # fmt: skip
def test_suppression_address(plan_entry: PlanEntry, expected: str | None) -> None:
    assert suppression_address(plan_entry) == expected


def test_pending_clears_of_the_ledger_read() -> None:
    clearing = PendingClears.of(({SID}, {"resub@example.com"}))
    assert clearing == clears(ids=(SID,), emails=("resub@example.com",))

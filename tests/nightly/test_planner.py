"""The nightly planner: a pure merge join of the Salesforce side and the ledger side of one object."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsubscribe_sync.nightly.planner import (
    Action,
    PlanCounts,
    PlanEntry,
    UnsortedInputError,
    plan_object,
)
from unsubscribe_sync.salesforce.types import OptedOutRecord


def cid(n: int) -> str:
    """An 18-character Contact id; ids sort like n."""
    return f"003{n:012d}AAA"


def sf(n: int, email: str | None = None) -> OptedOutRecord:
    return OptedOutRecord(id=cid(n), object="Contact", email=email if email is not None else f"p{n}@example.com")


def lg(n: int, email: str | None = None) -> tuple[str, str]:
    return cid(n), email or f"p{n}@example.com"


def plan(sf_side: list[OptedOutRecord], ledger_side: list[tuple[str, str]]) -> list[PlanEntry]:
    return list(plan_object("Contact", sf_side, ledger_side))


def test_only_in_ledger_goes_to_salesforce() -> None:
    entries = plan([], [lg(1), lg(2)])
    assert [(e.action, e.salesforce_id, e.ledger_emails) for e in entries] == [
        (Action.TO_SALESFORCE, cid(1), ("p1@example.com",)),
        (Action.TO_SALESFORCE, cid(2), ("p2@example.com",)),
    ]


def test_only_in_salesforce_comes_from_salesforce() -> None:
    entries = plan([sf(1), sf(3)], [])
    assert [(e.action, e.salesforce_id, e.salesforce_email) for e in entries] == [
        (Action.FROM_SALESFORCE, cid(1), "p1@example.com"),
        (Action.FROM_SALESFORCE, cid(3), "p3@example.com"),
    ]
    assert all(e.object == "Contact" for e in entries)


def test_both_sides_same_email_is_in_sync_case_insensitively() -> None:
    entries = plan([sf(1, "Ann@Example.com")], [lg(1, "ann@example.com ")])
    assert [e.action for e in entries] == [Action.IN_SYNC]


def test_salesforce_email_differs_from_ledger_adds_that_address() -> None:
    entries = plan([sf(1, "new@example.com")], [lg(1, "old@example.com")])
    assert len(entries) == 1
    assert entries[0].action is Action.FROM_SALESFORCE
    assert entries[0].salesforce_email == "new@example.com"
    assert entries[0].ledger_emails == ("old@example.com",)


def test_salesforce_record_without_email() -> None:
    no_email = OptedOutRecord(id=cid(1), object="Contact", email=None)
    assert [e.action for e in plan([no_email], [])] == [Action.NO_EMAIL]
    assert [e.action for e in plan([no_email], [lg(1)])] == [Action.IN_SYNC]


def test_interleaved_sides() -> None:
    entries = plan([sf(1), sf(2), sf(5)], [lg(2), lg(3), lg(6)])
    assert [(e.salesforce_id, e.action) for e in entries] == [
        (cid(1), Action.FROM_SALESFORCE),
        (cid(2), Action.IN_SYNC),
        (cid(3), Action.TO_SALESFORCE),
        (cid(5), Action.FROM_SALESFORCE),
        (cid(6), Action.TO_SALESFORCE),
    ]


def test_duplicate_ids_collapse_and_are_accounted() -> None:
    entries = plan([sf(1), sf(1)], [lg(1, "a@x.io"), lg(1, "b@x.io"), lg(2, "c@x.io"), lg(2, "d@x.io")])
    assert [(e.salesforce_id, e.action) for e in entries] == [
        (cid(1), Action.FROM_SALESFORCE),  # p1@example.com is not among a@/b@
        (cid(2), Action.TO_SALESFORCE),
    ]
    assert entries[0].salesforce_records == 2
    assert entries[1].ledger_emails == ("c@x.io", "d@x.io")
    assert sum(e.records for e in entries) == 6


def test_duplicate_salesforce_records_prefer_one_with_email() -> None:
    bare = OptedOutRecord(id=cid(1), object="Contact", email=None)
    entries = plan([bare, sf(1, "z@x.io")], [])
    assert [(e.action, e.salesforce_email) for e in entries] == [(Action.FROM_SALESFORCE, "z@x.io")]


def test_empty_inputs_give_empty_plan() -> None:
    assert plan([], []) == []


@pytest.mark.parametrize(
    ("sf_side", "ledger_side", "which"),
    [
        ([sf(2), sf(1)], [], "Salesforce"),
        ([], [lg(2), lg(1)], "ledger"),
    ],
)
def test_unsorted_input_is_refused(
    sf_side: list[OptedOutRecord], ledger_side: list[tuple[str, str]], which: str
) -> None:
    with pytest.raises(UnsortedInputError, match=which):
        plan(sf_side, ledger_side)


def test_plan_is_streamed_not_materialised() -> None:
    """The first entry comes out before the inputs are exhausted (bounded memory)."""
    pulled = {"sf": 0, "lg": 0}

    def sf_stream() -> Iterator[OptedOutRecord]:
        for n in range(0, 10**9, 2):
            pulled["sf"] += 1
            yield sf(n)

    def lg_stream() -> Iterator[tuple[str, str]]:
        for n in range(1, 10**9, 2):
            pulled["lg"] += 1
            yield lg(n)

    it = plan_object("Contact", sf_stream(), lg_stream())
    first = [next(it) for _ in range(4)]
    assert [e.action for e in first] == [Action.FROM_SALESFORCE, Action.TO_SALESFORCE] * 2
    assert pulled["sf"] <= 4 and pulled["lg"] <= 4


def test_plan_counts() -> None:
    counts = PlanCounts()
    for entry in plan([sf(1), sf(2), OptedOutRecord(cid(9), "Contact", None)], [lg(2), lg(3)]):
        counts.add(entry)
    assert counts.as_dict() == {"toSalesforce": 1, "fromSalesforce": 1, "inSync": 1, "noEmail": 1}


# ---- properties: a small model of both sides, planned and applied ----

ids = st.integers(min_value=0, max_value=40)
emails = st.sampled_from(["a@x.io", "b@x.io", "c@x.io", "B@X.io"])


def apply(
    entries: list[PlanEntry], sf_state: dict[str, str | None], ledger_state: set[tuple[str, str]]
) -> tuple[dict[str, str | None], set[tuple[str, str]]]:
    """Apply a plan to a model: Salesforce = opted-out id -> email, ledger = {(id, email)}."""
    new_sf, new_ledger = dict(sf_state), set(ledger_state)
    for e in entries:
        if e.action is Action.TO_SALESFORCE:
            new_sf.setdefault(e.salesforce_id, e.ledger_emails[0])
        elif e.action is Action.FROM_SALESFORCE:
            assert e.salesforce_email is not None
            new_ledger.add((e.salesforce_id, e.salesforce_email))
    return new_sf, new_ledger


def sides(
    sf_state: dict[str, str | None], ledger_state: set[tuple[str, str]]
) -> tuple[list[OptedOutRecord], list[tuple[str, str]]]:
    return (
        [OptedOutRecord(i, "Contact", em) for i, em in sorted(sf_state.items())],
        sorted(ledger_state),
    )


@settings(max_examples=300, deadline=None)
@given(
    sf_state=st.dictionaries(ids.map(cid), st.none() | emails, max_size=25),
    ledger_state=st.sets(st.tuples(ids.map(cid), emails), max_size=25),
)
def test_model_properties(sf_state: dict[str, str | None], ledger_state: set[tuple[str, str]]) -> None:
    sf_side, ledger_side = sides(sf_state, ledger_state)
    entries = plan(sf_side, ledger_side)

    # every input record accounted for, exactly once
    assert sum(e.records for e in entries) == len(sf_side) + len(ledger_side)
    # one entry per distinct id, in id order
    assert [e.salesforce_id for e in entries] == sorted({*sf_state, *(i for i, _ in ledger_state)})
    # opt-out wins: nothing is ever removed from either side
    sf_after, ledger_after = apply(entries, sf_state, ledger_state)
    assert set(sf_after) >= set(sf_state) and ledger_after >= ledger_state
    # after applying, every ledger id is opted out in Salesforce, every Salesforce address is in the ledger
    assert {i for i, _ in ledger_after} <= set(sf_after)
    norm_ledger = {(i, em.lower()) for i, em in ledger_after}
    assert all(em is None or (i, em.lower()) in norm_ledger for i, em in sf_after.items())
    # planning again finds nothing to write; applying twice equals applying once
    again = plan(*sides(sf_after, ledger_after))
    assert {e.action for e in again} <= {Action.IN_SYNC, Action.NO_EMAIL}
    assert apply(again, sf_after, ledger_after) == (sf_after, ledger_after)

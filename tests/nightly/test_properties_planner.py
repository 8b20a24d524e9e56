"""Property-based tests of the nightly planner: opt-out wins, every record is accounted for, a run converges."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsubscribe_sync.nightly.planner import (
    WRITING_ACTIONS,
    Action,
    PlanCounts,
    PlanEntry,
    UnsortedInputError,
    plan_object,
)
from unsubscribe_sync.salesforce.types import OptedOutRecord

# A small pool of ids so that both sides often share ids; 18 characters like the API returns.
ID_POOL = [f"003{n:012d}AAA" for n in range(12)]
EMAILS = [f"p{n}@example.com" for n in range(6)] + ["P0@Example.COM", " p1@example.com "]


@dataclass
class World:
    """Both sides of one object: Salesforce records (id -> (email, opted out)) and ledger (id, email) pairs."""

    salesforce: dict[str, tuple[str | None, bool]]
    ledger: set[tuple[str, str]] = field(default_factory=set)

    def opted_out(self) -> list[OptedOutRecord]:
        return [
            OptedOutRecord(id=i, object="Contact", email=email)
            for i, (email, opted) in sorted(self.salesforce.items())
            if opted
        ]

    def ledger_side(self) -> list[tuple[str, str]]:
        return sorted(self.ledger)

    def plan(self) -> list[PlanEntry]:
        return list(plan_object("Contact", self.opted_out(), self.ledger_side()))

    def apply(self, plan: list[PlanEntry]) -> None:
        """What the nightly job does with a plan: set opt-outs, add unsubscribes; nothing else."""
        for entry in plan:
            if entry.action is Action.TO_SALESFORCE and entry.salesforce_id in self.salesforce:
                email, _ = self.salesforce[entry.salesforce_id]
                self.salesforce[entry.salesforce_id] = (email, True)
            elif entry.action is Action.FROM_SALESFORCE:
                assert entry.salesforce_email is not None
                self.ledger.add((entry.salesforce_id, entry.salesforce_email))

    def snapshot(self) -> tuple[dict[str, tuple[str | None, bool]], frozenset[tuple[str, str]]]:
        return dict(self.salesforce), frozenset(self.ledger)


worlds = st.builds(
    World,
    salesforce=st.dictionaries(
        st.sampled_from(ID_POOL), st.tuples(st.one_of(st.none(), st.sampled_from(EMAILS)), st.booleans()), max_size=12
    ),
    ledger=st.sets(st.tuples(st.sampled_from(ID_POOL), st.sampled_from(EMAILS)), max_size=12),
)


@settings(max_examples=400, deadline=None)
@given(worlds)
def test_plan_never_clears_an_opt_out(world: World) -> None:
    before_opted = {i for i, (_, opted) in world.salesforce.items() if opted}
    before_ledger = set(world.ledger)
    plan = world.plan()
    assert {e.action for e in plan} <= set(Action), "only the four known actions"
    for entry in plan:
        if entry.salesforce_id in before_opted:
            assert entry.action is not Action.TO_SALESFORCE, "an opted-out record needs no write"
    world.apply(plan)
    after_opted = {i for i, (_, opted) in world.salesforce.items() if opted}
    assert before_opted <= after_opted, "an opt-out was cleared"
    assert before_ledger <= world.ledger, "an unsubscribe was dropped"


@settings(max_examples=400, deadline=None)
@given(worlds)
def test_every_input_record_is_accounted_for_once(world: World) -> None:
    salesforce = world.opted_out()
    ledger = world.ledger_side()
    plan = world.plan()
    ids = [e.salesforce_id for e in plan]
    assert ids == sorted(set(ids)), "one entry per distinct id, in id order"
    assert set(ids) == {r.id for r in salesforce} | {i for i, _ in ledger}
    assert sum(e.records for e in plan) == len(salesforce) + len(ledger)
    for entry in plan:
        assert sorted(entry.ledger_emails) == sorted(e for i, e in ledger if i == entry.salesforce_id)
    counts = PlanCounts()
    for entry in plan:
        counts.add(entry)
    assert sum(counts.as_dict().values()) == len(plan)


@settings(max_examples=400, deadline=None)
@given(worlds)
def test_applying_a_plan_twice_equals_applying_it_once(world: World) -> None:
    plan = world.plan()
    world.apply(plan)
    once = world.snapshot()
    world.apply(plan)
    assert world.snapshot() == once


@settings(max_examples=400, deadline=None)
@given(worlds)
def test_a_second_run_has_nothing_to_push_and_a_third_nothing_at_all(world: World) -> None:
    world.apply(world.plan())
    second = world.plan()
    assert not [e for e in second if e.action is Action.TO_SALESFORCE and e.salesforce_id in world.salesforce]
    # Salesforce may hold another address for an id we pushed: the second run adds it, then all agree.
    world.apply(second)
    assert not [e for e in world.plan() if e.action in WRITING_ACTIONS and e.salesforce_id in world.salesforce]


@settings(max_examples=200, deadline=None)
@given(worlds, st.data())
def test_unsorted_input_is_refused(world: World, data: st.DataObject) -> None:
    salesforce = world.opted_out()
    ledger = world.ledger_side()
    side = data.draw(st.sampled_from(["salesforce", "ledger"]))
    ids = [r.id for r in salesforce] if side == "salesforce" else [i for i, _ in ledger]
    if len(set(ids)) < 2:
        return
    if side == "salesforce":
        salesforce.reverse()
    else:
        ledger.reverse()
    with pytest.raises(UnsortedInputError, match=f"(?i){side} side not sorted"):
        list(plan_object("Contact", salesforce, ledger))

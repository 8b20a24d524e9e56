"""The nightly's suppression check: ids the ledger holds under another address, asked one chunk at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from tests.fixtures.nightly import Env
from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.nightly import job
from unsubscribe_sync.nightly.job import run_nightly

MOVED = 5  # records the ledger holds under an old address, whose Salesforce address is suppressed already
NEW = 3  # records the ledger holds under an old address, whose Salesforce address is not in the ledger
PLAIN = 4  # records opted out in Salesforce only


def counts(summary: dict[str, Any]) -> dict[str, int]:
    return {k: summary[k] for k in ("toSalesforce", "fromSalesforce", "skippedNoSalesforceId", "failed")}


class CountingLedger(Ledger):
    """The real ledger, recording the addresses each suppression check asked about."""

    asked: list[set[str]]

    def unsubscribed_among(self, emails: Iterable[str]) -> set[str]:
        batch = set(emails)
        self.asked.append(batch)
        return super().unsubscribed_among(batch)


def open_counting(env: Env) -> CountingLedger:
    ledger = CountingLedger.open(env.ledger_url)
    assert isinstance(ledger, CountingLedger)
    ledger.asked = []
    return ledger


def build(env: Env) -> dict[str, list[str]]:
    s = env.state
    moved = [s.add_record("Contact", f"moved{n}@example.com", opted_out=True) for n in range(MOVED)]
    new = [s.add_record("Contact", f"new{n}@example.com", opted_out=True) for n in range(NEW)]
    plain = [s.add_record("Contact", f"plain{n}@example.com", opted_out=True) for n in range(PLAIN)]
    ledger = env.ledger()
    try:
        ledger.ingest(
            [Unsubscribe(f"old.moved{n}@example.com", sid, "Contact") for n, sid in enumerate(moved)]
            + [Unsubscribe(f"Moved{n}@Example.com") for n in range(MOVED)]  # suppressed, in another case
            + [Unsubscribe(f"old.new{n}@example.com", sid, "Contact") for n, sid in enumerate(new)]
        )
    finally:
        ledger.close()
    return {"moved": moved, "new": new, "plain": plain}


def run(env: Env, *, dry_run: bool, **config: Any) -> tuple[dict[str, Any], list[set[str]]]:
    ledger = open_counting(env)
    try:
        summary = run_nightly(env.config(salesforce__objects=["Contact"], **config), dry_run=dry_run, ledger=ledger)
        return summary, ledger.asked
    finally:
        ledger.close()


def test_an_id_under_another_address_is_in_sync_when_its_salesforce_address_is_suppressed(env: Env) -> None:
    build(env)

    dry, _ = run(env, dry_run=True)
    summary, _ = run(env, dry_run=False, nightly__maxChanges=100)

    assert counts(dry) == {
        "toSalesforce": 0,
        "fromSalesforce": NEW + PLAIN,
        "skippedNoSalesforceId": MOVED,
        "failed": 0,
    }
    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert summary["guard"]["planned"] == {"toSalesforce": 0, "fromSalesforce": NEW + PLAIN}
    contact = summary["objects"]["Contact"]
    assert (contact["fromSalesforce"], contact["inSync"], contact["noEmail"]) == (NEW + PLAIN, MOVED, 0)
    ledger = env.ledger()
    try:
        for n in range(NEW):
            found = ledger.lookup(f"new{n}@example.com")
            assert found is not None and found["unsubscribed"] is True
    finally:
        ledger.close()
    again, _ = run(env, dry_run=True)
    assert counts(again)["fromSalesforce"] == 0


@pytest.mark.parametrize("chunk", [2, 1000], ids=["small-chunks", "one-chunk"])
def test_one_ledger_call_per_chunk_asks_only_what_decides(
    env: Env, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(env)
    monkeypatch.setattr(job, "LEDGER_CHUNK", chunk)

    dry, asked = run(env, dry_run=True)

    assert counts(dry)["fromSalesforce"] == NEW + PLAIN
    assert dry["objects"]["Contact"]["inSync"] == MOVED
    addresses = [a for batch in asked for a in batch]
    assert sorted(addresses) == sorted(
        [f"moved{n}@example.com" for n in range(MOVED)] + [f"new{n}@example.com" for n in range(NEW)]
    )
    entries = MOVED + NEW + PLAIN
    assert len(asked) <= -(
        -entries // chunk
    )  # at most one call per chunk of plan entries, none for a chunk with no question
    assert all(len(batch) <= chunk for batch in asked)

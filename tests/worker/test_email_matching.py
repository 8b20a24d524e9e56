"""Email mode end to end: webhook -> ledger -> resolver -> outbox -> Salesforce (the sandbox), in-process worker."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.worker import eventually, opted_out
from unsubscribe_sync.worker.app import STATE


async def test_contact_and_two_leads_sharing_an_address_in_mixed_case_are_all_set(
    email_worker: Any, sandbox: SandboxHandle
) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "Ann@Example.com")
    lead1 = state.add_record("Lead", "ann@EXAMPLE.com")
    lead2 = state.add_record("Lead", "ANN@example.COM")
    converted = state.add_record("Lead", "ann@example.com", converted=True)
    other = state.add_record("Contact", "bob@example.com")
    worker = await email_worker()
    await worker.post({"email": "aNN@example.com"})
    await eventually(worker.settled, what="resolved and pushed")
    assert all(opted_out(sandbox, r) for r in (contact, lead1, lead2))
    assert not opted_out(sandbox, converted) and not opted_out(sandbox, other)
    history = (await worker.lookup("ann@example.com"))["history"]
    matched = {(h["salesforceId"], h["detail"]) for h in history if h["action"] == "email_matched"}
    assert matched == {(contact, "Contact"), (lead1, "Lead"), (lead2, "Lead")}
    assert sum(1 for h in history if h["action"] == "pushed") == 3
    assert worker.sample("unsubscribe_sync_push_records_total", object="Lead", outcome="pushed") == 2
    assert worker.sample("unsubscribe_sync_push_records_total", object="Contact", outcome="pushed") == 1
    assert worker.sample("unsubscribe_sync_email_matches_count") == 1
    assert worker.sample("unsubscribe_sync_email_matches_sum") == 3


async def test_an_address_with_no_record_is_kept_and_counted_skipped(email_worker: Any, sandbox: SandboxHandle) -> None:
    worker = await email_worker()
    await worker.post({"email": "nobody@example.com"})
    await eventually(worker.settled, what="resolved")
    found = await worker.lookup("nobody@example.com")
    assert found["unsubscribed"] is True
    skipped = [h for h in found["history"] if h["action"] == "push_skipped"]
    assert [h["detail"] for h in skipped] == ["no matching record"]
    assert worker.sample("unsubscribe_sync_push_records_total", object="unknown", outcome="skipped") == 1
    assert worker.sample("unsubscribe_sync_email_matches_sum") == 0


async def test_a_given_id_plus_the_other_records_of_the_address(email_worker: Any, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    named = state.add_record("Contact", "cy@example.com")
    same = state.add_record("Lead", "Cy@example.com")
    worker = await email_worker()
    await worker.post({"email": "cy@example.com", "salesforceId": named})
    await eventually(worker.settled, what="resolved and pushed")
    assert opted_out(sandbox, named) and opted_out(sandbox, same)
    assert state.write_count(named) == 1  # queued at once and again by the match: merged into one write


QUOTED = ["o'neil@example.com", '"back\\\\slash"@example.com', '"it\'s \\\\ odd"@example.com']


@pytest.mark.parametrize("address", QUOTED)
async def test_quotes_and_backslashes_in_addresses(email_worker: Any, sandbox: SandboxHandle, address: str) -> None:
    record = sandbox.state.add_record("Contact", address)
    decoy = sandbox.state.add_record("Contact", "neil@example.com")
    worker = await email_worker()
    await worker.post({"email": address})
    await eventually(worker.settled, what="resolved and pushed")
    assert opted_out(sandbox, record) and not opted_out(sandbox, decoy)


async def test_resubscribe_writes_false_to_every_record_of_the_address(
    email_worker: Any, sandbox: SandboxHandle
) -> None:
    state = sandbox.state
    records = [state.add_record("Contact", "dee@example.com"), state.add_record("Lead", "DEE@example.com")]
    worker = await email_worker()
    await worker.post({"email": "dee@example.com", "occurredAt": "2026-01-01T10:00:00Z"})
    await eventually(worker.settled, what="unsubscribe pushed")
    assert all(opted_out(sandbox, r) for r in records)
    late = state.add_record("Lead", "Dee@Example.com", opted_out=True)  # found by the resubscribe's resolution
    # no occurredAt: the resubscribe happens now, after the opt-out the poll may read from Salesforce (an act at
    # the read's time, later than any date in the past); a resubscribe dated before it would rightly lose
    await worker.resubscribe({"email": "dee@example.com", "requestedBy": "jane", "reason": "asked"})
    await eventually(worker.settled, what="resubscribe pushed")
    assert not any(opted_out(sandbox, r) for r in [*records, late])


async def test_salesforce_id_mode_does_not_match_by_address(email_worker: Any, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    named = state.add_record("Contact", "eve@example.com")
    same = state.add_record("Lead", "eve@example.com")
    worker = await email_worker("SalesforceId")
    await worker.post({"email": "eve@example.com", "salesforceId": named})
    await worker.post({"email": "nosf@example.com"})
    await eventually(worker.settled, what="pushed")
    assert opted_out(sandbox, named) and not opted_out(sandbox, same)
    assert worker.ledger.pending_resolutions() == 0 and worker.app[STATE].resolver is None
    skipped = [h for h in (await worker.lookup("nosf@example.com"))["history"] if h["action"] == "push_skipped"]
    assert [h["detail"] for h in skipped] == ["no Salesforce ID"]

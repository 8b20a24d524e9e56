"""The nightly job against the sandbox Salesforce and a real ledger (SQLite, and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.nightly import Env, Interrupt, OnPhase, build_world, opted_out
from tests.fixtures.nightly import env as env  # re-exported: the fixture is also importable from here
from unsubscribe_sync.ledger import PushOutcome, Resubscribe, Unsubscribe
from unsubscribe_sync.logs import mask_email
from unsubscribe_sync.nightly.job import run_nightly

MARKETO = "ToutApp__Marketo_Sales_Opt_Out__c"


def counts(summary: dict[str, Any]) -> dict[str, int]:
    return {k: summary[k] for k in ("toSalesforce", "fromSalesforce", "skippedNoSalesforceId", "failed")}


@pytest.mark.parametrize("bulk_threshold", [10_000, 1], ids=["rest", "bulk"])
def test_both_directions_then_idempotent(env: Env, bulk_threshold: int) -> None:
    w = build_world(env)
    config = env.config(salesforce__bulkThreshold=bulk_threshold)

    summary = run_nightly(config, dry_run=False)

    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert counts(summary) == {"toSalesforce": 3, "fromSalesforce": 2, "skippedNoSalesforceId": 2, "failed": 2}
    assert summary["objects"]["Contact"]["toSalesforce"] == 1
    assert summary["objects"]["Lead"]["toSalesforce"] == 2
    # Salesforce side: every ledger target set, the deleted record untouched
    for rid in (w.c_ledger_only, w.l_ledger_only, w.l_ledger_15, w.c_both):
        assert opted_out(env, rid)
    assert env.state.write_count(w.c_both) == 0
    assert env.state.write_count(w.c_deleted) == 0
    # ledger side: Salesforce opt-outs added with a history row from the sync; converted Lead left out
    ledger = env.ledger()
    try:
        for email, rid in (("sf.only@example.com", w.c_sf_only), ("lead.sf@example.com", w.l_sf_only)):
            found = ledger.lookup(email)
            assert found is not None and found["unsubscribed"]
            assert any(h["source"] == "salesforce-sync" for h in found["history"])
            assert [t["id"] for t in found["salesforce"]] == [rid]
        assert ledger.lookup("converted@example.com") is None
        gone = ledger.lookup("gone@example.com")
        assert gone is not None and gone["salesforce"][0]["status"] == "failed"
        assert "ENTITY_IS_DELETED" in (gone["salesforce"][0]["lastError"] or "")
        converted = ledger.lookup("conv.ledger@example.com")
        assert converted is not None and converted["salesforce"][0]["status"] == "failed"
        assert "CANNOT_UPDATE_CONVERTED_LEAD" in (converted["salesforce"][0]["lastError"] or "")
        assert any(h["action"] == "push_failed" and h["source"] == "salesforce-sync" for h in converted["history"])
        pushed = ledger.lookup("ledger.only@example.com")
        assert pushed is not None and pushed["salesforce"][0]["status"] == "pushed"
        last = ledger.last_sync_run()
        assert last is not None and last["outcome"] == "Succeeded" and last["counts"] == counts(summary)
        tables_before = ledger.table_counts()
    finally:
        ledger.close()

    # a second run right after writes nothing (the deleted record is not retried)
    writes_before, calls_before = env.writes(), env.state.call_counts()
    again = run_nightly(config, dry_run=False)
    assert again["outcome"] == "Succeeded"
    assert counts(again) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 2, "failed": 0}
    assert env.writes() == writes_before
    after_calls = env.state.call_counts()
    changed = {op for op, n in after_calls.items() if n != calls_before.get(op, 0)}
    assert changed and not {op for op in changed if any(w in op.lower() for w in ("ingest", "collection", "update"))}
    ledger = env.ledger()
    try:
        tables_after = ledger.table_counts()
    finally:
        ledger.close()
    assert tables_after == {**tables_before, "sync_runs": tables_before["sync_runs"] + 1}


def test_dry_run_writes_nothing(env: Env) -> None:
    w = build_world(env)
    config = env.config()
    ledger = env.ledger()
    tables_before = ledger.table_counts()
    ledger.close()

    summary = run_nightly(config, dry_run=True)

    assert summary["outcome"] == "Succeeded" and summary["dryRun"] is True
    assert counts(summary) == {"toSalesforce": 5, "fromSalesforce": 2, "skippedNoSalesforceId": 2, "failed": 0}
    assert env.writes() == 0
    assert not opted_out(env, w.c_ledger_only)
    ledger = env.ledger()
    try:
        assert ledger.table_counts() == tables_before  # not even a sync run
    finally:
        ledger.close()
    sample = summary["sample"]
    assert {s["id"] for s in sample} >= {w.c_ledger_only, w.c_sf_only}
    assert mask_email("sf.only@example.com") in {s["email"] for s in sample}
    assert all("@example.com" in s["email"] and s["email"].startswith("sha256:") for s in sample)


def test_missing_field_on_lead_fails_and_writes_nothing(env: Env) -> None:
    build_world(env)
    env.state.configure_field("Contact", MARKETO, label="Marketo Sales Opt Out")
    env.state.remove_field("Lead", MARKETO)
    config = env.config(optOut__target="MarketoSalesOptOut")
    ledger = env.ledger()
    tables_before = ledger.table_counts()
    ledger.close()

    summary = run_nightly(config, dry_run=False)

    assert summary["outcome"] == "Failed"
    assert "Lead" in summary["error"] and "Contact" not in summary["error"]
    assert counts(summary) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 0, "failed": 0}
    assert env.writes() == 0
    ledger = env.ledger()
    try:
        assert ledger.table_counts() == tables_before
    finally:
        ledger.close()


def test_marketo_field_both_directions(env: Env) -> None:
    s = env.state
    for sobject in ("Contact", "Lead"):
        s.configure_field(sobject, MARKETO, label="Marketo Sales Opt Out")
    in_sf = s.add_record("Contact", "mk.sf@example.com", fields={MARKETO: True})
    email_only = s.add_record("Contact", "mk.emailoptout@example.com", opted_out=True)  # other field: ignored
    in_ledger = s.add_record("Lead", "mk.ledger@example.com")
    ledger = env.ledger()
    ledger.ingest([Unsubscribe("mk.ledger@example.com", in_ledger, "Lead")])
    ledger.close()

    summary = run_nightly(env.config(optOut__target="MarketoSalesOptOut"), dry_run=False)

    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert summary["field"] == MARKETO
    assert counts(summary) == {"toSalesforce": 1, "fromSalesforce": 1, "skippedNoSalesforceId": 0, "failed": 0}
    assert opted_out(env, in_ledger, MARKETO) and not opted_out(env, in_ledger)
    assert opted_out(env, in_sf, MARKETO)
    ledger = env.ledger()
    try:
        assert ledger.lookup("mk.emailoptout@example.com") is None
        assert ledger.lookup("mk.sf@example.com") is not None
    finally:
        ledger.close()
    assert email_only


def test_writes_held_by_a_configuration_problem_stay_queued_for_every_object(env: Env) -> None:
    s = env.state
    for sobject in ("Contact", "Lead"):
        s.configure_field(sobject, MARKETO, label="Marketo Sales Opt Out")
    records = {"c1@example.com": s.add_record("Contact", "c1@example.com")}
    records["c2@example.com"] = s.add_record("Contact", "c2@example.com")
    records["l1@example.com"] = s.add_record("Lead", "l1@example.com")
    ledger = env.ledger()
    ledger.ingest([Unsubscribe(e, rid, "Lead" if e.startswith("l") else "Contact") for e, rid in records.items()])
    ledger.close()

    def hide_the_field() -> None:  # an admin removes the integration user's access once the run has planned
        for sobject in ("Contact", "Lead"):
            s.configure_field(sobject, MARKETO, label="Marketo Sales Opt Out", hidden=True)

    config = env.config(optOut__target="MarketoSalesOptOut")
    summary = run_nightly(config, dry_run=False, progress=OnPhase("write to Salesforce", hide_the_field))

    assert summary["outcome"] == "Failed" and summary["toSalesforce"] == 0 and summary["failed"] == 0
    assert summary["objects"]["Contact"]["retryLater"] == 2 and summary["objects"]["Lead"]["retryLater"] == 1
    assert env.writes() == 0
    ledger = env.ledger()
    try:  # nothing given up: every write is still queued
        assert ledger.queued_true(list(records.values()))[0] == set(records.values())
    finally:
        ledger.close()
    for sobject in ("Contact", "Lead"):
        s.configure_field(sobject, MARKETO, label="Marketo Sales Opt Out")
    again = run_nightly(config, dry_run=False)
    assert again["outcome"] == "Succeeded" and again["toSalesforce"] == 3
    assert all(opted_out(env, rid, MARKETO) and env.state.write_count(rid) == 1 for rid in records.values())


def test_nightly_disabled_is_a_failed_requirement(env: Env) -> None:
    build_world(env)
    summary = run_nightly(env.config(nightly__enabled=False), dry_run=False)
    assert summary["outcome"] == "Failed" and "nightly.enabled" in summary["error"]
    assert env.state.call_counts() == {}


def test_bad_credentials_fail_without_writing(env: Env) -> None:
    build_world(env)
    config = env.config()
    (config.salesforce.credentialsDir / "client_secret").write_text("wrong")
    summary = run_nightly(config, dry_run=False)
    assert summary["outcome"] == "Failed" and "credentials" in summary["error"]
    assert "wrong" not in summary["error"]
    assert env.writes() == 0


def test_interrupted_run_can_be_rerun(env: Env) -> None:
    w = build_world(env)
    config = env.config()
    with pytest.raises(KeyboardInterrupt):
        run_nightly(config, dry_run=False, progress=Interrupt("write to Salesforce"))
    # stopped once every object was planned, before its writes: they are queued in the outbox, where the push,
    # or the next run, writes them
    assert not opted_out(env, w.c_ledger_only) and not opted_out(env, w.l_ledger_only)
    ledger = env.ledger()
    try:
        assert ledger.queued_true([w.c_ledger_only, w.l_ledger_only])[0] == {w.c_ledger_only, w.l_ledger_only}
        added = ledger.lookup("sf.only@example.com")
        assert added is not None and added["unsubscribed"]
    finally:
        ledger.close()

    summary = run_nightly(config, dry_run=False)

    assert summary["outcome"] == "Succeeded"
    # the Salesforce opt-outs were added to the ledger by the interrupted run
    assert counts(summary) == {"toSalesforce": 3, "fromSalesforce": 0, "skippedNoSalesforceId": 2, "failed": 2}
    assert opted_out(env, w.c_ledger_only) and opted_out(env, w.l_ledger_only) and opted_out(env, w.l_ledger_15)
    assert all(env.state.write_count(rid) == 1 for rid in (w.c_ledger_only, w.l_ledger_only, w.l_ledger_15))


def test_salesforce_outage_fails_the_run_and_a_rerun_completes(env: Env) -> None:
    w = build_world(env)
    config = env.config()
    env.state.set_unavailable()
    failed = run_nightly(config, dry_run=False)
    assert failed["outcome"] == "Failed"
    env.state.clear_unavailable()
    summary = run_nightly(config, dry_run=False)
    assert summary["outcome"] == "Succeeded"
    assert opted_out(env, w.c_ledger_only)


def test_locked_records_are_retried_within_the_run(env: Env) -> None:
    w = build_world(env)
    env.state.lock_next_writes(1)
    summary = run_nightly(env.config(), dry_run=False)
    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert summary["toSalesforce"] == 3
    assert opted_out(env, w.c_ledger_only)


@pytest.mark.postgres
def test_postgresql_ledger(env: Env, postgres_url: str) -> None:
    env.ledger_url = postgres_url
    w = build_world(env)
    summary = run_nightly(env.config(), dry_run=False)
    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert counts(summary) == {"toSalesforce": 3, "fromSalesforce": 2, "skippedNoSalesforceId": 2, "failed": 2}
    assert opted_out(env, w.l_ledger_15)
    again = run_nightly(env.config(), dry_run=False)
    assert counts(again) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 2, "failed": 0}


# ---- the blast-radius guard (nightly.maxChangeRatio / nightly.maxChanges) --------------------------------
# build_world plans 5 toSalesforce changes out of 6 ledger targets read, and 2 fromSalesforce changes out of
# 3 opted-out Salesforce records read (the converted Lead is not read).


def _tables(env: Env) -> dict[str, int]:
    ledger = env.ledger()
    try:
        return ledger.table_counts()
    finally:
        ledger.close()


def test_guard_over_the_ratio_stops_the_run_before_any_write(env: Env) -> None:
    w = build_world(env)
    config = env.config(nightly__maxChangeRatio=0.5)
    tables_before = _tables(env)

    summary = run_nightly(config, dry_run=False)

    assert summary["outcome"] == "Failed"
    error = summary["error"]
    assert "toSalesforce: the run would make 5 changes" in error and "of the 6 ledger" in error
    assert "fromSalesforce: the run would make 2 changes" in error and "of the 3 records opted out" in error
    assert "over the limit maxChangeRatio 0.5" in error
    assert "Nothing was written" in error and "raise the limit" in error and "--dry-run" in error
    # nothing written: no Salesforce write call, no ledger change (the Failed run itself is recorded)
    assert env.writes() == 0
    assert not opted_out(env, w.c_ledger_only)
    assert _tables(env) == {**tables_before, "sync_runs": tables_before["sync_runs"] + 1}
    ledger = env.ledger()
    try:
        assert ledger.lookup("sf.only@example.com") is None
        last = ledger.last_sync_run()
        assert last is not None and last["outcome"] == "Failed"
    finally:
        ledger.close()
    # the counts are what was written (nothing); the plan is in the guard section
    assert counts(summary) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 2, "failed": 0}
    assert summary["guard"] == {
        "maxChangeRatio": 0.5,
        "maxChanges": None,
        "planned": {"toSalesforce": 5, "fromSalesforce": 2},
        "tripped": True,
        "reason": error,
    }
    assert summary["objects"]["Contact"]["ledgerTargets"] == 3


def test_guard_over_the_count_names_only_the_direction_over_it(env: Env) -> None:
    build_world(env)
    summary = run_nightly(env.config(nightly__maxChanges=4), dry_run=False)

    assert summary["outcome"] == "Failed"
    assert "toSalesforce: the run would make 5 changes" in summary["error"]
    assert "over the limit maxChanges 4" in summary["error"]
    assert "fromSalesforce" not in summary["error"]
    assert env.writes() == 0


def test_guard_within_the_limits_lets_the_run_write(env: Env) -> None:
    w = build_world(env)
    config = env.config(nightly__maxChangeRatio=0.9, nightly__maxChanges=5)

    summary = run_nightly(config, dry_run=False)

    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert counts(summary) == {"toSalesforce": 3, "fromSalesforce": 2, "skippedNoSalesforceId": 2, "failed": 2}
    assert opted_out(env, w.c_ledger_only) and opted_out(env, w.l_ledger_only)
    assert summary["guard"]["tripped"] is False and "reason" not in summary["guard"]
    assert summary["guard"]["planned"] == {"toSalesforce": 5, "fromSalesforce": 2}


def test_raising_the_limit_after_a_trip_completes_the_sync(env: Env) -> None:
    w = build_world(env)
    assert run_nightly(env.config(nightly__maxChanges=1), dry_run=False)["outcome"] == "Failed"
    assert env.writes() == 0

    summary = run_nightly(env.config(nightly__maxChanges=10), dry_run=False)

    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert opted_out(env, w.c_ledger_only)
    # the next run plans only what is left (nothing): even a zero limit lets it through
    again = run_nightly(env.config(nightly__maxChanges=0), dry_run=False)
    assert again["outcome"] == "Succeeded", again.get("error")
    assert again["guard"]["planned"] == {"toSalesforce": 0, "fromSalesforce": 0}


def test_dry_run_reports_whether_the_guard_would_trip(env: Env) -> None:
    build_world(env)
    tables_before = _tables(env)

    would = run_nightly(env.config(nightly__maxChanges=3), dry_run=True)
    within = run_nightly(env.config(nightly__maxChangeRatio=1), dry_run=True)

    assert would["outcome"] == "Succeeded" and within["outcome"] == "Succeeded"
    assert would["guard"]["tripped"] is True
    assert "toSalesforce: the run would make 5 changes" in would["guard"]["reason"]
    assert "A real run would stop here" in would["guard"]["reason"]
    assert within["guard"]["tripped"] is False
    assert counts(would) == {"toSalesforce": 5, "fromSalesforce": 2, "skippedNoSalesforceId": 2, "failed": 0}
    assert env.writes() == 0
    assert _tables(env) == tables_before


def test_no_guard_configured_means_no_guard(env: Env) -> None:
    w = build_world(env)
    summary = run_nightly(env.config(), dry_run=False)
    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert "guard" not in summary
    assert opted_out(env, w.c_ledger_only)


def dry_run_and_run_change_nothing(env: Env) -> dict[str, Any]:
    """A dry run and a run that both plan and change nothing (the count agrees with the run); the run's summary."""
    dry = run_nightly(env.config(), dry_run=True)
    assert counts(dry) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 0, "failed": 0}
    summary = run_nightly(env.config(), dry_run=False)
    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert counts(summary) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 0, "failed": 0}
    assert env.writes() == 0
    return summary


def test_a_queued_resubscribe_is_not_fought_by_the_nightly(env: Env) -> None:
    s = env.state
    cleared = s.add_record("Contact", "resub.pending@example.com", opted_out=True)  # the push has not run yet
    other = s.add_record("Lead", "resub.pending@example.com", opted_out=True)  # same address, not a target
    ledger = env.ledger()
    try:
        ledger.ingest([Unsubscribe("resub.pending@example.com", cleared, "Contact")])
        ledger.resubscribe([Resubscribe("resub.pending@example.com", "ops", "re-consented")])
        backlog = ledger.backlog()
    finally:
        ledger.close()

    summary = dry_run_and_run_change_nothing(env)
    assert summary["objects"]["Contact"]["pendingResubscribe"] == 1
    assert summary["objects"]["Lead"]["pendingResubscribe"] == 1
    ledger = env.ledger()
    try:
        found = ledger.lookup("resub.pending@example.com")
        assert found is not None and found["unsubscribed"] is False
        assert [t["id"] for t in found["salesforce"]] == [cleared]  # the Lead was not added as a target
        assert ledger.backlog() == backlog == 1  # the write of false is still queued
    finally:
        ledger.close()
    assert opted_out(env, other)  # nothing was written by the nightly


def test_nightly_never_sets_a_resubscribed_address(env: Env) -> None:
    s = env.state
    record = s.add_record("Contact", "resub.done@example.com")
    ledger = env.ledger()
    try:
        ledger.ingest([Unsubscribe("resub.done@example.com", record, "Contact")])
        ledger.resubscribe([Resubscribe("resub.done@example.com", "ops", "re-consented")])
        claim = ledger.claim("w", 10, 60)
        (row,) = claim
        ledger.complete(claim, [PushOutcome(row, "pushed")], field="HasOptedOutOfEmail")  # the field is false
    finally:
        ledger.close()

    summary = run_nightly(env.config(), dry_run=False)

    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert counts(summary) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 0, "failed": 0}
    assert env.writes() == 0 and not opted_out(env, record)


def test_a_resubscribe_whose_write_of_false_failed_for_good_is_not_undone_by_the_nightly(env: Env) -> None:
    """Salesforce still holds the true the push wrote (a validation rule refused the write of false): the
    nightly reads that true back, counts it in sync and leaves the address resubscribed."""
    s = env.state
    record = s.add_record("Contact", "resub.refused@example.com", opted_out=True)  # the true the push wrote
    ledger = env.ledger()
    try:
        ledger.ingest([Unsubscribe("resub.refused@example.com", record, "Contact")])
        claim = ledger.claim("w", 10, 60)
        ledger.complete(claim, [PushOutcome(claim[0], "pushed")], field="HasOptedOutOfEmail")
        ledger.resubscribe([Resubscribe("resub.refused@example.com", "ops", "re-consented")])
        claim = ledger.claim("w", 10, 60)
        refused = PushOutcome(claim[0], "failed", "FIELD_CUSTOM_VALIDATION_EXCEPTION: refused")
        ledger.complete(claim, [refused], field="HasOptedOutOfEmail")
    finally:
        ledger.close()

    summary = dry_run_and_run_change_nothing(env)
    assert summary["objects"]["Contact"]["inSync"] == 1
    ledger = env.ledger()
    try:
        found = ledger.lookup("resub.refused@example.com")
        assert found is not None and found["unsubscribed"] is False
        assert found["salesforce"][0]["status"] == "failed"  # the refusal stays on record
    finally:
        ledger.close()


def test_a_failed_read_of_one_object_fails_the_run_before_any_write(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    # the objects' sides are staged at once: one failing read ends the run, nothing is planned or written
    from unsubscribe_sync.salesforce.client import SalesforceClient
    from unsubscribe_sync.salesforce.types import ErrorClass, SalesforceCallError

    build_world(env)
    original = SalesforceClient.iter_opted_out

    def failing(self: SalesforceClient, object_name: str, field: str, **kw: Any) -> Any:
        if object_name == "Lead":
            raise SalesforceCallError("Salesforce bulk_query call failed: boom", error_class=ErrorClass.TRANSIENT)
        return original(self, object_name, field, **kw)

    monkeypatch.setattr(SalesforceClient, "iter_opted_out", failing)
    ledger = env.ledger()
    try:
        before = ledger.table_counts()
    finally:
        ledger.close()
    writes = env.writes()
    summary = run_nightly(env.config(), dry_run=False)
    assert summary["outcome"] == "Failed"
    assert "boom" in summary["error"]
    assert (summary["toSalesforce"], summary["fromSalesforce"]) == (0, 0)
    assert env.writes() == writes
    ledger = env.ledger()
    try:
        after = ledger.table_counts()
    finally:
        ledger.close()
    assert {k: v for k, v in after.items() if k != "sync_runs"} == {k: v for k, v in before.items() if k != "sync_runs"}

"""The nightly in Email mode over the sandbox: records of unsubscribed addresses found by Email and set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.api.config import Config, load_config
from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.nightly.email_mode import AddressStage, unset_with_email_soql
from unsubscribe_sync.nightly.job import run_nightly


def config(tmp_path: Path, sandbox: SandboxHandle, mode: str = "Email") -> Config:
    creds = sandbox.write_credentials(tmp_path / "creds")
    data: dict[str, Any] = {
        "salesforce": {"loginUrl": sandbox.url, "credentialsDir": str(creds), "caFile": str(sandbox.ca_file)},
        "matching": {"mode": mode},
        "ledger": {"url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "logging": {"format": "json", "level": "warning"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def opted_out(sandbox: SandboxHandle, record_id: str) -> bool:
    record = sandbox.state.get_record(record_id)
    return bool(record and record.get("HasOptedOutOfEmail"))


@pytest.fixture(autouse=True)
def _fast_bulk(sandbox: SandboxHandle) -> None:
    sandbox.state.set_bulk_processing_time(0.0)


def test_a_record_created_after_the_unsubscribe_is_set_by_the_nightly(tmp_path: Path, sandbox: SandboxHandle) -> None:
    cfg = config(tmp_path, sandbox)
    ledger = Ledger.open(cfg.ledger.resolve_url())
    try:
        ledger.ingest([Unsubscribe("later@example.com"), Unsubscribe("never@example.com")])
    finally:
        ledger.close()
    lead = sandbox.state.add_record("Lead", "Later@Example.com")  # created next week
    contact = sandbox.state.add_record("Contact", "LATER@example.com")
    converted = sandbox.state.add_record("Lead", "later@example.com", converted=True)
    other = sandbox.state.add_record("Contact", "someone@example.com")
    dry = run_nightly(cfg, dry_run=True)
    assert dry["outcome"] == "Succeeded", dry
    assert not opted_out(sandbox, lead)
    assert dry["toSalesforce"] == 2
    summary = run_nightly(cfg, dry_run=False)
    assert summary["outcome"] == "Succeeded", summary
    assert opted_out(sandbox, lead) and opted_out(sandbox, contact)
    assert not opted_out(sandbox, converted) and not opted_out(sandbox, other)
    assert summary["toSalesforce"] == 2
    assert summary["skippedNoSalesforceId"] == 1  # never@example.com: no record
    again = run_nightly(cfg, dry_run=False)
    assert again["toSalesforce"] == 0


def test_salesforce_id_mode_nightly_does_not_match_by_address(tmp_path: Path, sandbox: SandboxHandle) -> None:
    cfg = config(tmp_path, sandbox, mode="SalesforceId")
    ledger = Ledger.open(cfg.ledger.resolve_url())
    try:
        ledger.ingest([Unsubscribe("only@example.com")])
    finally:
        ledger.close()
    lead = sandbox.state.add_record("Lead", "only@example.com")
    summary = run_nightly(cfg, dry_run=False)
    assert summary["outcome"] == "Succeeded", summary
    assert not opted_out(sandbox, lead)


def test_address_stage_joins_on_the_normalised_address(tmp_path: Path) -> None:
    with AddressStage(tmp_path) as stage:
        stage.load_records(
            [[{"Id": "003000000000001AAA", "Email": "A@X.test"}, {"Id": "00Q000000000001AAA", "Email": "b@x.test"}]]
        )
        stage.load_addresses(["a@x.test", "c@x.test"])
        assert list(stage.matches()) == [("003000000000001AAA", "a@x.test")]


def test_unset_with_email_soql() -> None:
    assert unset_with_email_soql("Lead", "HasOptedOutOfEmail") == (
        "SELECT Id, Email, HasOptedOutOfEmail FROM Lead WHERE Email != null AND IsConverted = false"
        " AND HasOptedOutOfEmail = false"
    )
    assert unset_with_email_soql("Contact", "F__c", count=True) == (
        "SELECT COUNT() FROM Contact WHERE Email != null AND F__c = false"
    )


def test_a_dry_run_reports_the_counts_of_the_real_run(tmp_path: Path, sandbox: SandboxHandle) -> None:
    """Addresses with records found by Email are not skipped in a dry run either (it adds no target)."""
    cfg = config(tmp_path, sandbox)
    ledger = Ledger.open(cfg.ledger.resolve_url())
    try:
        ledger.ingest([Unsubscribe(e) for e in ("one@example.com", "two@example.com", "none@example.com")])
    finally:
        ledger.close()
    sandbox.state.add_record("Lead", "One@Example.com")
    sandbox.state.add_record("Contact", "one@example.com")
    sandbox.state.add_record("Contact", "TWO@example.com")
    keys = ("toSalesforce", "fromSalesforce", "skippedNoSalesforceId")
    dry = run_nightly(cfg, dry_run=True)
    real = run_nightly(cfg, dry_run=False)
    assert dry["outcome"] == real["outcome"] == "Succeeded", (dry, real)
    assert (
        {k: dry[k] for k in keys}
        == {k: real[k] for k in keys}
        == {"toSalesforce": 3, "fromSalesforce": 0, "skippedNoSalesforceId": 1}
    )

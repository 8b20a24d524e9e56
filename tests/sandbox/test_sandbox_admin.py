"""The sandbox's control surfaces: the Python state API, the /__sandbox admin HTTP API and its client, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.fixtures.common import REPO_ROOT
from tests.fixtures.sandbox import SandboxApi, SandboxHandle
from unsubscribe_sync.cli import main
from unsubscribe_sync.sandbox import SandboxAdmin, SandboxState
from unsubscribe_sync.sandbox.admin_client import SandboxAdminError

# --------------------------------------------------------------------------- Python control API


def test_seed_is_deterministic_with_exact_shares() -> None:
    first, second = SandboxState(rng_seed=7), SandboxState(rng_seed=7)
    summary = first.seed(contacts=1000, leads=500, opted_out_ratio=0.1, converted_ratio=0.2, deleted_ratio=0.05)
    second.seed(contacts=1000, leads=500, opted_out_ratio=0.1, converted_ratio=0.2, deleted_ratio=0.05)
    assert summary == {
        "Contact": {"created": 1000, "optedOut": 100, "deleted": 50},
        "Lead": {"created": 500, "optedOut": 50, "deleted": 25, "converted": 100},
    }
    assert first.find_ids("Lead", HasOptedOutOfEmail=True) == second.find_ids("Lead", HasOptedOutOfEmail=True)
    other = SandboxState(rng_seed=8)
    other.seed(contacts=1000, leads=500)
    assert other.find_ids("Lead", HasOptedOutOfEmail=True) != first.find_ids("Lead", HasOptedOutOfEmail=True)


def test_seed_can_set_the_marketo_field() -> None:
    state = SandboxState()
    summary = state.seed(contacts=200, marketo_opted_out_ratio=0.25, opted_out_ratio=0.0, deleted_ratio=0.0)
    assert summary["Contact"]["marketoOptedOut"] == 50
    assert state.count("Contact", ToutApp__Marketo_Sales_Opt_Out__c=True) == 50
    assert state.count("Contact", HasOptedOutOfEmail=True) == 0


def test_seed_rejects_bad_ratios() -> None:
    state = SandboxState()
    with pytest.raises(ValueError, match="opted_out_ratio"):
        state.seed(contacts=10, opted_out_ratio=1.5)
    assert state.count("Contact") == 0


def test_records_and_fields_through_the_python_api() -> None:
    state = SandboxState()
    contact = state.add_record("Contact", "Ada@Example.com", fields={"FirstName": "Ada"})
    lead = state.add_record("Lead", "ada@example.com", converted=True)
    assert contact.startswith("003") and lead.startswith("00Q") and len(contact) == 18
    assert state.ids_by_email("ADA@example.com") == [contact, lead]
    record = state.get_record(contact[:15])
    assert record is not None and record["FirstName"] == "Ada" and record["attributes"] == {"type": "Contact"}
    state.set_fields(contact, {"hasoptedoutofemail": True})
    assert state.find_ids("Contact", HasOptedOutOfEmail=True) == [contact]
    assert state.write_count(contact) == 0  # a user's change is not an API write
    with pytest.raises(ValueError, match="no field"):
        state.set_fields(contact, {"Nope": 1})
    with pytest.raises(ValueError, match="only Leads"):
        state.add_record("Contact", "x@example.com", converted=True)
    with pytest.raises(ValueError, match="unknown object"):
        state.add_record("Account", "x@example.com")
    assert state.get_record("003Rx0000009999") is None


def test_reset_clears_data_faults_and_counters_but_keeps_apps() -> None:
    state = SandboxState()
    state.register_app("app", client_secret="s")
    state.add_record("Contact", "a@example.com")
    state.set_latency(50)
    state.remove_field("Contact", "ToutApp__Marketo_Sales_Opt_Out__c")
    state.reset()
    assert state.count("Contact") == 0
    assert state.faults.latency_ms == 0
    assert "ToutApp__Marketo_Sales_Opt_Out__c" in state.schemas["Contact"].custom
    assert "app" in state.apps


# --------------------------------------------------------------------------- admin HTTP API


def test_admin_api_requires_its_token(sandbox: SandboxHandle) -> None:
    http = sandbox.session()
    assert http.get(f"{sandbox.admin_url}/state").status_code == 401
    assert http.get(f"{sandbox.admin_url}/state", headers={"X-Sandbox-Admin-Token": "wrong"}).status_code == 401
    with pytest.raises(SandboxAdminError, match="401"):
        SandboxAdmin(sandbox.admin_url, "wrong", sandbox.ca_file).state()


def test_admin_client_drives_the_sandbox(sandbox: SandboxHandle, sandbox_api: SandboxApi) -> None:
    admin = sandbox.admin
    summary = admin.seed(contacts=50, leads=20, optedOutRatio=0.2, deletedRatio=0.0, convertedRatio=0.0)
    assert summary["Contact"]["optedOut"] == 10
    opted_out = admin.find_ids("Contact", HasOptedOutOfEmail=True)
    assert opted_out == sandbox.state.find_ids("Contact", HasOptedOutOfEmail=True)
    new = admin.add_record("Lead", "new@example.com", fields={"Company": "Acme"})
    assert admin.get_record(new)["Company"] == "Acme"  # type: ignore[index]
    assert admin.ids_by_email("NEW@example.com") == [new]
    assert admin.set_fields(new, {"HasOptedOutOfEmail": True})["HasOptedOutOfEmail"] is True
    assert admin.get_record("00QRx0000009999") is None

    admin.set_faults(lockIds=[new[:15]])
    body = {"records": [{"attributes": {"type": "Lead"}, "id": new, "DoNotCall": True}]}
    assert (
        sandbox_api.patch("composite/sobjects", json=body).json()[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"
    )
    faults = admin.set_faults(unlockIds=[new], unavailable=True)
    assert faults["unavailable"] is True and faults["lockIds"] == []
    assert sandbox_api.get("limits").status_code == 503
    admin.set_faults(unavailable=False, dailyApiLimit=100, apiUsage=100)
    assert sandbox_api.get("limits").status_code == 403
    assert admin.set_faults(clear=True, dailyApiLimit=1000, expireSessions=True)["expiredSessions"] == 1
    assert sandbox_api.get("limits").status_code == 401

    sandbox_api.token = sandbox.access_token()
    assert sandbox_api.patch("composite/sobjects", json=body).json()[0]["success"] is True
    writes = admin.writes()
    assert writes["total"] == 1 and writes["byId"] == {new: 1}
    assert admin.writes([new[:15]])["byId"] == {new[:15]: 1}
    assert admin.calls()["collections"] == 2

    admin.configure_field("Contact", "MSE_Opt_Out__c", label="MSE - Opt Out")
    fields = {f["name"] for f in sandbox_api.get("sobjects/Contact/describe").json()["fields"]}
    assert "MSE_Opt_Out__c" in fields
    state = admin.state()
    assert state["objects"]["Lead"]["records"] == 21
    assert admin.reset()["objects"]["Contact"]["records"] == 0


def test_admin_api_rejects_bad_input_with_clear_errors(sandbox: SandboxHandle) -> None:
    admin = sandbox.admin
    with pytest.raises(SandboxAdminError, match="optedOutRatio"):
        admin.seed(contacts=5, optedOutRatio=2)
    with pytest.raises(SandboxAdminError, match="bogus"):
        admin.set_faults(bogus=True)
    with pytest.raises(SandboxAdminError, match="unknown object"):
        admin.add_record("Account", "a@example.com")
    with pytest.raises(SandboxAdminError, match="__c"):
        admin.configure_field("Contact", "NoSuffix", label="x")
    assert sandbox.state.count("Contact") == 0


# --------------------------------------------------------------------------- command line


def test_cli_serves_seeded_records_and_writes_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "operator")}
    process = subprocess.Popen(
        [sys.executable, "-m", "unsubscribe_sync", "sandbox", "--seed-contacts", "30", "--seed-leads", "10",
         "--opted-out-ratio", "0.5", "--deleted-ratio", "0", "--state-dir", str(tmp_path / "state"),
         "--write-credentials", str(creds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("{"):
                break
        info = json.loads(lines[-1])
        assert any(line.startswith("sandbox URL") and info["url"] in line for line in lines)
        assert info["records"] == {"Contact": 30, "Lead": 10}
        assert sorted(p.name for p in creds.iterdir()) == ["client_id", "client_secret"]
        assert (creds / "client_secret").stat().st_mode & 0o077 == 0
        secret = (creds / "client_secret").read_text()
        assert all(secret not in line for line in lines)
        http = requests.Session()
        http.trust_env = False
        token = http.post(
            f"{info['url']}/services/oauth2/token",
            data={"grant_type": "client_credentials", "client_id": (creds / "client_id").read_text(),
                  "client_secret": secret},
            verify=info["caFile"],
        ).json()["access_token"]  # fmt: skip
        page = http.get(
            f"{info['url']}/services/data/v62.0/query",
            params={"q": "SELECT COUNT() FROM Contact WHERE HasOptedOutOfEmail = true"},
            headers={"Authorization": f"Bearer {token}"},
            verify=info["caFile"],
        ).json()
        assert page["totalSize"] == 15
        admin = SandboxAdmin(info["adminUrl"], Path(info["adminTokenFile"]).read_text(), info["caFile"])
        assert admin.state()["apiUsage"]["used"] == 1
        assert json.loads((tmp_path / "state" / "sandbox.json").read_text())["url"] == info["url"]
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert process.returncode == 0


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sandbox", "--opted-out-ratio", "3"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--opted-out-ratio" in err and "between 0 and 1" in err


def test_admin_clock_moves_system_modstamp_of_later_writes(sandbox: SandboxHandle, sandbox_api: SandboxApi) -> None:
    contact = sandbox.admin.add_record("Contact", "clock@example.com")
    before = (sandbox.admin.get_record(contact) or {})["SystemModstamp"]
    answer = sandbox.admin.advance_clock(7200)
    assert answer["offsetSeconds"] == 7200 and answer["now"] > before
    sandbox_api.patch(f"sobjects/Contact/{contact}", json={"HasOptedOutOfEmail": True})
    after = (sandbox.admin.get_record(contact) or {})["SystemModstamp"]
    assert after[:13] > before[:13]  # at least an hour later

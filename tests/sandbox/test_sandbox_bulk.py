"""Bulk API 2.0 in the sandbox over real HTTPS, raw and through simple-salesforce (which the connector uses)."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceRefusedRequest

from tests.fixtures.sandbox import SandboxApi, SandboxHandle
from unsubscribe_sync.sandbox.state import SandboxState


def _wait(api: SandboxApi, path: str, want: str = "JobComplete") -> dict[str, Any]:
    for _ in range(200):
        info = api.get(path).json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            assert info["state"] == want, info
            return dict(info)
        time.sleep(0.02)
    raise AssertionError(f"job {path} never finished")


def _rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


# --------------------------------------------------------------------------- query jobs


def test_bulk_query_job_lifecycle_and_locator_paging(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=2500, opted_out_ratio=0.5, deleted_ratio=0.0)
    created = sandbox_api.post(
        "jobs/query",
        json={"operation": "query", "query": "SELECT Id, Email FROM Contact WHERE HasOptedOutOfEmail = true"},
    )
    assert created.status_code == 200
    job = created.json()
    assert job["id"].startswith("750") and job["state"] == "UploadComplete" and job["object"] == "Contact"
    early = sandbox_api.get(f"jobs/query/{job['id']}/results")
    assert early.status_code == 400  # not complete yet
    info = _wait(sandbox_api, f"jobs/query/{job['id']}")
    assert info["numberRecordsProcessed"] == 1250
    seen: list[str] = []
    locator = None
    pages = 0
    while True:
        params: dict[str, Any] = {"maxRecords": 500}
        if locator:
            params["locator"] = locator
        page = sandbox_api.get(f"jobs/query/{job['id']}/results", params=params)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/csv")
        rows = _rows(page.text)
        assert rows[0] == ["Id", "Email"]
        assert int(page.headers["Sforce-NumberOfRecords"]) == len(rows) - 1
        assert page.text.startswith('"Id","Email"\n')
        seen += [r[0] for r in rows[1:]]
        pages += 1
        locator = page.headers["Sforce-Locator"]
        if locator == "null":
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 1250
    assert set(seen) == set(sandbox.state.find_ids("Contact", HasOptedOutOfEmail=True))


def test_bulk_query_errors(sandbox_api: SandboxApi) -> None:
    bad = sandbox_api.post("jobs/query", json={"operation": "query", "query": "SELECT Nope__c FROM Contact"})
    assert bad.status_code == 400 and bad.json()[0]["errorCode"] == "INVALID_FIELD"
    malformed = sandbox_api.post("jobs/query", json={"operation": "query", "query": "SELECT FROM"})
    assert malformed.status_code == 400 and malformed.json()[0]["errorCode"] == "MALFORMED_QUERY"
    assert sandbox_api.get("jobs/query/750Rx0000000999AAA").status_code == 404


def test_bulk_query_csv_values(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.add_record("Lead", 'odd,"quoted"@example.com', opted_out=True, fields={"FirstName": None})
    job = sandbox_api.post(
        "jobs/query", json={"operation": "query", "query": "SELECT Id, FirstName, Email, HasOptedOutOfEmail FROM Lead"}
    ).json()
    _wait(sandbox_api, f"jobs/query/{job['id']}")
    rows = _rows(sandbox_api.get(f"jobs/query/{job['id']}/results").text)
    assert rows[1][1:] == ["", 'odd,"quoted"@example.com', "true"]


# --------------------------------------------------------------------------- ingest jobs


def test_bulk_ingest_update_lifecycle(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    ok = state.add_record("Contact", "ok@example.com")
    deleted = state.add_record("Contact", "deleted@example.com", deleted=True)
    job = sandbox_api.post(
        "jobs/ingest", json={"object": "Contact", "operation": "update", "contentType": "CSV", "lineEnding": "LF"}
    ).json()
    assert job["state"] == "Open" and job["operation"] == "update"
    body = f"Id,HasOptedOutOfEmail\n{ok[:15]},true\n{deleted},true\n003bad,true\n"
    upload = sandbox_api.put(
        f"jobs/ingest/{job['id']}/batches", data=body.encode(), headers={"Content-Type": "text/csv"}
    )
    assert upload.status_code == 201
    assert state.get_record(ok)["HasOptedOutOfEmail"] is False  # type: ignore[index]  # nothing before close
    closed = sandbox_api.patch(f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    assert closed.status_code == 200 and closed.json()["state"] == "UploadComplete"
    info = _wait(sandbox_api, f"jobs/ingest/{job['id']}")
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 2)
    assert state.get_record(ok)["HasOptedOutOfEmail"] is True  # type: ignore[index]
    assert state.write_count(ok) == 1
    success = _rows(sandbox_api.get(f"jobs/ingest/{job['id']}/successfulResults/").text)
    assert success[0] == ["sf__Id", "sf__Created", "Id", "HasOptedOutOfEmail"]
    assert success[1] == [ok, "false", ok[:15], "true"]
    failed = _rows(sandbox_api.get(f"jobs/ingest/{job['id']}/failedResults/").text)
    assert failed[0] == ["sf__Id", "sf__Error", "Id", "HasOptedOutOfEmail"]
    assert [row[1].split(":")[0] for row in failed[1:]] == ["ENTITY_IS_DELETED", "MALFORMED_ID"]


def _closed_ingest_job(api: SandboxApi, ids: list[str]) -> str:
    job = api.post("jobs/ingest", json={"object": "Contact", "operation": "update"}).json()
    body = "Id,HasOptedOutOfEmail\n" + "".join(f"{i},true\n" for i in ids)
    api.put(f"jobs/ingest/{job['id']}/batches", data=body.encode(), headers={"Content-Type": "text/csv"})
    assert api.patch(f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"}).status_code == 200
    return str(job["id"])


def _wait_applied(state: SandboxState, ids: list[str], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(state.get_record(i)["HasOptedOutOfEmail"] for i in ids):
            return True
        time.sleep(0.02)
    return False


def test_bulk_ingest_job_applies_its_records_while_it_runs_not_when_polled(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    # an org processes a closed job's records during its processing time; the job reports JobComplete only at
    # its end. Nobody polls the job here: the records are applied all the same.
    state = sandbox.state
    state.set_bulk_processing_time(3.0)
    ids = [state.add_record("Contact", f"c{i}@example.com") for i in range(2_500)]  # more than one step's worth
    job_id = _closed_ingest_job(sandbox_api, ids)
    assert _wait_applied(state, ids, 2.0), "the records were not applied while the job ran"
    info = sandbox_api.get(f"jobs/ingest/{job_id}").json()
    assert info["state"] == "InProgress" and info["numberRecordsProcessed"] == len(ids)
    assert sandbox_api.get(f"jobs/ingest/{job_id}/successfulResults/").status_code == 400  # not complete yet
    assert all(state.write_count(i) == 1 for i in ids)
    done = _wait(sandbox_api, f"jobs/ingest/{job_id}")
    assert (done["numberRecordsProcessed"], done["numberRecordsFailed"]) == (len(ids), 0)
    assert len(_rows(sandbox_api.get(f"jobs/ingest/{job_id}/successfulResults/").text)) == len(ids) + 1
    assert all(state.write_count(i) == 1 for i in ids)  # completing it writes nothing again


def test_a_running_ingest_job_applies_its_records_a_step_at_a_time(sandbox: SandboxHandle) -> None:
    # the server serves other requests between steps; here the steps are taken by hand on the org itself
    state = sandbox.state
    state.set_bulk_processing_time(30.0)
    ids = [state.add_record("Contact", f"s{i}@example.com") for i in range(1_500)]
    job = state.create_ingest_job({"object": "Contact", "operation": "update"}, "62.0")
    state.upload_ingest_data(job["id"], "Id,HasOptedOutOfEmail\n" + "".join(f"{i},true\n" for i in ids))
    state.set_ingest_state(job["id"], {"state": "UploadComplete"})
    assert state.process_ingest_step(job["id"], 1_000) is True  # records are left
    applied = [i for i in ids if state.get_record(i)["HasOptedOutOfEmail"]]  # type: ignore[index]
    assert applied == ids[:1_000]
    assert state.process_ingest_step(job["id"], 1_000) is False  # the last 500: none left
    assert all(state.get_record(i)["HasOptedOutOfEmail"] for i in ids)  # type: ignore[index]
    info = state.ingest_job_info(job["id"])
    assert (info["state"], info["numberRecordsProcessed"]) == ("InProgress", 1_500)  # it ends at its time
    assert state.process_ingest_step(job["id"], 1_000) is False  # nothing more to apply, nothing written again
    assert all(state.write_count(i) == 1 for i in ids)


def test_bulk_ingest_job_aborted_while_it_runs_keeps_what_it_applied(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    state = sandbox.state
    state.set_bulk_processing_time(3.0)
    ids = [state.add_record("Contact", f"a{i}@example.com") for i in range(3)]
    job_id = _closed_ingest_job(sandbox_api, ids)
    assert _wait_applied(state, ids, 2.0)
    aborted = sandbox_api.patch(f"jobs/ingest/{job_id}", json={"state": "Aborted"})
    assert aborted.status_code == 200 and aborted.json()["state"] == "Aborted"
    assert all(state.get_record(i)["HasOptedOutOfEmail"] for i in ids)  # committed changes are not rolled back
    assert sandbox_api.get(f"jobs/ingest/{job_id}").json()["numberRecordsProcessed"] == len(ids)


def test_bulk_ingest_unknown_column_fails_the_job(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "c@example.com")
    sandbox.state.configure_field("Contact", "ToutApp__Marketo_Sales_Opt_Out__c", label="Marketo Sales Opt Out",
                                  hidden=True)  # fmt: skip
    job = sandbox_api.post("jobs/ingest", json={"object": "Contact", "operation": "update"}).json()
    body = f"Id,ToutApp__Marketo_Sales_Opt_Out__c\n{contact},true\n"
    sandbox_api.put(f"jobs/ingest/{job['id']}/batches", data=body, headers={"Content-Type": "text/csv"})
    sandbox_api.patch(f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    info = _wait(sandbox_api, f"jobs/ingest/{job['id']}", want="Failed")
    assert "Field name not found : ToutApp__Marketo_Sales_Opt_Out__c" in info["errorMessage"]
    assert sandbox.state.write_count(contact) == 0


def test_bulk_ingest_state_rules(sandbox_api: SandboxApi) -> None:
    job = sandbox_api.post("jobs/ingest", json={"object": "Lead", "operation": "update"}).json()
    wrong_type = sandbox_api.put(f"jobs/ingest/{job['id']}/batches", json={"Id": "x"})
    assert wrong_type.status_code == 400
    aborted = sandbox_api.patch(f"jobs/ingest/{job['id']}", json={"state": "Aborted"})
    assert aborted.json()["state"] == "Aborted"
    late = sandbox_api.put(f"jobs/ingest/{job['id']}/batches", data="Id\n", headers={"Content-Type": "text/csv"})
    assert late.status_code == 409
    assert sandbox_api.post("jobs/ingest", json={"object": "Lead", "operation": "insert"}).status_code == 400
    assert sandbox_api.post("jobs/ingest", json={"object": "Nope", "operation": "update"}).status_code == 400
    assert sandbox_api.delete(f"jobs/ingest/{job['id']}").status_code == 204
    assert sandbox_api.get(f"jobs/ingest/{job['id']}").status_code == 404


# --------------------------------------------------------------------------- simple-salesforce against the sandbox


@pytest.fixture
def sf(sandbox: SandboxHandle) -> Salesforce:
    session = requests.Session()
    session.verify = str(sandbox.ca_file)
    session.trust_env = False
    return Salesforce(instance_url=sandbox.url, session_id=sandbox.access_token(), version="62.0", session=session)


def test_simple_salesforce_query_and_collections(sf: Salesforce, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=2100, leads=10, opted_out_ratio=0.0, deleted_ratio=0.0, converted_ratio=0.0)
    records = list(sf.query_all_iter("SELECT Id, Email FROM Contact WHERE HasOptedOutOfEmail = false"))
    assert len(records) == 2100
    body = {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Contact"}, "id": r["Id"], "HasOptedOutOfEmail": True} for r in records[:200]
        ],
    }
    results = sf.restful("composite/sobjects", method="PATCH", json=body)
    assert all(r["success"] for r in results)
    assert sf.api_usage["api-usage"].used == sandbox.state.api_usage
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 200


def test_simple_salesforce_bulk2_query_and_update(sf: Salesforce, sandbox: SandboxHandle) -> None:
    sandbox.state.set_bulk_processing_time(0.05)
    sandbox.state.seed(contacts=300, opted_out_ratio=0.1, deleted_ratio=0.0)
    pages = list(
        sf.bulk2.Contact.query("SELECT Id FROM Contact WHERE HasOptedOutOfEmail = true", max_records=20, wait=0.05)
    )
    ids = [row[0] for page in pages for row in _rows(str(page))[1:]]
    assert len(pages) == 2 and len(ids) == 30
    targets = sandbox.state.find_ids("Contact", HasOptedOutOfEmail=False)[:5]
    result = sf.bulk2.Contact.update(
        records=[{"Id": i, "DoNotCall": "true"} for i in targets] + [{"Id": "003Rx00000099ZZ", "DoNotCall": "true"}],
        wait=0.05,
    )
    assert result[0]["numberRecordsProcessed"] == 6 and result[0]["numberRecordsFailed"] == 1
    assert sandbox.state.count("Contact", DoNotCall=True) == 5
    failed = _rows(sf.bulk2.Contact.get_failed_records(result[0]["job_id"]))
    assert failed[1][1].startswith("INVALID_CROSS_REFERENCE_KEY:")


def test_simple_salesforce_sees_salesforce_exceptions(sf: Salesforce, sandbox: SandboxHandle) -> None:
    sandbox.state.set_request_limit_exceeded(True)
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.query("SELECT Id FROM Contact")
    assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    sandbox.state.set_request_limit_exceeded(False)
    sandbox.state.expire_sessions()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Contact")


def test_bulk_fail_fault_fails_the_next_jobs_and_applies_nothing(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    contact = sandbox.state.add_record("Contact", "c@example.com")
    sandbox.state.fail_next_bulk_jobs(1)
    job = sandbox_api.post("jobs/ingest", json={"object": "Contact", "operation": "update"}).json()
    sandbox_api.put(
        f"jobs/ingest/{job['id']}/batches", data=f"Id,DoNotCall\n{contact},true\n", headers={"Content-Type": "text/csv"}
    )
    sandbox_api.patch(f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    info = _wait(sandbox_api, f"jobs/ingest/{job['id']}", want="Failed")
    assert info["errorMessage"]
    assert sandbox.state.write_count(contact) == 0
    query = sandbox_api.post("jobs/query", json={"operation": "query", "query": "SELECT Id FROM Contact"}).json()
    _wait(sandbox_api, f"jobs/query/{query['id']}")  # the fault was used up

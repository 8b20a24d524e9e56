"""The sandbox driven by Salesforce clients this project did not write: simple-salesforce 1.12 and jsforce 3.10.

A fidelity regression (a shape a real client parses, a limit it relies on) fails here through the client's own code.
jsforce runs in one node process per module (tests/fixtures/jsforce_driver.js, one JSON command a line); it is installed
into .cache/npm by scripts/test-services.sh, and these tests skip with the reason when node or jsforce is missing.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.fixtures.sandbox import SandboxHandle

ROOT = Path(__file__).resolve().parents[2]
NPM_CACHE = ROOT / ".cache" / "npm"
JSFORCE = NPM_CACHE / "node_modules" / "jsforce"
DRIVER = Path(__file__).resolve().parents[1] / "fixtures" / "jsforce_driver.js"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LF_ERROR = "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"


def _since(sandbox: SandboxHandle, record_id: str, seconds: float) -> str:
    """A SOQL datetime literal `seconds` after the record's SystemModstamp."""
    value = (sandbox.state.get_record(record_id) or {})["SystemModstamp"]
    stamp = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    return (stamp + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _change_some(sandbox: SandboxHandle, count: int) -> tuple[str, list[str]]:
    """Seed 3000 Contacts, move the clock, opt `count` of them out: (a datetime between, the changed IDs)."""
    sandbox.state.seed(contacts=3000, opted_out_ratio=0.0, deleted_ratio=0.0)
    ids = sandbox.state.find_ids("Contact")
    since = _since(sandbox, ids[0], 30)
    sandbox.state.advance_clock(60)
    changed = ids[1::3][:count]
    for record_id in reversed(changed):
        sandbox.state.set_fields(record_id, {"HasOptedOutOfEmail": True})
    return since, changed


def _alternating(sandbox: SandboxHandle, chunks: int) -> list[dict[str, Any]]:
    records = []
    for n in range(chunks):
        sobject = ("Contact", "Lead")[n % 2]
        record_id = sandbox.state.add_record(sobject, f"chunk{n}@example.com")
        records.append({"attributes": {"type": sobject}, "id": record_id, "HasOptedOutOfEmail": True})
    return records


# =========================================================================== simple-salesforce 1.12


@pytest.fixture
def sf(sandbox: SandboxHandle) -> Salesforce:
    host = sandbox.url.removeprefix("https://")
    return Salesforce(instance=host, session_id=sandbox.access_token(), version="62.0", session=sandbox.session())


def test_simple_salesforce_incremental_poll_pages_by_system_modstamp(sandbox: SandboxHandle, sf: Salesforce) -> None:
    since, changed = _change_some(sandbox, 900)
    soql = (
        f"SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp >= {since} AND HasOptedOutOfEmail = true "
        "ORDER BY SystemModstamp, Id"
    )
    records = list(sf.query_all_iter(soql, headers={"Sforce-Query-Options": "batchSize=200"}))
    assert sorted(r["Id"] for r in records) == sorted(changed)
    keys = [(r["SystemModstamp"], r["Id"]) for r in records]
    assert keys == sorted(keys)
    assert sf.query(f"SELECT COUNT(Id) FROM Contact WHERE SystemModstamp > {since}")["records"][0]["expr0"] == 900


def test_simple_salesforce_query_all_with_deleted_pages(sandbox: SandboxHandle, sf: Salesforce) -> None:
    sandbox.state.seed(contacts=2500, deleted_ratio=0.2)
    assert len(sf.query_all("SELECT Id FROM Contact", include_deleted=True)["records"]) == 2500
    assert len(sf.query_all("SELECT Id FROM Contact")["records"]) == 2000


def test_simple_salesforce_sees_mixed_and_or_refused(sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query("SELECT Id FROM Contact WHERE Email = 'a' AND LastName = 'b' OR FirstName = 'c'")
    assert caught.value.content[0]["errorCode"] == "MALFORMED_QUERY"
    assert caught.value.content[0]["message"].endswith("unexpected token: 'OR'")


def test_simple_salesforce_sees_the_chunk_limit(sandbox: SandboxHandle, sf: Salesforce) -> None:
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects", method="PATCH", json={"records": _alternating(sandbox, 11)})
    assert "more than 10 chunks" in caught.value.content[0]["message"]


def test_simple_salesforce_describe_and_new_fields(sandbox: SandboxHandle, sf: Salesforce) -> None:
    described = sf.Contact.describe()
    assert set(described) >= {"childRelationships", "recordTypeInfos", "fields", "namedLayoutInfos"}
    fields = {f["name"]: f for f in described["fields"]}
    assert fields["Name"]["nameField"] is True and fields["AccountId"]["referenceTo"] == ["Account"]
    names = {"FirstName": "Grace", "LastName": "Hopper"}
    contact = sandbox.state.add_record("Contact", "grace@example.com", fields=names)
    record = sf.Contact.get(contact)
    assert (record["Name"], record["OwnerId"][:3], record["CreatedDate"][:2]) == ("Grace Hopper", "005", "20")
    today = sf.query("SELECT Id FROM Contact WHERE CreatedDate = TODAY AND LastModifiedDate = LAST_N_DAYS:2")
    assert [r["Id"] for r in today["records"]] == [contact]


def test_simple_salesforce_composite_retrieve_and_lists(sandbox: SandboxHandle, sf: Salesforce) -> None:
    contact = sandbox.state.add_record("Contact", "ken@example.com")
    retrieved = sf.restful("composite/sobjects/Contact", method="POST", json={"ids": [contact], "fields": ["Email"]})
    assert retrieved[0]["Email"] == "ken@example.com"
    composite = sf.restful(
        "composite",
        method="POST",
        json={"compositeRequest": [
            {"method": "PATCH", "referenceId": "optOut", "url": f"/services/data/v62.0/sobjects/Contact/{contact}",
             "body": {"HasOptedOutOfEmail": True}},
            {"method": "GET", "referenceId": "read", "url": f"/services/data/v62.0/sobjects/Contact/{contact}"},
        ]},
    )  # fmt: skip
    assert [r["httpStatusCode"] for r in composite["compositeResponse"]] == [204, 200]
    batch = sf.restful(
        "composite/batch", method="POST", json={"batchRequests": [{"method": "GET", "url": "v62.0/limits"}]}
    )
    assert batch["hasErrors"] is False
    columns = sf.restful("query", params={"q": "SELECT Id, Email FROM Contact", "columns": "true"})
    assert [c["columnName"] for c in columns["columnMetadata"]] == ["Id", "Email"]
    assert sf.restful("jobs/ingest") == {"done": True, "records": [], "nextRecordsUrl": None}


# =========================================================================== jsforce 3.10 (node)


class JsForce:
    """One node process running tests/fixtures/jsforce_driver.js; call() sends a command and waits for its answer."""

    def __init__(self, process: subprocess.Popen[str], server_url: str) -> None:
        self.process = process
        self.url = server_url
        self.ids = itertools.count(1)

    def call(self, op: str, token: str, timeout: float = 60.0, **args: Any) -> Any:
        answer = self.answer(op, token, timeout, **args)
        if not answer["ok"]:
            raise AssertionError(f"jsforce {op} failed: {answer['error']}")
        return answer["result"]

    def error(self, op: str, token: str, **args: Any) -> dict[str, Any]:
        answer = self.answer(op, token, 60.0, **args)
        assert not answer["ok"], answer
        return dict(answer["error"])

    def answer(self, op: str, token: str, timeout: float, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        command = {"id": next(self.ids), "op": op, "args": args, "token": token, "url": self.url, "version": "62.0"}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"jsforce {op}: no answer within {timeout} s")
        answer = json.loads(self.process.stdout.readline())
        assert answer["id"] == command["id"]
        return dict(answer)


@pytest.fixture(scope="module")
def jsforce(sandbox_server: SandboxHandle) -> Iterator[JsForce]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the jsforce client tests need Node 20")
    if not (JSFORCE / "package.json").exists():
        pytest.skip(f"jsforce is not installed in {NPM_CACHE}: run scripts/test-services.sh (needs npm, its registry)")
    env = {
        **os.environ,
        "NODE_PATH": str(NPM_CACHE / "node_modules"),
        "NODE_EXTRA_CA_CERTS": str(sandbox_server.ca_file),
    }
    process = subprocess.Popen(
        [node, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        yield JsForce(process, sandbox_server.url)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_jsforce_query_auto_fetch_by_system_modstamp(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    since, changed = _change_some(sandbox, 700)
    token = sandbox.access_token()
    soql = f"SELECT Id, SystemModstamp FROM Contact WHERE SystemModstamp >= {since} ORDER BY SystemModstamp"
    result = jsforce.call("query", token, soql=soql)
    assert result["totalSize"] == 700 and sorted(r["Id"] for r in result["records"]) == sorted(changed)
    everything = jsforce.call("query", token, soql="SELECT Id FROM Contact")
    assert len(everything["records"]) == 3000  # two pages through nextRecordsUrl
    counted = jsforce.call("query", token, soql=f"SELECT COUNT(Id) n FROM Contact WHERE SystemModstamp > {since}")
    assert counted["records"][0]["n"] == 700


def test_jsforce_query_all_pages_through_query_urls(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    sandbox.state.seed(contacts=2300, deleted_ratio=0.5)
    result = jsforce.call("query", sandbox.access_token(), soql="SELECT Id FROM Contact", scanAll=True)
    assert len(result["records"]) == 2300


def test_jsforce_sees_mixed_and_or_refused(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    soql = "SELECT Id FROM Contact WHERE Email = 'a' OR LastName = 'b' AND FirstName = 'c'"
    error = jsforce.error("query", sandbox.access_token(), soql=soql)
    assert error["errorCode"] == "MALFORMED_QUERY" and error["message"].endswith("unexpected token: 'AND'")


def test_jsforce_update_and_the_chunk_limit(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    token = sandbox.access_token()
    ids = [sandbox.state.add_record("Contact", f"u{n}@example.com") for n in range(250)]
    updates = [{"Id": i, "HasOptedOutOfEmail": True} for i in ids]
    results = jsforce.call("update", token, type="Contact", records=updates)
    assert [r["success"] for r in results] == [True] * 250  # two Collections calls (200 + 50)
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 250
    error = jsforce.error(
        "request", token, method="PATCH", path="composite/sobjects", body={"records": _alternating(sandbox, 11)}
    )
    assert error["errorCode"] == "INVALID_BATCH_REQUEST"


def test_jsforce_describe_identity_and_retrieve(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    token = sandbox.access_token()
    described = jsforce.call("describe", token, type="Lead")
    assert described["recordTypeInfos"][0]["master"] is True and described["childRelationships"] == []
    assert {f["name"] for f in described["fields"]} >= {"Name", "OwnerId", "SystemModstamp", "LastModifiedDate"}
    assert {s["name"] for s in jsforce.call("describeGlobal", token)["sobjects"]} == {"Contact", "Lead"}
    identity = jsforce.call("identity", token)
    assert identity["user_id"].startswith("005") and identity["organization_id"].startswith("00D")
    ids = [sandbox.state.add_record("Lead", f"r{n}@example.com") for n in range(3)]
    records = jsforce.call("retrieve", token, type="Lead", ids=ids, fields=["Id", "Email"])
    assert [r["Email"] for r in records] == ["r0@example.com", "r1@example.com", "r2@example.com"]
    assert jsforce.call("limits", token)["DailyApiRequests"]["Max"] > 0


def test_jsforce_bulk_ingest_line_ending_and_query(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    token = sandbox.access_token()
    ids = [sandbox.state.add_record("Contact", f"b{n}@example.com") for n in range(5)]
    crlf = "Id,HasOptedOutOfEmail\r\n" + "".join(f"{i},true\r\n" for i in ids)
    error = jsforce.error("bulkUpdate", token, type="Contact", csv=crlf, lineEnding="LF")
    assert LF_ERROR in error["message"]
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 0
    results = jsforce.call("bulkUpdate", token, type="Contact", csv=crlf, lineEnding="CRLF")
    assert len(results["successfulResults"]) == 5 and results["failedResults"] == []
    since = _since(sandbox, ids[0], -3600)
    rows = jsforce.call("bulkQuery", token, soql=f"SELECT Id, Name FROM Contact WHERE CreatedDate > {since}")
    assert sorted(r["Id"] for r in rows) == sorted(ids)
    listed = jsforce.call("request", token, method="GET", path="jobs/ingest")
    assert [j["state"] for j in listed["records"]].count("JobComplete") == 1


def test_jsforce_composite_and_batch(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    token = sandbox.access_token()
    contact = sandbox.state.add_record("Contact", "linus@example.com")
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "GET", "referenceId": "q",
             "url": "/services/data/v62.0/query?q=SELECT+Id+FROM+Contact+WHERE+Email='linus@example.com'"},
            {"method": "PATCH", "referenceId": "u", "url": "/services/data/v62.0/sobjects/Contact/@{q.records[0].Id}",
             "body": {"HasOptedOutOfEmail": True}},
        ],
    }  # fmt: skip
    answer = jsforce.call("request", token, method="POST", path="composite", body=body)
    assert [r["httpStatusCode"] for r in answer["compositeResponse"]] == [200, 204]
    assert sandbox.state.write_count(contact) == 1
    batch = {"batchRequests": [{"method": "GET", "url": f"v62.0/sobjects/Contact/{contact}?fields=Email"}]}
    result = jsforce.call("request", token, method="POST", path="composite/batch", body=batch)["results"][0]
    assert (result["statusCode"], result["result"]["Email"]) == (200, "linus@example.com")


def test_jsforce_jwt_login_with_exp_in_milliseconds(sandbox: SandboxHandle, jsforce: JsForce) -> None:
    claims = {
        "iss": sandbox.client_id,
        "sub": sandbox.jwt_username,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time() * 1000) + 300_000,  # as the sf CLI signs it
    }
    assertion = jwt.encode(claims, sandbox.jwt_private_key_pem, algorithm="RS256")
    login = jsforce.call("jwtLogin", "", assertion=assertion)
    assert login["instanceUrl"] == sandbox.url
    assert login["userInfo"]["id"].startswith("005") and login["username"] == sandbox.jwt_username

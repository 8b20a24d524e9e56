"""The sandbox answers as Salesforce documents it where clients differ from what this project's connector needs.

Each block is one point of issue 14: Bulk 2.0 line endings, JWT `exp`, the sObject Collections chunk limit, SOQL
AND/OR mixing, the fuller schema and describe, SOQL date/datetime literals and `SystemModstamp`, the endpoints other
clients call (identity, userinfo, `columns=true`, job lists, composite, retrieve-many), `queryAll` paging and the
small shapes of errors. Raw HTTPS here; tests/sandbox/test_sandbox_clients.py drives the same calls with real clients.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import time
from typing import Any

import jwt
import pytest
import requests

from tests.fixtures.sandbox import SandboxApi, SandboxHandle

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LF_ERROR = "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF"

# What real describe results always carry (the keys jsforce 3.10 declares for DescribeSObjectResult and Field).
OBJECT_KEYS = {
    "actionOverrides", "activateable", "childRelationships", "compactLayoutable", "createable", "custom",
    "customSetting", "deepCloneable", "deletable", "deprecatedAndHidden", "feedEnabled", "fields", "hasSubtypes",
    "isInterface", "isSubtype", "keyPrefix", "label", "labelPlural", "layoutable", "listviewable",
    "lookupLayoutable", "mergeable", "mruEnabled", "name", "namedLayoutInfos", "networkScopeFieldName", "queryable",
    "recordTypeInfos", "replicateable", "retrieveable", "searchLayoutable", "searchable", "supportedScopes",
    "triggerable", "undeletable", "updateable", "urls",
}  # fmt: skip
GLOBAL_KEYS = OBJECT_KEYS - {
    "actionOverrides", "childRelationships", "compactLayoutable", "fields", "listviewable", "lookupLayoutable",
    "namedLayoutInfos", "networkScopeFieldName", "recordTypeInfos", "searchLayoutable", "supportedScopes",
}  # fmt: skip
FIELD_KEYS = {
    "aggregatable", "autoNumber", "byteLength", "calculated", "calculatedFormula", "cascadeDelete", "caseSensitive",
    "compoundFieldName", "controllerName", "createable", "custom", "defaultValue", "defaultValueFormula",
    "defaultedOnCreate", "dependentPicklist", "deprecatedAndHidden", "digits", "displayLocationInDecimal",
    "encrypted", "externalId", "extraTypeInfo", "filterable", "filteredLookupInfo", "groupable", "highScaleNumber",
    "htmlFormatted", "idLookup", "inlineHelpText", "label", "length", "mask", "maskType", "name", "nameField",
    "namePointing", "nillable", "permissionable", "picklistValues", "precision", "queryByDistance",
    "referenceTargetField", "referenceTo", "relationshipName", "relationshipOrder", "restrictedDelete",
    "restrictedPicklist", "scale", "soapType", "sortable", "type", "unique", "updateable", "writeRequiresMasterRead",
}  # fmt: skip


def _wait(api: SandboxApi, path: str) -> dict[str, Any]:
    for _ in range(300):
        info = api.get(path).json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return dict(info)
        time.sleep(0.02)
    raise AssertionError(f"job {path} never finished")


def _error(response: requests.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and len(body) == 1, body
    return dict(body[0])


def _query(api: SandboxApi, soql: str) -> requests.Response:
    return api.get("query", params={"q": soql})


def _stamp(moment: dt.datetime) -> str:
    """A SOQL datetime literal (UTC)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str) -> dt.datetime:
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")


# --------------------------------------------------------------------------- 1: Bulk 2.0 line endings


def _ingest(api: SandboxApi, line_ending: str, data: str) -> dict[str, Any]:
    options = {"object": "Contact", "operation": "update", "contentType": "CSV", "lineEnding": line_ending}
    job = api.post("jobs/ingest", json=options).json()
    upload = api.put(f"jobs/ingest/{job['id']}/batches", data=data.encode(), headers={"Content-Type": "text/csv"})
    assert upload.status_code == 201
    assert api.patch(f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"}).status_code == 200
    return _wait(api, f"jobs/ingest/{job['id']}")


def test_ingest_job_declared_lf_fails_on_crlf_data_and_changes_nothing(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    contact = sandbox.state.add_record("Contact", "crlf@example.com")
    info = _ingest(sandbox_api, "LF", f"Id,HasOptedOutOfEmail\r\n{contact},true\r\n")
    assert (info["state"], info["errorMessage"]) == ("Failed", LF_ERROR)
    assert sandbox.state.write_count(contact) == 0
    assert (sandbox.state.get_record(contact) or {})["HasOptedOutOfEmail"] is False


def test_ingest_job_declared_crlf_accepts_crlf_data(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "crlf-ok@example.com")
    info = _ingest(sandbox_api, "CRLF", f"Id,HasOptedOutOfEmail\r\n{contact},true\r\n")
    assert (info["state"], info["numberRecordsProcessed"], info["numberRecordsFailed"]) == ("JobComplete", 1, 0)


def test_ingest_line_ending_check_ignores_crlf_inside_quoted_values(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    contact = sandbox.state.add_record("Contact", "quoted@example.com")
    info = _ingest(sandbox_api, "LF", f'Id,LastName\n{contact},"two\r\nlines"\n')
    assert info["state"] == "JobComplete", info
    assert (sandbox.state.get_record(contact) or {})["LastName"] == "two\r\nlines"


# --------------------------------------------------------------------------- 2: JWT exp


def _jwt(sandbox: SandboxHandle, exp: float) -> requests.Response:
    claims = {"iss": sandbox.client_id, "sub": sandbox.jwt_username, "aud": "https://login.salesforce.com", "exp": exp}
    assertion = jwt.encode(claims, sandbox.jwt_private_key_pem, algorithm="RS256")
    return sandbox.session().post(
        f"{sandbox.url}/services/oauth2/token", data={"grant_type": JWT_GRANT, "assertion": assertion}, timeout=30
    )


@pytest.mark.parametrize(
    "exp",
    [
        pytest.param(lambda: int(time.time() * 1000) + 300_000, id="milliseconds-as-sf-cli-signs"),
        pytest.param(lambda: int(time.time()) + 86_400, id="a-day-ahead"),
    ],
)
def test_jwt_exp_far_ahead_is_accepted_like_production(sandbox: SandboxHandle, exp: Any) -> None:
    response = _jwt(sandbox, exp())
    assert response.status_code == 200, response.text


def test_jwt_expired_exp_is_still_refused(sandbox: SandboxHandle) -> None:
    response = _jwt(sandbox, int(time.time()) - 3600)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


# --------------------------------------------------------------------------- 3: sObject Collections chunks


def _alternating(sandbox: SandboxHandle, chunks: int) -> list[dict[str, Any]]:
    records = []
    for n in range(chunks):
        sobject = "Contact" if n % 2 == 0 else "Lead"
        record_id = sandbox.state.add_record(sobject, f"chunk{n}@example.com")
        records.append({"attributes": {"type": sobject}, "id": record_id, "HasOptedOutOfEmail": True})
    return records


def test_collections_refuse_more_than_ten_type_chunks(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    records = _alternating(sandbox, 11)
    error = _error(sandbox_api.patch("composite/sobjects", json={"allOrNone": False, "records": records}))
    assert error["errorCode"] == "INVALID_BATCH_REQUEST"
    assert "more than 10 chunks" in error["message"]
    assert sum(sandbox.state.writes.values()) == 0


def test_collections_accept_ten_type_chunks(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    records = _alternating(sandbox, 10)
    response = sandbox_api.patch("composite/sobjects", json={"allOrNone": False, "records": records})
    assert response.status_code == 200
    assert [r["success"] for r in response.json()] == [True] * 10


# --------------------------------------------------------------------------- 4: SOQL AND/OR mixing


@pytest.mark.parametrize(
    ("where", "token"),
    [
        ("Email = 'a' AND LastName = 'b' OR FirstName = 'c'", "OR"),
        ("Email = 'a' OR LastName = 'b' AND FirstName = 'c'", "AND"),
    ],
)
def test_soql_mixing_and_or_without_parentheses_is_malformed(sandbox_api: SandboxApi, where: str, token: str) -> None:
    soql = f"SELECT Id FROM Contact WHERE {where}"
    error = _error(_query(sandbox_api, soql))
    assert error["errorCode"] == "MALFORMED_QUERY"
    column = soql.index(f" {token} ") + 1
    assert error["message"] == (
        f"\n{soql}\n{' ' * column}^\nERROR at Row:1:Column:{column + 1}\nunexpected token: '{token}'"
    )


def test_soql_mixing_and_or_with_parentheses_is_fine(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.add_record("Contact", "a@example.com", fields={"LastName": "b"})
    sandbox.state.add_record("Contact", "x@example.com", fields={"FirstName": "c"})
    sandbox.state.add_record("Contact", "y@example.com")
    soql = "SELECT Email FROM Contact WHERE (Email = 'a@example.com' AND LastName = 'b') OR FirstName = 'c'"
    response = _query(sandbox_api, soql)
    assert response.status_code == 200, response.text
    assert sorted(r["Email"] for r in response.json()["records"]) == ["a@example.com", "x@example.com"]


# --------------------------------------------------------------------------- 5: schema and describe


@pytest.mark.parametrize("sobject", ["Contact", "Lead"])
def test_describe_carries_every_key_real_describe_returns(sandbox_api: SandboxApi, sobject: str) -> None:
    body = sandbox_api.get(f"sobjects/{sobject}/describe").json()
    assert set(body) >= OBJECT_KEYS, OBJECT_KEYS - set(body)
    for field in body["fields"]:
        assert set(field) >= FIELD_KEYS, (field["name"], FIELD_KEYS - set(field))
    master = body["recordTypeInfos"][0]
    assert (master["master"], master["name"], master["recordTypeId"]) == (True, "Master", "012000000000000AAA")
    fields = {f["name"]: f for f in body["fields"]}
    wanted = {"Name", "OwnerId", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
              "SystemModstamp"} | ({"AccountId"} if sobject == "Contact" else set())  # fmt: skip
    assert wanted <= set(fields)
    assert ("AccountId" in fields) == (sobject == "Contact")
    assert (fields["Name"]["nameField"], fields["Name"]["updateable"]) == (True, False)
    assert [f for f, d in fields.items() if d["nameField"]] == ["Name"]
    owner = fields["OwnerId"]
    assert (owner["type"], owner["relationshipName"], owner["soapType"]) == ("reference", "Owner", "tns:ID")
    stamp = fields["SystemModstamp"]
    assert (stamp["type"], stamp["soapType"], stamp["updateable"], stamp["filterable"]) == (
        "datetime", "xsd:dateTime", False, True,
    )  # fmt: skip
    assert fields["Email"]["groupable"] is True and fields["HasOptedOutOfEmail"]["groupable"] is True


def test_describe_global_entries_carry_global_keys(sandbox_api: SandboxApi) -> None:
    body = sandbox_api.get("sobjects").json()
    for entry in body["sobjects"]:
        assert set(entry) >= GLOBAL_KEYS, GLOBAL_KEYS - set(entry)


def test_new_standard_fields_read_and_filter(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    names = {"FirstName": "Ada", "LastName": "Lovelace"}
    contact = sandbox.state.add_record("Contact", "ada@example.com", fields=names)
    soql = "SELECT Id, Name, OwnerId, AccountId, CreatedDate, SystemModstamp FROM Contact WHERE Name = 'ada lovelace'"
    records = _query(sandbox_api, soql).json()["records"]
    assert [r["Id"] for r in records] == [contact]
    record = records[0]
    assert (record["Name"], record["AccountId"]) == ("Ada Lovelace", None)
    assert record["OwnerId"].startswith("005") and len(record["OwnerId"]) == 18
    assert record["CreatedDate"] == record["SystemModstamp"]
    assert _parse(record["CreatedDate"]).tzinfo is not None
    readonly = sandbox_api.patch(f"sobjects/Contact/{contact}", json={"SystemModstamp": "2020-01-01T00:00:00.000Z"})
    assert _error(readonly)["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


# --------------------------------------------------------------------------- 6: dates, datetimes, COUNT(Id)


def test_every_api_write_moves_system_modstamp_and_last_modified_date(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    contact = sandbox.state.add_record("Contact", "stamp@example.com")
    before = sandbox.state.get_record(contact) or {}
    sandbox.state.advance_clock(60)
    assert sandbox_api.patch(f"sobjects/Contact/{contact}", json={"HasOptedOutOfEmail": True}).status_code == 204
    after = sandbox.state.get_record(contact) or {}
    assert after["CreatedDate"] == before["CreatedDate"]
    assert after["SystemModstamp"] == after["LastModifiedDate"]
    moved = _parse(after["SystemModstamp"]) - _parse(before["SystemModstamp"])
    assert dt.timedelta(seconds=59) < moved < dt.timedelta(seconds=3600)


def test_incremental_poll_by_system_modstamp_pages_every_changed_record(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    sandbox.state.seed(contacts=6000, opted_out_ratio=0.0, deleted_ratio=0.0)
    ids = sandbox.state.find_ids("Contact")
    sandbox.state.advance_clock(600)
    since = _parse((sandbox.state.get_record(ids[0]) or {})["SystemModstamp"]) + dt.timedelta(seconds=300)
    changed = ids[::2][:2500]
    for start in range(0, len(changed), 200):  # Collections writes (200 a call), in reverse ID order
        batch = list(reversed(changed))[start : start + 200]
        body = {"records": [{"attributes": {"type": "Contact"}, "id": i, "HasOptedOutOfEmail": True} for i in batch]}
        assert sandbox_api.patch("composite/sobjects", json=body).status_code == 200
    sandbox.state.advance_clock(1)
    sandbox.state.set_fields(ids[1], {"LastName": "Edited in the UI"})  # a user's edit moves the stamp too
    soql = (
        f"SELECT Id, HasOptedOutOfEmail, SystemModstamp FROM Contact WHERE SystemModstamp >= {_stamp(since)} "
        "ORDER BY SystemModstamp, Id"
    )
    page = _query(sandbox_api, soql).json()
    assert page["totalSize"] == 2501
    seen = list(page["records"])
    while not page["done"]:
        page = sandbox_api.get(sandbox.url + page["nextRecordsUrl"]).json()
        seen += page["records"]
    assert [r["Id"] for r in seen][-1] == ids[1]
    assert sorted(r["Id"] for r in seen[:-1]) == sorted(changed)
    keys = [(r["SystemModstamp"], r["Id"]) for r in seen]
    assert keys == sorted(keys)
    count = _query(sandbox_api, f"SELECT COUNT() FROM Contact WHERE SystemModstamp > {_stamp(since)}").json()
    assert count["totalSize"] == 2501


@pytest.mark.parametrize(
    ("literal", "matches"),
    [
        ("TODAY", True),
        ("LAST_N_DAYS:1", True),
        ("YESTERDAY", False),
    ],
)
def test_date_range_literals(sandbox_api: SandboxApi, sandbox: SandboxHandle, literal: str, matches: bool) -> None:
    contact = sandbox.state.add_record("Contact", "today@example.com")
    records = _query(sandbox_api, f"SELECT Id FROM Contact WHERE CreatedDate = {literal}").json()["records"]
    assert [r["Id"] for r in records] == ([contact] if matches else [])


@pytest.mark.parametrize(
    ("where", "matches"),
    [
        ("CreatedDate > 2001-01-01T00:00:00Z", True),
        ("CreatedDate > 2001-01-01T00:00:00.000+0000", True),
        ("CreatedDate < 2001-01-01T00:00:00-08:00", False),
        ("LastActivityDate = null", True),
        ("LastActivityDate < 2001-01-01", False),
        ("CreatedDate < LAST_N_DAYS:3", False),
        ("CreatedDate >= LAST_N_DAYS:3", True),
    ],
)
def test_datetime_and_date_literals(sandbox_api: SandboxApi, sandbox: SandboxHandle, where: str, matches: bool) -> None:
    contact = sandbox.state.add_record("Contact", "dt@example.com")
    response = _query(sandbox_api, f"SELECT Id FROM Contact WHERE {where}")
    assert response.status_code == 200, response.text
    assert [r["Id"] for r in response.json()["records"]] == ([contact] if matches else [])


@pytest.mark.parametrize(
    ("where", "code", "text"),
    [
        ("CreatedDate > '2001-01-01T00:00:00Z'", "INVALID_QUERY_FILTER_OPERATOR", "must be of type dateTime"),
        ("CreatedDate > 2001-13-01T00:00:00Z", "MALFORMED_QUERY", "2001-13-01T00:00:00Z"),
        ("Email = 2001-01-01T00:00:00Z", "INVALID_QUERY_FILTER_OPERATOR", "must be of type string"),
        ("CreatedDate = LAST_N_DAYS", "MALFORMED_QUERY", "LAST_N_DAYS"),
    ],
)
def test_bad_datetime_filters(sandbox_api: SandboxApi, where: str, code: str, text: str) -> None:
    error = _error(_query(sandbox_api, f"SELECT Id FROM Contact WHERE {where}"))
    assert error["errorCode"] == code and text in error["message"], error


def test_count_of_id_is_an_aggregate_result(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=30, opted_out_ratio=0.5, deleted_ratio=0.0)
    body = _query(sandbox_api, "SELECT COUNT(Id) FROM Contact WHERE HasOptedOutOfEmail = true").json()
    assert body == {
        "totalSize": 1, "done": True, "records": [{"attributes": {"type": "AggregateResult"}, "expr0": 15}],
    }  # fmt: skip
    aliased = _query(sandbox_api, "SELECT COUNT(Id) total FROM Contact").json()
    assert aliased["records"][0]["total"] == 30
    error = _error(_query(sandbox_api, "SELECT Email, COUNT(Id) FROM Contact"))
    assert error["errorCode"] == "MALFORMED_QUERY" and "Email" in error["message"]


# --------------------------------------------------------------------------- 7: endpoints other clients call


def _token(sandbox: SandboxHandle) -> dict[str, Any]:
    response = sandbox.session().post(
        f"{sandbox.url}/services/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
        timeout=30,
    )
    return dict(response.json())


def test_identity_url_from_the_token_answers_with_bearer_or_oauth_token(sandbox: SandboxHandle) -> None:
    token = _token(sandbox)
    http = sandbox.session()
    by_header = http.get(token["id"], headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=30)
    assert by_header.status_code == 200, by_header.text
    identity = by_header.json()
    assert identity["id"] == token["id"]
    assert (identity["organization_id"], identity["user_id"]) == tuple(token["id"].rsplit("/", 2)[1:])
    assert identity["username"] and identity["active"] is True
    assert identity["urls"]["rest"] == f"{sandbox.url}/services/data/v{{version}}/"
    by_param = http.get(token["id"], params={"format": "json", "oauth_token": token["access_token"], "version": "62.0"})
    assert by_param.status_code == 200
    assert by_param.json()["urls"]["query"] == f"{sandbox.url}/services/data/v62.0/query/"
    refused = http.get(token["id"], headers={"Authorization": "Bearer nope"}, timeout=30)
    assert (refused.status_code, refused.text) == (403, "Bad_OAuth_Token")


def test_userinfo_answers_for_the_token(sandbox: SandboxHandle) -> None:
    token = _token(sandbox)
    http = sandbox.session()
    response = http.get(
        f"{sandbox.url}/services/oauth2/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}
    )
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["sub"] == token["id"]
    assert {"user_id", "organization_id", "preferred_username", "name", "email", "urls", "active"} <= set(info)
    refused = http.get(f"{sandbox.url}/services/oauth2/userinfo", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 403


def test_resources_name_the_identity_url(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    resources = sandbox_api.get("").json()
    assert resources["identity"].startswith(f"{sandbox.url}/id/00D")
    for name in ("composite", "query", "queryAll", "sobjects", "limits", "jobs"):
        assert resources[name] == f"/services/data/v62.0/{name}"


def test_query_columns_true_describes_the_columns(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.add_record("Contact", "c@example.com")
    response = sandbox_api.get("query", params={"q": "SELECT Id, Email FROM Contact", "columns": "true"})
    assert response.status_code == 200
    body = response.json()
    assert (body["entityName"], body["groupBy"], body["idSelected"], body["keyPrefix"]) == (
        "Contact", False, True, "003",
    )  # fmt: skip
    assert [(c["columnName"], c["displayName"], c["aggregate"], c["joinColumns"]) for c in body["columnMetadata"]] == [
        ("Id", "Id", False, []), ("Email", "Email", False, []),
    ]  # fmt: skip
    counted = sandbox_api.get("query", params={"q": "SELECT COUNT(Id) FROM Contact", "columns": "true"}).json()
    assert [(c["columnName"], c["displayName"], c["aggregate"]) for c in counted["columnMetadata"]] == [
        ("expr0", "COUNT(Id)", True)
    ]


def test_job_lists(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    query_job = sandbox_api.post("jobs/query", json={"operation": "query", "query": "SELECT Id FROM Contact"}).json()
    ingest_job = sandbox_api.post("jobs/ingest", json={"object": "Lead", "operation": "update"}).json()
    ingest = sandbox_api.get("jobs/ingest")
    assert ingest.status_code == 200, ingest.text
    listed = ingest.json()
    assert (listed["done"], listed["nextRecordsUrl"]) == (True, None)
    assert [(j["id"], j["jobType"], j["object"]) for j in listed["records"]] == [(ingest_job["id"], "V2Ingest", "Lead")]
    queries = sandbox_api.get("jobs/query").json()
    assert [(j["id"], j["jobType"]) for j in queries["records"]] == [(query_job["id"], "V2Query")]


def test_composite_runs_subrequests_with_references(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "comp@example.com")
    v = "/services/data/v62.0"
    body = {
        "allOrNone": False,
        "compositeRequest": [
            {"method": "GET", "referenceId": "found",
             "url": f"{v}/query?q=SELECT+Id+FROM+Contact+WHERE+Email+=+'comp@example.com'"},
            {"method": "PATCH", "referenceId": "update",
             "url": f"{v}/sobjects/Contact/@{{found.records[0].Id}}", "body": {"HasOptedOutOfEmail": True}},
            {"method": "GET", "referenceId": "read", "url": f"{v}/sobjects/Contact/@{{found.records[0].Id}}"},
            {"method": "GET", "referenceId": "missing", "url": f"{v}/sobjects/Contact/003000000000000AAA"},
        ],
    }  # fmt: skip
    response = sandbox_api.post("composite", json=body)
    assert response.status_code == 200, response.text
    results = {r["referenceId"]: r for r in response.json()["compositeResponse"]}
    assert results["found"]["httpStatusCode"] == 200 and results["found"]["body"]["totalSize"] == 1
    assert (results["update"]["httpStatusCode"], results["update"]["body"]) == (204, None)
    assert results["read"]["body"]["HasOptedOutOfEmail"] is True
    assert results["missing"]["httpStatusCode"] == 404
    assert sandbox.state.write_count(contact) == 1


def test_composite_all_or_none_rolls_back_and_halts(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "aon@example.com")
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {"method": "PATCH", "referenceId": "ok", "url": f"/services/data/v62.0/sobjects/Contact/{contact}",
             "body": {"HasOptedOutOfEmail": True}},
            {"method": "PATCH", "referenceId": "bad", "url": f"/services/data/v62.0/sobjects/Contact/{contact}",
             "body": {"Bogus__c": True}},
        ],
    }  # fmt: skip
    results = sandbox_api.post("composite", json=body).json()["compositeResponse"]
    assert results[1]["httpStatusCode"] == 400 and results[1]["body"][0]["errorCode"] == "INVALID_FIELD"
    assert results[0]["body"][0]["errorCode"] == "PROCESSING_HALTED"
    assert (sandbox.state.get_record(contact) or {})["HasOptedOutOfEmail"] is False
    assert sandbox.state.write_count(contact) == 0


def test_composite_batch_runs_independent_subrequests(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "batch@example.com")
    body = {
        "haltOnError": False,
        "batchRequests": [
            {"method": "PATCH", "url": f"v62.0/sobjects/Contact/{contact}", "richInput": {"HasOptedOutOfEmail": True}},
            {"method": "GET", "url": "v62.0/sobjects/Contact/003000000000000AAA"},
            {"method": "GET", "url": "v62.0/limits"},
        ],
    }
    response = sandbox_api.post("composite/batch", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["hasErrors"] is True
    assert [r["statusCode"] for r in answer["results"]] == [204, 404, 200]
    assert answer["results"][2]["result"]["DailyApiRequests"]["Max"] > 0
    halted = sandbox_api.post("composite/batch", json={**body, "haltOnError": True}).json()
    assert [r["statusCode"] for r in halted["results"]] == [204, 404, 412]
    assert halted["results"][2]["result"][0]["errorCode"] == "BATCH_PROCESSING_HALTED"


def test_composite_limits(sandbox_api: SandboxApi) -> None:
    many = [{"method": "GET", "referenceId": f"r{n}", "url": "/services/data/v62.0/limits"} for n in range(26)]
    assert _error(sandbox_api.post("composite", json={"compositeRequest": many}))["errorCode"] == "INVALID_INPUT"
    batch = [{"method": "GET", "url": "v62.0/limits"}] * 26
    assert _error(sandbox_api.post("composite/batch", json={"batchRequests": batch}))["errorCode"] == "INVALID_INPUT"


def test_retrieve_many_by_post(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    one = sandbox.state.add_record("Contact", "one@example.com", opted_out=True)
    gone = sandbox.state.add_record("Contact", "gone@example.com", deleted=True)
    body = {"ids": [one[:15], "003000000000000AAA", gone], "fields": ["Id", "Email", "HasOptedOutOfEmail"]}
    response = sandbox_api.post("composite/sobjects/Contact", json=body)
    assert response.status_code == 200, response.text
    records = response.json()
    assert records[1:] == [None, None]
    assert records[0] == {
        "attributes": {"type": "Contact", "url": f"/services/data/v62.0/sobjects/Contact/{one}"},
        "Id": one, "Email": "one@example.com", "HasOptedOutOfEmail": True,
    }  # fmt: skip
    bad = sandbox_api.post("composite/sobjects/Contact", json={"ids": [one], "fields": ["Bogus__c"]})
    assert _error(bad)["errorCode"] == "INVALID_FIELD"


# --------------------------------------------------------------------------- 8 and 9: paging and error details


def test_query_all_next_records_url_is_a_query_url(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=2100, deleted_ratio=0.5)
    page = sandbox_api.get("queryAll", params={"q": "SELECT Id FROM Contact"}).json()
    assert page["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
    rest = sandbox_api.get(sandbox.url + page["nextRecordsUrl"]).json()
    assert len(page["records"]) + len(rest["records"]) == 2100 and rest["done"] is True


def test_bulk_error_without_fields_ends_with_colon_dashes(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    gone = sandbox.state.add_record("Contact", "gone@example.com", deleted=True)
    job = sandbox_api.post("jobs/ingest", json={"object": "Contact", "operation": "update"}).json()
    data = f"Id,HasOptedOutOfEmail\n{gone},true\n".encode()
    sandbox_api.put(f"jobs/ingest/{job['id']}/batches", data=data, headers={"Content-Type": "text/csv"})
    sandbox_api.patch(f"jobs/ingest/{job['id']}", json={"state": "UploadComplete"})
    _wait(sandbox_api, f"jobs/ingest/{job['id']}")
    failed = list(csv.reader(io.StringIO(sandbox_api.get(f"jobs/ingest/{job['id']}/failedResults/").text)))
    assert failed[1][1] == "ENTITY_IS_DELETED:entity is deleted:--"


def test_invalid_type_caret_points_at_the_object(sandbox_api: SandboxApi) -> None:
    soql = "SELECT Id FROM Account__x"
    error = _error(_query(sandbox_api, soql))
    column = soql.index("Account__x")
    assert error["message"].startswith(f"\n{soql}\n{' ' * column}^\nERROR at Row:1:Column:{column + 1}\n")


def test_malformed_query_quotes_the_token(sandbox_api: SandboxApi) -> None:
    error = _error(_query(sandbox_api, "SELECT Id FROM Contact WHERE"))
    assert error["message"].endswith("unexpected token: '<EOF>'")


def test_bulk_query_csv_writes_datetimes_in_zulu_form(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.add_record("Contact", "z@example.com")
    job = sandbox_api.post("jobs/query", json={"operation": "query", "query": "SELECT Id, CreatedDate FROM Contact"})
    _wait(sandbox_api, f"jobs/query/{job.json()['id']}")
    rows = list(csv.reader(io.StringIO(sandbox_api.get(f"jobs/query/{job.json()['id']}/results").text)))
    assert rows[0] == ["Id", "CreatedDate"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rows[1][1]), rows[1]

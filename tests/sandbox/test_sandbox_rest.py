"""Sandbox REST API over real HTTPS: describe, query paging, single-record PATCH, sObject Collections."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxApi, SandboxHandle

MARKETO = "ToutApp__Marketo_Sales_Opt_Out__c"


def _update(sobject: str, record_id: str, **fields: Any) -> dict[str, Any]:
    return {"attributes": {"type": sobject}, "id": record_id, **fields}


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(("sobject", "prefix"), [("Contact", "003"), ("Lead", "00Q")])
def test_describe_lists_opt_out_fields(sandbox_api: SandboxApi, sobject: str, prefix: str) -> None:
    response = sandbox_api.get(f"sobjects/{sobject}/describe")
    assert response.status_code == 200
    body = response.json()
    assert (body["name"], body["label"], body["keyPrefix"]) == (sobject, sobject, prefix)
    fields = {f["name"]: f for f in body["fields"]}
    opt_out = fields["HasOptedOutOfEmail"]
    assert (opt_out["label"], opt_out["type"], opt_out["updateable"], opt_out["custom"]) == (
        "Email Opt Out", "boolean", True, False,
    )  # fmt: skip
    marketo = fields[MARKETO]
    assert (marketo["label"], marketo["type"], marketo["updateable"], marketo["custom"]) == (
        "Marketo Sales Opt Out", "boolean", True, True,
    )  # fmt: skip
    assert {"Id", "FirstName", "LastName", "Email", "IsDeleted"} <= set(fields)
    assert ("IsConverted" in fields) == (sobject == "Lead")


def test_describe_reflects_field_configuration(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.configure_field("Contact", MARKETO, label="Marketo Sales Opt Out", updateable=False)
    sandbox.state.remove_field("Lead", MARKETO)
    contact = {f["name"]: f for f in sandbox_api.get("sobjects/Contact/describe").json()["fields"]}
    lead = {f["name"] for f in sandbox_api.get("sobjects/Lead/describe").json()["fields"]}
    assert contact[MARKETO]["updateable"] is False
    assert MARKETO not in lead
    sandbox.state.configure_field("Lead", "MSE_Opt_Out__c", label="MSE - Opt Out", hidden=True)
    lead = {f["name"] for f in sandbox_api.get("sobjects/Lead/describe").json()["fields"]}
    assert "MSE_Opt_Out__c" not in lead


def test_describe_unknown_object_is_404(sandbox_api: SandboxApi) -> None:
    response = sandbox_api.get("sobjects/Nope__c/describe")
    assert response.status_code == 404
    assert response.json() == [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


# --------------------------------------------------------------------------- query


def test_query_pages_with_next_records_url(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=4500, opted_out_ratio=1.0, deleted_ratio=0.0)
    first = sandbox_api.get("query", params={"q": "SELECT Id, Email FROM Contact WHERE HasOptedOutOfEmail = true"})
    assert first.status_code == 200
    page = first.json()
    assert (page["totalSize"], page["done"], len(page["records"])) == (4500, False, 2000)
    record = page["records"][0]
    assert set(record) == {"attributes", "Id", "Email"}
    assert record["attributes"] == {"type": "Contact", "url": f"/services/data/v62.0/sobjects/Contact/{record['Id']}"}
    assert len(record["Id"]) == 18
    seen = [r["Id"] for r in page["records"]]
    while not page["done"]:
        assert page["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
        page = sandbox_api.get(sandbox.url + page["nextRecordsUrl"]).json()
        seen += [r["Id"] for r in page["records"]]
    assert "nextRecordsUrl" not in page
    assert len(seen) == len(set(seen)) == 4500
    assert seen == sorted(seen)


def test_query_batch_size_header_is_clamped_to_200_2000(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=900, deleted_ratio=0.0)
    sizes = {}
    for asked in (300, 50, 5000):
        page = sandbox_api.get(
            "query", params={"q": "SELECT Id FROM Contact"}, headers={"Sforce-Query-Options": f"batchSize={asked}"}
        ).json()
        sizes[asked] = len(page["records"])
    assert sizes == {300: 300, 50: 200, 5000: 900}


def test_query_excludes_deleted_and_query_all_includes_them(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    live = sandbox.state.add_record("Contact", "live@example.com")
    gone = sandbox.state.add_record("Contact", "gone@example.com", deleted=True)
    ids = [r["Id"] for r in sandbox_api.get("query", params={"q": "SELECT Id FROM Contact"}).json()["records"]]
    assert ids == [live]
    everything = sandbox_api.get("queryAll", params={"q": "SELECT Id, IsDeleted FROM Contact"}).json()["records"]
    assert [(r["Id"], r["IsDeleted"]) for r in everything] == [(live, False), (gone, True)]


def test_query_count_and_lead_filters(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.add_record("Lead", "a@example.com", opted_out=True)
    sandbox.state.add_record("Lead", "b@example.com", opted_out=True, converted=True)
    sandbox.state.add_record("Lead", "c@example.com")
    soql = "SELECT COUNT() FROM Lead WHERE HasOptedOutOfEmail = true AND IsConverted = false"
    assert sandbox_api.get("query/", params={"q": soql}).json() == {"totalSize": 1, "done": True, "records": []}


def test_query_by_id_accepts_15_character_ids(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    one = sandbox.state.add_record("Contact", "one@example.com")
    sandbox.state.add_record("Contact", "two@example.com")
    soql = f"SELECT Id, Email FROM Contact WHERE Id IN ('{one[:15]}')"
    records = sandbox_api.get("query", params={"q": soql}).json()["records"]
    assert [(r["Id"], r["Email"]) for r in records] == [(one, "one@example.com")]


@pytest.mark.parametrize(
    ("soql", "code", "text"),
    [
        ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Id, Bogus__c FROM Contact", "INVALID_FIELD", "No such column 'Bogus__c' on entity 'Contact'"),
        ("SELECT Id FROM Account__x", "INVALID_TYPE", "sObject type 'Account__x' is not supported"),
        ("SELECT Id FROM Lead WHERE IsConverted = 'false'", "INVALID_QUERY_FILTER_OPERATOR", "boolean"),
    ],
)
def test_query_errors(sandbox_api: SandboxApi, soql: str, code: str, text: str) -> None:
    response = sandbox_api.get("query", params={"q": soql})
    assert response.status_code == 400
    body = response.json()
    assert len(body) == 1 and body[0]["errorCode"] == code
    assert text in body[0]["message"]


def test_query_hidden_field_is_invalid_field(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.configure_field("Contact", MARKETO, label="Marketo Sales Opt Out", hidden=True)
    response = sandbox_api.get("query", params={"q": f"SELECT Id FROM Contact WHERE {MARKETO} = true"})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_FIELD"


def test_query_without_q_and_bad_locator(sandbox_api: SandboxApi) -> None:
    assert sandbox_api.get("query").json()[0]["errorCode"] == "MALFORMED_QUERY"
    response = sandbox_api.get("query/01gRx0000000099IAA-2000")
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


# --------------------------------------------------------------------------- single-record PATCH


def test_single_update_sets_the_field_and_answers_204(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "p@example.com")
    response = sandbox_api.patch(f"sobjects/Contact/{contact[:15]}", json={"HasOptedOutOfEmail": True})
    assert response.status_code == 204
    assert response.content == b""
    record = sandbox.state.get_record(contact)
    assert record is not None and record["HasOptedOutOfEmail"] is True
    assert sandbox.state.write_count(contact) == 1
    fetched = sandbox_api.get(f"sobjects/Contact/{contact}").json()
    assert fetched["HasOptedOutOfEmail"] is True and fetched["Id"] == contact


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("deleted", 404, "ENTITY_IS_DELETED"),
        ("unknown", 404, "NOT_FOUND"),
        ("malformed", 404, "NOT_FOUND"),
        ("wrong_object", 400, "MALFORMED_ID"),
        ("converted", 400, "CANNOT_UPDATE_CONVERTED_LEAD"),
        ("locked", 400, "UNABLE_TO_LOCK_ROW"),
        ("bad_field", 400, "INVALID_FIELD"),
        ("readonly", 400, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ("not_boolean", 400, "JSON_PARSER_ERROR"),
    ],
)
def test_single_update_errors(
    sandbox_api: SandboxApi, sandbox: SandboxHandle, case: str, status: int, code: str
) -> None:
    state = sandbox.state
    sobject, body = "Contact", {"HasOptedOutOfEmail": True}
    record_id = state.add_record("Contact", "x@example.com")
    if case == "deleted":
        state.delete_record(record_id)
    elif case == "unknown":
        record_id = "003Rx0000009999"
    elif case == "malformed":
        record_id = "003-bad"
    elif case == "wrong_object":
        sobject = "Lead"
    elif case == "converted":
        sobject, record_id = "Lead", state.add_record("Lead", "l@example.com", converted=True)
    elif case == "locked":
        state.lock_records([record_id])
    elif case == "bad_field":
        body = {"Bogus__c": True}
    elif case == "readonly":
        body = {"IsDeleted": True}
    elif case == "not_boolean":
        body = {"HasOptedOutOfEmail": "yes"}
    response = sandbox_api.patch(f"sobjects/{sobject}/{record_id}", json=body)
    assert response.status_code == status
    errors = response.json()
    assert isinstance(errors, list) and errors[0]["errorCode"] == code
    assert "message" in errors[0]
    assert sum(state.writes.values()) == 0


def test_single_update_bad_json(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "j@example.com")
    response = sandbox_api.patch(
        f"sobjects/Contact/{contact}", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


# --------------------------------------------------------------------------- sObject Collections


def test_collections_results_in_request_order_with_per_record_errors(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    state = sandbox.state
    good = state.add_record("Contact", "good@example.com")
    deleted = state.add_record("Contact", "deleted@example.com", deleted=True)
    converted = state.add_record("Lead", "converted@example.com", converted=True)
    locked = state.add_record("Lead", "locked@example.com")
    lead = state.add_record("Lead", "lead@example.com")
    other_lead = state.add_record("Lead", "other@example.com")
    state.lock_records([locked])
    records = [
        _update("Contact", good[:15], HasOptedOutOfEmail=True),
        _update("Contact", deleted, HasOptedOutOfEmail=True),
        _update("Contact", "003Rx00000099ZZ", HasOptedOutOfEmail=True),
        _update("Contact", "003nonsense", HasOptedOutOfEmail=True),
        _update("Lead", converted, HasOptedOutOfEmail=True),
        _update("Lead", locked, HasOptedOutOfEmail=True),
        _update("Lead", lead, **{MARKETO: True}),
        _update("Contact", other_lead, HasOptedOutOfEmail=True),
    ]
    response = sandbox_api.patch("composite/sobjects", json={"allOrNone": False, "records": records})
    assert response.status_code == 200
    results = response.json()
    codes = [r["errors"][0]["statusCode"] if r["errors"] else None for r in results]
    assert codes == [
        None,
        "ENTITY_IS_DELETED",
        "INVALID_CROSS_REFERENCE_KEY",
        "MALFORMED_ID",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "UNABLE_TO_LOCK_ROW",
        None,
        "MALFORMED_ID",
    ]
    assert results[0] == {"id": good, "success": True, "errors": []}
    assert results[6] == {"id": lead, "success": True, "errors": []}
    failure = results[1]
    assert failure["success"] is False and "id" not in failure
    assert set(failure["errors"][0]) == {"statusCode", "message", "fields"}
    assert state.get_record(good)["HasOptedOutOfEmail"] is True  # type: ignore[index]
    lead_record = state.get_record(lead)
    assert lead_record is not None and lead_record[MARKETO] is True and lead_record["HasOptedOutOfEmail"] is False
    assert dict(state.writes) == {good: 1, lead: 1}


def test_collections_all_or_none_rolls_everything_back(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    good = state.add_record("Contact", "good@example.com")
    deleted = state.add_record("Contact", "deleted@example.com", deleted=True)
    records = [_update("Contact", good, HasOptedOutOfEmail=True), _update("Contact", deleted, HasOptedOutOfEmail=True)]
    results = sandbox_api.patch("composite/sobjects", json={"allOrNone": True, "records": records}).json()
    assert [r["errors"][0]["statusCode"] for r in results] == ["ALL_OR_NONE_OPERATION_ROLLED_BACK", "ENTITY_IS_DELETED"]
    assert not any(r["success"] for r in results)
    assert state.get_record(good)["HasOptedOutOfEmail"] is False  # type: ignore[index]
    assert state.write_count(good) == 0


def test_collections_cap_is_200_records(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=201, deleted_ratio=0.0, opted_out_ratio=0.0)
    ids = sandbox.state.find_ids("Contact")
    records = [_update("Contact", i, HasOptedOutOfEmail=True) for i in ids]
    response = sandbox_api.patch("composite/sobjects", json={"allOrNone": False, "records": records})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    assert sum(sandbox.state.writes.values()) == 0
    response = sandbox_api.patch("composite/sobjects", json={"allOrNone": False, "records": records[:200]})
    assert response.status_code == 200
    assert all(r["success"] for r in response.json())
    assert sandbox.state.count("Contact", HasOptedOutOfEmail=True) == 200


def test_collections_whole_request_errors(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "c@example.com")
    cases = [
        ({"records": [_update("Contact", contact, Bogus__c=True)]}, "INVALID_FIELD"),
        ({"records": [{"id": contact, "HasOptedOutOfEmail": True}]}, "INVALID_TYPE"),
        ({"records": [_update("Contact", contact, HasOptedOutOfEmail="true")]}, "JSON_PARSER_ERROR"),
        ({"allOrNone": "yes", "records": []}, "JSON_PARSER_ERROR"),
        ([], "JSON_PARSER_ERROR"),
    ]
    for body, code in cases:
        response = sandbox_api.patch("composite/sobjects", json=body)
        assert response.status_code == 400, body
        assert response.json()[0]["errorCode"] == code
    assert sandbox.state.write_count(contact) == 0


def test_collections_duplicate_ids_fail(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "c@example.com")
    records = [_update("Contact", contact, HasOptedOutOfEmail=True), _update("Contact", contact[:15], DoNotCall=True)]
    results = sandbox_api.patch("composite/sobjects", json={"records": records}).json()
    assert [r["errors"][0]["statusCode"] for r in results] == ["DUPLICATE_VALUE", "DUPLICATE_VALUE"]


def test_collections_hidden_or_readonly_marketo_field(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "c@example.com")
    sandbox.state.configure_field("Contact", MARKETO, label="Marketo Sales Opt Out", updateable=False)
    body = {"records": [_update("Contact", contact, **{MARKETO: True})]}
    result = sandbox_api.patch("composite/sobjects", json=body).json()[0]
    assert result["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert result["errors"][0]["fields"] == [MARKETO]
    sandbox.state.configure_field("Contact", MARKETO, label="Marketo Sales Opt Out", hidden=True)
    response = sandbox_api.patch("composite/sobjects", json=body)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "INVALID_FIELD"


def test_lock_faults_next_n_and_ratio(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.seed(contacts=100, deleted_ratio=0.0, opted_out_ratio=0.0)
    ids = sandbox.state.find_ids("Contact")
    sandbox.state.lock_next_writes(3)
    body = {"records": [_update("Contact", i, HasOptedOutOfEmail=True) for i in ids[:5]]}
    codes = [
        r["errors"][0]["statusCode"] if r["errors"] else "OK"
        for r in sandbox_api.patch("composite/sobjects", json=body).json()
    ]
    assert codes == ["UNABLE_TO_LOCK_ROW"] * 3 + ["OK"] * 2
    sandbox.state.set_lock_ratio(1.0)
    body = {"records": [_update("Contact", i, HasOptedOutOfEmail=True) for i in ids[5:10]]}
    assert not any(r["success"] for r in sandbox_api.patch("composite/sobjects", json=body).json())
    sandbox.state.set_lock_ratio(0.5)
    body = {"records": [_update("Contact", i, HasOptedOutOfEmail=True) for i in ids[10:100]]}
    locked = sum(not r["success"] for r in sandbox_api.patch("composite/sobjects", json=body).json())
    assert 0 < locked < 90


def test_json_bodies_need_the_json_content_type(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "c@example.com")
    response = sandbox_api.patch(
        f"sobjects/Contact/{contact}", data=b'{"HasOptedOutOfEmail": true}', headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()[0]["errorCode"] == "UNSUPPORTED_MEDIA_TYPE"
    assert sandbox.state.write_count(contact) == 0


def test_query_field_errors_point_at_the_column_like_salesforce(sandbox_api: SandboxApi) -> None:
    message = sandbox_api.get("query", params={"q": "SELECT Id, Bogus__c FROM Contact"}).json()[0]["message"]
    assert message.startswith("\nSELECT Id, Bogus__c FROM Contact\n           ^\nERROR at Row:1:Column:12\n")


def test_describe_global_lists_contact_and_lead(sandbox_api: SandboxApi) -> None:
    body = sandbox_api.get("sobjects").json()
    assert {(o["name"], o["keyPrefix"]) for o in body["sobjects"]} == {("Contact", "003"), ("Lead", "00Q")}

"""salesforce/matching.py query building, and the sandbox answering those queries (shared addresses, escapes, limit)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.salesforce.matching import (
    MAX_SOQL_LENGTH,
    REST_QUERY_MAX_ENCODED,
    all_with_email_soql,
    email_in_queries,
    email_in_soql,
    encoded_length,
    matching_field_problem,
    soql_string,
)
from unsubscribe_sync.sandbox.errors import ApiError
from unsubscribe_sync.sandbox.soql import parse


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("a@x.test", "'a@x.test'"),
        ("o'neil@x.test", "'o\\'neil@x.test'"),
        ("back\\slash@x.test", "'back\\\\slash@x.test'"),
        ("\\'@x.test", "'\\\\\\'@x.test'"),
        ('"q"@x.test', "'\\\"q\\\"@x.test'"),
    ],
)
def test_soql_string_escapes(value: str, literal: str) -> None:
    assert soql_string(value) == literal


@pytest.mark.parametrize("value", ["o'neil@x.test", "a\\b@x.test", "x\\'); DELETE@x.test", "' OR Email != null"])
def test_escaped_literal_parses_back_to_the_address(value: str) -> None:
    query = parse(email_in_soql("Contact", [value, "b@x.test"]))
    assert query.where is not None
    assert query.where.value == (value, "b@x.test")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ("Contact", "SELECT Id, Email FROM Contact WHERE Email IN ('a@x.test')"),
        ("Lead", "SELECT Id, Email FROM Lead WHERE Email IN ('a@x.test') AND IsConverted = false"),
    ],
)
def test_email_in_soql(obj: str, expected: str) -> None:
    assert email_in_soql(obj, ["a@x.test"]) == expected


def test_split_keeps_every_query_under_the_limit_and_every_address_once() -> None:
    addresses = [f"user{i}@example.test" for i in range(10_000)]
    queries = list(email_in_queries("Lead", addresses, max_chars=MAX_SOQL_LENGTH))
    assert all(len(q) <= MAX_SOQL_LENGTH for q in queries)
    assert len(queries) == 3
    seen = [v for q in queries for v in parse(q).where.items[0].value]  # type: ignore[union-attr]
    assert seen == addresses


def test_split_by_encoded_length() -> None:
    addresses = [f"o'n {i}@example.test" for i in range(2000)]
    queries = list(email_in_queries("Contact", addresses, max_chars=REST_QUERY_MAX_ENCODED, measure=encoded_length))
    assert all(encoded_length(q) <= REST_QUERY_MAX_ENCODED for q in queries)
    assert sum(len(parse(q).where.value) for q in queries) == 2000  # type: ignore[union-attr, arg-type]


def test_an_address_too_long_for_any_query_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        list(email_in_queries("Contact", ["a" * 200], max_chars=100))


def test_no_addresses_no_queries() -> None:
    assert list(email_in_queries("Contact", [])) == []


def test_all_with_email_soql() -> None:
    assert all_with_email_soql("Lead", "HasOptedOutOfEmail") == (
        "SELECT Id, Email, HasOptedOutOfEmail FROM Lead WHERE Email != null AND IsConverted = false"
    )


def test_sandbox_answers_shared_mixed_case_addresses_and_escapes(sandbox: SandboxHandle) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "Ann@Example.test")
    lead1 = state.add_record("Lead", "ann@example.TEST")
    lead2 = state.add_record("Lead", "ANN@EXAMPLE.TEST")
    state.add_record("Lead", "ann@example.test", converted=True)
    quoted = state.add_record("Contact", "o'ne\\il@example.test")
    api = sandbox.api()
    found: dict[str, set[str]] = {}
    for obj in ("Contact", "Lead"):
        soql = email_in_soql(obj, ["ann@example.test", "o'ne\\il@example.test", "nobody@example.test"])
        resp = api.get("query", params={"q": soql})
        assert resp.status_code == 200, resp.text
        found[obj] = {r["Id"] for r in resp.json()["records"]}
    assert found == {"Contact": {contact, quoted}, "Lead": {lead1, lead2}}


def test_sandbox_refuses_a_statement_over_100000_characters(sandbox: SandboxHandle) -> None:
    addresses = [f"user{i}@example.test" for i in range(5000)]
    soql = email_in_soql("Contact", addresses)
    assert len(soql) > MAX_SOQL_LENGTH
    resp = sandbox.api().post("jobs/query", json={"operation": "query", "query": soql})
    assert resp.status_code == 400
    assert resp.json() == [
        {"message": "SOQL statements cannot be longer than 100,000 characters.", "errorCode": "MALFORMED_QUERY"}
    ]
    with pytest.raises(ApiError, match="cannot be longer"):
        sandbox.state.query(soql, "62.0")


@pytest.mark.parametrize(
    ("obj", "describe", "problem"),
    [
        ("Contact", {"fields": [{"name": "Email", "filterable": True}]}, None),
        ("Lead", {"fields": [{"name": "Email", "filterable": True}]}, "Lead.IsConverted is not readable"),
        ("Lead", {"fields": [{"name": "Email"}, {"name": "IsConverted"}]}, None),
        ("Contact", {"fields": [{"name": "Email", "filterable": False}]}, "cannot be filtered"),
        ("Contact", {"fields": []}, "field-level security"),
        ("Contact", {"queryable": False, "fields": []}, "not queryable"),
        ("Contact", None, "not visible"),
    ],
)
def test_matching_field_problem(obj: str, describe: dict[str, Any] | None, problem: str | None) -> None:
    found = matching_field_problem(obj, describe)
    assert found is None if problem is None else (found is not None and problem in found)

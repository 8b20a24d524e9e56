"""Pure parts of the sandbox: IDs, the SOQL parser, query execution over a table, TLS files."""

from __future__ import annotations

import datetime as dt
import ssl
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography import x509

from unsubscribe_sync.sandbox.bulk import line_ending_problem
from unsubscribe_sync.sandbox.composite import resolve
from unsubscribe_sync.sandbox.errors import ApiError
from unsubscribe_sync.sandbox.ids import IdMinter, case_safe_suffix, normalize_id
from unsubscribe_sync.sandbox.schema import default_schemas
from unsubscribe_sync.sandbox.soql import BoolOp, Comparison, DateRange, Not, SoqlError, malformed_message, parse
from unsubscribe_sync.sandbox.store import Table, select
from unsubscribe_sync.sandbox.tls import ensure_tls_files
from unsubscribe_sync.sandbox.writes import type_chunks

# --------------------------------------------------------------------------- IDs


def test_case_safe_suffix_matches_the_documented_example() -> None:
    assert case_safe_suffix("a0RE000000IJmcN") == "MAT"
    assert normalize_id("a0RE000000IJmcN") == "a0RE000000IJmcNMAT"


def test_normalize_accepts_18_in_any_suffix_case_and_rejects_bad_ids() -> None:
    assert normalize_id("a0RE000000IJmcNMAT") == "a0RE000000IJmcNMAT"
    assert normalize_id("a0RE000000IJmcNmat") == "a0RE000000IJmcNMAT"
    assert normalize_id("a0RE000000IJmcNAAA") is None  # suffix does not match the case of the 15
    assert normalize_id("a0RE000000IJmc") is None
    assert normalize_id("a0RE000000IJmc-") is None
    assert normalize_id("") is None


def test_minted_ids_are_valid_increasing_and_the_same_one_by_one_or_in_bulk() -> None:
    bulk = IdMinter("003").mint_many(5000)
    single_minter = IdMinter("003")
    assert [single_minter.mint() for _ in range(5000)] == bulk
    assert bulk == sorted(bulk)
    assert len(set(bulk)) == 5000
    assert all(i.startswith("003") and len(i) == 18 and normalize_id(i[:15]) == i for i in bulk)


def test_bulk_minting_crosses_table_boundaries_consistently() -> None:
    for start in (3843, 62**3 * 62**2 - 2):  # low-digit wrap, middle-digit wrap
        a, b = IdMinter("00Q"), IdMinter("00Q")
        a.next_number = b.next_number = start
        assert a.mint_many(5) == [b.mint() for _ in range(5)]


# --------------------------------------------------------------------------- SOQL parser


def test_parse_select_where_order_limit() -> None:
    q = parse(
        "select Id, Email from Contact where HasOptedOutOfEmail = TRUE and Email != 'x\\'y' "
        "and Id > '003Rx0000000001' order by Id desc limit 10 offset 5"
    )
    assert q.sobject == "Contact"
    assert q.fields == ("Id", "Email")
    assert not q.count
    assert isinstance(q.where, BoolOp) and q.where.op == "AND"
    first, second, third = q.where.items
    assert first == Comparison("HasOptedOutOfEmail", "=", True, first.column)
    assert isinstance(second, Comparison) and second.op == "!=" and second.value == "x'y"
    assert isinstance(third, Comparison) and third.op == ">"
    assert q.order_by[0].field == "Id" and q.order_by[0].descending
    assert (q.limit, q.offset) == (10, 5)


def test_parse_count_in_not_or_and_parentheses() -> None:
    q = parse("SELECT COUNT() FROM Lead WHERE (IsConverted = false OR Email LIKE '%@x.com') AND NOT Id IN ('a','b')")
    assert q.count and q.fields == ()
    assert isinstance(q.where, BoolOp) and q.where.op == "AND"
    either, negated = q.where.items
    assert isinstance(either, BoolOp) and either.op == "OR"
    assert isinstance(negated, Not)
    assert isinstance(negated.item, Comparison) and negated.item.value == ("a", "b")


@pytest.mark.parametrize(
    "soql",
    [
        "SELECT FROM Contact",
        "SELECT Id Contact",
        "SELECT Id FROM Contact WHERE",
        "SELECT Id FROM Contact WHERE Email = ",
        "SELECT Id FROM Contact WHERE Email = 'unterminated",
        "SELECT Id FROM Contact LIMIT -1",
        "SELECT Id FROM Contact LIMIT 5 garbage",
        "SELECT Id, FROM Contact",
        "DELETE FROM Contact",
        "SELECT Id FROM Contact WHERE Email ~ 'x'",
    ],
)
def test_parse_rejects_malformed_queries(soql: str) -> None:
    with pytest.raises(SoqlError):
        parse(soql)


def test_malformed_message_points_at_the_column() -> None:
    soql = "SELECT Id FROM Contact WHERE"
    with pytest.raises(SoqlError) as caught:
        parse(soql)
    message = malformed_message(soql, caught.value)
    assert "ERROR at Row:1:Column:29" in message
    assert "unexpected token: '<EOF>'" in message


# --------------------------------------------------------------------------- query execution


@pytest.fixture
def contacts() -> Table:
    table = Table(default_schemas()["Contact"], IdMinter("003"))
    for n in range(10):
        table.append(
            {
                "Email": f"Person{n}@Example.com",
                "LastName": f"L{9 - n}",
                "HasOptedOutOfEmail": n % 3 == 0,
                "IsDeleted": n == 9,
            }
        )
    return table


def _emails(table: Table, soql: str, include_deleted: bool = False) -> list[str]:
    selection = select(table, parse(soql), include_deleted)
    return [table.columns["Email"][row] for row in selection.rows]


def test_select_uses_the_opted_out_index_and_hides_deleted_rows(contacts: Table) -> None:
    assert _emails(contacts, "SELECT Id FROM Contact WHERE HasOptedOutOfEmail = true") == [
        "Person0@Example.com",
        "Person3@Example.com",
        "Person6@Example.com",
    ]
    assert "Person9@Example.com" in _emails(contacts, "SELECT Id FROM Contact WHERE HasOptedOutOfEmail = true", True)


def test_select_string_comparison_is_case_insensitive(contacts: Table) -> None:
    assert _emails(contacts, "SELECT Id FROM Contact WHERE Email = 'person4@example.COM'") == ["Person4@Example.com"]
    assert _emails(contacts, "SELECT Id FROM Contact WHERE Email IN ('PERSON1@EXAMPLE.COM', 'nobody@x')") == [
        "Person1@Example.com"
    ]
    assert len(_emails(contacts, "SELECT Id FROM Contact WHERE Email LIKE 'person%'")) == 9


def test_select_keyset_paging_by_id(contacts: Table) -> None:
    third = contacts.ids[2]
    rows = _emails(contacts, f"SELECT Id FROM Contact WHERE Id > '{third[:15]}' ORDER BY Id LIMIT 3")
    assert rows == ["Person3@Example.com", "Person4@Example.com", "Person5@Example.com"]
    assert _emails(contacts, "SELECT Id FROM Contact ORDER BY Id DESC LIMIT 2") == [
        "Person8@Example.com",
        "Person7@Example.com",
    ]


def test_select_order_by_other_field_offset_or_not(contacts: Table) -> None:
    rows = _emails(contacts, "SELECT Id FROM Contact WHERE NOT HasOptedOutOfEmail = true ORDER BY LastName LIMIT 2")
    assert rows == ["Person8@Example.com", "Person7@Example.com"]
    rows = _emails(
        contacts, "SELECT Id FROM Contact WHERE Email = 'person1@example.com' OR Email = 'person2@example.com'"
    )
    assert rows == ["Person1@Example.com", "Person2@Example.com"]
    assert _emails(contacts, "SELECT Id FROM Contact ORDER BY Id LIMIT 5 OFFSET 7") == [
        "Person7@Example.com",
        "Person8@Example.com",
    ]


def test_select_count_and_15_character_id_literals(contacts: Table) -> None:
    selection = select(contacts, parse("SELECT COUNT() FROM Contact WHERE HasOptedOutOfEmail = false"))
    assert selection.count_only and len(selection.rows) == 6
    one = contacts.ids[4]
    assert _emails(contacts, f"SELECT Id FROM Contact WHERE Id IN ('{one[:15]}')") == ["Person4@Example.com"]


@pytest.mark.parametrize(
    ("soql", "code", "text"),
    [
        ("SELECT Nope__c FROM Contact", "INVALID_FIELD", "No such column 'Nope__c' on entity 'Contact'"),
        ("SELECT Id FROM Contact WHERE IsConverted = false", "INVALID_FIELD", "No such column 'IsConverted'"),
        ("SELECT Id FROM Contact WHERE HasOptedOutOfEmail = 'true'", "INVALID_QUERY_FILTER_OPERATOR", "boolean"),
        ("SELECT Id FROM Contact WHERE Id = 'not-an-id'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field"),
        ("SELECT Id, Id FROM Contact", "MALFORMED_QUERY", "duplicate field"),
    ],
)
def test_select_errors(contacts: Table, soql: str, code: str, text: str) -> None:
    with pytest.raises(ApiError) as caught:
        select(contacts, parse(soql))
    assert caught.value.error_code == code
    assert text in caught.value.message


def test_hidden_field_looks_missing(contacts: Table) -> None:
    schema = contacts.schema
    marketo = next(iter(schema.custom.values()))
    schema.set_custom(replace(marketo, hidden=True))
    with pytest.raises(ApiError) as caught:
        select(contacts, parse(f"SELECT {marketo.name} FROM Contact"))
    assert caught.value.error_code == "INVALID_FIELD"
    assert marketo.name not in [f["name"] for f in schema.describe("62.0")["fields"]]


# --------------------------------------------------------------------------- TLS


def test_tls_files_are_generated_once_and_cover_loopback(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path)
    first = files.cert_file.read_bytes()
    assert ensure_tls_files(tmp_path).cert_file.read_bytes() == first  # cached
    cert = x509.load_pem_x509_certificate(first)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o077 == 0
    context = files.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED


def test_tls_files_are_regenerated_when_broken(tmp_path: Path) -> None:
    files = ensure_tls_files(tmp_path)
    files.cert_file.write_text("garbage")
    ensure_tls_files(tmp_path)
    x509.load_pem_x509_certificate(files.cert_file.read_bytes())


# --------------------------------------------------------------------------- fidelity decisions (issue 14)


@pytest.mark.parametrize(
    ("text", "declared", "problem"),
    [
        ("Id,A\n1,x\n", "LF", False),
        ("Id,A\r\n1,x\r\n", "LF", True),
        ('Id,A\n1,"two\r\nlines"\n', "LF", False),
        ("Id,A\r\n1,x\r\n", "CRLF", False),
        ("Id,A\n1,x\n", "CRLF", True),
        ('Id,A\r\n1,"two\nlines"\r\n', "CRLF", False),
    ],
)
def test_line_ending_problem(text: str, declared: str, problem: bool) -> None:
    message = line_ending_problem(text, declared)
    assert (message is not None) == problem
    if message is not None:
        assert message.endswith(f"LineEnding is invalid on user data. Current LineEnding setting is {declared}")


@pytest.mark.parametrize(
    ("types", "chunks"),
    [
        ([], 0),
        (["Contact"] * 200, 1),
        (["Contact", "Contact", "Lead", "Contact"], 3),
        (["Contact", "Lead"] * 5, 10),
    ],
)
def test_type_chunks_count_runs_of_one_type(types: list[str], chunks: int) -> None:
    assert type_chunks(types) == chunks


@pytest.mark.parametrize(
    ("literal", "first", "after"),
    [
        (DateRange("TODAY"), "2026-12-03", "2026-12-04"),
        (DateRange("YESTERDAY"), "2026-12-02", "2026-12-03"),
        (DateRange("TOMORROW"), "2026-12-04", "2026-12-05"),
        (DateRange("LAST_N_DAYS", 7), "2026-11-26", "2026-12-04"),
        (DateRange("NEXT_N_DAYS", 2), "2026-12-04", "2026-12-06"),
        (DateRange("N_DAYS_AGO", 3), "2026-11-30", "2026-12-01"),
    ],
)
def test_date_range_days(literal: DateRange, first: str, after: str) -> None:
    start, end = literal.days(dt.date(2026, 12, 3))
    assert (start.isoformat(), end.isoformat()) == (first, after)


def test_stamp_log_finds_rows_stamped_since_even_when_set_back() -> None:
    clock = iter(["2026-01-01T00:00:00.000+0000"] * 3)
    table = Table(default_schemas()["Contact"], IdMinter("003"), lambda: next(clock))
    table.append_many(3, {"Email": ["a@x", "b@x", "c@x"]})
    table.set(2, "SystemModstamp", "2026-01-02T00:00:00.000+0000")
    table.set(0, "SystemModstamp", "2026-01-03T00:00:00.000+0000")
    table.set(2, "SystemModstamp", "2026-01-01T12:00:00.000+0000")  # set back: the old entry is stale
    assert table.rows_stamped_since("2026-01-01T06:00:00.000+0000", inclusive=True) == [0, 2]
    assert table.rows_stamped_since("2026-01-03T00:00:00.000+0000", inclusive=False) == []
    assert table.rows_stamped_since("2025-01-01T00:00:00.000+0000", inclusive=True) is None  # everything


def test_composite_references_resolve_paths_and_keep_json_types() -> None:
    results = {"q": {"records": [{"Id": "003A", "n": 2}]}}
    assert resolve("/x/@{q.records[0].Id}/y", results) == "/x/003A/y"
    assert resolve({"count": "@{q.records[0].n}"}, results) == {"count": 2}
    with pytest.raises(ApiError):
        resolve("@{q.records[1].Id}", results)

"""Unit tests of the connector's pure parts: ID normaliser, error classifier, retry pause, field rules."""

from __future__ import annotations

import pytest

from unsubscribe_sync.api.spec import OptOutTarget
from unsubscribe_sync.salesforce.client import opted_out_soql
from unsubscribe_sync.salesforce.errors import classify, retry_delay
from unsubscribe_sync.salesforce.fields import evaluate_fields
from unsubscribe_sync.salesforce.ids import InvalidSalesforceId, normalize_id, object_for_id
from unsubscribe_sync.salesforce.types import ErrorClass

# ---------------------------------------------------------------- IDs


def test_documented_example_15_to_18() -> None:
    assert normalize_id("a0RE000000IJmcN") == "a0RE000000IJmcNMAT"


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        ("003000000000000", "003000000000000AAA"),  # no letters at all
        ("00QABCDE0000000", "00QABCDE00000002HA"),  # chunk 1 bits 2,3,4 = 28 -> "2"; chunk 2 bits 0,1,2 = 7 -> "H"
        ("001zzzzzZZZZZzz", "001zzzzzZZZZZzzAYH"),  # chunk 2 bits 3,4 = 24 -> "Y"; chunk 3 bits 0,1,2 -> "H"
    ],
)
def test_15_to_18(id15: str, id18: str) -> None:
    assert normalize_id(id15) == id18


def test_18_with_matching_suffix_is_returned_unchanged() -> None:
    assert normalize_id("a0RE000000IJmcNMAT") == "a0RE000000IJmcNMAT"
    assert normalize_id("a0RE000000IJmcNmat") == "a0RE000000IJmcNMAT", "suffix case does not matter"


def test_case_folded_18_is_restored_from_its_suffix() -> None:
    assert normalize_id("a0re000000ijmcnmat") == "a0RE000000IJmcNMAT"
    assert normalize_id("A0RE000000IJMCNMAT") == "a0RE000000IJmcNMAT"


def test_wrong_suffix_on_mixed_case_is_rejected() -> None:
    with pytest.raises(InvalidSalesforceId, match="does not match"):
        normalize_id("a0RE000000IJmcNAAA")


def test_suffix_that_marks_a_digit_upper_case_is_rejected() -> None:
    # all lower case, but suffix "B" in chunk 1 claims character 1 ("0") is upper case
    with pytest.raises(InvalidSalesforceId, match="does not match"):
        normalize_id("a0re000000ijmcnCAT")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "15 or 18"),
        ("003000", "15 or 18"),
        ("0030000000000000", "15 or 18"),
        ("003000000000000-", "15 or 18"),
        ("00300000000000!", "characters"),
        ("00300000000000\u00e9", "characters"),
        ("00300000000000 ", "characters"),
        ("003000000000000AA9", "suffix"),
    ],
)
def test_invalid_ids_are_rejected_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidSalesforceId, match=reason):
        normalize_id(value)


def test_invalid_id_is_a_value_error() -> None:
    assert issubclass(InvalidSalesforceId, ValueError)


def test_object_for_id() -> None:
    assert object_for_id("003000000000000AAA", ["Contact", "Lead"]) == "Contact"
    assert object_for_id("00Q000000000000AAA", ["Contact", "Lead"]) == "Lead"


def test_object_for_id_names_unknown_and_unconfigured_prefixes() -> None:
    with pytest.raises(InvalidSalesforceId, match="'001'"):
        object_for_id("001000000000000AAA", ["Contact", "Lead"])
    with pytest.raises(InvalidSalesforceId, match=r"'00Q'.*Lead.*not a configured object"):
        object_for_id("00Q000000000000AAA", ["Contact"])


# ---------------------------------------------------------------- classifier


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("UNABLE_TO_LOCK_ROW", None, ErrorClass.TRANSIENT),
        ("SERVER_UNAVAILABLE", 503, ErrorClass.TRANSIENT),
        ("INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE", None, ErrorClass.TRANSIENT),
        ("REQUEST_LIMIT_EXCEEDED", 403, ErrorClass.RATE_LIMITED),
        ("INVALID_SESSION_ID", 401, ErrorClass.REAUTH),
        ("ENTITY_IS_DELETED", None, ErrorClass.PERMANENT),
        ("NOT_FOUND", 404, ErrorClass.PERMANENT),
        ("MALFORMED_ID", 400, ErrorClass.PERMANENT),
        ("CANNOT_UPDATE_CONVERTED_LEAD", None, ErrorClass.PERMANENT),
        ("ENTITY_IS_LOCKED", None, ErrorClass.PERMANENT),
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", None, ErrorClass.PERMANENT),
        ("FIELD_INTEGRITY_EXCEPTION", None, ErrorClass.PERMANENT),
        ("INSUFFICIENT_ACCESS_OR_READONLY", None, ErrorClass.PERMANENT),
        ("INVALID_FIELD", 400, ErrorClass.CONFIGURATION),
        ("INVALID_FIELD_FOR_INSERT_UPDATE", None, ErrorClass.CONFIGURATION),
        ("SOMETHING_NEW", 500, ErrorClass.TRANSIENT),
        ("SOMETHING_NEW", 502, ErrorClass.TRANSIENT),
        ("SOMETHING_NEW", 400, ErrorClass.PERMANENT),
        ("SOMETHING_NEW", None, ErrorClass.PERMANENT),
        (None, 503, ErrorClass.TRANSIENT),
        (None, 429, ErrorClass.RATE_LIMITED),
        (None, 400, ErrorClass.PERMANENT),
        (None, None, ErrorClass.PERMANENT),
        ("unable_to_lock_row", None, ErrorClass.TRANSIENT),
    ],
)
def test_classify(code: str | None, status: int | None, expected: ErrorClass) -> None:
    assert classify(code, status) is expected


def test_retry_delay_grows_and_is_capped() -> None:
    low = [retry_delay(ErrorClass.TRANSIENT, n, rand=lambda: 0.0) for n in range(1, 20)]
    high = [retry_delay(ErrorClass.TRANSIENT, n, rand=lambda: 1.0) for n in range(1, 20)]
    assert low[0] == 0.5 and high[0] == 1.0
    assert low == sorted(low) and high == sorted(high)
    assert high[-1] == 300.0 and low[-1] == 150.0


def test_retry_delay_is_longer_for_rate_limits() -> None:
    for attempt in range(1, 6):
        assert retry_delay(ErrorClass.RATE_LIMITED, attempt, rand=lambda: 0.0) > retry_delay(
            ErrorClass.TRANSIENT, attempt, rand=lambda: 1.0
        )


def test_retry_delay_jitter_spreads_within_bounds() -> None:
    values = {retry_delay(ErrorClass.TRANSIENT, 3) for _ in range(50)}
    assert len(values) > 1
    assert all(2.0 <= v <= 4.0 for v in values)


def test_permanent_errors_have_no_retry_delay() -> None:
    with pytest.raises(ValueError, match="not retried"):
        retry_delay(ErrorClass.PERMANENT, 1)
    with pytest.raises(ValueError, match="attempt"):
        retry_delay(ErrorClass.TRANSIENT, 0)


# ---------------------------------------------------------------- SOQL


def test_opted_out_soql() -> None:
    assert opted_out_soql("Contact", "HasOptedOutOfEmail") == (
        "SELECT Id, Email FROM Contact WHERE HasOptedOutOfEmail = true"
    )
    assert (
        opted_out_soql("Lead", "X__c", count=True)
        == "SELECT COUNT() FROM Lead WHERE X__c = true AND IsConverted = false"
    )


@pytest.mark.parametrize("bad", ["Contact WHERE", "x'; --", "", "1abc"])
def test_opted_out_soql_refuses_names_that_are_not_identifiers(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid Salesforce"):
        opted_out_soql(bad, "HasOptedOutOfEmail")
    with pytest.raises(ValueError, match="invalid Salesforce"):
        opted_out_soql("Contact", bad)


# ---------------------------------------------------------------- field rules


def _f(name: str, label: str, *, type_: str = "boolean", updateable: bool = True, custom: bool = True) -> dict:
    return {"name": name, "label": label, "type": type_, "updateable": updateable, "custom": custom}


STD = _f("HasOptedOutOfEmail", "Email Opt Out", custom=False)


def _describe(*fields: dict) -> dict:
    return {"name": "X", "fields": [_f("Id", "Record ID", type_="id", updateable=False, custom=False), *fields]}


def test_email_opt_out_ok_on_every_object() -> None:
    report = evaluate_fields(
        "EmailOptOut", None, {"Contact": _describe(STD), "Lead": _describe(STD)}, ["Contact", "Lead"]
    )
    assert report.ok and report.field == "HasOptedOutOfEmail" and report.problems() == []


def test_email_opt_out_hidden_on_one_object_names_it_and_mentions_fls() -> None:
    report = evaluate_fields("EmailOptOut", None, {"Contact": _describe(STD), "Lead": _describe()}, ["Contact", "Lead"])
    assert not report.ok and report.field is None
    assert report.objects["Contact"].ok
    (problem,) = report.problems()
    assert problem.startswith("Lead: ") and "HasOptedOutOfEmail" in problem and "field-level security" in problem


def test_not_updateable_and_not_boolean() -> None:
    ro = _f("HasOptedOutOfEmail", "Email Opt Out", updateable=False, custom=False)
    text = _f("HasOptedOutOfEmail", "Email Opt Out", type_="string", custom=False)
    report = evaluate_fields(
        "EmailOptOut", None, {"Contact": _describe(ro), "Lead": _describe(text)}, ["Contact", "Lead"]
    )
    assert "not updateable" in report.objects["Contact"].problem  # type: ignore[operator]
    assert "not boolean" in report.objects["Lead"].problem  # type: ignore[operator]


def test_missing_object() -> None:
    report = evaluate_fields("EmailOptOut", None, {"Contact": _describe(STD), "Lead": None}, ["Contact", "Lead"])
    assert report.problems() == ["Lead: object Lead not found or not visible to the integration user"]


def test_configured_marketo_field() -> None:
    m = _f("ToutApp__Opt_Out__c", "Something Else")
    report = evaluate_fields(
        OptOutTarget.MARKETO_SALES_OPT_OUT, "ToutApp__Opt_Out__c", {"Contact": _describe(STD, m)}, ["Contact"]
    )
    assert report.field == "ToutApp__Opt_Out__c"


@pytest.mark.parametrize("label", ["Marketo Sales Opt Out", "MSE - Opt Out"])
def test_marketo_field_discovered_by_each_label(label: str) -> None:
    d = _describe(STD, _f("ToutApp__MSE_Opt_Out__c", label))
    report = evaluate_fields("MarketoSalesOptOut", None, {"Contact": d, "Lead": d}, ["Contact", "Lead"])
    assert report.ok and report.field == "ToutApp__MSE_Opt_Out__c"


def test_marketo_label_on_a_standard_field_does_not_count() -> None:
    d = _describe(_f("Marketo_Std", "Marketo Sales Opt Out", custom=False))
    report = evaluate_fields("MarketoSalesOptOut", None, {"Contact": d}, ["Contact"])
    assert not report.ok and "no custom field labelled" in report.problems()[0]


def test_marketo_field_missing_on_one_object() -> None:
    d = _describe(STD, _f("ToutApp__MSE_Opt_Out__c", "MSE - Opt Out"))
    report = evaluate_fields("MarketoSalesOptOut", None, {"Contact": d, "Lead": _describe(STD)}, ["Contact", "Lead"])
    assert report.objects["Contact"].ok and not report.objects["Lead"].ok
    assert "Lead" in report.problems()[0] and "field-level security" in report.problems()[0]


def test_marketo_field_not_updateable() -> None:
    d = _describe(_f("M__c", "Marketo Sales Opt Out", updateable=False))
    report = evaluate_fields("MarketoSalesOptOut", None, {"Contact": d}, ["Contact"])
    assert "M__c on Contact is not updateable" in report.problems()[0]


def test_marketo_field_with_different_names_on_objects() -> None:
    report = evaluate_fields(
        "MarketoSalesOptOut",
        None,
        {"Contact": _describe(_f("A__c", "MSE - Opt Out")), "Lead": _describe(_f("B__c", "MSE - Opt Out"))},
        ["Contact", "Lead"],
    )
    assert not report.ok and report.field is None
    assert "different API names" in report.problems()[0] and "A__c" in report.problems()[0]


def test_marketo_field_ambiguous_on_one_object() -> None:
    d = _describe(_f("A__c", "MSE - Opt Out"), _f("B__c", "Marketo Sales Opt Out"))
    report = evaluate_fields("MarketoSalesOptOut", None, {"Contact": d}, ["Contact"])
    assert "several custom fields" in report.problems()[0]


def test_marketo_usable_field_preferred_over_a_read_only_twin() -> None:
    d = _describe(_f("A__c", "MSE - Opt Out", updateable=False), _f("B__c", "Marketo Sales Opt Out"))
    report = evaluate_fields("MarketoSalesOptOut", None, {"Contact": d}, ["Contact"])
    assert report.field == "B__c"

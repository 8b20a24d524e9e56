"""Validation of webhook bodies (pure): every problem named, items normalised."""

from __future__ import annotations

from typing import Any

import pytest

from unsubscribe_sync.worker.validation import InvalidRequest, parse_resubscribes, parse_rfc3339, parse_unsubscribes

OBJECTS = ["Contact", "Lead"]


def problems(body: Any, objects: list[str] = OBJECTS) -> list[tuple[int | None, str]]:
    with pytest.raises(InvalidRequest) as info:
        parse_unsubscribes(body, objects)
    return [(p.index, p.field) for p in info.value.details]


def test_single_object_and_batch() -> None:
    [one] = parse_unsubscribes({"email": " Ann@Example.COM ", "salesforceId": "003000000000001"}, OBJECTS)
    assert one.email == "ann@example.com"
    assert one.salesforce_id == "003000000000001AAA" and one.object == "Contact"
    assert one.source == "webhook" and one.event_id is None
    batch = parse_unsubscribes(
        {
            "unsubscribes": [
                {"email": "a@example.com", "salesforceId": "00Q000000000001", "source": "sequences", "eventId": "e1"},
                {"email": "b@example.com", "occurredAt": "2024-05-01T12:00:00+02:00"},
            ]
        },
        OBJECTS,
    )
    assert [b.object for b in batch] == ["Lead", None]
    assert batch[0].source == "sequences" and batch[0].event_id == "e1"
    assert batch[1].occurred_at == parse_rfc3339("2024-05-01T10:00:00Z")


def test_fifteen_character_ids_are_normalised() -> None:
    [item] = parse_unsubscribes({"email": "a@example.com", "salesforceId": "003RE00000IJmcN"}, OBJECTS)
    assert item.salesforce_id == "003RE00000IJmcN" + item.salesforce_id[15:] and len(item.salesforce_id) == 18


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"email": 42}, "email"),
        ({"email": "a@example.com", "salesforceId": "001000000000001"}, "salesforceId"),  # Account prefix
        ({"email": "a@example.com", "salesforceId": "003000000001"}, "salesforceId"),  # 12 chars
        ({"email": "a@example.com", "salesforceId": "003000000000001-AB"}, "salesforceId"),
        ({"email": "a@example.com", "salesforceId": ""}, "salesforceId"),
        ({"email": "a@example.com", "salesforceId": 3}, "salesforceId"),
        ({"email": "a@example.com", "occurredAt": "2024-05-01"}, "occurredAt"),
        ({"email": "a@example.com", "occurredAt": "2024-05-01T12:00:00"}, "occurredAt"),  # no offset
        ({"email": "a@example.com", "occurredAt": "yesterday"}, "occurredAt"),
        ({"email": "a@example.com", "occurredAt": "2024-13-01T12:00:00Z"}, "occurredAt"),
        ({"email": "a@example.com", "source": ""}, "source"),
        ({"email": "a@example.com", "eventId": ["x"]}, "eventId"),
        ({"email": "a@example.com", "salesforceID": "003000000000001"}, "salesforceID"),  # unknown field
    ],
)
def test_invalid_items_name_the_field(item: dict[str, Any], field: str) -> None:
    assert (0, field) in problems(item)


def test_lead_ids_are_refused_when_only_contacts_are_configured() -> None:
    assert problems({"email": "a@example.com", "salesforceId": "00Q000000000001"}, ["Contact"]) == [(0, "salesforceId")]


def test_every_bad_item_of_a_batch_is_reported() -> None:
    body = {"unsubscribes": [{"email": "ok@example.com"}, {"email": "bad"}, "text", {"email": "x@y.io", "z": 1}]}
    assert problems(body) == [(1, "email"), (2, ""), (3, "z")]


@pytest.mark.parametrize(
    "body",
    [
        [{"email": "a@example.com"}],
        "a@example.com",
        {"unsubscribes": []},
        {"unsubscribes": {}},
        {"unsubscribes": [], "x": 1},
    ],
)
def test_bad_shapes(body: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse_unsubscribes(body, OBJECTS)


def test_at_most_1000_items() -> None:
    parse_unsubscribes({"unsubscribes": [{"email": f"u{i}@example.com"} for i in range(1000)]}, OBJECTS)
    with pytest.raises(InvalidRequest, match="at most 1000"):
        parse_unsubscribes({"unsubscribes": [{"email": f"u{i}@example.com"} for i in range(1001)]}, OBJECTS)


def test_every_rfc_5321_address_is_accepted_in_its_one_form() -> None:
    """No special-use-domain rules: Salesforce holds such addresses, and a suppression list must take them."""
    items = parse_unsubscribes(
        {
            "unsubscribes": [
                {"email": "a@corp.local"},
                {"email": "a@localhost"},
                {"email": "Jane@Bücher.de"},
                {"email": "jane@xn--bcher-kva.de"},
                {"email": '"john doe"@[192.0.2.1]'},
            ]
        },
        OBJECTS,
    )
    assert [i.email for i in items] == [
        "a@corp.local",
        "a@localhost",
        "jane@xn--bcher-kva.de",
        "jane@xn--bcher-kva.de",
        '"john doe"@[192.0.2.1]',
    ]


HOSTILE = {
    "a lone surrogate": "\ud800",
    "a lone low surrogate": "\udfff",
    "NUL": "\x00",
    "an escape character": "\x1b",
    "a C1 control": "\x85",
    "a line separator": "\u2028",
}
UNSUBSCRIBE_TEXT_FIELDS = ("email", "source", "eventId")
RESUBSCRIBE_TEXT_FIELDS = ("email", "requestedBy", "reason", "eventId")
RESUB = {"email": "a@example.com", "requestedBy": "jane.admin", "reason": "asked again", "eventId": "r-1"}


@pytest.mark.parametrize("char", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("field", UNSUBSCRIBE_TEXT_FIELDS)
def test_hostile_characters_in_any_unsubscribe_field_are_refused_naming_it(char: str, field: str) -> None:
    good = {"email": "a@example.com", "source": "sequence", "eventId": "e-1"}
    bad = {**good, field: "ab" + char + "cd@example.com" if field == "email" else "ab" + char + "cd"}
    with pytest.raises(InvalidRequest) as caught:
        parse_unsubscribes({"unsubscribes": [good, good, good, bad]}, OBJECTS)
    assert [(p.index, p.field) for p in caught.value.details] == [(3, field)]
    assert f"U+{ord(char):04X}" in caught.value.details[0].message


@pytest.mark.parametrize("char", HOSTILE.values(), ids=HOSTILE.keys())
@pytest.mark.parametrize("field", RESUBSCRIBE_TEXT_FIELDS)
def test_hostile_characters_in_any_resubscribe_field_are_refused_naming_it(char: str, field: str) -> None:
    if field == "reason" and char == "\u2028":
        pytest.skip("a reason may span lines (test_a_reason_may_span_lines)")
    bad = {**RESUB, field: "ab" + char + "cd@example.com" if field == "email" else "ab" + char + "cd"}
    with pytest.raises(InvalidRequest) as caught:
        parse_resubscribes({"resubscribes": [RESUB, bad]}, OBJECTS)
    assert [(p.index, p.field) for p in caught.value.details] == [(1, field)]


def test_a_reason_may_span_lines() -> None:
    [item] = parse_resubscribes({**RESUB, "reason": "re-consented by phone\n\tticket 42\r\nsee\u2028log "}, OBJECTS)
    assert item.reason == "re-consented by phone\n\tticket 42\r\nsee\u2028log"


@pytest.mark.parametrize("char", HOSTILE.values(), ids=HOSTILE.keys())
def test_an_unknown_field_whose_name_is_hostile_is_refused(char: str) -> None:
    assert problems({"email": "a@example.com", "x" + char: 1}) == [(0, "x" + char)]

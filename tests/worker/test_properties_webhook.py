"""Property-based tests of the webhook body validator: valid items are accepted as they are meant,
any mutation into invalid input is refused as a whole, with a detail naming the index and the field."""

from __future__ import annotations

import copy
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from unsubscribe_sync.worker.validation import InvalidRequest, parse_unsubscribes

OBJECTS = ["Contact", "Lead"]
PREFIXES = {"003": "Contact", "00Q": "Lead"}
ID_CHARS = string.digits + string.ascii_letters


def reference_18(id15: str) -> str:
    table = string.ascii_uppercase + "012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        suffix += table[sum(2**j for j, c in enumerate(chunk) if c in string.ascii_uppercase)]
    return id15 + suffix


local_parts = st.from_regex(r"[a-zA-Z0-9]{1,12}([._+-][a-zA-Z0-9]{1,8}){0,2}", fullmatch=True)
domains = st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,10}(-[a-z0-9]{1,5})?\.(com|org|net|de|io)", fullmatch=True)
emails = st.builds(lambda lp, d, pad: f"{pad}{lp}@{d}{pad}", local_parts, domains, st.sampled_from(["", " ", "  "]))
ids15 = st.builds(
    lambda p, rest: p + rest, st.sampled_from(sorted(PREFIXES)), st.text(ID_CHARS, min_size=12, max_size=12)
)
salesforce_ids = st.builds(lambda i, long: reference_18(i) if long else i, ids15, st.booleans())
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC))
offsets = st.sampled_from(["Z", "z", "+00:00", "-07:00", "+05:30"])


def _rfc3339(moment: datetime, offset: str, fraction: bool) -> str:
    if offset in ("Z", "z"):
        local, suffix = moment, offset
    else:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6])) * sign
        local, suffix = moment + delta, offset
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += f".{moment.microsecond:06d}"
    return text + suffix


occurred = st.builds(
    lambda m, o, f: (m if f else m.replace(microsecond=0), _rfc3339(m, o, f)), instants, offsets, st.booleans()
)
# Free text: anything but controls, lone surrogates and line separators (those are refused, see HOSTILE below).
texts = st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=200).filter(
    lambda s: bool(s.strip())
)


@st.composite
def valid_items(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """(item, expectations)."""
    email = draw(emails)
    item: dict[str, Any] = {"email": email}
    expect: dict[str, Any] = {
        "email": email.strip().lower(),
        "salesforce_id": None,
        "object": None,
        "occurred_at": None,
        "source": "webhook",
        "event_id": None,
    }
    if draw(st.booleans()):
        sid = draw(salesforce_ids)
        item["salesforceId"] = sid
        expect["salesforce_id"] = reference_18(sid[:15])
        expect["object"] = PREFIXES[sid[:3]]
    if draw(st.booleans()):
        moment, text = draw(occurred)
        item["occurredAt"] = text
        expect["occurred_at"] = moment.timestamp()
    if draw(st.booleans()):
        item["source"] = draw(texts)
        expect["source"] = item["source"].strip()
    if draw(st.booleans()):
        item["eventId"] = draw(texts)
        expect["event_id"] = item["eventId"].strip()
    return item, expect


batches = st.lists(valid_items(), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(batches)
def test_valid_items_are_accepted_as_meant(batch: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    result = parse_unsubscribes({"unsubscribes": [item for item, _ in batch]}, OBJECTS)
    assert len(result) == len(batch)
    for got, (_, expect) in zip(result, batch, strict=True):
        for key, value in expect.items():
            actual = getattr(got, key)
            if key == "occurred_at" and value is not None:
                assert actual == pytest.approx(value, abs=1e-6)
            else:
                assert actual == value, key


@settings(max_examples=100, deadline=None)
@given(valid_items())
def test_a_single_object_body_is_a_batch_of_one(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    item, _ = pair
    assert parse_unsubscribes(item, OBJECTS) == parse_unsubscribes({"unsubscribes": [item]}, OBJECTS)


# field -> values that make an item invalid (None: delete the field)
MUTATIONS: dict[str, list[Any]] = {
    "email": [
        None,
        42,
        "",
        "   ",
        "no-at-sign",
        "a@b@c.com",
        "a b@c.com",
        "x" * 321 + "@a.com",
        "x" * 65 + "@a.com",
        "<script>@x.com",
        ["a@b.com"],
        "' OR 1=1 --@x.com",
        "a\ud800@b.com",
        "a\x00@b.com",
        "a@b\udc00.com",
        "a\x1b@b.com",
        "a\u202e@b.com",
    ],
    "salesforceId": [
        15,
        "",
        "003",
        "003" + "A" * 11,
        "003" + "A" * 13,
        "003" + "A" * 16,
        "001" + "A" * 12,
        "500" + "A" * 12,
        "003" + "A" * 11 + "-",
        "003" + "A" * 11 + "\n",
        "003AAAAAAAAAAAAbBB",
        "003AAAAAAAAA\u00c9AA",
        {"id": "003"},
    ],
    "occurredAt": [
        0,
        "",
        "yesterday",
        "2024-05-01",
        "2024-05-01T12:00:00",
        "2024-13-01T00:00:00Z",
        "2024-05-01T12:00:00Z\n",
        "2024-05-01 12:00:00Z x",
        "1714564800",
        ["2024-05-01T12:00:00Z"],
    ],
    "source": [0, "", "   ", "s" * 201, False, {"a": 1}, "s\ud800", "s\x00", "s\x07s"],
    "eventId": [0, "", "   ", "e" * 201, True, ["e"], "\udfffe", "e\x00e", "e\u2029e"],
}


@st.composite
def mutated(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, str]:
    items = [item for item, _ in draw(batches)]
    index = draw(st.integers(0, len(items) - 1))
    kind = draw(st.sampled_from([*MUTATIONS, "unknown field", "not an object"]))
    bad = copy.deepcopy(items)
    if kind == "unknown field":
        name = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in MUTATIONS))
        bad[index][name] = draw(st.one_of(st.none(), st.integers(), st.text(max_size=5)))
        return bad, index, name
    if kind == "not an object":
        bad[index] = draw(st.sampled_from([[], "a@b.com", 7, None, True]))  # type: ignore[call-overload]
        return bad, index, ""
    value = draw(st.sampled_from(MUTATIONS[kind]))
    if value is None:
        bad[index].pop(kind, None)
    else:
        bad[index][kind] = value
    return bad, index, kind


@settings(max_examples=500, deadline=None)
@given(mutated())
def test_any_mutation_is_refused_naming_index_and_field(case: tuple[list[dict[str, Any]], int, str]) -> None:
    items, index, field = case
    with pytest.raises(InvalidRequest) as caught:
        parse_unsubscribes({"unsubscribes": items}, OBJECTS)
    details = [p.as_json() for p in caught.value.details]
    blamed = [(d.get("index"), d["field"]) for d in details]
    assert (index, field) in blamed, details
    assert {d.get("index") for d in details} == {index}, "only the mutated item is blamed"
    assert all(d["message"] for d in details)
    assert "nothing was stored" in caught.value.message


@settings(max_examples=100, deadline=None)
@given(batches, st.sampled_from(["not a list", "empty", "too many", "extra key", "scalar body", "list body"]))
def test_bad_envelopes_are_refused(batch: list[tuple[dict[str, Any], dict[str, Any]]], how: str) -> None:
    items = [item for item, _ in batch]
    body: Any = {"unsubscribes": items}
    if how == "not a list":
        body = {"unsubscribes": items[0]}
    elif how == "empty":
        body = {"unsubscribes": []}
    elif how == "too many":
        body = {"unsubscribes": items * (1001 // len(items) + 1)}
    elif how == "extra key":
        body = {"unsubscribes": items, "dryRun": True}
    elif how == "scalar body":
        body = "a@b.com"
    elif how == "list body":
        body = items
    with pytest.raises(InvalidRequest) as caught:
        parse_unsubscribes(body, OBJECTS)
    assert caught.value.details and all(p.index is None for p in caught.value.details)


@settings(max_examples=100, deadline=None)
@given(valid_items())
def test_an_id_of_an_object_not_configured_is_refused(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    item, expect = pair
    if expect["object"] is None:
        return
    only = [o for o in OBJECTS if o != expect["object"]]
    with pytest.raises(InvalidRequest) as caught:
        parse_unsubscribes(item, only)
    assert [(p.index, p.field) for p in caught.value.details] == [(0, "salesforceId")]


HOSTILE_CHARACTERS = st.one_of(
    st.characters(categories=["Cs"]),
    st.characters(categories=["Cc"]),
    st.sampled_from(["\u2028", "\u2029"]),
)


@settings(max_examples=300, deadline=None)
@given(batches, st.data())
def test_a_hostile_character_anywhere_in_a_text_field_is_refused_naming_it(
    batch: list[tuple[dict[str, Any], dict[str, Any]]], data: st.DataObject
) -> None:
    """Surrogates and NUL would fail the whole group commit later: they are refused here, in the right field."""
    items = [copy.deepcopy(item) for item, _ in batch]
    index = data.draw(st.integers(0, len(items) - 1))
    field = data.draw(st.sampled_from(["email", "source", "eventId"]))
    value = items[index].get(field) or ("someone@example.com" if field == "email" else "text")
    value = "a" + value.strip() + "b"  # inside the text: surrounding whitespace (some controls are) is trimmed
    at = data.draw(st.integers(1, len(value) - 1))
    items[index][field] = value[:at] + data.draw(HOSTILE_CHARACTERS) + value[at:]
    with pytest.raises(InvalidRequest) as caught:
        parse_unsubscribes({"unsubscribes": items}, OBJECTS)
    assert [(p.index, p.field) for p in caught.value.details] == [(index, field)]

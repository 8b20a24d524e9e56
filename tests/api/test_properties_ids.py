"""Property-based tests of the Salesforce ID normaliser against an independent reading of the 15 -> 18 rule."""

from __future__ import annotations

import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from unsubscribe_sync.salesforce.ids import InvalidSalesforceId, normalize_id

ID_CHARS = string.digits + string.ascii_letters


def reference_18(id15: str) -> str:
    """Salesforce's documented rule, written independently: three 5-character chunks; bit j set when character j is A-Z;
    each 5-bit value picks a character of ``ABCDEFGHIJKLMNOPQRSTUVWXYZ012345``."""
    table = string.ascii_uppercase + "012345"
    suffix = ""
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        value = sum(2**position for position, char in enumerate(chunk) if char in string.ascii_uppercase)
        suffix += table[value]
    return id15 + suffix


ids15 = st.text(alphabet=ID_CHARS, min_size=15, max_size=15)


def test_the_documented_example() -> None:
    assert reference_18("a0RE000000IJmcN") == "a0RE000000IJmcNMAT"
    assert normalize_id("a0RE000000IJmcN") == "a0RE000000IJmcNMAT"


@settings(max_examples=500)
@given(ids15)
def test_15_to_18_matches_the_reference(id15: str) -> None:
    assert normalize_id(id15) == reference_18(id15)


@settings(max_examples=500)
@given(ids15)
def test_idempotent_on_18(id15: str) -> None:
    id18 = normalize_id(id15)
    assert normalize_id(id18) == id18
    assert normalize_id(id18[:15] + id18[15:].lower()) == id18, "the suffix is case-insensitive"


@settings(max_examples=500)
@given(ids15, ids15)
def test_case_insensitive_equality_of_18_forms_means_the_same_record(a: str, b: str) -> None:
    same_ignoring_case = normalize_id(a).lower() == normalize_id(b).lower()
    assert same_ignoring_case == (a == b)


@settings(max_examples=500)
@given(ids15)
def test_a_case_folded_18_form_comes_back_to_the_same_record(id15: str) -> None:
    id18 = reference_18(id15)
    assert normalize_id(id18.lower()) == id18
    assert normalize_id(id18.upper()) == id18


@settings(max_examples=500)
@given(st.text(max_size=25))
def test_anything_that_is_not_15_or_18_id_characters_is_refused(value: str) -> None:
    assume(not (len(value) in (15, 18) and all(c in ID_CHARS for c in value)))
    with pytest.raises(InvalidSalesforceId):
        normalize_id(value)


@settings(max_examples=300)
@given(ids15, st.sampled_from(["\n", " ", "\t", "\u00e9", "-", "\x00", "\uff10"]), st.integers(0, 14))
def test_one_foreign_character_is_refused(id15: str, foreign: str, position: int) -> None:
    for value in (id15[:position] + foreign + id15[position + 1 :], id15[:14] + foreign):
        with pytest.raises(InvalidSalesforceId):
            normalize_id(value)
    with pytest.raises(InvalidSalesforceId):
        normalize_id(id15[:14] + foreign + "AAA")


@settings(max_examples=500)
@given(ids15, st.text(alphabet=string.ascii_uppercase + "012345", min_size=3, max_size=3))
def test_a_wrong_suffix_on_mixed_case_is_refused(id15: str, suffix: str) -> None:
    letters = [c for c in id15 if c.isalpha()]
    assume(any(c.islower() for c in letters) and any(c.isupper() for c in letters))
    assume(suffix != reference_18(id15)[15:])
    with pytest.raises(InvalidSalesforceId):
        normalize_id(id15 + suffix)


@settings(max_examples=300)
@given(ids15)
def test_the_result_is_always_18_id_characters(id15: str) -> None:
    result = normalize_id(id15)
    assert len(result) == 18
    assert all(c in ID_CHARS for c in result)

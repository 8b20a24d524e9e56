"""The nightly's Salesforce read keeps ``normalize_id``'s output, with a cheaper check of 18-character ids."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unsubscribe_sync.salesforce.client import _case_safe_id
from unsubscribe_sync.salesforce.ids import InvalidSalesforceId, normalize_id

ID_CHARS = string.ascii_letters + string.digits


def _either(fn: Callable[[str], str], value: str) -> str:
    try:
        return fn(value)
    except InvalidSalesforceId:
        return "<invalid>"


@given(st.text(alphabet=ID_CHARS, min_size=15, max_size=15))
def test_an_18_character_id_from_salesforce_is_returned_as_is(id15: str) -> None:
    id18 = normalize_id(id15)
    assert _case_safe_id(id18) == id18
    assert _case_safe_id(id15) == id18


@given(st.text(alphabet=ID_CHARS + "é-_ ", min_size=14, max_size=19))
def test_any_value_gives_what_normalize_id_gives(value: str) -> None:
    assert _either(_case_safe_id, value) == _either(normalize_id, value)


@given(st.text(alphabet=ID_CHARS, min_size=15, max_size=15))
def test_lower_case_and_case_folded_suffixes_are_normalised_the_same(id15: str) -> None:
    id18 = normalize_id(id15)
    for variant in (id18[:15] + id18[15:].lower(), id18.lower(), id18.upper()):
        assert _either(_case_safe_id, variant) == _either(normalize_id, variant)


def test_a_wrong_suffix_is_refused() -> None:
    id18 = normalize_id("003AbCdE00001xY")
    wrong = id18[:15] + ("AAA" if id18[15:] != "AAA" else "BBB")
    with pytest.raises(InvalidSalesforceId):
        _case_safe_id(wrong)

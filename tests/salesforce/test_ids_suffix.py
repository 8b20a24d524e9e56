"""salesforce.ids.case_safe_suffix: the documented bit layout, computed without a loop per character."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unsubscribe_sync.salesforce.ids import InvalidSalesforceId, case_safe_suffix, normalize_id

ID_CHARS = string.ascii_letters + string.digits
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def reference_suffix(id15: str) -> str:
    """Salesforce's rule as documented: per five characters, bit j set when character j is upper case."""
    return "".join(
        ALPHABET[sum(1 << j for j, c in enumerate(id15[start : start + 5]) if c.isupper())] for start in (0, 5, 10)
    )


def test_the_documented_example() -> None:
    assert case_safe_suffix("a0RE000000IJmcN") == "MAT"


@given(st.text(alphabet=ID_CHARS, min_size=15, max_size=15))
def test_the_suffix_follows_the_documented_rule(id15: str) -> None:
    assert case_safe_suffix(id15) == reference_suffix(id15)


@given(st.text(alphabet=ID_CHARS, min_size=15, max_size=15))
def test_an_18_character_id_from_salesforce_is_returned_as_is(id15: str) -> None:
    id18 = id15 + reference_suffix(id15)
    assert normalize_id(id18) == id18 and normalize_id(id15) == id18


def test_a_wrong_suffix_is_refused() -> None:
    id18 = normalize_id("003AbCdE00001xY")
    wrong = id18[:15] + ("AAA" if id18[15:] != "AAA" else "BBB")
    with pytest.raises(InvalidSalesforceId):
        normalize_id(wrong)


@pytest.mark.parametrize("suffix", ["A9B", "6AA", "aa7", "ZZ8"])
def test_a_suffix_character_outside_the_alphabet_is_refused_by_name(suffix: str) -> None:
    # the suffix alphabet is A-Z and 0-5: a 6-9 cannot come from Salesforce
    with pytest.raises(InvalidSalesforceId, match=f"invalid case-safe suffix '{suffix}'"):
        normalize_id("003AbCdE00001xY" + suffix)

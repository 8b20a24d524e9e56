"""The plain-address shortcut of the webhook validator gives exactly what ``parse_address`` gives, for every
text it takes; every other text is left to ``parse_address`` (and so refused with its messages)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from unsubscribe_sync.api.addresses import InvalidAddress, parse_address
from unsubscribe_sync.worker.validation import plain_address

# the characters where the rules of an address turn: atext, dots, hyphens, "@", quotes, spaces, controls,
# non-ASCII letters and look-alikes
EDGY = "aZ09.-_+!#$%&'*/=?^`{|}~@\" \t\n\\[]():;,<>\x00\x7f\u00e9\u0130\u212a\u00df\u200b\u2028\u3000\ufeff"
texts = st.text(alphabet=st.sampled_from(EDGY), max_size=40) | st.from_regex(
    r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]{1,70}@[a-zA-Z0-9.-]{1,70}", fullmatch=True
)


def _parsed(text: str) -> str | None:
    try:
        return parse_address(text)
    except InvalidAddress:
        return None


@settings(max_examples=3000, deadline=None)
@given(texts)
@example("w1-123@bench.example")
@example("A.B@X.COM")
@example("a@x")
@example("x" * 64 + "@example.com")
@example("x" * 65 + "@example.com")
@example("a@" + "b" * 63 + ".com")
@example("a@" + "b" * 64 + ".com")
@example("a@" + ".".join(["b" * 60] * 4) + ".example")
def test_the_shortcut_agrees_with_parse_address(text: str) -> None:
    fast = plain_address(text)
    if fast is not None:
        assert fast == _parsed(text)


@pytest.mark.parametrize(
    "text",
    [
        "a..b@x.com",
        ".a@x.com",
        "a.@x.com",
        "a@-x.com",
        "a@x-.com",
        "a@x..com",
        "a b@x.com",
        " a@x.com",
        "a@x.com\n",
        '"a"@x.com',
        "a@[127.0.0.1]",
        "ren\u00e9e@x.com",
        "a@b@x.com",
        "a@",
        "@x.com",
        "a@x.com.",
    ],
)
def test_other_texts_are_left_to_parse_address(text: str) -> None:
    assert plain_address(text) is None

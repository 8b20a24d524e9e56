"""Email addresses: one stored form (normalize_email) and the RFC 5321 / 6531 check (parse_address)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from unsubscribe_sync.api.addresses import InvalidAddress, _normalized, normalize_email, parse_address

NORMALIZED = {
    "surrounding whitespace is trimmed": (" \tAnn@example.com \n", "ann@example.com"),
    "lower(), not casefold: ß stays ß and does not merge with ss": ("Straße@Example.COM", "straße@example.com"),
    "a decomposed é is the composed one": (unicodedata.normalize("NFD", "renée@example.com"), "renée@example.com"),
    "an IDN domain is stored as its A-label": ("jane@bücher.de", "jane@xn--bcher-kva.de"),
    "an upper-case IDN domain is the same A-label": ("JANE@BÜCHER.DE", "jane@xn--bcher-kva.de"),
    "an A-label domain is kept as it is": ("jane@XN--BCHER-KVA.de", "jane@xn--bcher-kva.de"),
    "ß in a domain is kept (non-transitional UTS 46)": ("a@faß.de", "a@xn--fa-hia.de"),
    "full-width domain letters map to ASCII (UTS 46)": ("a@\uff45\uff58.com", "a@ex.com"),
    "an ideographic full stop separates labels": ("a@例子。广告", "a@xn--fsqu00a.xn--4rr70v"),
    "a non-ASCII local part is kept (only lower-cased)": ("ÜBER@bücher.de", "über@xn--bcher-kva.de"),
    "a domain IDNA cannot encode stays as lower-cased NFC text": ("a@-BÜ.de", "a@-bü.de"),
    "an ASCII domain IDNA would refuse is left alone": ("a@AB--CD.de", "a@ab--cd.de"),
    "an IPv4 literal is kept": ("a@[192.0.2.1]", "a@[192.0.2.1]"),
    "an IPv6 literal is written in its compressed form": ("a@[IPv6:2001:DB8:0:0::1]", "a@[ipv6:2001:db8::1]"),
    "a quoted local part that needs no quotes loses them": ('"Ann.Lee"@example.com', "ann.lee@example.com"),
    "a quoted local part with a space keeps its quotes": ('"Ann Lee"@example.com', '"ann lee"@example.com'),
    "needless escapes in a quoted local part are dropped": ('"a\\b c"@example.com', '"ab c"@example.com'),
    "text without an @ is only trimmed and lowered": ("  No-At-Sign ", "no-at-sign"),
    "two @ signs: the last one starts the domain": ("a@b@BÜCHER.de", "a@b@xn--bcher-kva.de"),
    "a lone surrogate does not raise": ("A\ud800@b.de", "a\ud800@b.de"),
    "a lone surrogate in an IDN domain does not raise": ("a@\ud800ü.de", "a@\ud800ü.de"),
}


@pytest.mark.parametrize(("address", "expected"), NORMALIZED.values(), ids=NORMALIZED.keys())
def test_normalize_email(address: str, expected: str) -> None:
    assert normalize_email(address) == expected


def test_a_unicode_domain_and_its_a_label_are_one_address() -> None:
    assert normalize_email("jane@bücher.de") == normalize_email("jane@xn--bcher-kva.de")
    assert parse_address("jane@bücher.de") == parse_address("jane@xn--bcher-kva.de")


LOCAL_64 = "x" * 64
DOMAIN_189 = "a" * 63 + "." + "b" * 63 + "." + "c" * 61
ACCEPTED = {
    "a special-use domain is an address": ("a@corp.local", "a@corp.local"),
    "a single-label domain is an address": ("a@localhost", "a@localhost"),
    "a .test domain is an address": ("a@b.test", "a@b.test"),
    "an IPv4 address literal": ("a@[192.0.2.1]", "a@[192.0.2.1]"),
    "an IPv6 address literal": ("a@[IPv6:2001:db8::1]", "a@[ipv6:2001:db8::1]"),
    "a tagged address literal": ("a@[x-tag:opaque]", "a@[x-tag:opaque]"),
    "an internationalised local part and domain (RFC 6531)": ("用户@例子.广告", "用户@xn--fsqu00a.xn--4rr70v"),
    "a quoted local part with a space and an @": ('"John Doe@home"@example.com', '"john doe@home"@example.com'),
    "every atext special character": ("!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~@example.com"),
    "code-looking text is still an address": ("a'or'1'='1@example.com", "a'or'1'='1@example.com"),
    "a 64-octet local part": (LOCAL_64 + "@example.com", LOCAL_64 + "@example.com"),
    "a 254-octet address": (LOCAL_64 + "@" + DOMAIN_189, LOCAL_64 + "@" + DOMAIN_189),
    "hyphens inside a label, digits-only labels": ("a@my-host.123.example", "a@my-host.123.example"),
    "hyphens in the third and fourth place of an ASCII label": ("a@ab--cd.de", "a@ab--cd.de"),
    "an IDN domain, stored as A-labels": ("Jane@Bücher.de", "jane@xn--bcher-kva.de"),
    "surrounding whitespace": ("  a@b.de\n", "a@b.de"),
    "a zero-width joiner some scripts need": ("\u0915\u094d\u200d\u0937@x.in", "\u0915\u094d\u200d\u0937@x.in"),
}


@pytest.mark.parametrize(("address", "expected"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_parse_address_accepts(address: str, expected: str) -> None:
    assert parse_address(address) == expected == normalize_email(address)


REFUSED = {
    "no @": ("jane.example.com", '"@"'),
    "an empty local part": ("@example.com", "local part"),
    "an empty domain": ("jane@", "domain"),
    "two @ outside quotes": ("a@b@c.com", "more than one"),
    "a space outside quotes": ("a b@c.com", "space"),
    "a no-break space outside quotes": ("a\u00a0b@c.com", "space"),
    "a leading dot": (".a@b.com", "dot"),
    "a trailing dot in the local part": ("a.@b.com", "dot"),
    "two dots in a row": ("a..b@c.com", "dot"),
    "a character no atom holds": ("<script>@x.com", "may not hold"),
    "parentheses (comments are not addresses)": ("a(b)@c.com", "may not hold"),
    "an unclosed quote": ('"abc@b.com', "closing quote"),
    "an empty quoted local part": ('""@b.com', "empty"),
    "a quote followed by text": ('"a"b@c.com', '"@"'),
    "an empty domain label": ("a@b..com", "empty label"),
    "a trailing dot in the domain": ("a@b.com.", "empty label"),
    "a label that starts with a hyphen": ("a@-b.com", "hyphens"),
    "an underscore in a domain label": ("a@my_host.com", "letters, digits"),
    "a space in the domain": ("a@b c.com", "letters, digits"),
    "NUL": ("a\x00@b.com", "control character (U+0000)"),
    "a newline inside": ("a\n@b.com", "control character (U+000A)"),
    "DEL": ("a\x7f@b.com", "control character"),
    "a C1 control (NEL)": ("a\x85@b.com", "control character"),
    "a control character inside quotes": ('"a\x01"@b.com', "control character"),
    "a lone surrogate": ("a\ud800@b.com", "surrogate"),
    "a lone surrogate in the domain": ("a@\udfff.com", "surrogate"),
    "a line separator": ("a\u2028@b.com", "line or paragraph separator"),
    "a right-to-left override": ("a\u202e@b.com", "invisible formatting"),
    "a zero-width space": ("a\u200b@b.com", "invisible formatting"),
    "a byte order mark": ("\ufeffa@b.com", "invisible formatting"),
    "a local part over 64 octets": ("x" * 65 + "@b.com", "64 octets"),
    "33 two-octet characters are 66 octets": ("é" * 33 + "@b.com", "64 octets"),
    "an address over 254 octets": (LOCAL_64 + "@" + DOMAIN_189 + "d", "254 octets"),
    "a huge text": ("a" * 100_000 + "@b.com", "254 octets"),
    "a label over 63 octets": ("a@" + "b" * 64 + ".com", "63 octets"),
    "an IPv4 literal out of range": ("a@[300.1.1.1]", "IPv4"),
    "an IPv6 literal that is not one": ("a@[IPv6:zz::1]", "IPv6"),
    "an IPv6 literal with a zone index": ("a@[IPv6:fe80::1%eth0]", "IPv6"),
    "an unclosed literal": ("a@[192.0.2.1", '"]"'),
}


@pytest.mark.parametrize(("address", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_parse_address_refuses_what_is_not_an_address(address: str, reason: str) -> None:
    with pytest.raises(InvalidAddress, match=None) as caught:
        parse_address(address)
    assert reason in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert address.strip() not in str(caught.value) or len(address.strip()) < 3, "the reason never repeats the address"


texts = st.text(st.characters(exclude_categories=()), max_size=40)  # surrogates too
address_like = st.builds(
    lambda local, domain, pad: f"{pad}{local}@{domain}{pad}",
    st.one_of(
        st.text(st.characters(exclude_categories=()), max_size=20),
        st.from_regex(r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~ÄéΣς-]{1,10}(\.[a-zA-Z0-9ü]{1,5}){0,2}", fullmatch=True),
        st.from_regex(r'"([ !#-\[\]-~é@]|\\[ -~]){0,12}"', fullmatch=True),
    ),
    st.one_of(
        st.text(st.characters(exclude_categories=()), max_size=20),
        st.from_regex(r"[a-z0-9A-Zäöüß\u03a3\u03c3\u03c2例子]{1,9}(\.[a-z0-9äöüß例子-]{1,9}){0,3}", fullmatch=True),
        st.from_regex(r"\[(IPv6:)?[0-9a-fA-F:.]{1,20}\]", fullmatch=True),
    ),
    st.sampled_from(["", " ", "\n"]),
)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(texts, address_like))
@example("\u0130@example.com")
@example('"a\\"b"@example.com')
@example('"a"@b@c')
def test_normalize_email_is_idempotent_and_agrees_with_parse_address(text: str) -> None:
    once = normalize_email(text)
    assert normalize_email(once) == once
    try:
        parsed = parse_address(text)
    except InvalidAddress:
        return
    assert parsed == once
    assert parse_address(parsed) == parsed, "an accepted form is accepted again, unchanged"


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(st.characters(max_codepoint=127), max_size=30), address_like.filter(str.isascii)))
@example(" Ann@Example.COM\x1c")
@example("a@@b.c")
@example("no-at-sign")
@example("a@[192.0.2.1]")
def test_plain_ascii_text_takes_a_shortcut_to_the_same_form(text: str) -> None:
    assert normalize_email(text) == _normalized(text)

"""The login host allowlist: which loginUrls the operator sends credentials to (a pure decision)."""

from __future__ import annotations

import pytest

from unsubscribe_sync.controller.login_hosts import (
    DEFAULT_LOGIN_HOSTS,
    check_login_url,
    effective_patterns,
    parse_patterns,
)

DEFAULTS = effective_patterns()
WITH_LOOPBACK = effective_patterns(["127.0.0.1"])

# (behaviour, url, allowed with the defaults)
CASES = [
    ("the production login host is allowed", "https://login.salesforce.com", True),
    ("the sandbox login host is allowed", "https://test.salesforce.com/", True),
    ("a My Domain host is allowed", "https://acme.my.salesforce.com", True),
    ("a sandbox My Domain host is allowed", "https://acme--uat.sandbox.my.salesforce.com", True),
    ("a force.com host is allowed", "https://acme.lightning.force.com", True),
    ("several labels in front of a wildcard suffix are allowed", "https://a.b.c.my.salesforce.com", True),
    ("the default port written out is allowed", "https://login.salesforce.com:443", True),
    ("another port on an allowed host is the same host", "https://login.salesforce.com:8443/", True),
    ("upper case is the same host", "https://LOGIN.Salesforce.COM", True),
    ("a trailing dot is the same host", "https://acme.my.salesforce.com./", True),
    ("a path after the host does not matter", "https://login.salesforce.com/some/path?x=1", True),
    ("an unknown host is refused", "https://evil.example", False),
    ("the bare wildcard suffix is refused", "https://my.salesforce.com", False),
    ("the bare force.com suffix is refused", "https://force.com", False),
    ("a look-alike ending in another domain is refused", "https://evil-my.salesforce.com.attacker.io", False),
    ("a look-alike label glued to the suffix is refused", "https://evilmy.salesforce.com", False),
    ("a look-alike of login is refused", "https://login.salesforce.com.evil.io", False),
    ("user information hiding the real host is refused", "https://login.salesforce.com@evil.io", False),
    ("user information in front of an allowed host is refused too", "https://user:pw@login.salesforce.com", False),
    ("a backslash trick is refused", "https://evil.io\\@login.salesforce.com", False),
    ("an encoded dot in the host is refused", "https://login.salesforce.com%2eevil.io", False),
    ("whitespace in the URL is refused", "https://login.salesforce.com\t.evil.io", False),
    ("plain http is refused", "http://login.salesforce.com", False),
    ("a loopback IP literal is refused by default", "https://127.0.0.1:8443", False),
    ("an IPv6 literal is refused by default", "https://[::1]:8443", False),
    ("a numeric host name read as an address is refused", "https://2130706433", False),
    ("two trailing dots are refused", "https://login.salesforce.com../", False),
    ("a non-ASCII host is refused", "https://login.salesforcé.com", False),
    ("a malformed port is refused", "https://login.salesforce.com:99999", False),
    ("a URL without a host is refused", "https:///services", False),
]


@pytest.mark.parametrize(("url", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_default_allowlist(url: str, allowed: bool) -> None:
    verdict = check_login_url(url, DEFAULTS)
    assert verdict.allowed is allowed
    assert (verdict.message == "") is allowed


LOOPBACK_CASES = [
    ("an added IP literal allows that address on any port", "https://127.0.0.1:40123", True),
    ("an added IP literal does not allow a neighbour address", "https://127.0.0.2:40123", False),
    ("an added IP literal does not allow a short numeric form of it", "https://127.1:40123", False),
    ("the defaults still hold after extending", "https://login.salesforce.com", True),
]


@pytest.mark.parametrize(("url", "allowed"), [c[1:] for c in LOOPBACK_CASES], ids=[c[0] for c in LOOPBACK_CASES])
def test_extended_allowlist(url: str, allowed: bool) -> None:
    assert check_login_url(url, WITH_LOOPBACK).allowed is allowed


def test_refusal_names_the_host_and_how_to_allow_it() -> None:
    verdict = check_login_url("https://Evil.Example:8443/x", DEFAULTS)
    assert verdict.host == "evil.example"
    assert "evil.example" in verdict.message
    assert "--allowed-login-hosts=evil.example" in verdict.message
    assert "operator.allowedLoginHosts" in verdict.message


def test_refusal_of_a_tricky_url_names_the_problem_not_a_host() -> None:
    verdict = check_login_url("https://login.salesforce.com@evil.io", DEFAULTS)
    assert verdict.host is None
    assert "user information" in verdict.message


def test_wildcards_in_an_extension_match_labels_in_front_only() -> None:
    patterns = effective_patterns(["*.corp.example"])
    assert check_login_url("https://sso.corp.example", patterns).allowed
    assert not check_login_url("https://corp.example", patterns).allowed
    assert not check_login_url("https://xcorp.example", patterns).allowed


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["a.example,B.Example."], ("a.example", "b.example")),
        (["*.Corp.Example", " 127.0.0.1 ", ""], ("*.corp.example", "127.0.0.1")),
        (["[::1]", "::1"], ("::1",)),
    ],
)
def test_patterns_are_normalised(value: list[str], expected: tuple[str, ...]) -> None:
    assert parse_patterns(value) == expected


@pytest.mark.parametrize("bad", ["*", "*.com", "evil.example/path", "user@host", "*.*.example", "a b", "*.10.0.0.1"])
def test_bad_patterns_are_refused_naming_them(bad: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_patterns([bad])
    assert repr(bad.strip()) in str(excinfo.value)


def test_defaults_are_the_salesforce_hosts() -> None:
    assert DEFAULTS == DEFAULT_LOGIN_HOSTS

"""Which Salesforce login hosts the operator will send credentials to (pure: no I/O).

Why: whoever may create an UnsubscribeSync names its ``loginUrl`` and a credentials Secret of the
namespace; the operator then reads that Secret and posts ``client_id``/``client_secret`` to
``{loginUrl}/services/oauth2/token`` (the preflight), and renders pods that do the same. Without a
limit on the host, that is a way to send any Secret of the namespace to any server. So the operator
acts only for login hosts on an allowlist that its administrator controls (a flag, not the resource).

Patterns: an exact host name (``login.salesforce.com``), a wildcard ``*.suffix`` that matches one or
more labels in front of the suffix (never the bare suffix, never a look-alike such as
``evil-my.salesforce.com.attacker.io``), or an IP literal (``127.0.0.1``, ``::1``) that matches that
address only. The port of the URL is not part of the decision (a host's owner owns all its ports).
Anything unusual in the URL (user information, control characters, backslashes, numeric host names
that resolvers read as addresses) is refused rather than interpreted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

DEFAULT_LOGIN_HOSTS: Final[tuple[str, ...]] = (
    "login.salesforce.com",
    "test.salesforce.com",
    "*.my.salesforce.com",
    "*.sandbox.my.salesforce.com",
    "*.force.com",
)
FLAG: Final = "--allowed-login-hosts"
ENV_VAR: Final = "UNSUBSCRIBE_SYNC_ALLOWED_LOGIN_HOSTS"
HELM_VALUE: Final = "operator.allowedLoginHosts"

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\]")


@dataclass(frozen=True)
class LoginHost:
    """The host a login URL would reach, or why the URL is refused before any host is considered."""

    host: str | None
    problem: str | None = None


@dataclass(frozen=True)
class LoginHostVerdict:
    allowed: bool
    host: str | None  # the normalised host, when the URL names one
    message: str  # why it was refused and how to allow it ("" when allowed)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _host_name_problem(host: str) -> str | None:
    """Why ``host`` (lower case, no trailing dot) is not a plain DNS name, or None when it is one."""
    if not host or len(host) > 253:
        return "the host name is empty or too long"
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        return "the host name has characters outside a-z, 0-9, '-' and '.' (use the punycode form)"
    if labels[-1].isdigit():
        return "the host name looks like a numeric address; use the dotted IP literal"
    return None


def normalise_host(text: str) -> LoginHost:
    """A host as it will be compared: lower case, one trailing dot dropped, IP literals canonical."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    address = _ip(host)
    if address is not None:
        return LoginHost(str(address))
    if host.endswith("."):
        host = host[:-1]
    problem = _host_name_problem(host)
    return LoginHost(None, problem) if problem else LoginHost(host)


def login_host(url: str) -> LoginHost:
    """The host that a request to ``url`` reaches, parsed strictly (the first doubt is a refusal)."""
    if _UNSAFE.search(url):
        return LoginHost(None, "the login URL contains whitespace, control characters or a backslash")
    parts = urlsplit(url)
    if parts.scheme.lower() != "https":
        return LoginHost(None, "the login URL is not https://")
    if "@" in parts.netloc:
        return LoginHost(None, "the login URL carries user information ('user@host'), which hides the real host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return LoginHost(None, "the login URL has an invalid port")
    if not parts.hostname:
        return LoginHost(None, "the login URL names no host")
    return normalise_host(parts.hostname)


def parse_patterns(values: Iterable[str]) -> tuple[str, ...]:
    """Allowlist patterns from flag/env/Helm values (comma-separated items allowed), normalised.

    Raises ValueError naming the first bad pattern, so an operator never starts with a list it misreads.
    """
    found: dict[str, None] = {}
    for value in values:
        for raw in value.split(","):
            item = raw.strip().lower()
            if not item:
                continue
            if item.startswith("*."):
                suffix = normalise_host(item[2:])
                if suffix.host is None or _ip(suffix.host) is not None:
                    raise ValueError(f"invalid login host pattern {raw.strip()!r}: {suffix.problem or 'not a name'}")
                if "." not in suffix.host:
                    raise ValueError(f"invalid login host pattern {raw.strip()!r}: a wildcard needs two labels or more")
                found["*." + suffix.host] = None
                continue
            host = normalise_host(item)
            if host.host is None:
                raise ValueError(f"invalid login host pattern {raw.strip()!r}: {host.problem}")
            found[host.host] = None
    return tuple(found)


def host_matches(host: str, pattern: str) -> bool:
    """Whether a normalised ``host`` matches one normalised ``pattern``."""
    if pattern.startswith("*."):
        if _ip(host) is not None:
            return False
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def check_login_url(url: str, patterns: Iterable[str]) -> LoginHostVerdict:
    """Whether the operator may log in at ``url`` (patterns as returned by ``parse_patterns``)."""
    found = login_host(url)
    if found.host is None:
        return LoginHostVerdict(False, None, f"spec.salesforce.loginUrl refused: {found.problem}")
    if any(host_matches(found.host, pattern) for pattern in patterns):
        return LoginHostVerdict(True, found.host, "")
    shown = f"[{found.host}]" if ":" in found.host else found.host
    return LoginHostVerdict(
        False,
        found.host,
        f"login host {shown} is not in the operator's allowed login hosts, so no credentials are read or sent "
        f"for it; an operator administrator can allow it with {FLAG}={found.host} (Helm value {HELM_VALUE})",
    )


def effective_patterns(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The default Salesforce hosts extended by the administrator's patterns."""
    return parse_patterns([*DEFAULT_LOGIN_HOSTS, *extra])

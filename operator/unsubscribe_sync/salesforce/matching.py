"""SOQL for Email matching: which records of an object carry one of many addresses (README "Matching").

Pure text building, no I/O: the resolver (worker/resolver.py) and the nightly (nightly/email_mode.py) run the
queries through the client. Addresses are always SOQL string literals escaped here, never interpolated raw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

MAX_SOQL_LENGTH = 100_000  # Salesforce refuses longer statements (MALFORMED_QUERY)
# A REST query travels in the URL of a GET (query?q=...); Salesforce caps the URI at 16,384 bytes and common
# proxies at 8 KiB, so the resolver keeps each URL-encoded statement under this.
REST_QUERY_MAX_ENCODED = 7_000

_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f", '"': '\\"'}


def soql_string(value: str) -> str:
    """``value`` as a quoted SOQL string literal (backslash escapes per the SOQL reference: \\' \\\\ \\n ...)."""
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in value) + "'"


def _head(object_name: str) -> str:
    return f"SELECT Id, Email FROM {object_name} WHERE "


def _tail(object_name: str) -> str:
    return " AND IsConverted = false" if object_name == "Lead" else ""


def email_in_soql(object_name: str, addresses: Sequence[str]) -> str:
    """One query: the records of ``object_name`` whose Email is one of ``addresses`` (Leads: not converted)."""
    if not addresses:
        raise ValueError("email_in_soql needs at least one address")
    literals = ", ".join(soql_string(a) for a in addresses)
    return f"{_head(object_name)}Email IN ({literals}){_tail(object_name)}"


def encoded_length(soql: str) -> int:
    """The length of ``soql`` as it travels in a query URL (``q=`` percent-encoded)."""
    return len(quote(soql, safe=""))


def email_in_queries(
    object_name: str,
    addresses: Sequence[str],
    *,
    max_chars: int = MAX_SOQL_LENGTH,
    measure: Callable[[str], int] = len,
) -> Iterator[str]:
    """As few queries as fit: consecutive runs of ``addresses`` packed while ``measure(query) <= max_chars``.

    ``measure`` is ``len`` for the statement limit, or :func:`encoded_length` for a GET query's URL.
    An address that cannot fit even alone raises ValueError (an RFC 5321 address is at most 254 characters).
    """
    fixed = measure(_head(object_name) + "Email IN ()" + _tail(object_name))
    separator = measure(", ")
    batch: list[str] = []
    size = fixed
    for address in addresses:
        cost = measure(soql_string(address))
        if fixed + cost > max_chars:
            raise ValueError(f"an address of {len(address)} characters does not fit in one query")
        extra = cost + (separator if batch else 0)
        if batch and size + extra > max_chars:
            yield email_in_soql(object_name, batch)
            batch, size, extra = [], fixed, cost
        batch.append(address)
        size += extra
    if batch:
        yield email_in_soql(object_name, batch)


def all_with_email_soql(object_name: str, field: str) -> str:
    """The nightly's Salesforce side in Email mode: every record with an Email, and its opt-out field."""
    return f"SELECT Id, Email, {field} FROM {object_name} WHERE Email != null{_tail(object_name)}"


def matching_fields(object_name: str) -> tuple[str, ...]:
    """The fields Email matching filters on for ``object_name``."""
    return ("Email", "IsConverted") if object_name == "Lead" else ("Email",)


def matching_field_problem(object_name: str, describe: dict[str, Any] | None) -> str | None:
    """Why the integration user cannot match by Email on ``object_name`` (from its describe), or None.

    A field the user cannot read is absent from the describe (field-level security); one present must be
    ``filterable`` to appear in a WHERE clause.
    """
    if describe is None:
        return f"{object_name} is not visible to the integration user"
    if describe.get("queryable") is False:
        return f"{object_name} is not queryable by the integration user"
    fields = {f.get("name"): f for f in describe.get("fields", []) if isinstance(f, dict)}
    for name in matching_fields(object_name):
        found = fields.get(name)
        if found is None:
            return f"{object_name}.{name} is not readable by the integration user (field-level security)"
        if found.get("filterable") is False:
            return f"{object_name}.{name} cannot be filtered on"
    return None

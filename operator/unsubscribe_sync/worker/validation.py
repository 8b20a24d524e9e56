"""Validation of `POST /v1/unsubscribes` and `POST /v1/resubscribes` bodies: JSON in, ledger items or a list of
every problem out.

Hostile text stops here, at the worker's door, with a 400 naming the field: a lone UTF-16 surrogate
cannot be encoded by any ledger and PostgreSQL refuses NUL in text, so either would otherwise fail the
group commit it shares with other requests' valid items.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

from unsubscribe_sync.api.addresses import MAX_ADDRESS_OCTETS, MAX_LOCAL_OCTETS, InvalidAddress, parse_address
from unsubscribe_sync.ledger import Resubscribe, Unsubscribe
from unsubscribe_sync.ledger.models import SOURCE_WEBHOOK
from unsubscribe_sync.salesforce.ids import InvalidSalesforceId, normalize_id, object_for_id

MAX_ITEMS = 1000
MAX_TEXT_LENGTH = 200
MAX_REASON_LENGTH = 1000
FIELDS = ("email", "salesforceId", "occurredAt", "source", "eventId")
RESUBSCRIBE_FIELDS = ("email", "salesforceId", "requestedBy", "reason", "occurredAt", "eventId")
T = TypeVar("T")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_LINE_BREAKS = frozenset("\t\n\r")
_KNOWN_KEYS: dict[tuple[str, ...], frozenset[str]] = {f: frozenset(f) for f in (FIELDS, RESUBSCRIBE_FIELDS)}
# The address most requests carry: an ASCII dot-atom local part (group 1) at an ASCII host name. For such a
# text ``parse_address`` checks nothing this pattern has not (no space, control, quote or second "@"; labels
# of letters, digits and inner hyphens, at most 63 characters) and normalises it to its lower-case form, so
# it is taken without the general parse when its lengths fit (local part at most 64, all at most 254).
_PLAIN_ADDRESS = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


@dataclass(frozen=True, slots=True)
class FieldProblem:
    index: int | None
    field: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


ItemParser = Callable[[Any, int, Sequence[str], list[FieldProblem]], T | None]


class InvalidRequest(ValueError):
    """The body cannot be stored; ``details`` names every problem found."""

    def __init__(self, message: str, details: Sequence[FieldProblem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


def parse_rfc3339(value: str) -> float:
    """Epoch seconds of an RFC 3339 date-time (offset required); ValueError otherwise."""
    if not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2024-05-01T12:00:00Z")
    return datetime.fromisoformat(value.upper()).timestamp()


def plain_address(value: str) -> str | None:
    """``parse_address(value)`` for a plain ASCII address (see ``_PLAIN_ADDRESS``), without its general parse;
    None for any other text (which ``parse_address`` then checks)."""
    match = _PLAIN_ADDRESS.fullmatch(value)
    if match is None or match.end(1) > MAX_LOCAL_OCTETS or len(value) > MAX_ADDRESS_OCTETS:
        return None
    return value.lower()


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why a text field cannot be stored, or None: lone surrogates (no encoding can store them), control
    characters (NUL is refused by PostgreSQL; the others break logs and exports; ``multiline`` allows tab
    and line breaks), line and paragraph separators."""
    for char in value:
        category = unicodedata.category(char)
        if category == "Cs":
            kind = "a lone UTF-16 surrogate"
        elif category == "Cc" and not (multiline and char in _LINE_BREAKS):
            kind = "a control character"
        elif category in ("Zl", "Zp") and not multiline:
            kind = "a line or paragraph separator"
        else:
            continue
        return f"contains {kind} (U+{ord(char):04X})"
    return None


def _text(
    item: dict[str, Any],
    key: str,
    index: int,
    problems: list[FieldProblem],
    *,
    required: bool = False,
    max_length: int = MAX_TEXT_LENGTH,
    multiline: bool = False,
) -> str | None:
    value = item.get(key)
    if value is None:
        if required:
            problems.append(FieldProblem(index, key, "is required"))
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(FieldProblem(index, key, "must be a non-empty string"))
        return None
    if len(value) > max_length:
        problems.append(FieldProblem(index, key, f"must be at most {max_length} characters"))
        return None
    problem = text_problem(value.strip(), multiline=multiline)
    if problem is not None:
        problems.append(FieldProblem(index, key, problem))
        return None
    return value.strip()


@dataclass(slots=True)
class _Common:
    """The fields unsubscribes and resubscribes share, validated."""

    email: str
    salesforce_id: str | None
    object: str | None
    occurred_at: float | None


def _parse_common(
    item: Any, index: int, objects: Sequence[str], problems: list[FieldProblem], allowed: tuple[str, ...]
) -> _Common | None:
    """The shared fields of one item (and unknown keys refused); problems are appended, None when any."""
    if not isinstance(item, dict):
        problems.append(FieldProblem(index, "", "must be a JSON object"))
        return None
    before = len(problems)
    if not _KNOWN_KEYS[allowed].issuperset(item):
        unknown = sorted(k for k in item if k not in allowed)
        for key in unknown:
            problems.append(FieldProblem(index, str(key), f"unknown field (allowed: {', '.join(allowed)})"))
    raw_email = item.get("email")
    email = None
    if raw_email is None:
        problems.append(FieldProblem(index, "email", "is required"))
    elif not isinstance(raw_email, str):
        problems.append(FieldProblem(index, "email", "must be a string"))
    else:
        try:
            email = plain_address(raw_email) or parse_address(raw_email)
        except InvalidAddress as exc:
            problems.append(FieldProblem(index, "email", f"is not a valid email address: it {exc}"))
    salesforce_id = object_name = None
    raw_id = item.get("salesforceId")
    if raw_id is not None:
        try:
            if not isinstance(raw_id, str):
                raise InvalidSalesforceId("must be a string of 15 or 18 characters")
            salesforce_id = normalize_id(raw_id)
            object_name = object_for_id(salesforce_id, objects)
        except InvalidSalesforceId as exc:
            problems.append(FieldProblem(index, "salesforceId", str(exc)))
    occurred_at = None
    raw_at = item.get("occurredAt")
    if raw_at is not None:
        try:
            if not isinstance(raw_at, str):
                raise ValueError("must be a string holding an RFC 3339 date-time")
            occurred_at = parse_rfc3339(raw_at)
        except ValueError as exc:
            problems.append(FieldProblem(index, "occurredAt", str(exc)))
    if len(problems) > before or email is None:
        return None
    return _Common(email, salesforce_id, object_name, occurred_at)


def parse_item(item: Any, index: int, objects: Sequence[str], problems: list[FieldProblem]) -> Unsubscribe | None:
    """One unsubscribe object; problems are appended (and None returned) when it is not valid."""
    before = len(problems)
    common = _parse_common(item, index, objects, problems, FIELDS)
    source = event_id = None
    if isinstance(item, dict):
        source = _text(item, "source", index, problems)
        event_id = _text(item, "eventId", index, problems)
    if common is None or len(problems) > before:
        return None
    return Unsubscribe(
        email=common.email,
        salesforce_id=common.salesforce_id,
        object=common.object,
        occurred_at=common.occurred_at,
        source=source or SOURCE_WEBHOOK,
        event_id=event_id,
    )


def parse_resubscribe_item(
    item: Any, index: int, objects: Sequence[str], problems: list[FieldProblem]
) -> Resubscribe | None:
    """One resubscribe object (``requestedBy`` and ``reason`` required); problems appended, None when not valid."""
    before = len(problems)
    common = _parse_common(item, index, objects, problems, RESUBSCRIBE_FIELDS)
    requested_by = reason = event_id = None
    if isinstance(item, dict):
        requested_by = _text(item, "requestedBy", index, problems, required=True)
        reason = _text(item, "reason", index, problems, required=True, max_length=MAX_REASON_LENGTH, multiline=True)
        event_id = _text(item, "eventId", index, problems)
    if common is None or requested_by is None or reason is None or len(problems) > before:
        return None
    return Resubscribe(
        email=common.email,
        requested_by=requested_by,
        reason=reason,
        salesforce_id=common.salesforce_id,
        object=common.object,
        occurred_at=common.occurred_at,
        event_id=event_id,
    )


def _parse_body(body: Any, objects: Sequence[str], key: str, parse: ItemParser[T], max_items: int) -> list[T]:
    """The items of a request body (one object or ``{key: [...]}``); InvalidRequest naming every problem."""
    if isinstance(body, dict) and key in body:
        extra = sorted(k for k in body if k != key)
        if extra:
            raise InvalidRequest(
                f"a batch body holds only the key '{key}'",
                [FieldProblem(None, str(k), "unknown field") for k in extra],
            )
        raw = body[key]
        if not isinstance(raw, list):
            raise InvalidRequest(f"'{key}' must be a list", [FieldProblem(None, key, "must be a list")])
        if not raw:
            raise InvalidRequest(f"'{key}' is empty", [FieldProblem(None, key, "must not be empty")])
        if len(raw) > max_items:
            raise InvalidRequest(
                f"too many {key}: {len(raw)} (at most {max_items} a request)",
                [FieldProblem(None, key, f"at most {max_items} items")],
            )
    elif isinstance(body, dict):
        raw = [body]
    else:
        raise InvalidRequest("the body must be a JSON object", [FieldProblem(None, "", "must be a JSON object")])
    problems: list[FieldProblem] = []
    items = [parse(entry, index, objects, problems) for index, entry in enumerate(raw)]
    if problems:
        count = len({p.index for p in problems})
        raise InvalidRequest(f"{count} of {len(raw)} {key} are invalid; nothing was stored", problems)
    return [item for item in items if item is not None]


def parse_unsubscribes(body: Any, objects: Sequence[str], *, max_items: int = MAX_ITEMS) -> list[Unsubscribe]:
    """The unsubscribes of a request body (one object or ``{"unsubscribes": [...]}``); InvalidRequest if any is bad."""
    return _parse_body(body, objects, "unsubscribes", parse_item, max_items)


def parse_resubscribes(body: Any, objects: Sequence[str], *, max_items: int = MAX_ITEMS) -> list[Resubscribe]:
    """The resubscribes of a request body (one object or ``{"resubscribes": [...]}``); InvalidRequest if any is bad."""
    return _parse_body(body, objects, "resubscribes", parse_resubscribe_item, max_items)

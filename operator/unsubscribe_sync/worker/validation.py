"""Validation of `POST /v1/unsubscribes` bodies: JSON in, ledger items or a list of every problem out."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from email_validator import EmailNotValidError, validate_email

from unsubscribe_sync.ledger import Unsubscribe, normalize_email
from unsubscribe_sync.ledger.models import SOURCE_WEBHOOK
from unsubscribe_sync.salesforce.ids import InvalidSalesforceId, normalize_id, object_for_id

MAX_ITEMS = 1000
MAX_EMAIL_LENGTH = 320
MAX_TEXT_LENGTH = 200
FIELDS = ("email", "salesforceId", "occurredAt", "source", "eventId")
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


@dataclass(frozen=True, slots=True)
class FieldProblem:
    index: int | None
    field: str
    message: str

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


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


def _text(item: dict[str, Any], key: str, index: int, problems: list[FieldProblem]) -> str | None:
    value = item.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(FieldProblem(index, key, "must be a non-empty string"))
        return None
    if len(value) > MAX_TEXT_LENGTH:
        problems.append(FieldProblem(index, key, f"must be at most {MAX_TEXT_LENGTH} characters"))
        return None
    return value.strip()


def parse_item(item: Any, index: int, objects: Sequence[str], problems: list[FieldProblem]) -> Unsubscribe | None:
    """One unsubscribe object; problems are appended (and None returned) when it is not valid."""
    if not isinstance(item, dict):
        problems.append(FieldProblem(index, "", "must be a JSON object"))
        return None
    before = len(problems)
    unknown = sorted(k for k in item if k not in FIELDS)
    for key in unknown:
        problems.append(FieldProblem(index, str(key), f"unknown field (allowed: {', '.join(FIELDS)})"))
    email = item.get("email")
    if email is None:
        problems.append(FieldProblem(index, "email", "is required"))
    elif not isinstance(email, str):
        problems.append(FieldProblem(index, "email", "must be a string"))
    elif len(email) > MAX_EMAIL_LENGTH:
        problems.append(FieldProblem(index, "email", f"must be at most {MAX_EMAIL_LENGTH} characters"))
    else:
        try:
            validate_email(email.strip(), check_deliverability=False)
        except EmailNotValidError as exc:
            problems.append(FieldProblem(index, "email", f"is not a valid email address: {exc}"))
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
    source = _text(item, "source", index, problems)
    event_id = _text(item, "eventId", index, problems)
    if len(problems) > before:
        return None
    assert isinstance(email, str)
    return Unsubscribe(
        email=normalize_email(email),
        salesforce_id=salesforce_id,
        object=object_name,
        occurred_at=occurred_at,
        source=source or SOURCE_WEBHOOK,
        event_id=event_id,
    )


def parse_unsubscribes(body: Any, objects: Sequence[str], *, max_items: int = MAX_ITEMS) -> list[Unsubscribe]:
    """The unsubscribes of a request body (one object or ``{"unsubscribes": [...]}``); InvalidRequest if any is bad."""
    if isinstance(body, dict) and "unsubscribes" in body:
        extra = sorted(k for k in body if k != "unsubscribes")
        if extra:
            raise InvalidRequest(
                "a batch body holds only the key 'unsubscribes'",
                [FieldProblem(None, str(k), "unknown field") for k in extra],
            )
        raw = body["unsubscribes"]
        if not isinstance(raw, list):
            problem = FieldProblem(None, "unsubscribes", "must be a list")
            raise InvalidRequest("'unsubscribes' must be a list", [problem])
        if not raw:
            raise InvalidRequest("'unsubscribes' is empty", [FieldProblem(None, "unsubscribes", "must not be empty")])
        if len(raw) > max_items:
            raise InvalidRequest(
                f"too many unsubscribes: {len(raw)} (at most {max_items} a request)",
                [FieldProblem(None, "unsubscribes", f"at most {max_items} items")],
            )
    elif isinstance(body, dict):
        raw = [body]
    else:
        raise InvalidRequest("the body must be a JSON object", [FieldProblem(None, "", "must be a JSON object")])
    problems: list[FieldProblem] = []
    items = [parse_item(entry, index, objects, problems) for index, entry in enumerate(raw)]
    if problems:
        count = len({p.index for p in problems})
        raise InvalidRequest(f"{count} of {len(raw)} unsubscribes are invalid; nothing was stored", problems)
    return [item for item in items if item is not None]

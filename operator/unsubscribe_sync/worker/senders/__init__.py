"""Native webhooks of email services (SendGrid, Mailgun, Postmark, Mandrill, Amazon SES through SNS).

Each sender module turns one signed request into a :class:`SenderBatch` of address-only events, verifying the
request its own documented way first; the public listener (``worker/public.py``) stores the events as the same
validated ``Unsubscribe`` items the internal API stores. A sender raises :class:`Unauthorized` (answered 401,
nothing stored) or :class:`Malformed` (400) and never returns a partial batch.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from unsubscribe_sync.ledger import Unsubscribe
from unsubscribe_sync.ledger.models import to_rfc3339
from unsubscribe_sync.worker.validation import FieldProblem, parse_item


class Unauthorized(Exception):
    """The request is not signed (or not credentialed) by the sender: 401, nothing stored."""


class Malformed(Exception):
    """The request is signed but its body is not what the sender documents: 400, nothing stored."""


class Unavailable(Exception):
    """Something the check needs (a certificate host) did not answer: 503, the sender retries later."""


@dataclass(frozen=True, slots=True)
class SenderEvent:
    """One unsubscribe a sender reported: an address only (matching by address is the ledger's business)."""

    email: str
    source: str
    event_id: str | None = None
    occurred_at: float | None = None


@dataclass(slots=True)
class SenderBatch:
    events: list[SenderEvent] = field(default_factory=list)
    ignored: int = 0  # events of other kinds (deliveries, opens, resubscribes, ...)
    # Set when the request was not an event delivery but a handshake answered here (SNS subscription).
    note: str | None = None


class Sender(Protocol):
    name: str

    async def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> SenderBatch:
        """Verify the request and read its events; raises Unauthorized or Malformed."""
        ...


def same(presented: str | bytes, expected: str | bytes) -> bool:
    """Constant-time equality of two secrets or signatures (text compared as UTF-8)."""
    a = presented.encode() if isinstance(presented, str) else presented
    b = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(a, b)


def epoch_of(value: Any) -> float | None:
    """Epoch seconds of a sender's timestamp: a number of seconds, or an ISO 8601 text with an offset."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return parsed.timestamp() if parsed.tzinfo is not None else None
    return None


def content_id(prefix: str, *parts: object) -> str:
    """An event id from an event's own content, for senders that give none (repeats are then stored once)."""
    import hashlib

    text = "\x1f".join(str(p) for p in parts)
    return f"{prefix}:{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def to_unsubscribes(events: Sequence[SenderEvent], objects: Sequence[str]) -> tuple[list[Unsubscribe], int]:
    """The events as validated ledger items, by the same rules as ``POST /v1/unsubscribes``.

    An event whose address those rules refuse is counted ignored rather than failing the request: the sender
    would otherwise retry the whole delivery for a day, and the other events in it are good.
    """
    items: list[Unsubscribe] = []
    refused = 0
    for index, event in enumerate(events):
        body: dict[str, Any] = {"email": event.email, "source": event.source[:200]}
        if event.event_id:
            body["eventId"] = event.event_id[:200]
        if event.occurred_at is not None:
            body["occurredAt"] = to_rfc3339(event.occurred_at)
        problems: list[FieldProblem] = []
        item = parse_item(body, index, objects, problems)
        if item is None:
            refused += 1
        else:
            items.append(item)
    return items, refused

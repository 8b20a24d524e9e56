"""Values the ledger takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

PushStatus = Literal["pending", "pushed", "failed"]

# History actions.
ACTION_UNSUBSCRIBED = "unsubscribed"
ACTION_PUSHED = "pushed"
ACTION_PUSH_FAILED = "push_failed"
ACTION_PUSH_SKIPPED = "push_skipped"
ACTION_RESUBSCRIBED = "resubscribed"

# Outcomes of a resubscribe in the history.
OUTCOME_RESUBSCRIBED = "resubscribed"  # the address was suppressed and no longer is
OUTCOME_NOT_UNSUBSCRIBED = "not_unsubscribed"  # the address was not suppressed (unknown, or resubscribed already)

SOURCE_WEBHOOK = "webhook"
SOURCE_PUSH = "push"
SOURCE_SALESFORCE_SYNC = "salesforce-sync"


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """One validated unsubscribe to store (email normalised, ID in its 18-character form)."""

    email: str
    salesforce_id: str | None = None
    object: str | None = None
    occurred_at: float | None = None
    source: str = SOURCE_WEBHOOK
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """One validated resubscribe: an explicit act naming who asked for it and why."""

    email: str
    requested_by: str
    reason: str
    salesforce_id: str | None = None
    object: str | None = None
    occurred_at: float | None = None
    source: str = SOURCE_WEBHOOK
    event_id: str | None = None


@dataclass(slots=True)
class ResubscribeResult:
    stored: int = 0  # resubscribes written (replayed events excluded)
    replayed: int = 0  # items whose eventId was already stored
    resubscribed: int = 0  # stored items whose address was suppressed until then
    not_unsubscribed: int = 0  # stored items whose address was not suppressed (recorded, nothing to undo)
    enqueued: int = 0  # Salesforce records queued to have the field cleared


@dataclass(slots=True)
class IngestResult:
    stored: int = 0  # unsubscribes written (replayed events excluded)
    replayed: int = 0  # items whose eventId was already stored
    enqueued: int = 0  # new Salesforce targets queued for the push
    skipped_no_salesforce_id: int = 0  # stored items without a Salesforce ID


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A claimed push: one Salesforce record to set."""

    id: int
    salesforce_id: str
    object: str
    email: str
    received_at: float
    attempts: int
    value: bool = True  # the value to write: True sets the opt-out, False clears it (a resubscribe)
    seq: int = 0  # the row's version when claimed (a newer act on the record bumps it)


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What happened to a claimed row: pushed, failed for good, or retry at ``next_attempt_at``."""

    row: OutboxRow
    status: Literal["pushed", "failed", "retry"]
    error: str | None = None
    next_attempt_at: float | None = None


@dataclass(slots=True)
class LedgerStats:
    backlog: int = 0
    oldest_pending_received_at: float | None = None
    by_status: dict[str, int] = field(default_factory=dict)


def to_rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)

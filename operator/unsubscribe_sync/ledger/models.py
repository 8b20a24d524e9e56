"""Values the ledger takes and returns.

The values made once per record (unsubscribes, resubscribes, outbox rows, push outcomes) are NamedTuples:
immutable like a frozen dataclass and about three times cheaper to build (0.3 against 1.0 us), which counts
at hundreds of thousands per nightly. The same holds for the per-record values of ``ledger.policy``,
``nightly.planner`` and ``salesforce.types``. Compare them only with values of their own type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, NamedTuple

PushStatus = Literal["pending", "pushed", "failed"]

# History actions.
ACTION_UNSUBSCRIBED = "unsubscribed"
ACTION_PUSHED = "pushed"
ACTION_PUSH_FAILED = "push_failed"
ACTION_PUSH_SKIPPED = "push_skipped"
ACTION_RESUBSCRIBED = "resubscribed"
ACTION_PUSH_STUCK = "push_stuck"  # retried past worker.maxAttempts on transient errors (still retried)

# Outcomes of a resubscribe in the history.
OUTCOME_RESUBSCRIBED = "resubscribed"  # the address was suppressed and no longer is
OUTCOME_NOT_UNSUBSCRIBED = "not_unsubscribed"  # the address was not suppressed (unknown, or resubscribed already)
OUTCOME_SUPERSEDED = "superseded"  # an act older (by occurredAt) than the address's current state: recorded only

SOURCE_WEBHOOK = "webhook"
SOURCE_PUSH = "push"
SOURCE_SALESFORCE_SYNC = "salesforce-sync"


class Unsubscribe(NamedTuple):
    """One validated unsubscribe to store (email normalised, ID in its 18-character form)."""

    email: str
    salesforce_id: str | None = None
    object: str | None = None
    occurred_at: float | None = None
    source: str = SOURCE_WEBHOOK
    event_id: str | None = None


class Resubscribe(NamedTuple):
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
    superseded: int = 0  # stored items older than the address's latest act (recorded, changed nothing)
    enqueued: int = 0  # Salesforce records queued to have the field cleared


@dataclass(slots=True)
class IngestResult:
    stored: int = 0  # unsubscribes written (replayed events excluded)
    replayed: int = 0  # items whose eventId was already stored
    enqueued: int = 0  # Salesforce records queued for the push
    skipped_no_salesforce_id: int = 0  # stored items without a Salesforce ID
    superseded: int = 0  # stored items older than the address's latest act (a later resubscribe wins)
    repeats: int = 0  # stored items that changed nothing (the address was unsubscribed already)


class OutboxRow(NamedTuple):
    """A claimed push: one Salesforce record to set."""

    id: int
    salesforce_id: str
    object: str
    email: str
    received_at: float
    attempts: int
    value: bool = True  # the value to write: True sets the opt-out, False clears it (a resubscribe)
    seq: int = 0  # the row's version when claimed (a newer act on the record bumps it)
    fence: int = 0  # the claim's fence token: a completion that does not present the current one is refused
    stuck: bool = False  # already reported stuck (retried past worker.maxAttempts)


class PushOutcome(NamedTuple):
    """What happened to a claimed row: pushed, failed for good, retry at ``next_attempt_at``, or held.

    ``held``: a configuration problem (field hidden, credentials refused) stopped the write; the row goes back
    untouched (no attempt counted) and the push pauses. ``stuck`` on a retry: the row has now been retried
    ``worker.maxAttempts`` times and is reported stuck (once), still retried.
    """

    row: OutboxRow
    status: Literal["pushed", "failed", "retry", "held"]
    error: str | None = None
    next_attempt_at: float | None = None
    stuck: bool = False


@dataclass(slots=True)
class LedgerStats:
    backlog: int = 0
    oldest_pending_received_at: float | None = None
    by_status: dict[str, int] = field(default_factory=dict)
    stuck: int = 0  # queued writes retried past worker.maxAttempts (still retried)
    oldest_stuck_received_at: float | None = None


@dataclass(slots=True)
class NightlyQueued:
    """What the nightly's enqueue of ``toSalesforce`` writes did."""

    queued: int = 0  # records queued (or already queued) to be set true
    resubscribed: int = 0  # records left alone: their address was resubscribed since the nightly read it


@dataclass(slots=True)
class NightlyWriteStatus:
    """Where the nightly's queued writes stand (per record id, counted)."""

    pushed: int = 0  # Salesforce confirmed the write
    failed: int = 0  # refused for a permanent reason (recorded)
    queued: int = 0  # still in the outbox (being written, or waiting for a retry)
    replaced: int = 0  # a newer act (a resubscribe) replaced the write
    stuck: int = 0  # of ``queued``: retried past worker.maxAttempts


@dataclass(slots=True)
class OptOutsAdded:
    """What adding Salesforce opt-outs to the ledger did."""

    added: int = 0  # records new to the ledger, or suppressing an address again
    pending_resubscribe: int = 0  # left alone: a resubscribe's write of false is queued or newer than the read
    in_sync: int = 0  # left alone: the true this ledger wrote or confirmed for the record and address, read back


def to_rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_epoch(value: datetime | float) -> float:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.timestamp()
    return float(value)

"""The ledger's decisions, as pure functions: which act wins, how a queued write merges, what a read means.

Every store method that changes an address or queues a Salesforce write gathers the current rows (under
a row lock on PostgreSQL), asks one of these functions, and writes what it says. They are the only place
the ordering rules live:

- Acts (unsubscribes and resubscribes) of an address are ordered by their ``occurredAt``; on a tie the
  later arrival wins. An act older than the address's current state is recorded and changes nothing.
- A queued write is replaced only by the write of an act at least as recent; a write of the same value
  only refreshes the act time.
- A Salesforce opt-out the nightly or the poll read is a new opt-out only when the read is newer than
  everything we did to that record (no write of false queued, none confirmed after the read), and when it is
  not the value this ledger itself wrote or confirmed for that record and address (reading back our own true is
  no act: taking it as one, at the time of the read, would make a resubscribe that happened before the read
  but arrives after it lose).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class AddressState(NamedTuple):
    """An address as the ledger holds it: suppressed or not, and when the act that set it happened."""

    unsubscribed: bool
    state_at: float


class Act(NamedTuple):
    """An unsubscribe (``unsubscribe=True``) or resubscribe of an address, at its occurredAt."""

    unsubscribe: bool
    at: float


class ActEffect(StrEnum):
    NEW = "new"  # the address was unknown: it takes the act's state
    CHANGES = "changes"  # newer than the current state and the opposite of it: the state flips
    REPEAT = "repeat"  # newer, and the same state: nothing changes but the act time
    SUPERSEDED = "superseded"  # older than the current state: recorded only


def act_effect(current: AddressState | None, act: Act) -> ActEffect:
    """What an act does to an address (acts ordered by occurredAt; a tie goes to the later arrival)."""
    if current is None:
        return ActEffect.NEW
    if act.at < current.state_at:
        return ActEffect.SUPERSEDED
    if act.unsubscribe == current.unsubscribed:
        return ActEffect.REPEAT
    return ActEffect.CHANGES


def state_after(current: AddressState | None, act: Act) -> AddressState:
    """The address after ``act`` (unchanged for a superseded act)."""
    effect = act_effect(current, act)
    if current is None or effect is ActEffect.CHANGES:
        return AddressState(act.unsubscribe, act.at)
    if effect is ActEffect.REPEAT:
        return AddressState(current.unsubscribed, max(current.state_at, act.at))
    return current


class QueuedWrite(NamedTuple):
    """A write owed to one Salesforce record: the value, and the time of the act it comes from."""

    value: bool
    act_at: float


class Merge(StrEnum):
    INSERT = "insert"  # nothing queued: queue it
    REPLACE = "replace"  # a different value from an act at least as recent: it replaces the queued one
    REFRESH = "refresh"  # the same value: keep the queued write, take the later act time
    KEEP = "keep"  # the queued write comes from a newer act: leave it


def merge_queued_write(existing: QueuedWrite | None, new: QueuedWrite) -> Merge:
    """How a new write merges with the one already queued for the same record."""
    if existing is None:
        return Merge.INSERT
    if new.act_at < existing.act_at:
        return Merge.KEEP
    if new.value == existing.value:
        return Merge.REFRESH if new.act_at > existing.act_at else Merge.KEEP
    return Merge.REPLACE


class SalesforceRead(StrEnum):
    NEWS = "news"  # a new opt-out made in Salesforce: an unsubscribe act at the time of the read
    PENDING_RESUBSCRIBE = "pendingResubscribe"  # Salesforce has not seen a resubscribe yet, or the read predates it
    OWN_VALUE = "ownValue"  # the true this ledger wrote or confirmed for the record and address: no act


class Confirmed(NamedTuple):
    """What Salesforce last confirmed for a record this ledger targets: the value, when, for which address."""

    value: bool
    at: float
    email: str


def is_own_value(confirmed: Confirmed | None, email: str) -> bool:
    """Salesforce last confirmed true for the record, for the address ``email`` (normalised): a true read back
    there is the value this ledger wrote or confirmed, not a new opt-out."""
    return confirmed is not None and confirmed.value and confirmed.email == email


def judge_salesforce_read(
    *, clearing_queued: bool, confirmed: Confirmed | None, email: str, read_at: float
) -> SalesforceRead:
    """What an opt-out read from Salesforce at ``read_at`` for the address ``email`` (normalised) means.

    Pending a resubscribe when a write of false is still queued for the record or its address (Salesforce has not
    seen it yet), or when Salesforce confirmed a write of false after the read began (the read predates it).
    This ledger's own value when the record's last confirmed value is true for the same address: it was read
    back, nothing happened. News otherwise.
    """
    if clearing_queued:
        return SalesforceRead.PENDING_RESUBSCRIBE
    if confirmed is not None and not confirmed.value and confirmed.at >= read_at:
        return SalesforceRead.PENDING_RESUBSCRIBE
    if is_own_value(confirmed, email):
        return SalesforceRead.OWN_VALUE
    return SalesforceRead.NEWS


@dataclass(frozen=True, slots=True)
class ClaimSize:
    """How many due rows one claim leases, and whether one Bulk 2.0 job writes them."""

    rows: int
    bulk: bool


def claim_size(waiting: int, *, limit: int, bulk_threshold: int | None, bulk_limit: int) -> ClaimSize:
    """The size of the next claim, given ``waiting`` due rows of its object and value (counted up to
    ``2 * bulk_limit + 1`` at most).

    At or below ``bulk_threshold`` (or with Bulk off) a Collections-sized claim of ``limit``. Above it the rows
    are written by Bulk jobs of at most ``bulk_limit``, split evenly: 60,000 due with a limit of 50,000 are two
    jobs of 30,000, not one of 50,000 and 10,000 left to 50 Collections calls. Past twice the limit a full job.
    """
    if bulk_threshold is None or bulk_limit <= limit or waiting <= bulk_threshold:
        return ClaimSize(limit, False)
    if waiting > 2 * bulk_limit:
        return ClaimSize(bulk_limit, True)
    jobs = -(-waiting // bulk_limit)
    return ClaimSize(-(-waiting // jobs), True)

"""What the nightly does with one plan entry: a pure decision shared by the counting pass and the apply pass.

The planner (``planner.plan_object``) says how the two sides of one id compare; the decision adds what the
ledger knows beyond the staged sides, in this order:

1. The sides agree, or the entry's Salesforce address is already suppressed (an id the ledger holds under
   another address whose Salesforce address is unsubscribed too): ``IN_SYNC``, nothing to do.
2. A Salesforce opt-out whose record or address has a resubscribe's write of false still queued:
   ``PENDING_RESUBSCRIBE``, left alone (that write is on its way; opt-out wins once it is done).
   A Salesforce opt-out that is the true the ledger itself wrote or confirmed for that record and address
   (read back, e.g. a resubscribe's write of false refused for good): ``IN_SYNC``, no act (the ledger's
   ``judge_salesforce_read`` rule, known before the apply pass so the count and the guard agree with it).
3. Opted out in Salesforce with no address to suppress: ``NO_EMAIL``, nothing to do.
4. Otherwise the planner's action: ``TO_SALESFORCE`` (set the field) or ``FROM_SALESFORCE`` (add to the ledger).

The gatherer asks the ledger, per chunk of entries, which of the addresses ``suppression_address`` names are
unsubscribed and which Salesforce opt-outs are the ledger's own value, and reads the queued clears once per
pass (``PendingClears``); ``decide`` itself reads nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from unsubscribe_sync.api.addresses import normalize_email
from unsubscribe_sync.nightly.planner import Action, PlanEntry


class Decision(StrEnum):
    IN_SYNC = "inSync"
    PENDING_RESUBSCRIBE = "pendingResubscribe"
    NO_EMAIL = "noEmail"
    TO_SALESFORCE = "toSalesforce"
    FROM_SALESFORCE = "fromSalesforce"


WRITING_DECISIONS = frozenset({Decision.TO_SALESFORCE, Decision.FROM_SALESFORCE})


@dataclass(frozen=True)
class PendingClears:
    """The records (ids) and addresses (normalised) with a resubscribe's write of false queued, of any object."""

    ids: frozenset[str] = field(default_factory=frozenset)
    emails: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, clears: tuple[set[str], set[str]]) -> PendingClears:
        """From the ledger's ``pending_clears()``."""
        ids, emails = clears
        return cls(frozenset(ids), frozenset(emails))


def suppression_address(entry: PlanEntry) -> str | None:
    """The address whose suppression decides ``entry``, or None when none does.

    Only an id the ledger holds under another address than the one Salesforce has (a Salesforce opt-out
    planned ``FROM_SALESFORCE`` with ledger records) asks: when Salesforce's address is unsubscribed already,
    the entry is in sync.
    """
    if entry.action is not Action.FROM_SALESFORCE or not entry.ledger_emails or not entry.salesforce_email:
        return None
    return entry.salesforce_email


def being_cleared(entry: PlanEntry, clearing: PendingClears) -> bool:
    """A Salesforce opt-out whose record or address has a resubscribe's write of false still queued."""
    if entry.action is not Action.FROM_SALESFORCE:
        return False
    email = entry.salesforce_email
    if entry.salesforce_id in clearing.ids:
        return True
    return bool(clearing.emails) and email is not None and normalize_email(email) in clearing.emails


def decide(entry: PlanEntry, *, clearing: PendingClears, suppressed: bool, own_value: bool) -> Decision:
    """The one decision for ``entry`` (see the module docstring for the order of the checks).

    ``suppressed``: the ledger holds ``suppression_address(entry)`` as unsubscribed; ignored for an entry
    that address does not decide. ``own_value``: Salesforce last confirmed true for the entry's record and its
    Salesforce address (``Ledger.confirmed_true_among``); ignored for an entry that is no Salesforce opt-out.
    """
    if entry.action is Action.IN_SYNC or (suppressed and suppression_address(entry) is not None):
        return Decision.IN_SYNC
    if being_cleared(entry, clearing):
        return Decision.PENDING_RESUBSCRIBE
    if own_value and entry.action is Action.FROM_SALESFORCE:
        return Decision.IN_SYNC
    if entry.action is Action.NO_EMAIL:
        return Decision.NO_EMAIL
    return _DECISION_OF_ACTION[entry.action]


_DECISION_OF_ACTION = {action: Decision(action.value) for action in Action}  # the planner's action, decided

"""The nightly sync plan: a merge join of the two sides of one Salesforce object, pure and streaming.

Inputs, both sorted ascending by Salesforce id (plain code-point order of the 18-character id):

- the Salesforce side: records of one object whose opt-out field is true (``OptedOutRecord``);
- the ledger side: the ledger's unsubscribes that carry an id of that object, as ``(salesforce_id, email)``.

Output: one ``PlanEntry`` per distinct id, in id order. Every input record lands in exactly one entry
(``PlanEntry.ledger_emails`` holds the ledger records of the id, ``salesforce_email`` the Salesforce
record), so callers can account for every record. Memory is bounded by the records of ONE id, whatever
the size of the inputs.

Opt-out wins (seed rule 4): the plan only ever sets an opt-out (``TO_SALESFORCE``) or adds an unsubscribe
(``FROM_SALESFORCE``); there is no action that clears one. An input out of order raises
``UnsortedInputError`` instead of silently producing a wrong plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from unsubscribe_sync.salesforce.types import OptedOutRecord


class Action(StrEnum):
    TO_SALESFORCE = "toSalesforce"  # in the ledger, not opted out in Salesforce: set the field
    FROM_SALESFORCE = "fromSalesforce"  # opted out in Salesforce, that email not in the ledger: add it
    IN_SYNC = "inSync"  # both sides agree: nothing to do
    NO_EMAIL = "noEmail"  # opted out in Salesforce, not in the ledger, but no email to suppress: nothing to do


WRITING_ACTIONS = frozenset({Action.TO_SALESFORCE, Action.FROM_SALESFORCE})


class UnsortedInputError(ValueError):
    """One side was not sorted ascending by Salesforce id."""


class PlanEntry(NamedTuple):
    action: Action
    object: str
    salesforce_id: str
    salesforce_email: str | None = None  # email of the opted-out Salesforce record (None: not opted out there)
    ledger_emails: tuple[str, ...] = ()  # the ledger unsubscribes holding this id (empty: none)
    salesforce_records: int = 0  # how many Salesforce input records this entry stands for (0 or 1+)

    @property
    def records(self) -> int:
        """Input records (both sides) this entry accounts for."""
        return self.salesforce_records + len(self.ledger_emails)


def _norm(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def _grouped_salesforce(records: Iterable[OptedOutRecord]) -> Iterator[tuple[str, OptedOutRecord, int]]:
    """(id, first record, how many records) per distinct id, checking the order."""
    current: OptedOutRecord | None = None
    count = 0
    for record in records:
        if current is not None:
            if record.id < current.id:
                raise UnsortedInputError(f"Salesforce side not sorted by id: {record.id} after {current.id}")
            if record.id == current.id:
                count += 1
                if current.email is None and record.email is not None:
                    current = record
                continue
            yield current.id, current, count
        current, count = record, 1
    if current is not None:
        yield current.id, current, count


def _grouped_ledger(targets: Iterable[tuple[str, str]]) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(id, emails) per distinct id, checking the order."""
    current_id: str | None = None
    emails: list[str] = []
    for salesforce_id, email in targets:
        if current_id is not None:
            if salesforce_id < current_id:
                raise UnsortedInputError(f"ledger side not sorted by id: {salesforce_id} after {current_id}")
            if salesforce_id == current_id:
                emails.append(email)
                continue
            yield current_id, tuple(emails)
        current_id, emails = salesforce_id, [email]
    if current_id is not None:
        yield current_id, tuple(emails)


def _both(object_name: str, record: OptedOutRecord, count: int, emails: tuple[str, ...]) -> PlanEntry:
    email = record.email
    # when the id is unsubscribed with another address, the address Salesforce holds must be suppressed too
    action = Action.IN_SYNC if email is None or _norm(email) in map(_norm, emails) else Action.FROM_SALESFORCE
    return PlanEntry(action, object_name, record.id, email, emails, count)


def plan_object(
    object_name: str,
    salesforce: Iterable[OptedOutRecord],
    ledger: Iterable[tuple[str, str]],
) -> Iterator[PlanEntry]:
    """Merge-join the two sorted sides of one object into plan entries (see the module docstring)."""
    sf_iter = _grouped_salesforce(salesforce)
    lg_iter = _grouped_ledger(ledger)
    sf = next(sf_iter, None)
    lg = next(lg_iter, None)
    while sf is not None or lg is not None:
        if lg is None or (sf is not None and sf[0] < lg[0]):
            assert sf is not None
            _, record, count = sf
            action = Action.FROM_SALESFORCE if record.email else Action.NO_EMAIL
            yield PlanEntry(action, object_name, record.id, record.email, (), count)
            sf = next(sf_iter, None)
        elif sf is None or lg[0] < sf[0]:
            salesforce_id, emails = lg
            yield PlanEntry(Action.TO_SALESFORCE, object_name, salesforce_id, None, emails, 0)
            lg = next(lg_iter, None)
        else:
            _, record, count = sf
            yield _both(object_name, record, count, lg[1])
            sf = next(sf_iter, None)
            lg = next(lg_iter, None)


@dataclass
class PlanCounts:
    """Running totals of a plan, per action."""

    toSalesforce: int = 0
    fromSalesforce: int = 0
    inSync: int = 0
    noEmail: int = 0

    def add(self, entry: PlanEntry) -> None:
        setattr(self, entry.action.value, getattr(self, entry.action.value) + 1)

    def as_dict(self) -> dict[str, int]:
        return {
            "toSalesforce": self.toSalesforce,
            "fromSalesforce": self.fromSalesforce,
            "inSync": self.inSync,
            "noEmail": self.noEmail,
        }

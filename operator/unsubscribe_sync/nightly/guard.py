"""The nightly sync's blast-radius guard: stop a run that would flip more records than the configured limits.

A "change" is a record the run would set in Salesforce (``toSalesforce``) or an unsubscribe it would add to
the ledger (``fromSalesforce``). Each direction is checked on its own, against the records read on the side
the changes come from, summed over the configured objects:

- ``toSalesforce`` against ``ledgerTargets`` (the ledger's unsubscribes with a Salesforce ID that were read);
- ``fromSalesforce`` against ``salesforceOptedOut`` (the opted-out Salesforce records that were read).

``maxChangeRatio`` (0 < x <= 1) trips when a direction's changes exceed that share of its records read;
``maxChanges`` (>= 0) trips when a direction's changes exceed that number. Either limit set on its own
works; with both set, either one trips the guard. Neither set: no guard (the default).

The job counts the plan of every object from its staged sides before the first write of the run, so a
tripped guard means nothing was written. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from unsubscribe_sync.api.config import NightlyConfig

# (direction, records-read key of the side the changes come from, what those records are)
DIRECTIONS: tuple[tuple[str, str, str], ...] = (
    ("toSalesforce", "ledgerTargets", "ledger unsubscribes with a Salesforce ID"),
    ("fromSalesforce", "salesforceOptedOut", "records opted out in Salesforce"),
)


@dataclass(frozen=True)
class ChangeGuard:
    max_change_ratio: float | None = None
    max_changes: int | None = None

    @classmethod
    def from_config(cls, nightly: NightlyConfig) -> ChangeGuard:
        return cls(max_change_ratio=nightly.maxChangeRatio, max_changes=nightly.maxChanges)

    @property
    def active(self) -> bool:
        return self.max_change_ratio is not None or self.max_changes is not None

    def trips(self, planned: Mapping[str, int], read: Mapping[str, int]) -> list[str]:
        """One message per limit a direction exceeds (empty: the run may write).

        ``planned``: changes per direction; ``read``: records read per side (``ledgerTargets``,
        ``salesforceOptedOut``).
        """
        found: list[str] = []
        for direction, side, noun in DIRECTIONS:
            changes = planned.get(direction, 0)
            total = read.get(side, 0)
            share = f"{changes / total:.1%}" if total else "all"
            what = f"{direction}: the run would make {changes} changes ({share} of the {total} {noun} read)"
            if self.max_changes is not None and changes > self.max_changes:
                found.append(f"{what}, over the limit maxChanges {self.max_changes}")
            if self.max_change_ratio is not None and changes > self.max_change_ratio * total:
                found.append(
                    f"{what}, over the limit maxChangeRatio {self.max_change_ratio:g} "
                    f"(at most {int(self.max_change_ratio * total)} changes)"
                )
        return found

    def report(self, planned: Mapping[str, int], read: Mapping[str, int], *, dry_run: bool) -> dict[str, Any]:
        """The summary's ``guard`` section: the limits, the planned changes, and whether (and why) it trips."""
        trips = self.trips(planned, read)
        out: dict[str, Any] = {
            "maxChangeRatio": self.max_change_ratio,
            "maxChanges": self.max_changes,
            "planned": {direction: planned.get(direction, 0) for direction, _, _ in DIRECTIONS},
            "tripped": bool(trips),
        }
        if trips:
            out["reason"] = stop_message(trips, dry_run=dry_run)
        return out


def stop_message(trips: list[str], *, dry_run: bool) -> str:
    """The run's error when the guard trips: what, the limit, and how to proceed."""
    head = "change guard: " + "; ".join(trips)
    if dry_run:
        return head + ". A real run would stop here and write nothing."
    return (
        head + ". Nothing was written. If these changes are expected, raise the limit "
        "(spec.nightlySync.maxChangeRatio / maxChanges, or nightly.maxChangeRatio / maxChanges in the config) "
        "and re-run; run `unsubscribe-sync nightly --dry-run` to see the plan."
    )

"""The blast-radius guard's arithmetic (pure): per direction, against the records read on the source side."""

from __future__ import annotations

import pytest

from unsubscribe_sync.api.config import NightlyConfig
from unsubscribe_sync.nightly.guard import ChangeGuard

READ = {"ledgerTargets": 1000, "salesforceOptedOut": 200}


def test_no_limit_is_no_guard() -> None:
    guard = ChangeGuard.from_config(NightlyConfig())
    assert not guard.active
    assert guard.trips({"toSalesforce": 10**9, "fromSalesforce": 10**9}, READ) == []


@pytest.mark.parametrize(
    ("planned", "tripped"),
    [
        ({"toSalesforce": 100, "fromSalesforce": 20}, []),  # exactly at the ratio: allowed
        ({"toSalesforce": 101, "fromSalesforce": 0}, ["toSalesforce"]),
        ({"toSalesforce": 0, "fromSalesforce": 21}, ["fromSalesforce"]),  # against the Salesforce side
        ({"toSalesforce": 500, "fromSalesforce": 200}, ["toSalesforce", "fromSalesforce"]),
    ],
)
def test_ratio_is_per_direction_against_its_source_side(planned: dict[str, int], tripped: list[str]) -> None:
    trips = ChangeGuard(max_change_ratio=0.1).trips(planned, READ)
    assert [t.split(":")[0] for t in trips] == tripped
    assert all("maxChangeRatio 0.1" in t for t in trips)


def test_count_limit_and_both_limits() -> None:
    assert ChangeGuard(max_changes=50).trips({"toSalesforce": 50, "fromSalesforce": 50}, READ) == []
    (only,) = ChangeGuard(max_changes=50).trips({"toSalesforce": 51, "fromSalesforce": 0}, READ)
    assert only.startswith("toSalesforce: the run would make 51 changes (5.1% of the 1000 ledger")
    assert only.endswith("over the limit maxChanges 50")
    both = ChangeGuard(max_change_ratio=0.5, max_changes=10).trips({"toSalesforce": 11, "fromSalesforce": 0}, READ)
    assert len(both) == 1 and "maxChanges 10" in both[0]  # 11 is under half of 1000: only the count trips


def test_nothing_read_means_nothing_to_change() -> None:
    guard = ChangeGuard(max_change_ratio=0.01, max_changes=0)
    assert guard.trips({"toSalesforce": 0, "fromSalesforce": 0}, {"ledgerTargets": 0, "salesforceOptedOut": 0}) == []


def test_report_and_message_say_how_to_proceed() -> None:
    guard = ChangeGuard(max_changes=0)
    report = guard.report({"toSalesforce": 1}, READ, dry_run=False)
    assert report["tripped"] is True and report["planned"] == {"toSalesforce": 1, "fromSalesforce": 0}
    assert "Nothing was written" in report["reason"] and "raise the limit" in report["reason"]
    assert "--dry-run" in report["reason"]
    dry = guard.report({"toSalesforce": 1}, READ, dry_run=True)
    assert "A real run would stop here" in dry["reason"]
    assert guard.report({}, READ, dry_run=False) == {
        "maxChangeRatio": None,
        "maxChanges": 0,
        "planned": {"toSalesforce": 0, "fromSalesforce": 0},
        "tripped": False,
    }

"""Unit tests of the soak harness's pure parts: the fault schedule, the verdict and the report."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from tests.soak.contention import Act, ContentionReport
from tests.soak.contention import problems as contention_problems
from tests.soak.report import render_reliability
from tests.soak.schedule import (
    LONG,
    SHORT,
    FaultKind,
    FaultWindow,
    SoakProfile,
    build_schedule,
    faults_by_kind,
    outage_end,
)
from tests.soak.traffic import SentItem, Target, TrafficReport
from tests.soak.verdict import (
    NOT_STORED,
    PAUSED_RATE_LIMITED,
    PAUSED_TRANSIENT,
    PUSHER_ERRORS,
    REAUTHENTICATIONS,
    RECORDS_FAILED,
    RECORDS_RETRIED,
    Observations,
    figures,
    percentile,
    violations,
    worker_evidence,
)


@pytest.mark.parametrize("profile", [SHORT, LONG], ids=lambda p: p.name)
def test_schedules_are_ordered_inside_the_traffic_phase_and_alternate_kills(profile: SoakProfile) -> None:
    schedule = build_schedule(profile)
    assert [w.start for w in schedule] == sorted(w.start for w in schedule)
    assert all(0 <= w.start < profile.traffic_seconds for w in schedule)
    kills = [w for w in schedule if w.kind is FaultKind.WORKER_KILL]
    assert kills and all(w.end < profile.traffic_seconds for w in kills)
    assert [w.target for w in kills] == [n % 2 for n in range(len(kills))]
    for a, b in itertools.pairwise(kills):
        assert a.end <= b.start, "two workers are never down at once"
    counts = faults_by_kind(schedule)
    assert all(counts[k.value] >= 1 for k in FaultKind), counts


def test_the_long_profile_holds_the_rate_limit_for_a_minute() -> None:
    windows = [w for w in build_schedule(LONG) if w.kind is FaultKind.RATE_LIMIT]
    assert max(w.duration for w in windows) >= 60


def test_outage_end_is_the_end_of_the_last_refusing_window() -> None:
    schedule = [
        FaultWindow(FaultKind.SANDBOX_OUTAGE, 3, 2),
        FaultWindow(FaultKind.RATE_LIMIT, 10, 4),
        FaultWindow(FaultKind.WORKER_KILL, 20, 1, target=0),
    ]
    assert outage_end(schedule) == 14
    assert outage_end([FaultWindow(FaultKind.WORKER_KILL, 1, 1, target=0)]) is None


def test_percentile() -> None:
    assert percentile([], 0.5) == 0.0
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0


def _traffic(statuses: Counter[str] | None = None) -> TrafficReport:
    traffic = TrafficReport(
        started=1000.0, finished=1030.0, requests=4, batches=3, statuses=statuses or Counter({"202": 3})
    )
    traffic.items = {
        "a@x.com": SentItem("a@x.com", "003A", "e1", accepted_at=1001.0),
        "b@x.com": SentItem("b@x.com", "00QB", "e2", accepted_at=1012.0),
        "c@x.com": SentItem("c@x.com", None, "e3", accepted_at=1002.0),
        "d@x.com": SentItem("d@x.com", "003D", "e4", accepted_at=None),  # never accepted: not owed
    }
    return traffic


def _observations(**changes: object) -> Observations:
    traffic = _traffic()
    values: dict[str, object] = {
        "profile": "unit",
        "schedule": [FaultWindow(FaultKind.SANDBOX_OUTAGE, 5, 5)],
        "traffic": traffic,
        "faults_injected": {FaultKind.SANDBOX_OUTAGE.value: 1},
        "opted_out": {"003A": True, "00QB": True},
        "write_counts": {"003A": 1, "00QB": 2},
        "first_true_at": {"003A": 1001.5, "00QB": 1013.0},
        "ledger_emails": ["a@x.com", "b@x.com", "c@x.com"],
        "outbox_left": 0,
        "histories": {
            "a@x.com": {"unsubscribed": True, "history": [{"action": "unsubscribed"}, {"action": "pushed"}]},
            "c@x.com": {"unsubscribed": True, "history": [{"action": "unsubscribed"}, {"action": "push_skipped"}]},
        },
        "nightly_summary": {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 1, "failed": 0},
        "nightly_exit": 0,
        "max_writes_per_record": 2,
    }
    values.update(changes)
    return Observations(**values)  # type: ignore[arg-type]


def test_a_clean_run_has_no_violations_and_the_right_figures() -> None:
    obs = _observations()
    assert violations(obs) == []
    f = figures(obs)
    assert (f["unsubscribes_sent"], f["unsubscribes_accepted"], f["accepted_with_salesforce_id"]) == (4, 3, 2)
    assert (f["lost"], f["records_written_more_than_once"], f["duplicate_writes"]) == (0, 1, 1)
    assert f["lag_max_seconds"] == 1.0
    assert f["recovery_seconds_after_outage"] == 0.0  # everything accepted before t=10 s landed before it
    assert f["lag_max_seconds_by_fault"] == {}  # nothing was accepted during the window (t=5-10 s)
    windows = [FaultWindow(FaultKind.SANDBOX_OUTAGE, 0, 5), FaultWindow(FaultKind.LOCK_ROW, 11, 2)]
    during = _observations(schedule=windows)
    assert figures(during)["lag_max_seconds_by_fault"] == {
        FaultKind.SANDBOX_OUTAGE.value: 0.5,  # a@x.com, accepted at 1 s, true at 1.5 s
        FaultKind.LOCK_ROW.value: 1.0,  # b@x.com, accepted at 12 s, true at 13 s
    }


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"opted_out": {"003A": True, "00QB": False}}, "not opted out in Salesforce"),
        ({"write_counts": {"003A": 3, "00QB": 1}}, "written more than 2 times"),
        ({"ledger_emails": ["a@x.com", "A@x.com ", "b@x.com", "c@x.com"]}, "more than once"),
        ({"ledger_emails": ["a@x.com", "b@x.com"]}, "missing from the ledger"),
        ({"outbox_left": 2}, "still owed"),
        ({"traffic": _traffic(statuses=Counter({"202": 2, "400": 1}))}, "refused valid requests"),
        ({"histories": {"a@x.com": None}}, "answered 404"),
        ({"histories": {"a@x.com": {"unsubscribed": True, "history": []}}}, "does not tell what happened"),
        ({"histories": {"a@x.com": {"unsubscribed": True, "history": [{"action": "unsubscribed"}]}}}, "what happened"),
        ({"histories": {"c@x.com": {"unsubscribed": True, "history": [{"action": "unsubscribed"}]}}}, "what happened"),
        ({"nightly_exit": 1}, "exited with 1"),
        ({"nightly_summary": {"toSalesforce": 3, "failed": 0}}, "still had work to push"),
        ({"nightly_summary": None}, "still had work to push"),
        ({"nightly_summary": {"toSalesforce": 0, "failed": 2}}, "had failures"),
    ],
)
def test_each_broken_invariant_is_named(changes: dict[str, object], words: str) -> None:
    problems = violations(_observations(**changes))
    assert len(problems) == 1 and words in problems[0], problems


def test_the_report_shows_the_figures_and_the_verdict() -> None:
    obs = _observations()
    text = render_reliability(SHORT, build_schedule(SHORT), figures(obs), [], {"machine": "unit"})
    assert text.startswith("# Reliability")
    assert "| **lost** (accepted, not opted out in Salesforce at the end) | **0** |" in text
    assert "all invariants held" in text
    for kind in FaultKind:
        assert kind.value in text
    failed = render_reliability(SHORT, build_schedule(SHORT), figures(obs), ["2 lost"], {})
    assert "**FAILED**" in failed and "- 2 lost" in failed


def test_worker_evidence_counts_what_the_logs_say() -> None:
    lines = [
        '{"event": "push_batch", "records": 5, "pushed": 3, "failed": 1, "retry": 1}',
        '{"event": "push_batch", "records": 2, "pushed": 0, "failed": 0, "retry": 2}',
        '{"event": "push_paused", "error_class": "transient"}',
        '{"event": "push_paused", "error_class": "rate_limited"}',
        '{"event": "push_paused", "error_class": "rate_limited"}',
        '{"event": "salesforce.reauthenticate"}',
        '{"event": "unsubscribes_not_stored"}',
        "----- start #2 at 10:00:00.000Z: not json",
        "{broken",
    ]
    counts = worker_evidence(["\n".join(lines[:4]), "\n".join(lines[4:])])
    assert counts[RECORDS_RETRIED] == 3 and counts[RECORDS_FAILED] == 1
    assert counts[PAUSED_TRANSIENT] == 1 and counts[PAUSED_RATE_LIMITED] == 2
    assert counts[REAUTHENTICATIONS] == 1 and counts[NOT_STORED] == 1 and counts[PUSHER_ERRORS] == 0


def _contention_report() -> tuple[ContentionReport, list[Target]]:
    a = Target("003000000000001AAA", "Contact", "a@example.com")
    b = Target("003000000000002AAA", "Contact", "b@example.com")
    report = ContentionReport()
    # a: the resubscribe arrives last but is older: still unsubscribed. b: the later resubscribe wins.
    report.acts = [Act("unsubscribe", a, 20.0, "e1"), Act("resubscribe", a, 10.0, "e2"),
                   Act("unsubscribe", b, 10.0, "e3"), Act("resubscribe", b, 30.0, "e4"),
                   Act("unsubscribe", b, 20.0, "e5")]  # fmt: skip
    return report, [a, b]


def test_contention_expects_the_latest_occurred_at_whatever_the_arrival_order() -> None:
    report, (a, b) = _contention_report()
    assert {e: want for e, (_, want) in report.expected().items()} == {a.email: True, b.email: False}
    ledger = {a.email: True, b.email: False}
    assert contention_problems(report, ledger, {a.salesforce_id}, [a, b], {}, set()) == []


def test_contention_problems_name_disagreements_hostile_answers_and_failed_locks() -> None:
    report, (a, b) = _contention_report()
    report.locked = [a]
    report.hostile_wrong = ["NUL in source: 503"]
    report.canaries = ["canary@soak.example.com"]
    ledger = {a.email: True, b.email: True, "canary@soak.example.com": True}
    found = contention_problems(report, ledger, {a.salesforce_id}, [a, b], {a.email: {"history": []}},
                                {a.salesforce_id})  # fmt: skip
    text = "\n".join(found)
    assert "not answered 400" in text and "refused (400) batch were stored" in text
    assert "b@example.com: the acts say unsubscribed=False, the ledger True" in text
    assert "Salesforce and the ledger disagree" in text
    assert "marked failed" in text and "not reported stuck" not in text and "was reported stuck" in text

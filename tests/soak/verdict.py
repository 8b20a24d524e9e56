"""What a soak run observed, the figures it yields and the invariants it must hold (pure, unit-tested)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.soak.schedule import FaultWindow, outage_end
from tests.soak.traffic import TrafficReport


@dataclass
class Observations:
    profile: str
    schedule: list[FaultWindow]
    traffic: TrafficReport
    faults_injected: dict[str, int]  # by FaultKind value: what the runner actually did
    opted_out: dict[str, bool]  # final field value in the sandbox, per 18-char id the traffic used
    write_counts: dict[str, int]  # how many times the sandbox wrote each of those records
    first_true_at: dict[str, float]  # wall-clock time the sandbox first held the field true
    ledger_emails: list[str]  # every email row of the ledger's suppression list
    outbox_left: int  # writes still owed to Salesforce at the end
    histories: dict[str, dict[str, Any]]  # GET /v1/unsubscribes/{email} answers for a sample (None: 404)
    nightly_summary: dict[str, int] | None
    nightly_exit: int | None
    max_writes_per_record: int
    worker_restarts: int = 0
    worker_evidence: dict[str, int] = field(default_factory=dict)  # what the workers' logs say they met
    notes: list[str] = field(default_factory=list)
    contention: dict[str, Any] = field(default_factory=dict)  # tests/soak/contention.py figures
    contention_problems: list[str] = field(default_factory=list)  # ... and broken invariants (end state included)


RECORDS_RETRIED = "records retried after a per-record error (UNABLE_TO_LOCK_ROW)"
RECORDS_FAILED = "records failed for good"
PAUSED_TRANSIENT = "pushes paused after a transient error (503 / 5xx / timeout)"
PAUSED_RATE_LIMITED = "pushes paused after REQUEST_LIMIT_EXCEEDED"
REAUTHENTICATIONS = "re-authentications after INVALID_SESSION_ID"
NOT_STORED = "webhook requests answered 503 (ledger unavailable, nothing stored)"
PUSHER_ERRORS = "push loop errors survived (ledger unavailable)"


def worker_evidence(log_texts: Iterable[str]) -> dict[str, int]:
    """Count, from the workers' JSON log lines, the faults they met and how they reacted."""
    counts = dict.fromkeys(
        (RECORDS_RETRIED, RECORDS_FAILED, PAUSED_TRANSIENT, PAUSED_RATE_LIMITED, REAUTHENTICATIONS, NOT_STORED,
         PUSHER_ERRORS), 0
    )  # fmt: skip
    for text in log_texts:
        for line in text.splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            event = entry.get("event")
            if event == "push_batch":
                counts[RECORDS_RETRIED] += int(entry.get("retry", 0))
                counts[RECORDS_FAILED] += int(entry.get("failed", 0))
            elif event == "push_paused":
                key = PAUSED_RATE_LIMITED if entry.get("error_class") == "rate_limited" else PAUSED_TRANSIENT
                counts[key] += 1
            elif event == "salesforce.reauthenticate":
                counts[REAUTHENTICATIONS] += 1
            elif event == "unsubscribes_not_stored":
                counts[NOT_STORED] += 1
            elif event == "pusher_error":
                counts[PUSHER_ERRORS] += 1
    return counts


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


def figures(obs: Observations) -> dict[str, Any]:
    """The numbers the reliability report shows."""
    t = obs.traffic
    accepted = t.accepted
    with_id = [i for i in accepted if i.salesforce_id]
    lags = [
        obs.first_true_at[i.salesforce_id] - i.accepted_at
        for i in with_id
        if i.salesforce_id in obs.first_true_at and i.accepted_at is not None
    ]
    lost = [i for i in with_id if not obs.opted_out.get(i.salesforce_id or "", False)]
    writes = [obs.write_counts.get(i.salesforce_id or "", 0) for i in with_id]
    end = outage_end(obs.schedule)
    recovery = None
    if end is not None:
        end_wall = t.started + end
        before = [
            obs.first_true_at[i.salesforce_id]
            for i in with_id
            if i.accepted_at is not None and i.accepted_at <= end_wall and i.salesforce_id in obs.first_true_at
        ]
        recovery = max(0.0, max(before) - end_wall) if before else 0.0
    ledger = Counter(e.strip().lower() for e in obs.ledger_emails)
    return {
        "profile": obs.profile,
        "traffic_seconds": round(t.finished - t.started, 1),
        "requests": t.requests,
        "request_bodies": t.batches,
        "replayed_bodies": t.replays,
        "retried_requests": t.retries,
        "statuses": dict(sorted(t.statuses.items())),
        "bodies_given_up": t.given_up,
        "unsubscribes_sent": t.unsubscribes_sent,
        "unsubscribes_accepted": len(accepted),
        "accepted_with_salesforce_id": len(with_id),
        "accepted_without_salesforce_id": len(accepted) - len(with_id),
        "faults_scheduled": _count_kinds(obs.schedule),
        "faults_injected": dict(obs.faults_injected),
        "lost": len(lost),
        "records_written_more_than_once": sum(1 for w in writes if w > 1),
        "duplicate_writes": sum(w - 1 for w in writes if w > 1),
        "max_writes_per_record": max(writes, default=0),
        "lag_p50_seconds": round(percentile(lags, 0.5), 2),
        "lag_p95_seconds": round(percentile(lags, 0.95), 2),
        "lag_max_seconds": round(max(lags, default=0.0), 2),
        "lag_max_seconds_by_fault": lag_by_fault(obs),
        "recovery_seconds_after_outage": None if recovery is None else round(recovery, 2),
        "ledger_rows": len(obs.ledger_emails),
        "ledger_duplicate_emails": sum(n - 1 for n in ledger.values() if n > 1),
        "outbox_left": obs.outbox_left,
        "nightly_summary": obs.nightly_summary,
        "worker_restarts": obs.worker_restarts,
        "worker_evidence": dict(obs.worker_evidence),
        "contention": dict(obs.contention),
    }


def lag_by_fault(obs: Observations, instant_span: float = 5.0) -> dict[str, float]:
    """Max lag of the unsubscribes accepted while each kind of fault was on (an instant fault: the
    ``instant_span`` seconds after it)."""
    t = obs.traffic
    result: dict[str, float] = {}
    for w in obs.schedule:
        start = t.started + w.start
        end = t.started + (w.end if w.duration else w.start + instant_span)
        lags = [
            obs.first_true_at[i.salesforce_id] - i.accepted_at
            for i in t.accepted
            if i.salesforce_id in obs.first_true_at and i.accepted_at is not None and start <= i.accepted_at <= end
        ]
        if lags:
            result[w.kind.value] = round(max(result.get(w.kind.value, 0.0), *lags), 2)
    return result


def _count_kinds(schedule: list[FaultWindow]) -> dict[str, int]:
    return dict(Counter(w.kind.value for w in schedule))


def violations(obs: Observations) -> list[str]:
    """Every broken invariant, in words (empty: the run passed)."""
    problems: list[str] = []
    accepted = obs.traffic.accepted
    with_id = [i for i in accepted if i.salesforce_id]
    lost = [i for i in with_id if not obs.opted_out.get(i.salesforce_id or "", False)]
    if lost:
        sample = ", ".join(f"{i.salesforce_id} ({i.event_id})" for i in lost[:5])
        problems.append(f"{len(lost)} accepted unsubscribes are not opted out in Salesforce, e.g. {sample}")
    over = {
        i.salesforce_id: obs.write_counts.get(i.salesforce_id or "", 0)
        for i in with_id
        if obs.write_counts.get(i.salesforce_id or "", 0) > obs.max_writes_per_record
    }
    if over:
        sample = dict(list(over.items())[:5])
        problems.append(f"{len(over)} records written more than {obs.max_writes_per_record} times: {sample}")
    ledger = Counter(e.strip().lower() for e in obs.ledger_emails)
    dupes = {e: n for e, n in ledger.items() if n > 1}
    if dupes:
        problems.append(f"the ledger holds {len(dupes)} emails more than once: {list(dupes)[:5]}")
    missing = [i.email for i in accepted if i.email.strip().lower() not in ledger]
    if missing:
        problems.append(f"{len(missing)} accepted unsubscribes are missing from the ledger, e.g. {missing[:5]}")
    refused = {k: n for k, n in obs.traffic.statuses.items() if k.startswith("4")}
    if refused:
        problems.append(f"the workers refused valid requests: {refused}")
    if obs.outbox_left:
        problems.append(f"{obs.outbox_left} writes still owed to Salesforce after the drain period")
    for email, answer in obs.histories.items():
        if answer is None:
            problems.append(f"GET /v1/unsubscribes/{email} answered 404 for an accepted unsubscribe")
            continue
        sent = obs.traffic.items.get(email)
        actions = {h.get("action") for h in answer.get("history") or []}
        # received, then pushed to Salesforce (with an ID) or counted as skipped (without one)
        wanted = {"unsubscribed", "pushed" if sent is not None and sent.salesforce_id else "push_skipped"}
        if answer.get("unsubscribed") is not True or not wanted <= actions:
            problems.append(f"GET /v1/unsubscribes/{email} does not tell what happened: {answer}")
    problems += obs.contention_problems
    if obs.nightly_exit != 0:
        problems.append(f"the nightly run after the soak exited with {obs.nightly_exit}")
    elif obs.nightly_summary is None or obs.nightly_summary.get("toSalesforce") != 0:
        problems.append(f"the nightly run after the soak still had work to push: {obs.nightly_summary}")
    elif obs.nightly_summary.get("failed"):
        problems.append(f"the nightly run after the soak had failures: {obs.nightly_summary}")
    return problems

"""The worker's Prometheus metrics, in a registry of its own (several apps can live in one process).

Figures that must survive restarts (backlog, nightly runs) are read from the ledger at
scrape time by a collector (with a deadline: a scrape never hangs on the database, it serves the
last figures read, marked stale); counters of this process's events are plain metrics.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from unsubscribe_sync.ledger import Ledger, LedgerStats
from unsubscribe_sync.logs import get_logger

log = get_logger(__name__)

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86400, 2 * 86400)


@dataclass(frozen=True)
class LedgerSnapshot:
    """The ledger's figures as last read (a scrape serves them; it never waits on the database)."""

    stats: LedgerStats
    last_success: dict[str, Any] | None
    totals: dict[str, int]
    read_at: float


class LedgerCollector(Collector):
    """Backlog and nightly-run figures from the ledger, served from the last successful read.

    ``refresh`` (blocking: the worker runs it in a thread, with a deadline) reads the ledger; when a
    read fails or is overdue ``mark_stale`` sets ``unsubscribe_sync_ledger_up`` to 0 and the last
    known figures are still served (the scrape answers; the alert on ledger_up says they are stale).
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._snapshot: LedgerSnapshot | None = None
        self._up = False

    def refresh(self) -> None:
        try:
            snapshot = LedgerSnapshot(
                stats=self._ledger.stats(),
                last_success=self._ledger.last_sync_run(successful_only=True),
                totals=self._ledger.nightly_totals(),
                read_at=time.time(),
            )
        except Exception as exc:  # a scrape must not fail because the database is away
            log.warning("metrics_ledger_unavailable", error=type(exc).__name__)
            self._up = False
            raise
        self._snapshot, self._up = snapshot, True

    def mark_stale(self) -> None:
        self._up = False

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "unsubscribe_sync_ledger_up", "1 when the ledger answered at this scrape; 0: ledger figures are stale"
        )
        up.add_metric([], 1 if self._up else 0)
        yield up
        snapshot = self._snapshot
        if snapshot is None:
            return
        read = GaugeMetricFamily(
            "unsubscribe_sync_ledger_read_timestamp_seconds", "When the ledger figures served here were read"
        )
        read.add_metric([], snapshot.read_at)
        yield read
        stats, last, totals = snapshot.stats, snapshot.last_success, snapshot.totals
        backlog = GaugeMetricFamily("unsubscribe_sync_push_backlog", "Unsubscribes waiting to be written to Salesforce")
        backlog.add_metric([], stats.backlog)
        yield backlog
        oldest = GaugeMetricFamily(
            "unsubscribe_sync_push_oldest_pending_seconds",
            "Age of the oldest unsubscribe not yet confirmed by Salesforce (0 when none)",
        )
        received = stats.oldest_pending_received_at
        oldest.add_metric([], max(0.0, time.time() - received) if received is not None else 0.0)
        yield oldest
        stuck = GaugeMetricFamily(
            "unsubscribe_sync_push_stuck_records",
            "Queued writes retried past worker.maxAttempts on transient errors (still retried, never given up)",
        )
        stuck.add_metric([], stats.stuck)
        yield stuck
        oldest_stuck = GaugeMetricFamily(
            "unsubscribe_sync_push_oldest_stuck_seconds",
            "Age of the oldest stuck write, from when its unsubscribe was received (0 when none)",
        )
        received = stats.oldest_stuck_received_at
        oldest_stuck.add_metric([], max(0.0, time.time() - received) if received is not None else 0.0)
        yield oldest_stuck
        targets = GaugeMetricFamily(
            "unsubscribe_sync_salesforce_targets", "Salesforce records in the ledger by push status", labels=["status"]
        )
        for status, count in sorted(stats.by_status.items()):
            targets.add_metric([status], count)
        yield targets
        success = GaugeMetricFamily(
            "unsubscribe_sync_nightly_last_success_timestamp_seconds",
            "End time of the last successful nightly sync (Unix seconds; 0 when none yet)",
        )
        success.add_metric([], float(last["endedAtEpoch"]) if last else 0.0)
        yield success
        records = CounterMetricFamily(
            "unsubscribe_sync_nightly_records",
            "Records written by nightly syncs, by direction",
            labels=["direction"],
        )
        records.add_metric(["to_salesforce"], totals["toSalesforce"])
        records.add_metric(["from_salesforce"], totals["fromSalesforce"])
        yield records


class WorkerMetrics:
    def __init__(self, ledger: Ledger | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "unsubscribe_sync_unsubscribes_received", "Unsubscribes accepted by the webhook", registry=r
        )
        self.replayed = Counter(
            "unsubscribe_sync_unsubscribes_replayed", "Webhook items whose eventId was already stored", registry=r
        )
        self.push_records = Counter(
            "unsubscribe_sync_push_records",
            "Records handled by the real-time push, by object and outcome (pushed|failed|skipped)",
            ["object", "outcome"],
            registry=r,
        )
        self.resubscribes_received = Counter(
            "unsubscribe_sync_resubscribes_received", "Resubscribes accepted by the API", registry=r
        )
        self.resubscribe_push_records = Counter(
            "unsubscribe_sync_resubscribe_push_records",
            "Records whose opt-out a resubscribe cleared in Salesforce, by object and outcome (pushed|failed)",
            ["object", "outcome"],
            registry=r,
        )
        self.push_retries = Counter(
            "unsubscribe_sync_push_retries", "Record writes scheduled for retry", ["object", "error_class"], registry=r
        )
        self.push_lag = Histogram(
            "unsubscribe_sync_push_lag_seconds",
            "Time from receiving an unsubscribe to Salesforce confirming the write",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.email_matches = Histogram(
            "unsubscribe_sync_email_matches",
            "Email mode: Salesforce records found per resolved address",
            buckets=(0, 1, 2, 3, 5, 10, 25, 100),
            registry=r,
        )
        self.resolve_failures = Counter(
            "unsubscribe_sync_resolve_failures",
            "Email mode: addresses whose Salesforce records could not be looked up, by error class (retried)",
            ["error_class"],
            registry=r,
        )
        self.salesforce_requests = Counter(
            "unsubscribe_sync_salesforce_requests",
            "Salesforce API requests by operation and HTTP status",
            ["operation", "status"],
            registry=r,
        )
        self.api_usage = Gauge(
            "unsubscribe_sync_salesforce_api_usage_ratio",
            "Share of the org's daily API request allowance used (from Sforce-Limit-Info)",
            registry=r,
        )
        self.push_healthy = Gauge(
            "unsubscribe_sync_push_healthy",
            "1 while the push can write to Salesforce; 0 on a configuration problem (field, credentials)",
            registry=r,
        )
        self.push_paused_until = Gauge(
            "unsubscribe_sync_push_paused_until_timestamp_seconds",
            "When a paused push (outage, rate limit, configuration problem) tries again; 0 when running",
            registry=r,
        )
        self.http_requests = Counter(
            "unsubscribe_sync_http_requests",
            "HTTP requests served by the worker",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "unsubscribe_sync_http_request_duration_seconds",
            "HTTP request handling time",
            ["route"],
            registry=r,
        )
        self.body_bytes_in_flight = Gauge(
            "unsubscribe_sync_http_body_bytes_in_flight",
            "Request-body bytes reserved by requests being read or handled (bounded by worker.maxBodyBytesInFlight)",
            registry=r,
        )
        self.body_bytes_limit = Gauge(
            "unsubscribe_sync_http_body_bytes_limit",
            "The budget on request-body bytes in flight (worker.maxBodyBytesInFlight)",
            registry=r,
        )
        self.poll_last_success = Gauge(
            "unsubscribe_sync_salesforce_poll_last_success_timestamp_seconds",
            "When the Salesforce poll last read every object (from the ledger: the same on every replica); "
            "0 before the first poll",
            registry=r,
        )
        self.poll_interval = Gauge(
            "unsubscribe_sync_salesforce_poll_interval_seconds",
            "salesforcePoll.intervalSeconds while the poll runs (the SalesforcePollStale alert allows 3 of them)",
            registry=r,
        )
        self.poll_records = Counter(
            "unsubscribe_sync_salesforce_poll_records",
            "Opt-outs set in Salesforce that the poll added to the ledger, by object",
            ["object"],
            registry=r,
        )
        self.poll_paused = Gauge(
            "unsubscribe_sync_salesforce_poll_paused",
            "1 while the Salesforce poll is paused (REQUEST_LIMIT_EXCEEDED or the API reserve reached)",
            registry=r,
        )
        self.push_healthy.set(1)
        # label children of the per-request metrics, resolved once (labels() per request cost a lock and a
        # tuple of label values each time); the keys are bounded: fixed methods, route patterns, status codes
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.ledger: LedgerCollector | None = None
        if ledger is not None:
            self.ledger = LedgerCollector(ledger)
            r.register(self.ledger)

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """One answered HTTP request: ``http_requests{method,route,status}`` and ``http_duration{route}``
        (``method`` one of a fixed set and ``route`` a route pattern: never client text)."""
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:
            count = self.http_requests.labels(method=method, route=route, status=str(status))
            children = self._request_children[key] = (count, self.http_duration.labels(route=route))
        children[0].inc()
        children[1].observe(seconds)

    def on_salesforce_request(self, operation: str, status: Any) -> None:
        """The Salesforce client's on_request hook (called from the client's thread)."""
        self.salesforce_requests.labels(operation=str(operation), status=str(status)).inc()

    def render(self) -> bytes:
        """The exposition text; no I/O (ledger figures come from the last ``ledger.refresh()``)."""
        return generate_latest(self.registry)

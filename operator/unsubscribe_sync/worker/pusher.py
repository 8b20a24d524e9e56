"""The real-time push: drains the ledger's outbox into Salesforce.

Loop: claim up to ``batchSize`` due rows of one object and one value (a lease, so replicas on
one PostgreSQL ledger never write the same row), write the effective push field with one
sObject Collections call (true for unsubscribes, false for explicit resubscribes), then record
each record's outcome. When more than ``salesforce.bulkThreshold`` rows of the object are due,
a claim takes up to 100,000 of them and one Bulk 2.0 ingest job writes them (its lease renewed through the job).
The claim-write-complete step is the writer part's (``writer.write_claim``), shared with the nightly.
Rows leave the outbox only after Salesforce answered for them, so a worker killed at any instant loses nothing (an
expired lease makes the row claimable again).

What an error means (``salesforce.errors.classify``):
- a record's PERMANENT error: failed, recorded with its reason, never retried;
- a record's TRANSIENT / REAUTH / RATE_LIMITED error: retried with capped backoff and jitter for as
  long as it takes; past ``maxAttempts`` the record is reported stuck (history row, metric, alert) and
  still retried: a transient error never becomes a permanent failure;
- a whole call that fails TRANSIENT (outage, 5xx, timeout): rows go back untouched and the
  pusher pauses with growing backoff; RATE_LIMITED: a much longer pause;
- CONFIGURATION (field missing or hidden, credentials refused): rows stay pending, the
  push reports unhealthy (metric ``unsubscribe_sync_push_healthy`` 0, a log line) and
  tries again rarely, re-checking the field first.

Leases are fenced: while a call runs its lease is renewed every third of ``leaseSeconds``; a renewal
that finds rows claimed by another writer (this one stalled past its lease) drops them, and the
completion presents each row's fence, so a result that outlived its lease is never trusted. Every
Salesforce HTTP call has a hard deadline (``salesforce.requestTimeoutSeconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from unsubscribe_sync.api.config import Config, WorkerConfig
from unsubscribe_sync.api.push_field import effective_push_target
from unsubscribe_sync.api.spec import OptOutTarget
from unsubscribe_sync.ledger import Claim, Ledger, PushOutcome
from unsubscribe_sync.logs import get_logger, mask_email, redact_text
from unsubscribe_sync.salesforce.errors import WriteDecision, retry_delay
from unsubscribe_sync.salesforce.types import ApiUsage, ErrorClass, RecordResult, SalesforceError
from unsubscribe_sync.worker.metrics import WorkerMetrics
from unsubscribe_sync.writer import WriteSettings, write_claim

log = get_logger(__name__)
T = TypeVar("T")
BULK_BATCH_SIZE = 100_000


class PushClient(Protocol):
    """What the pusher needs of the Salesforce connector."""

    def resolve_field(self, target: OptOutTarget | str, marketo_field: str | None, objects: Sequence[str]) -> str: ...

    def write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]: ...

    def bulk_write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]: ...

    def api_usage(self) -> ApiUsage | None: ...


OnRequest = Callable[[str, str], None]
ClientFactory = Callable[[OnRequest], PushClient]


@dataclass(frozen=True, slots=True)
class PushPolicy:
    """Batching, leasing and retry settings of the pusher."""

    batch_size: int = 200
    batch_window_seconds: float = 0.05
    lease_seconds: float = 60.0
    max_attempts: int = 50
    poll_interval_seconds: float = 1.0  # look for due retries / other replicas' rows this often
    backoff_scale: float = 1.0  # multiplies salesforce.errors.retry_delay (tests shrink it)
    max_backoff_seconds: float = 900.0  # a record retried for hours is tried again at least every 15 minutes
    shutdown_grace_seconds: float = 20.0
    lanes: int = 2  # batches in flight at once per worker (claim/record of one overlaps the call of another)
    # rows per claim when an object's due rows exceed salesforce.bulkThreshold: one Bulk 2.0 ingest job
    bulk_batch_size: int = BULK_BATCH_SIZE

    @classmethod
    def from_config(cls, cfg: WorkerConfig, **overrides: Any) -> PushPolicy:
        values: dict[str, Any] = {
            "batch_size": cfg.batchSize,
            "batch_window_seconds": cfg.batchWindowSeconds,
            "lease_seconds": cfg.leaseSeconds,
            "max_attempts": cfg.maxAttempts,
        }
        values.update(overrides)
        return cls(**values)

    def delay(self, error_class: ErrorClass, attempt: int) -> float:
        return min(self.max_backoff_seconds, retry_delay(error_class, max(1, attempt)) * self.backoff_scale)


class Pusher:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        client_factory: ClientFactory,
        metrics: WorkerMetrics,
        executor: Executor,
        policy: PushPolicy,
        *,
        owner: str | None = None,
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._client_factory = client_factory
        self._metrics = metrics
        self._executor = executor
        self.policy = policy
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self._target = effective_push_target(config.optOut.target, config.nightly.enabled)
        self._client: PushClient | None = None
        self.field: str | None = None
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._inflight: dict[int, Claim] = {}  # lane -> the claim being written
        self._prepare_lock = asyncio.Lock()
        self._failures = 0  # consecutive whole-call failures
        self._pause_until = 0.0
        self.healthy = True
        self.last_problem: str | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(lane), name=f"pusher-{lane}") for lane in range(self.policy.lanes)]

    @property
    def idle(self) -> bool:
        """No batch is being written or recorded right now."""
        return not self._inflight

    def wake(self) -> None:
        """New rows are in the outbox: look now (after the batching window)."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; let the in-flight batch finish (or give its rows back after the grace period)."""
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        if not self._tasks:
            return
        _, pending = await asyncio.wait(self._tasks, timeout=self.policy.shutdown_grace_seconds)
        if pending:
            for task in pending:
                task.cancel()
            for claim in list(self._inflight.values()):
                await self._in_thread(self._ledger.release, claim, error="worker stopped")
                log.warning("push_batch_released", records=len(claim.rows), reason="shutdown")

    # -- plumbing ------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless stopped meanwhile (new work does not end a pause)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopped.wait(), max(0.0, seconds))

    async def _wait_for_work(self, seconds: float) -> bool:
        """Wait for new rows (or stop) at most ``seconds``; True when woken."""
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
            return True
        except TimeoutError:
            return False
        finally:
            self._wake.clear()

    def _set_pause(self, seconds: float) -> None:
        self._pause_until = time.monotonic() + seconds
        self._metrics.push_paused_until.set(time.time() + seconds)

    def _set_healthy(self, healthy: bool, problem: str | None = None) -> None:
        self.healthy = healthy
        self.last_problem = problem
        self._metrics.push_healthy.set(1 if healthy else 0)

    # -- the loop ------------------------------------------------------------------

    async def _run(self, lane: int) -> None:
        if lane == 0:
            log.info("pusher_started", owner=self.owner, target=str(self._target), lanes=self.policy.lanes)
        while not self._stopping:
            try:
                await self._step(lane)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the ledger is away, or a bug: never let the loop die
                log.error("pusher_error", error=redact_text(f"{type(exc).__name__}: {exc}"))
                self._inflight.pop(lane, None)
                await self._pause(min(5.0, self.policy.poll_interval_seconds * 5))
        if lane == 0:
            log.info("pusher_stopped", owner=self.owner)

    async def _step(self, lane: int) -> None:
        pause = self._pause_until - time.monotonic()
        if pause > 0:
            await self._pause(pause)
            return
        self._metrics.push_paused_until.set(0)
        if self.field is None:
            async with self._prepare_lock:
                if self._pause_until > time.monotonic():
                    return  # another lane just failed to prepare
                if self.field is None and not await self._prepare():
                    return
        claim = await self._in_thread(
            self._ledger.claim,
            self.owner,
            self.policy.batch_size,
            self.policy.lease_seconds,
            bulk_threshold=self._config.salesforce.bulkThreshold,
            bulk_limit=self.policy.bulk_batch_size,
        )
        if not claim.rows:
            if await self._wait_for_work(self.policy.poll_interval_seconds):
                await self._pause(self.policy.batch_window_seconds)
            return
        self._inflight[lane] = claim
        try:
            await self._push(claim)
        finally:
            self._inflight.pop(lane, None)

    async def _prepare(self) -> bool:
        """Create the client and resolve the push field's API name; on failure pause and return False."""
        try:
            if self._client is None:
                self._client = await self._in_thread(self._client_factory, self._metrics.on_salesforce_request)
            client = self._client
            self.field = await self._in_thread(
                client.resolve_field,
                self._target,
                self._config.optOut.marketoSalesOptOutField,
                list(self._config.salesforce.objects),
            )
        except SalesforceError as exc:
            self._call_failed(exc.error_class, str(exc), "resolve_field")
            if exc.error_class is ErrorClass.CONFIGURATION:
                self._client = None  # credentials may be fixed meanwhile: read them again
            return False
        except Exception as exc:
            self._call_failed(ErrorClass.TRANSIENT, f"{type(exc).__name__}: {exc}", "resolve_field")
            return False
        log.info("push_field_resolved", field=self.field, target=str(self._target))
        self._set_healthy(True)
        return True

    def _call_failed(self, error_class: ErrorClass, message: str, operation: str) -> None:
        self._failures += 1
        message = redact_text(message)
        if error_class is ErrorClass.CONFIGURATION:
            self.field = None
            self._set_healthy(False, message)
            pause = self.policy.delay(ErrorClass.CONFIGURATION, self._failures)
            log.error("push_unhealthy", operation=operation, error=message, retry_in_seconds=round(pause, 1))
        else:
            cls = ErrorClass.RATE_LIMITED if error_class is ErrorClass.RATE_LIMITED else ErrorClass.TRANSIENT
            pause = self.policy.delay(cls, self._failures)
            log.warning(
                "push_paused",
                operation=operation,
                error_class=str(error_class),
                error=message,
                retry_in_seconds=round(pause, 2),
            )
        self._set_pause(pause)

    async def _push(self, claim: Claim) -> None:
        """The claim-write-complete step is the writer part's (one path for every writer); metrics and logs here."""
        client, field = self._client, self.field
        assert client is not None and field is not None
        settings = WriteSettings(self.policy.lease_seconds, self.policy.max_attempts, self.policy.delay)
        try:
            report = await write_claim(self._ledger, client, claim, field, settings, self._in_thread)
        finally:
            usage = client.api_usage()
            if usage is not None:
                self._metrics.api_usage.set(usage.ratio)
        if report.error is not None:
            self._call_failed(report.error.error_class, str(report.error), "write_opt_outs")
            return
        self._failures = 0
        if not self.healthy:
            self._set_healthy(True)
        self._record(claim, report.decided, field)

    def _record(self, claim: Claim, decided: list[tuple[PushOutcome, WriteDecision]], field: str) -> None:
        """Metrics and logs of a claim's outcomes. Runs on the event loop, so the counters are added per
        (object, outcome) once, not per record: a Bulk-sized claim of 100,000 must not stall the intake."""
        rows = claim.rows
        configuration: str | None = None
        pause_class: ErrorClass | None = None
        retries: Counter[tuple[str, str]] = Counter()
        settled: Counter[tuple[bool, str, str]] = Counter()  # (value, object, pushed | failed) -> records
        counts = {"pushed": 0, "failed": 0, "retry": 0, "held": 0}
        lags: list[float] = []
        confirmed = time.time()
        for outcome, decision in decided:
            row, status = outcome.row, outcome.status
            counts[status] += 1
            if status == "pushed":
                settled[(row.value, row.object, status)] += 1
                if row.value:  # the lag is that of opt-outs (writes of false are resubscribes)
                    lags.append(max(0.0, confirmed - row.received_at))
            elif status == "failed":
                settled[(row.value, row.object, status)] += 1
                log.warning(
                    "push_record_failed",
                    email=mask_email(row.email),
                    salesforce_id=row.salesforce_id,
                    object=row.object,
                    error=outcome.error,
                )
            elif status == "retry":
                assert decision.error_class is not None
                retries[(row.object, str(decision.error_class))] += 1
                if decision.error_class is ErrorClass.RATE_LIMITED:
                    pause_class = ErrorClass.RATE_LIMITED
                if decision.stuck and not row.stuck:
                    log.error(
                        "push_record_stuck",
                        email=mask_email(row.email),
                        salesforce_id=row.salesforce_id,
                        object=row.object,
                        attempts=row.attempts + 1,
                        error=decision.reason,
                    )
            else:  # held
                configuration = configuration or decision.reason
        for (object_name, error_class), n in retries.items():
            self._metrics.push_retries.labels(object=object_name, error_class=error_class).inc(n)
        for (value, object_name, result), n in settled.items():
            # opt-outs and resubscribes (writes of false) are counted apart
            records = self._metrics.push_records if value else self._metrics.resubscribe_push_records
            records.labels(object=object_name, outcome=result).inc(n)
        observe = self._metrics.push_lag.observe
        for lag in lags:
            observe(lag)
        log.info("push_batch", object=rows[0].object, field=field, value=rows[0].value, records=len(rows), **counts)
        if configuration:
            self._call_failed(ErrorClass.CONFIGURATION, configuration, "write_opt_outs")
        elif pause_class is not None:
            self._failures += 1
            self._set_pause(self.policy.delay(pause_class, self._failures))

"""The Salesforce poll: opt-outs set in Salesforce reach the ledger within one interval, not once a night.

Every replica runs this task; the ledger's lease row (``ledger.poll_state``) lets exactly one of them poll.
Each step (a third of the interval) a replica takes or renews the lease; the holder polls once per interval:
per configured object one REST query of the records opted out by the target field whose SystemModstamp is
at or after the stored watermark less the lookback, paged. The rows are added to the ledger as the nightly
adds them (source ``salesforce-poll``, same resubscribe rules), then the watermark advances. The lease lasts
two steps, so a replica that dies is taken over within one interval.

Cost: the field is resolved once (describe at start, like the pusher); a tick of an unchanged org is one query
call per object. The API usage comes from the answers' Sforce-Limit-Info header (no limits call). On
REQUEST_LIMIT_EXCEEDED, or with the daily requests left at or below ``salesforce.apiReserveRatio``, the poll
pauses (``unsubscribe_sync_salesforce_poll_paused`` and a log line); the nightly remains the safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from unsubscribe_sync.api.config import Config
from unsubscribe_sync.api.spec import OptOutTarget
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.ledger.poll_state import SOURCE_SALESFORCE_POLL
from unsubscribe_sync.logs import get_logger, redact_text
from unsubscribe_sync.salesforce.errors import RATE_LIMITED_CODES
from unsubscribe_sync.salesforce.ids import InvalidSalesforceId, normalize_id
from unsubscribe_sync.salesforce.poll import (
    completed_watermark,
    first_watermark,
    next_watermark,
    poll_soql,
    read_from,
    reserve_reached,
)
from unsubscribe_sync.salesforce.types import ApiUsage, ErrorClass, SalesforceError
from unsubscribe_sync.worker.metrics import WorkerMetrics

log = get_logger(__name__)

PAUSE_SECONDS = 900.0  # a paused poll tries again after this long (one query then tells the usage again)


class PollClient(Protocol):
    """What the poll needs of the Salesforce connector."""

    def resolve_field(self, target: OptOutTarget | str, marketo_field: str | None, objects: Sequence[str]) -> str: ...

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...

    def api_usage(self) -> ApiUsage | None: ...


PollClientFactory = Callable[[Callable[[str, str], None]], Any]


def poll_enabled(config: Config) -> bool:
    """The poll runs with a positive interval and only while the nightly sync is enabled (with sync disabled
    nothing comes back from Salesforce)."""
    return config.nightly.enabled and config.salesforcePoll.intervalSeconds > 0


@dataclass
class TickResult:
    """What one step did (for logs and tests)."""

    polled: bool = False
    holder: bool = False
    added: dict[str, int] = field(default_factory=dict)
    paused: str | None = None
    error: str | None = None


class SalesforcePoller:
    """The poll task of one worker (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        client_factory: PollClientFactory,
        metrics: WorkerMetrics,
        executor: Executor,
        *,
        owner: str | None = None,
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._factory = client_factory
        self._metrics = metrics
        self._executor = executor
        self.owner = owner or f"poll-{uuid.uuid4().hex[:12]}"
        self.interval = float(config.salesforcePoll.intervalSeconds)
        self.step = self.interval / 3
        self.lease_seconds = 2 * self.step
        metrics.poll_interval.set(self.interval)
        self._client: PollClient | None = None
        self.field: str | None = None
        self._fence: int | None = None
        self._next_poll = 0.0  # monotonic
        self._paused_until = 0.0  # monotonic
        self._task: asyncio.Task[None] | None = None
        self._stopped = asyncio.Event()

    # -- the task -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="salesforce-poll")

    async def stop(self) -> None:
        self._stopped.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._fence is not None:
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._ledger.release_poll_lease, self.owner
                )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            try:
                await loop.run_in_executor(self._executor, self.tick)
            except Exception as exc:  # never end the task: the next step tries again
                log.warning("salesforce_poll_failed", error=redact_text(f"{type(exc).__name__}: {exc}"))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopped.wait(), self.step)

    # -- one step (blocking; runs on a ledger thread) -----------------------------------

    def tick(self, *, force: bool = False) -> TickResult:
        """Take or renew the lease; when holding it and the interval has passed (or ``force``), poll."""
        result = TickResult()
        self._fence = self._ledger.acquire_poll_lease(self.owner, self.lease_seconds)
        last = self._ledger.poll_last_success()
        if last is not None:
            self._metrics.poll_last_success.set(last)
        if self._fence is None:
            self._next_poll = 0.0  # on a take-over, poll at once
            return result
        result.holder = True
        now = time.monotonic()
        if now < self._paused_until:
            result.paused = "paused"
            return result
        if not force and now < self._next_poll:
            return result
        self._next_poll = now + self.interval
        self._set_paused(None)
        try:
            self._poll(result)
        except SalesforceError as exc:
            result.error = str(exc)
            if getattr(exc, "error_code", None) in RATE_LIMITED_CODES:
                self._set_paused("REQUEST_LIMIT_EXCEEDED")
                result.paused = "REQUEST_LIMIT_EXCEEDED"
            else:
                log.warning("salesforce_poll_failed", error=redact_text(str(exc)))
            if exc.error_class is ErrorClass.CONFIGURATION:
                self._client, self.field = None, None  # credentials or the field may be fixed meanwhile
        last = self._ledger.poll_last_success()
        if last is not None:
            self._metrics.poll_last_success.set(last)
        return result

    def _set_paused(self, reason: str | None) -> None:
        if reason is None:
            self._metrics.poll_paused.set(0)
            return
        self._paused_until = time.monotonic() + max(PAUSE_SECONDS, self.interval)
        self._metrics.poll_paused.set(1)
        log.warning("salesforce_poll_paused", reason=reason, resume_in_seconds=max(PAUSE_SECONDS, self.interval))

    def _ready_client(self) -> tuple[PollClient, str]:
        if self._client is None:
            self._client = self._factory(self._metrics.on_salesforce_request)
        if self.field is None:
            cfg = self._config
            self.field = self._client.resolve_field(
                cfg.optOut.target, cfg.optOut.marketoSalesOptOutField, list(cfg.salesforce.objects)
            )
            log.info("salesforce_poll_field_resolved", field=self.field)
        return self._client, self.field

    def _poll(self, result: TickResult) -> None:
        client, field_name = self._ready_client()
        cfg = self._config
        lookback = float(cfg.salesforcePoll.lookbackSeconds)
        first: float | None = None
        for object_name in cfg.salesforce.objects:
            fence = self._ledger.acquire_poll_lease(self.owner, self.lease_seconds)  # renew between objects
            if fence is None:
                self._fence = None
                return
            self._fence = fence
            watermark = self._ledger.poll_watermark(object_name)
            if watermark is None:
                if first is None:
                    run = self._ledger.last_sync_run(successful_only=True)
                    first = first_watermark(run["startedAtEpoch"] if run else None, time.time())
                watermark = first
            since = read_from(watermark, lookback)
            read_at = time.time()
            added = 0
            for page in client.query_pages(poll_soql(object_name, field_name, since)):
                records = []
                for row in page:
                    try:
                        records.append((normalize_id(str(row.get("Id"))), object_name, row.get("Email")))
                    except InvalidSalesforceId:
                        continue
                added += self._ledger.add_salesforce_opt_outs(
                    records, SOURCE_SALESFORCE_POLL, field=field_name, read_at=read_at
                ).added
                watermark = next_watermark(watermark, page)
                if not self._ledger.advance_poll_watermark(object_name, watermark, fence):
                    self._fence = None
                    return
            watermark = completed_watermark(watermark, read_at)
            if not self._ledger.advance_poll_watermark(object_name, watermark, fence):
                self._fence = None
                return
            result.added[object_name] = added
            if added:
                self._metrics.poll_records.labels(object=object_name).inc(added)
                log.info("salesforce_poll_opt_outs_added", object=object_name, records=added)
            if reserve_reached(client.api_usage(), cfg.salesforce.apiReserveRatio):
                self._set_paused("API reserve reached (salesforce.apiReserveRatio)")
                result.paused = "reserve"
                result.polled = True
                return
        result.polled = True

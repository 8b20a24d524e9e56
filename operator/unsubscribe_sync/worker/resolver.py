"""The resolver (Email mode): finds the Salesforce records of addresses, so their writes can be queued.

It never writes to Salesforce: it claims due resolutions from the ledger in batches (fenced leases, like the
outbox), asks each configured object once per batch which records carry those addresses (``Email IN (...)``,
split to stay within the query limits, addresses escaped by salesforce/matching.py), and completes the batch in
one transaction that queues the records' writes in the outbox, where the one writer (the pusher) takes them.
Salesforce errors of any kind leave the batch due again: a resolution is never given up. A transient fault
(5xx, the request limit, a lost session) is retried after a growing delay; a refusal that will not change by
itself (Email hidden from the integration user: INVALID_FIELD) is recorded once in each address's history,
logged and counted (``unsubscribe_sync_resolve_failures_total{error_class}``), and retried only at the longest
delay, so an admin's fix is picked up without hammering Salesforce meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from unsubscribe_sync.api.addresses import normalize_email
from unsubscribe_sync.api.config import Config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.ledger.resolutions import ResolutionClaim, ResolutionResult
from unsubscribe_sync.logs import get_logger, redact_text
from unsubscribe_sync.salesforce.matching import REST_QUERY_MAX_ENCODED, email_in_queries, encoded_length
from unsubscribe_sync.salesforce.types import ErrorClass
from unsubscribe_sync.worker.metrics import WorkerMetrics

log = get_logger(__name__)
T = TypeVar("T")


class ResolveClient(Protocol):
    """What the resolver needs of the Salesforce connector (``SalesforceClient.query_pages``)."""

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]: ...


ResolveClientFactory = Callable[[Callable[[str, str], None]], Any]


@dataclass(frozen=True, slots=True)
class ResolvePolicy:
    batch_size: int = 200  # addresses per claim: one query per object per batch for ordinary addresses
    lease_seconds: float = 60.0
    poll_interval_seconds: float = 1.0
    base_backoff_seconds: float = 2.0
    max_backoff_seconds: float = 900.0

    def delay(self, attempts: int) -> float:
        """Backoff after ``attempts`` earlier failures: doubling from the base, capped."""
        return float(min(self.max_backoff_seconds, self.base_backoff_seconds * 2 ** min(attempts, 20)))


REFUSALS = frozenset({ErrorClass.CONFIGURATION, ErrorClass.PERMANENT})  # asking again unchanged fails again


def failure_class(exc: BaseException) -> ErrorClass:
    """What a failed lookup means: the Salesforce error's class; anything else (network, TLS) is transient."""
    error_class = getattr(exc, "error_class", None)
    return error_class if isinstance(error_class, ErrorClass) else ErrorClass.TRANSIENT


def match_records(
    addresses: Sequence[str], records: Sequence[tuple[str, str, str | None]]
) -> dict[str, list[tuple[str, str]]]:
    """Group (id, object, Email) answers by the addresses asked for, compared after the ledger's normalisation.

    Salesforce's ``IN`` on Email is case-insensitive already; comparing again on our side keeps a record whose
    Email normalises differently (or a stand-in that compares otherwise) from being written for another address.
    """
    wanted = set(addresses)
    found: dict[str, list[tuple[str, str]]] = {a: [] for a in addresses}
    for record_id, obj, email in records:
        if not email:
            continue
        key = normalize_email(email)
        if key in wanted and (record_id, obj) not in found[key]:
            found[key].append((record_id, obj))
    return found


class Resolver:
    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        client_factory: ResolveClientFactory,
        metrics: WorkerMetrics,
        executor: Executor,
        policy: ResolvePolicy | None = None,
        *,
        owner: str | None = None,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._config = config
        self._ledger = ledger
        self._client_factory = client_factory
        self._metrics = metrics
        self._executor = executor
        self.policy = policy or ResolvePolicy(
            batch_size=config.worker.batchSize, lease_seconds=config.worker.leaseSeconds
        )
        self.owner = owner or f"resolver-{uuid.uuid4().hex[:12]}"
        self._on_queued = on_queued
        self._client: ResolveClient | None = None
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # SOQL queries issued (the benchmark reads it)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="resolver")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: fn(*args))

    async def _run(self) -> None:
        log.info("resolver_started", owner=self.owner)
        while not self._stopped.is_set():
            try:
                worked = await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the ledger is away, or a bug: never let the loop die
                log.error("resolver_error", error=redact_text(f"{type(exc).__name__}: {exc}"))
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.policy.poll_interval_seconds)
                self._wake.clear()

    async def step(self) -> bool:
        """Resolve one batch; False when nothing was due."""
        claim = await self._in_thread(
            self._ledger.claim_resolutions, self.owner, self.policy.batch_size, self.policy.lease_seconds
        )
        if not claim.rows:
            return False
        try:
            matches = await self._in_thread(self.resolve, [row.email for row in claim.rows])
        except Exception as exc:  # transient or not, a resolution is retried, never given up
            await self._failed(claim, exc)
            return False
        result = await self._in_thread(self._ledger.complete_resolutions, claim, matches)
        self._record(claim, result)
        return True

    async def _failed(self, claim: ResolutionClaim, exc: Exception) -> None:
        problem = redact_text(f"{type(exc).__name__}: {exc}")
        error_class = failure_class(exc)
        self._client = None
        refused = error_class in REFUSALS  # the same query fails the same way until someone changes the org
        if refused:
            log.error("resolve_refused", addresses=len(claim.rows), error_class=error_class.value, error=problem)
            delays = [self.policy.max_backoff_seconds] * len(claim.rows)
        else:
            log.warning("resolve_failed", addresses=len(claim.rows), error_class=error_class.value, error=problem)
            delays = [self.policy.delay(r.attempts) for r in claim.rows]
        await self._in_thread(self._ledger.release_resolutions, claim, problem, delays, refused)
        # counted once the ledger holds it: whoever sees the count finds the failure in the history
        self._metrics.resolve_failures.labels(error_class=error_class.value).inc(len(claim.rows))

    def resolve(self, addresses: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Ask each configured object which records carry ``addresses`` (in the worker's thread pool)."""
        if self._client is None:
            self._client = cast(ResolveClient, self._client_factory(self._metrics.on_salesforce_request))
        records: list[tuple[str, str, str | None]] = []
        for obj in self._config.salesforce.objects:
            for soql in email_in_queries(obj, addresses, max_chars=REST_QUERY_MAX_ENCODED, measure=encoded_length):
                self.queries += 1
                for page in self._client.query_pages(soql):
                    records.extend((str(r["Id"]), obj, r.get("Email")) for r in page)
        return match_records(addresses, records)

    def _record(self, claim: ResolutionClaim, result: ResolutionResult) -> None:
        for count in result.matches_per_address:
            self._metrics.email_matches.observe(count)
        if result.unmatched:
            self._metrics.push_records.labels(object="unknown", outcome="skipped").inc(result.unmatched)
        log.info(
            "addresses_resolved",
            addresses=len(claim.rows),
            records=sum(result.matches_per_address),
            unmatched=result.unmatched,
            queued_writes=result.queued_writes,
            replaced=result.replaced,
        )
        if result.queued_writes and self._on_queued is not None:
            self._on_queued()

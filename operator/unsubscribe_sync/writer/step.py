"""The claim-write-complete step shared by every writer of Salesforce (the pusher and the nightly).

One writer means one path: rows are claimed from the outbox under fenced leases, the lease is renewed while
the call runs (every third of its length, so it never lapses during a call shorter than the lease: every
Salesforce HTTP call has a hard deadline, ``salesforce.requestTimeoutSeconds``), each record's answer is
decided by ``salesforce.errors.decide_write`` and the completion presents each row's fence.

A row whose lease was lost while its write was in flight (another writer claimed it after this one stalled)
is not trusted: its write may still land after the new holder's. It is re-queued, due now, with the
record's current value (``Ledger.requeue_lost``), so a stale write can never be the last one to land.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from unsubscribe_sync.ledger import Claim, Ledger, OutboxRow, PushOutcome
from unsubscribe_sync.ledger.models import SOURCE_PUSH
from unsubscribe_sync.logs import get_logger, redact_text
from unsubscribe_sync.salesforce.errors import WriteDecision, decide_write
from unsubscribe_sync.salesforce.types import ErrorClass, RecordResult, SalesforceError

log = get_logger(__name__)
T = TypeVar("T")
COMPLETE_CHUNK = 2_000  # outcomes per completion transaction (a Collections claim, at most 200, is one)
InThread = Callable[..., Awaitable[Any]]


class WriteClient(Protocol):
    """What a writer needs of the Salesforce connector."""

    def write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]: ...

    def bulk_write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]: ...


@dataclass(frozen=True, slots=True)
class WriteSettings:
    """Leasing and retry settings of one writer."""

    lease_seconds: float
    max_attempts: int
    delay: Callable[[ErrorClass, int], float]  # backoff of a record's retry: (error class, attempt) -> seconds
    source: str = SOURCE_PUSH  # history source of the writes (the nightly uses salesforce-sync)
    # outcomes recorded per ledger transaction: a Bulk-sized claim is completed in several, so other writers of
    # the ledger (the nightly's, the intake's) are not held off the write lock for the whole completion
    complete_chunk: int = COMPLETE_CHUNK


@dataclass(slots=True)
class WriteReport:
    """What one claim's write came to.

    ``error``: the call failed as a whole (rows given back untouched); else ``decided`` holds each trusted row's
    outcome with the decision behind it, and ``lost`` the rows whose lease was lost (re-queued, not trusted).
    """

    claim: Claim
    decided: list[tuple[PushOutcome, WriteDecision]] = field(default_factory=list)
    lost: int = 0
    error: SalesforceError | None = None

    @property
    def outcomes(self) -> list[PushOutcome]:
        return [o for o, _ in self.decided]


def decide_outcomes(
    answered: Sequence[tuple[OutboxRow, RecordResult]],
    now: float,
    max_attempts: int,
    delay: Callable[[ErrorClass, int], float],
) -> list[tuple[PushOutcome, WriteDecision]]:
    """Each answered row's outcome by the one write-outcome rule (pure: no I/O)."""
    out: list[tuple[PushOutcome, WriteDecision]] = []
    for row, result in answered:
        decision = decide_write(result, row.attempts, max_attempts)
        if decision.status == "retry":
            assert decision.error_class is not None
            wait = delay(decision.error_class, row.attempts + 1)
            out.append((PushOutcome(row, "retry", decision.reason, now + wait, stuck=decision.stuck), decision))
        elif decision.status == "held":
            out.append((PushOutcome(row, "held", decision.reason), decision))
        else:
            status: Literal["pushed", "failed"] = "pushed" if decision.status == "pushed" else "failed"
            out.append((PushOutcome(row, status, decision.reason), decision))
    return out


async def _keep_lease(ledger: Ledger, claim: Claim, lease_seconds: float, lost: set[int], in_thread: InThread) -> None:
    """Renew the claim's lease every third of its length while the call runs; note rows lost to others."""
    interval = max(0.05, lease_seconds / 3)
    while True:
        await asyncio.sleep(interval)
        try:
            held, _ = await in_thread(ledger.renew, claim, lease_seconds)
        except Exception as exc:  # the ledger is away: the completion's fence check still guards
            log.warning("push_lease_renewal_failed", error=redact_text(f"{type(exc).__name__}: {exc}"))
            continue
        lost.update(r.id for r in claim.rows if r.id not in held)


async def _complete(
    ledger: Ledger,
    claim: Claim,
    outcomes: Sequence[PushOutcome],
    field_name: str,
    settings: WriteSettings,
    in_thread: InThread,
) -> set[int]:
    """Record the outcomes, ``settings.complete_chunk`` per transaction; returns the ids whose fence was lost.

    Each transaction is fenced on its own rows, so a row whose lease lapsed meanwhile is never settled on this
    answer. The rows still to record keep their lease: it is renewed between transactions once a third of it
    has passed.
    """
    size = max(1, settings.complete_chunk)
    lost: set[int] = set()
    renewed = time.monotonic()
    for start in range(0, len(outcomes), size):
        if start and time.monotonic() - renewed > settings.lease_seconds / 3:
            rest = Claim(claim.token, [o.row for o in outcomes[start:]], claim.lease_expires_at, bulk=claim.bulk)
            await in_thread(ledger.renew, rest, settings.lease_seconds)
            renewed = time.monotonic()
        completion = await in_thread(
            ledger.complete, claim, outcomes[start : start + size], field=field_name, source=settings.source
        )
        lost |= completion.lost_ids
    return lost


async def write_claim(
    ledger: Ledger,
    client: WriteClient,
    claim: Claim,
    field_name: str,
    settings: WriteSettings,
    in_thread: InThread,
) -> WriteReport:
    """Write one claim (rows of one object and one value), decide each answer, complete fenced.

    A bulk-sized claim (``Claim.bulk``) is written with one Bulk 2.0 ingest job, its lease renewed all along;
    any other with sObject Collections. A call that fails as a whole gives the rows back untouched and returns
    the error (the caller pauses).
    """
    rows = claim.rows
    report = WriteReport(claim)
    if not rows:
        return report
    object_name, value = rows[0].object, rows[0].value
    lost: set[int] = set()
    ids = [r.salesforce_id for r in rows]
    renewer = asyncio.get_running_loop().create_task(
        _keep_lease(ledger, claim, settings.lease_seconds, lost, in_thread)
    )
    try:
        write = client.bulk_write_opt_outs if claim.bulk else client.write_opt_outs
        results = await in_thread(write, object_name, ids, field_name, value)
        if len(results) != len(rows):
            raise SalesforceError(f"expected {len(rows)} results, got {len(results)}")
    except Exception as exc:
        error = exc if isinstance(exc, SalesforceError) else SalesforceError(f"{type(exc).__name__}: {exc}")
        await in_thread(ledger.release, claim, error=redact_text(str(error)))
        report.error = error
        return report
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
    kept = [(r, res) for r, res in zip(rows, results, strict=True) if r.id not in lost]
    del results, ids  # a Bulk claim's answers: only the decisions are kept from here on
    report.decided = decide_outcomes(kept, time.time(), settings.max_attempts, settings.delay)
    del kept
    lost_ids = await _complete(ledger, claim, report.outcomes, field_name, settings, in_thread)
    report.decided = [(o, d) for o, d in report.decided if o.row.id not in lost_ids]
    stale = [r for r in rows if r.id in lost]
    if stale:
        await in_thread(ledger.requeue_lost, stale)
    report.lost = len(stale) + len(lost_ids)
    if report.lost:
        log.warning(
            "push_lease_lost", records=report.lost, reason="another writer holds them; results not trusted, re-queued"
        )
    return report


QUIET_SECONDS = 0.03  # a drain waiting for another writer asks again once the ledger's writes pause this long
LONGEST_WAIT_SECONDS = 0.5  # ... or after this long in a stream of writes


async def _wait_for_writers(ledger: Ledger, seen: int, seconds: float, in_thread: InThread) -> None:
    """Wait up to ``seconds`` for the rows other writers hold: until this process's ledger writes (another
    writer's completion) come after the mark ``seen`` and then pause, the time is up, or
    ``LONGEST_WAIT_SECONDS`` into a stream of writes. ``seen`` is the mark taken before the caller asked the
    ledger what is held, so a completion committed between that question and this wait wakes it at once. A burst
    of completions (a Bulk claim is completed 2,000 rows at a time) is one wake-up, not one ledger question per
    transaction. Writers of other processes are not seen: the caller bounds ``seconds`` by its poll interval."""
    start = time.monotonic()
    deadline = start + seconds
    mark = await in_thread(ledger.wait_for_commit, seen, seconds)
    while mark != seen:
        now = time.monotonic()
        if now >= deadline or now - start >= LONGEST_WAIT_SECONDS:
            return
        seen = mark
        mark = await in_thread(ledger.wait_for_commit, seen, min(QUIET_SECONDS, deadline - now))


@dataclass(slots=True)
class DrainResult:
    """What a drain of some records' writes of true came to (per object), and which are still queued."""

    pushed: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)
    error: str | None = None  # a configuration problem ended the drain early


async def drain(
    ledger: Ledger,
    client: WriteClient,
    field_name: str,
    owner: str,
    ids: Sequence[str],
    settings: WriteSettings,
    *,
    batch_size: int,
    bulk_threshold: int,
    bulk_limit: int,
    timeout_seconds: float,
    in_thread: InThread,
    poll_seconds: float = 0.2,
) -> DrainResult:
    """Drain the outbox as one more writer until none of ``ids`` has a write of true queued, or time is up.

    The same fenced claims as every writer, limited to the rows of ``ids``: rows another writer holds are not
    touched (waited for: the one holding them writes them). Only the writes of true are counted.
    """
    # Sorted once, sharing the caller's strings: the scope of every claim and of every question to the ledger.
    # At volume a claim is 100,000 rows: it and its report are freed before the next is read, and the ids
    # still queued are only counted between claims (their set is built once, at the end, when some are left).
    ordered = sorted(set(ids))
    out = DrainResult()
    deadline = time.monotonic() + timeout_seconds
    failures = 0
    while True:
        seen = ledger.commits  # before the question: a commit after it is a reason to ask again
        waiting, due_at, claimable_at = await in_thread(ledger.count_queued_true, ordered)
        remaining = deadline - time.monotonic()
        if not waiting or remaining <= 0:
            out.left = (await in_thread(ledger.queued_true, ordered))[0] if waiting else set()
            return out
        now = time.time()
        if due_at is not None and due_at - now > remaining:  # every one is due after the time is up
            out.left = (await in_thread(ledger.queued_true, ordered))[0]
            return out
        if claimable_at is not None and claimable_at > now:  # held by another writer, or due later
            wait = min(claimable_at - now, remaining)
            await _wait_for_writers(ledger, seen, min(wait, poll_seconds), in_thread)
            continue
        claim = await in_thread(
            ledger.claim,
            owner,
            batch_size,
            settings.lease_seconds,
            bulk_threshold=bulk_threshold,
            bulk_limit=bulk_limit,
            among=ordered,
        )
        if not claim.rows:  # another writer claimed them first
            await _wait_for_writers(ledger, seen, min(remaining, poll_seconds), in_thread)
            continue
        report = await write_claim(ledger, client, claim, field_name, settings, in_thread)
        if report.error is not None:
            failures += 1
            if report.error.error_class is ErrorClass.CONFIGURATION:
                out.error = redact_text(str(report.error))
                out.left = (await in_thread(ledger.queued_true, ordered))[0]
                return out
            pause = settings.delay(report.error.error_class, failures)
            del claim, report
            await asyncio.sleep(min(remaining, pause))
            continue
        failures = 0
        for outcome in report.outcomes:
            row = outcome.row
            if row.value and outcome.status in ("pushed", "failed"):
                counts = out.pushed if outcome.status == "pushed" else out.failed
                counts[row.object] = counts.get(row.object, 0) + 1
            if outcome.status == "held":
                out.error = outcome.error
        del claim, report
        if out.error is not None:
            out.left = (await in_thread(ledger.queued_true, ordered))[0]
            return out

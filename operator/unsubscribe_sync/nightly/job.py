"""One nightly bidirectional sync: check the requirements, then stream each object's two sides through the planner.

Order of work:

1. Requirements, before anything is written: nightly sync enabled in the config; the credentials work
   (a token is obtained); the opt-out field exists, is boolean and updateable on every configured object
   (``resolve_field``). A failed requirement ends the run with ``outcome: Failed`` and a message naming
   the problem (and the object); nothing is written anywhere.
2. Every configured object is staged first: the Salesforce records whose field is true (``iter_opted_out``:
   SOQL paging or a Bulk 2.0 query, Leads unconverted only) and the ledger's targets of that object, except
   those that already failed for good, sorted by id on disk (``staging.SortedStage``, one file per side).
   The sides of all objects are read at once, a thread per object's Salesforce side (``stage_concurrently``):
   the Bulk query jobs run in Salesforce while the ledger is read. In Email mode the objects are staged one
   after another (each object's Email matching comes first).
3. Blast-radius guard (``guard.ChangeGuard``, only when ``nightly.maxChangeRatio`` or ``nightly.maxChanges``
   is set): a counting pass merges each object's staged sides through the planner, writing nothing and
   keeping only counters; a run that would exceed a limit ends here with ``outcome: Failed`` and an error
   naming the direction, the count and the limit. Nothing is written to Salesforce or the ledger (the run
   itself is recorded in the sync runs as Failed). A dry run skips the extra pass: its plan is the count.
4. Per object, the staged sides are merged by the pure planner. ``fromSalesforce`` entries are added to
   the ledger (source ``salesforce-sync``, with a history row); ``toSalesforce`` ids are queued into the
   ledger's outbox (``queue_nightly_writes``, act time = the address's state time, merged by the one queue
   rule: a newer resubscribe is never replaced, a record already queued is not queued twice). One writer:
   once every object is planned, the run drains what it queued through the writer part (``writer.drain``:
   the pusher's fenced claims, Bulk 2.0 ingest above ``salesforce.bulkThreshold``, sObject Collections below),
   waiting at most ``nightly.drainTimeoutSeconds``; outcomes are recorded by the outbox's completion
   (history source ``salesforce-sync``). Permanent failures are counted as ``failed`` and never retried by
   later runs; rows still queued at the end are counted ``retryLater`` and written later by the push.
   Explicit resubscribes: the ledger side holds only addresses that are unsubscribed, so a resubscribed
   address's records are never set again; a record opted out in Salesforce whose id or address still has a
   resubscribe's write of false queued is left alone (counted as ``pendingResubscribe``): that write is on
   its way. Once it is done, a record opted out in Salesforce again is a new opt-out and suppresses the
   address again (opt-out wins).
5. The run is recorded in the ledger's sync runs (not for a dry run, not for a failed requirement).

Idempotent: a second run right after the first plans nothing to write. Interrupted runs can be re-run:
every write is a set-to-true or an idempotent ledger upsert.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from unsubscribe_sync.api.config import Config, ConfigError
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.ledger.connect import open_ledger
from unsubscribe_sync.ledger.models import SOURCE_SALESFORCE_SYNC
from unsubscribe_sync.logs import get_logger, mask_email, redact_text
from unsubscribe_sync.nightly.decisions import (
    WRITING_DECISIONS,
    Decision,
    PendingClears,
    decide,
    suppression_address,
)
from unsubscribe_sync.nightly.email_mode import MatchedAddresses, dry_run_skipped, stage_email_matches
from unsubscribe_sync.nightly.guard import ChangeGuard
from unsubscribe_sync.nightly.planner import Action, PlanEntry, plan_object
from unsubscribe_sync.nightly.progress import NullProgress, Progress
from unsubscribe_sync.nightly.staging import SortedStage
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.salesforce.errors import retry_delay
from unsubscribe_sync.salesforce.types import ErrorClass, SalesforceError
from unsubscribe_sync.writer import WriteSettings, drain

log = get_logger(__name__)

WRITE_CHUNK = 20_000  # ids queued into the outbox per ledger transaction
BULK_BATCH = 100_000  # rows per claim (one Bulk 2.0 ingest job) when an object's due rows exceed the threshold
LEDGER_CHUNK = 2_000  # Salesforce opt-outs per ledger transaction
MAX_RETRY_PAUSE_SECONDS = 900.0
# Bulk 2.0 job status polls: first after 0.25 s, doubling up to 15 s. A batch job is in no hurry, and every
# poll is an API call: a 60 s ingest job costs 9 polls instead of ~18 with a 50 ms start and a 5 s cap.
BULK_POLL_INTERVAL = (0.25, 15.0)

ClientFactory = Callable[[Callable[[str, str], None]], SalesforceClient]


def _return_free_memory() -> None:
    """Hand the memory the staging threads freed back to the system (glibc's ``malloc_trim``; elsewhere nothing).

    Each thread that allocates gets a malloc arena of its own, and the Bulk pages it read (megabytes each) stay
    mapped there once freed: without this the 1M nightly's peak RSS, reached later while it writes, was ~7 MB
    higher than when the objects were staged one after another in one thread.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


class _Stopped(Exception):
    """Another side's staging failed: this one stops at its next batch of rows."""


class RequirementFailed(Exception):
    """A requirement of the nightly sync is not met; the message says which (and on which object)."""


def _now() -> datetime:
    """The current UTC time, to the second (the summary's precision)."""
    return datetime.now(UTC).replace(microsecond=0)


def _rfc3339(value: datetime) -> str:
    """The summary's form of a time: RFC 3339 in UTC, to the second, with a ``Z``."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class ObjectTotals:
    salesforceOptedOut: int = 0
    ledgerTargets: int = 0
    toSalesforce: int = 0
    fromSalesforce: int = 0
    inSync: int = 0
    noEmail: int = 0
    failed: int = 0
    retryLater: int = 0
    pendingResubscribe: int = 0  # opted out in Salesforce, but a resubscribe's write of false is still queued
    stagedBytes: int = 0  # size of the on-disk sort of both sides (the job needs this much temporary disk)
    read_at: float | None = None  # when the Salesforce side began to be read (an opt-out read is that old)

    def as_dict(self) -> dict[str, int]:
        return {k: v for k, v in self.__dict__.items() if k != "read_at"}


@dataclass
class RunState:
    dry_run: bool
    sample_size: int
    started: datetime = dc_field(default_factory=_now)
    field: str | None = None
    objects: dict[str, ObjectTotals] = dc_field(default_factory=dict)
    skipped_no_salesforce_id: int = 0
    sample: list[dict[str, str]] = dc_field(default_factory=list)
    api_calls: int = 0
    guard: dict[str, Any] | None = None  # the guard's report (when a guard is configured)
    email_matched: MatchedAddresses | None = None  # Email-mode dry run: addresses found (nightly/email_mode.py)

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.objects.values())

    def summary(self, outcome: str, error: str | None = None, *, completed: datetime | None = None) -> dict[str, Any]:
        """The run's summary; times are formatted here only (``completed`` defaults to now)."""
        out: dict[str, Any] = {
            "toSalesforce": self.total("toSalesforce"),
            "fromSalesforce": self.total("fromSalesforce"),
            "skippedNoSalesforceId": self.skipped_no_salesforce_id,
            "failed": self.total("failed"),
            "outcome": outcome,
            "dryRun": self.dry_run,
            "startTime": _rfc3339(self.started),
            "completionTime": _rfc3339(completed or _now()),
            "field": self.field,
            "objects": {name: totals.as_dict() for name, totals in self.objects.items()},
            "apiCalls": self.api_calls,
        }
        if self.dry_run:
            out["sample"] = self.sample
        if self.guard is not None:
            out["guard"] = self.guard
        if error is not None:
            out["error"] = error
        return out


class NightlySync:
    """The nightly job over one Salesforce client and one ledger (both owned by the caller)."""

    def __init__(self, config: Config, client: SalesforceClient, ledger: Ledger, progress: Progress) -> None:
        self.config = config
        self.client = client
        self.ledger = ledger
        self.progress = progress
        self.queued: dict[str, list[str]] = {}  # object -> ids this run queued a write of true for
        self._drain_deadline: float | None = None  # time.monotonic() when the run stops waiting for its writes

    # -- requirements --------------------------------------------------------------------

    def check_requirements(self) -> str:
        """The opt-out field's API name; RequirementFailed naming the problem when a requirement is not met."""
        cfg = self.config
        if not cfg.nightly.enabled:
            raise RequirementFailed("nightly sync is disabled (nightly.enabled is false in the config)")
        self.progress.start("check requirements", 2)
        try:
            self.client.login()
        except SalesforceError as exc:
            raise RequirementFailed(f"Salesforce credentials: {exc}") from None
        self.progress.advance()
        try:
            name = self.client.resolve_field(
                cfg.optOut.target, cfg.optOut.marketoSalesOptOutField, cfg.salesforce.objects
            )
        except SalesforceError as exc:
            if exc.error_class in (ErrorClass.CONFIGURATION, ErrorClass.PERMANENT):
                raise RequirementFailed(f"opt-out field not usable: {exc}") from None
            raise
        self.progress.advance()
        self.progress.finish()
        return name

    # -- one object -------------------------------------------------------------------------

    def _stage(self, stage: SortedStage, object_name: str, field_name: str, totals: ObjectTotals) -> None:
        advance = self.progress.advance
        self.progress.start(f"{object_name}: read opted-out records from Salesforce")
        totals.read_at = time.time()
        self._stage_salesforce(stage, object_name, field_name, totals, advance)
        self.progress.start(f"{object_name}: read unsubscribes from the ledger")
        self._stage_ledger(stage, object_name, totals, advance)
        self.progress.finish()

    def _stage_salesforce(
        self,
        stage: SortedStage,
        object_name: str,
        field_name: str,
        totals: ObjectTotals,
        on_rows: Callable[[int], None],
    ) -> None:
        records = self.client.iter_opted_out(object_name, field_name, use_bulk=self._use_bulk(object_name))
        totals.salesforceOptedOut = stage.load_salesforce(records, on_rows=on_rows)

    def _stage_ledger(
        self, stage: SortedStage, object_name: str, totals: ObjectTotals, on_rows: Callable[[int], None]
    ) -> None:
        totals.ledgerTargets = stage.load_ledger(
            self.ledger.iter_targets(object_name, include_failed=False), on_rows=on_rows
        )

    def stage_concurrently(self, state: RunState, stages: dict[str, SortedStage]) -> None:
        """Stage both sides of every object at once (not in Email mode): each object's Salesforce side in a
        thread of its own, the ledger sides meanwhile in this one.

        The waits overlap: each object's Bulk 2.0 query job runs in Salesforce while the other objects and the
        ledger are read and staged. (One thread per Salesforce side only: every thread that allocates gets a
        malloc arena of its own, and a thread per ledger side too cost ~10 MB of peak RSS at 1M records.) The
        unsubscribed addresses without a Salesforce record are counted meanwhile too. The first error stops the
        other sides at their next batch of rows and is raised here.
        """
        assert state.field is not None
        field_name = state.field
        stop = threading.Event()
        lock = threading.Lock()
        progress = self.progress

        def on_rows(n: int) -> None:
            if stop.is_set():
                raise _Stopped
            with lock:
                progress.advance(n)

        def side(fn: Callable[..., None], *args: Any) -> None:
            try:
                fn(*args, on_rows)
            except BaseException:
                stop.set()
                raise

        progress.start(f"{', '.join(stages)}: read both sides (Salesforce opted-out records, ledger unsubscribes)")
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=len(stages), thread_name_prefix="nightly-stage") as pool:
            futures: list[Future[None]] = []
            for name, stage in stages.items():
                totals = state.objects.setdefault(name, ObjectTotals())
                totals.read_at = time.time()
                futures.append(pool.submit(side, self._stage_salesforce, stage, name, field_name, totals))
            try:
                for name, stage in stages.items():
                    side(self._stage_ledger, stage, name, state.objects[name])
            except _Stopped:  # a Salesforce side failed
                pass
            except Exception as exc:  # the Salesforce sides stop at their next batch; raised below
                errors.append(exc)
            if not errors:  # counted in a failed run's summary too, as long as the ledger answers
                try:
                    state.skipped_no_salesforce_id = self.ledger.count_without_salesforce_id()
                except Exception as exc:
                    stop.set()
                    errors.append(exc)
            errors += [failure for f in futures if (failure := f.exception()) is not None]
        _return_free_memory()
        real = [exc for exc in errors if not isinstance(exc, _Stopped)]
        if real:
            raise real[0]
        progress.finish()
        for name, stage in stages.items():
            state.objects[name].stagedBytes = stage.size()

    def _use_bulk(self, object_name: str) -> bool | None:
        """Bulk 2.0 query or SOQL paging, from the volume the last successful run read (saves a COUNT call);
        None (the connector counts first) when no earlier run says."""
        try:
            last = self.ledger.last_sync_run(successful_only=True)
            seen = last["summary"]["objects"][object_name]["salesforceOptedOut"] if last else None
        except (KeyError, TypeError):
            return None
        if not isinstance(seen, int):
            return None
        return seen >= self.config.salesforce.bulkThreshold

    def stage_object(self, state: RunState, object_name: str, stage: SortedStage) -> None:
        assert state.field is not None
        totals = state.objects.setdefault(object_name, ObjectTotals())
        if self.config.matching.by_email:  # records of unsubscribed addresses join the plan (nightly/email_mode.py)
            self.progress.start(f"{object_name}: match unsubscribed addresses by Email")
            stage_email_matches(
                self.client, self.ledger, stage, object_name, state.field, dry_run=state.dry_run,
                bulk_threshold=self.config.salesforce.bulkThreshold, matched=state.email_matched,
            )  # fmt: skip
        self._stage(stage, object_name, state.field, totals)
        totals.stagedBytes = stage.size()

    def count_changes(self, object_name: str, stage: SortedStage) -> dict[str, int]:
        """The changes the plan of one staged object would make, per direction; writes nothing.

        One streaming pass of the planner over the staged sides: memory is the planner's (one id) plus two
        counters, whatever the volume.
        """
        sf_count, lg_count = stage.count()
        self.progress.start(f"{object_name}: count planned changes", sf_count + lg_count)
        planned = {Decision.TO_SALESFORCE.value: 0, Decision.FROM_SALESFORCE.value: 0}
        for entry, decision in self._decided(plan_object(object_name, stage.salesforce(), stage.ledger())):
            self.progress.advance(entry.records)
            if decision in WRITING_DECISIONS:
                planned[decision.value] += 1
        self.progress.finish()
        return planned

    def sync_object(self, state: RunState, object_name: str, stage: SortedStage) -> None:
        """Plan one staged object and apply the plan (count it, for a dry run)."""
        assert state.field is not None
        totals = state.objects.setdefault(object_name, ObjectTotals())
        sf_count, lg_count = stage.count()
        self.progress.start(f"{object_name}: plan and apply", sf_count + lg_count)
        to_write: list[str] = []
        to_add: list[PlanEntry] = []
        owed = stage.owed()  # already queued with true (a backlog the push is draining): waited for, not queued
        queued = self.queued.setdefault(object_name, [])
        for entry, decision in self._decided(plan_object(object_name, stage.salesforce(), stage.ledger())):
            self.progress.advance(entry.records)
            if decision is Decision.IN_SYNC:
                totals.inSync += 1
                continue
            if decision is Decision.PENDING_RESUBSCRIBE:
                totals.pendingResubscribe += 1
                continue
            if decision is Decision.NO_EMAIL:
                totals.noEmail += 1
                continue
            if state.dry_run:
                self._count_planned(state, totals, entry, decision)
                continue
            if decision is Decision.TO_SALESFORCE and entry.salesforce_id in owed:
                queued.append(entry.salesforce_id)
            elif decision is Decision.TO_SALESFORCE:
                to_write.append(entry.salesforce_id)
                if len(to_write) >= WRITE_CHUNK:
                    self._queue(object_name, to_write, totals)
                    to_write = []
            else:
                to_add.append(entry)
                if len(to_add) >= LEDGER_CHUNK:
                    self._add(to_add, state.field, totals)
                    to_add = []
        if to_add:
            self._add(to_add, state.field, totals)
        if to_write:
            self._queue(object_name, to_write, totals)
        self.progress.finish()

    def _count_planned(self, state: RunState, totals: ObjectTotals, entry: PlanEntry, decision: Decision) -> None:
        if decision is Decision.TO_SALESFORCE:
            totals.toSalesforce += 1
            email = entry.ledger_emails[0]
        else:
            totals.fromSalesforce += 1
            email = entry.salesforce_email or ""
        if len(state.sample) < state.sample_size:
            state.sample.append(
                {
                    "object": entry.object,
                    "id": entry.salesforce_id,
                    "direction": decision.value,
                    "email": mask_email(email),
                }
            )

    def _add(self, entries: list[PlanEntry], field_name: str, totals: ObjectTotals) -> None:
        """Add Salesforce opt-outs to the ledger (one transaction per chunk)."""
        records = [(e.salesforce_id, e.object, e.salesforce_email) for e in entries]
        result = self.ledger.add_salesforce_opt_outs(records, field=field_name, read_at=totals.read_at)
        totals.fromSalesforce += result.added
        totals.pendingResubscribe += result.pending_resubscribe
        totals.inSync += result.in_sync  # the true this ledger wrote, read back under its address

    def _decided(self, entries: Iterable[PlanEntry]) -> Iterator[tuple[PlanEntry, Decision]]:
        """Each plan entry with its decision (``decisions.decide``), ``LEDGER_CHUNK`` entries at a time.

        Per chunk, one ledger call says which of the addresses its entries ask about (``suppression_address``,
        few) are unsubscribed; none when no entry asks. The queued clears are read once per pass. Memory is
        one chunk of entries, whatever the volume.
        """
        clearing = PendingClears.of(self.ledger.pending_clears())
        remaining = iter(entries)
        while chunk := list(islice(remaining, LEDGER_CHUNK)):
            asked = {address for entry in chunk if (address := suppression_address(entry)) is not None}
            suppressed = self.ledger.unsubscribed_among(asked) if asked else set()
            opt_outs = [
                (e.salesforce_id, e.salesforce_email)
                for e in chunk
                if e.action is Action.FROM_SALESFORCE and e.salesforce_email
            ]
            own = self.ledger.confirmed_true_among(opt_outs) if opt_outs else set()
            for entry in chunk:
                address = suppression_address(entry)
                yield (
                    entry,
                    decide(
                        entry,
                        clearing=clearing,
                        suppressed=address is not None and address in suppressed,
                        own_value=entry.salesforce_id in own,
                    ),
                )

    def _queue(self, object_name: str, ids: list[str], totals: ObjectTotals) -> None:
        """Queue writes of true on ``ids`` into the outbox; records resubscribed since staging are left out."""
        kept, left_out, confirmed = self.ledger.queue_nightly_writes(ids, read_at=totals.read_at)
        totals.pendingResubscribe += left_out
        totals.inSync += confirmed  # a push set them after the read
        self.queued.setdefault(object_name, []).extend(kept)

    def drain(self, state: RunState) -> None:
        """Write what this run queued through the one writer; the run waits at most ``nightly.drainTimeoutSeconds``
        in all (rows still queued then are ``retryLater``: the push writes them).

        Object by object, the one with the fewest writes first, each object's ids freed once drained: the
        largest object's Bulk claims are completed with only its own ids held (at 1M records ~7 MB less).
        """
        assert state.field is not None
        total = sum(len(queued) for queued in self.queued.values())
        if not total:
            return
        cfg = self.config
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + cfg.nightly.drainTimeoutSeconds
        settings = WriteSettings(
            lease_seconds=cfg.worker.leaseSeconds,
            max_attempts=cfg.worker.maxAttempts,
            delay=lambda cls, n: min(MAX_RETRY_PAUSE_SECONDS, retry_delay(cls, max(1, n))),
            source=SOURCE_SALESFORCE_SYNC,
        )
        self.progress.start("write to Salesforce", total)
        error: str | None = None
        for object_name in sorted(self.queued, key=lambda name: len(self.queued[name])):
            queued = self.queued.pop(object_name)
            totals = state.objects.setdefault(object_name, ObjectTotals())
            if error is not None or not queued:  # a configuration problem held the writes: the rest stay queued
                left = self.ledger.queued_true(queued)[0] if queued else set()
            else:
                result = asyncio.run(
                    drain(
                        self.ledger,
                        self.client,
                        state.field,
                        f"nightly-{uuid.uuid4().hex[:12]}",
                        queued,
                        settings,
                        batch_size=cfg.worker.batchSize,
                        bulk_threshold=cfg.salesforce.bulkThreshold,
                        bulk_limit=BULK_BATCH,
                        timeout_seconds=max(0.0, self._drain_deadline - time.monotonic()),
                        in_thread=_in_thread,
                    )
                )
                totals.toSalesforce += result.pushed.get(object_name, 0)
                totals.failed += result.failed.get(object_name, 0)
                left, error = result.left, result.error
                del result
            totals.retryLater += sum(1 for sid in queued if sid in left)
            del queued, left
        self.progress.finish()
        if error is not None:
            log.error("nightly.write_held", error=redact_text(error))
        self.queued = {}

    # -- the run --------------------------------------------------------------------------------

    def _read_totals(self, state: RunState) -> dict[str, int]:
        return {"ledgerTargets": state.total("ledgerTargets"), "salesforceOptedOut": state.total("salesforceOptedOut")}

    def sync_all(self, state: RunState) -> str | None:
        """Stage every object, check the guard, then plan and apply object by object.

        Returns the guard's error when it stopped the run (nothing written), else None.
        """
        guard = ChangeGuard.from_config(self.config.nightly)
        with ExitStack() as stack:
            stages: dict[str, SortedStage] = {}
            for object_name in self.config.salesforce.objects:
                stages[object_name] = stack.enter_context(SortedStage(object_name))
            if self.config.matching.by_email:  # the Email matching of each object comes first, object by object
                for name, stage in stages.items():
                    self.stage_object(state, name, stage)
            else:
                self.stage_concurrently(state, stages)
            if guard.active and not state.dry_run:
                planned = {"toSalesforce": 0, "fromSalesforce": 0}
                for name, stage in stages.items():
                    for direction, n in self.count_changes(name, stage).items():
                        planned[direction] += n
                state.guard = guard.report(planned, self._read_totals(state), dry_run=False)
                if state.guard["tripped"]:
                    reason = str(state.guard["reason"])
                    log.error("nightly.change_guard_tripped", error=reason)
                    return reason
            for name, stage in stages.items():
                self.sync_object(state, name, stage)
            if not state.dry_run:  # once for every object: the writes of one overlap the planning of the next
                self.drain(state)
        if guard.active and state.dry_run:
            planned = {"toSalesforce": state.total("toSalesforce"), "fromSalesforce": state.total("fromSalesforce")}
            state.guard = guard.report(planned, self._read_totals(state), dry_run=True)
        return None

    def run(self, state: RunState) -> dict[str, Any]:
        """Run the sync; returns the summary (``outcome`` Succeeded or Failed). Raises only on bugs."""
        try:
            state.field = self.check_requirements()
        except RequirementFailed as exc:
            log.error("nightly.requirement_failed", error=redact_text(str(exc)))
            return state.summary("Failed", str(exc))
        except SalesforceError as exc:
            return state.summary("Failed", redact_text(f"Salesforce: {exc}"))
        error: str | None
        try:
            if self.config.matching.by_email:  # else counted while the objects are staged (stage_concurrently)
                state.skipped_no_salesforce_id = self.ledger.count_without_salesforce_id()
            if self.config.matching.by_email and state.dry_run:
                state.email_matched = MatchedAddresses()
            stopped = self.sync_all(state)
            if self.config.matching.by_email and not state.dry_run:  # records found by Email are held now
                state.skipped_no_salesforce_id = self.ledger.count_without_salesforce_id()
            elif state.email_matched is not None:  # a dry run added none: less the addresses it found records for
                state.skipped_no_salesforce_id = dry_run_skipped(self.ledger, state.email_matched)
                state.email_matched.close()
                state.email_matched = None
        except SalesforceError as exc:
            outcome, error = "Failed", redact_text(f"Salesforce: {exc}")
        else:
            left = state.total("retryLater")
            if stopped is not None:
                outcome, error = "Failed", stopped
            elif left:
                outcome = "Failed"
                error = f"{left} records met transient Salesforce errors and were not written yet; the push writes them"
            else:
                outcome, error = "Succeeded", None
        completed = _now()
        summary = state.summary(outcome, error, completed=completed)
        if not state.dry_run:
            self.ledger.record_sync_run(
                summary, started_at=state.started, ended_at=completed, outcome=outcome, dry_run=False
            )
        return summary


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def run_nightly(
    config: Config,
    *,
    dry_run: bool,
    progress: Progress | None = None,
    ledger: Ledger | None = None,
    client_factory: ClientFactory | None = None,
) -> dict[str, Any]:
    """One nightly sync; returns its summary (``outcome`` "Succeeded" or "Failed", ``error`` on failure).

    ``ledger``: an open ledger to use (the worker's); otherwise the config's ledger is opened and closed.
    ``client_factory(on_request)``: builds the Salesforce client (default: from ``config.salesforce``).
    """
    progress = progress or NullProgress()
    state = RunState(dry_run=dry_run, sample_size=config.nightly.sampleSize)

    counting = threading.Lock()  # the objects are read from several threads at once

    def on_request(operation: str, status: str) -> None:
        with counting:
            state.api_calls += 1

    if not config.nightly.enabled:
        return state.summary("Failed", "nightly sync is disabled (nightly.enabled is false in the config)")
    try:
        client = (client_factory or _default_client_factory(config))(on_request)
    except (SalesforceError, ConfigError, OSError) as exc:
        return state.summary("Failed", redact_text(f"Salesforce credentials: {exc}"))
    own_ledger = ledger is None
    try:
        if ledger is None:
            try:
                ledger = open_ledger(config.ledger)
            except ConfigError as exc:
                return state.summary("Failed", str(exc))
            except Exception as exc:  # the database refused: say so without echoing the URL
                return state.summary("Failed", redact_text(f"cannot open the ledger: {type(exc).__name__}: {exc}"))
        return NightlySync(config, client, ledger, progress).run(state)
    finally:
        client.close()
        if own_ledger and ledger is not None:
            ledger.close()


def _default_client_factory(config: Config) -> ClientFactory:
    def factory(on_request: Callable[[str, str], None]) -> SalesforceClient:
        return SalesforceClient.from_config(
            config.salesforce, on_request=on_request, bulk_poll_interval=BULK_POLL_INTERVAL
        )

    return factory


def make_runner(config: Config, ledger: Ledger) -> Callable[[bool], dict[str, Any]]:
    """The worker's ``nightly_runner``: ``runner(dry_run) -> summary``, on the worker's own ledger."""

    def runner(dry_run: bool) -> dict[str, Any]:
        return run_nightly(config, dry_run=dry_run, ledger=ledger)

    return runner

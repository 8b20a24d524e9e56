"""Group commit: the unsubscribes of many concurrent webhook requests stored in one ledger transaction.

Each request waits until the transaction holding its items has committed, so a 202
still means "durably stored"; while one commit is in flight the next requests gather
and go together in the following one. The commits run on a ledger thread that takes the next
group as soon as one has committed (the event loop only queues requests and hands out the
outcomes), so a busy loop never holds the next commit back.

Three rules keep one request from hurting the others:

- the queue is bounded (``max_queued_items``): a request that finds it full is refused at once
  (``QueueFull``, 503 with Retry-After), instead of the queue growing while the ledger is slow;
- a request still queued after ``max_queue_wait`` seconds is withdrawn (nothing stored, 503); a
  request whose commit is already in flight waits for that commit's outcome, which the ledger's
  own deadlines bound, because only that outcome says whether it was stored;
- a group commit that fails is retried request by request, so only a request whose data the
  database refuses fails (``IngestRefused``, 400), and the others are stored.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from unsubscribe_sync.ledger import IngestResult, Ledger, Unsubscribe
from unsubscribe_sync.ledger.engine import refused_data as refusal
from unsubscribe_sync.logs import get_logger

log = get_logger(__name__)

RETRY_AFTER_SECONDS = 5  # the database being away: a few seconds before the sender tries again
QUEUE_FULL_RETRY_AFTER_SECONDS = 1  # a full queue drains within a commit or two
# Under load (the last commit held more than one request and ended less than GATHER_AFTER_SECONDS ago), the
# ledger thread waits for as many requests as the last commit held before the next one, at most GATHER_SECONDS
# after the first of them: the fixed cost of a transaction, Python that holds the event loop's GIL, is then
# shared by more requests (as PostgreSQL's commit_delay does for its WAL flush). A request after a quiet spell
# is committed at once. The thread lingers GATHER_AFTER_SECONDS on an empty queue before its drain ends.
GATHER_SECONDS = 0.001
GATHER_AFTER_SECONDS = 0.01


class IngestUnavailable(Exception):
    """Nothing was stored and the sender should retry later (503 with ``retry_after``)."""

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_SECONDS) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class QueueFull(IngestUnavailable):
    """The ingest queue holds as many items as it may: refused at once, nothing stored."""


class IngestRefused(Exception):
    """The database refused this request's data (nothing of it stored): a retry would fail the same way (400)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class _Entry:
    """One request's items, waiting for (or in) a commit; withdrawn past ``deadline`` (loop time) if still queued.

    ``taken`` and ``withdrawn`` change under the committer's lock (the ledger thread takes, the loop withdraws);
    ``future`` belongs to the event loop.
    """

    __slots__ = ("deadline", "future", "items", "size", "taken", "withdrawn")

    def __init__(self, items: list[Unsubscribe], future: asyncio.Future[None], deadline: float) -> None:
        self.items = items
        self.future = future
        self.deadline = deadline
        self.taken = False
        self.withdrawn = False
        self.size = len(items)


class GroupCommitter:
    def __init__(
        self,
        ledger: Ledger,
        executor: Executor,
        *,
        max_items: int = 5000,
        max_queued_items: int = 20_000,
        max_queue_wait: float | None = None,
        on_commit: Callable[[IngestResult], None] | None = None,
        gather_seconds: float = GATHER_SECONDS,
    ) -> None:
        self._ledger = ledger
        self._executor = executor
        self._max_items = max_items
        self._max_queued_items = max_queued_items
        self._max_queue_wait = max_queue_wait
        self._on_commit = on_commit
        self._lock = threading.Lock()  # the queue, its counts and the draining flag: the loop and the ledger thread
        self._enough = threading.Condition(self._lock)  # a gathering ledger thread: as many items as it waits for
        self._gathering = 0  # the items a ledger thread waits for before its next commit (0: not waiting)
        self._gather_timer = False  # the loop's timer for a gathering group is set
        self._gather_due = False  # it fired: the ledger thread commits what is queued
        self._gather_round = 0  # which wait of the ledger thread a timer belongs to
        self._gather_seconds = gather_seconds
        self._last_size = 0  # items in the last commit
        self._last_end = 0.0  # when it ended (monotonic)
        self._pending: deque[_Entry] = deque()
        self._queued = 0
        self._in_flight = 0
        self._draining = False  # a ledger thread is committing the queue until it finds it empty
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: asyncio.Event | None = None  # set while no ledger thread drains
        self._stopping = False
        # one timer for the whole queue, set for the oldest entry that can still be withdrawn (entries queue in
        # arrival order, so their deadlines do too): no timer per request to schedule and cancel
        self._sweep: asyncio.TimerHandle | None = None

    @property
    def queued_items(self) -> int:
        """Items waiting for a commit (not yet in one)."""
        return self._queued

    @property
    def in_flight_items(self) -> int:
        """Items in the commit under way."""
        return self._in_flight

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = asyncio.Event()
        self._idle.set()
        with self._lock:
            start = bool(self._pending) and not self._draining
            self._draining = self._draining or start
        if start:
            self._start_draining()

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        with self._lock:
            self._stopping = True
            self._enough.notify()  # a gathering ledger thread commits at once
        if self._idle is not None:
            await self._idle.wait()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    async def submit(self, items: list[Unsubscribe]) -> None:
        """Store ``items``; returns once they are committed.

        Raises ``QueueFull`` / ``IngestUnavailable`` (nothing stored, retry later) or ``IngestRefused``.
        """
        if self._stopping:
            raise IngestUnavailable("the worker is shutting down")
        loop = asyncio.get_running_loop()
        wait = self._max_queue_wait
        entry = _Entry(items, loop.create_future(), loop.time() + wait if wait else 0.0)
        with self._lock:
            if self._queued + entry.size > self._max_queued_items:
                raise QueueFull("the ingest queue is full", QUEUE_FULL_RETRY_AFTER_SECONDS)
            self._pending.append(entry)
            self._queued += entry.size
            arm = 0
            if self._gathering:
                if self._queued >= self._gathering:
                    self._enough.notify()
                elif not self._gather_timer:
                    self._gather_timer = True
                    arm = self._gather_round
            start = self._loop is not None and not self._draining
            self._draining = self._draining or start
        if start:
            self._start_draining()
        if arm:  # the first request of a gathering group: it waits at most gather_seconds for company
            loop.call_at(loop.time() + self._gather_seconds, self._gather_expired, arm)
        if wait and self._sweep is None:
            self._sweep = loop.call_at(entry.deadline, self._withdraw_overdue)
        # not shielded: a cancelled request cancels its future only; the entry stays queued (or in its
        # commit) and is stored all the same, and the outcome skips a future already done
        await entry.future

    def _start_draining(self) -> None:
        """(Loop) a ledger thread commits the queue until it finds it empty."""
        assert self._idle is not None
        self._idle.clear()
        try:
            self._executor.submit(self._drain)
        except RuntimeError as exc:  # the executor is shut down: nothing can be stored any more
            with self._lock:
                self._draining = False
                left = [entry for entry in self._pending if not entry.withdrawn]
                self._pending.clear()
                self._queued = 0
            self._idle.set()
            for entry in left:
                _fail(entry, exc)

    def _withdraw_overdue(self) -> None:
        """Withdraw the entries still queued past their ``max_queue_wait`` (a commit's outcome is the truth for
        those it took), then set the timer for the next one that may be."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        overdue: list[_Entry] = []
        following: float | None = None
        with self._lock:
            pending = self._pending
            while pending and pending[0].withdrawn:  # withdrawn before: no commit takes them
                pending.popleft()
            for entry in pending:  # in arrival order: deadlines ascending
                if entry.withdrawn or entry.future.done():  # a cancelled request's items stay queued and are stored
                    continue
                if entry.deadline > now:
                    following = entry.deadline
                    break
                entry.withdrawn = True
                self._queued -= entry.size
                overdue.append(entry)
        for entry in overdue:
            entry.future.set_exception(IngestUnavailable(f"waited {self._max_queue_wait:g} s for the ledger"))
        if following is not None:
            self._sweep = loop.call_at(following, self._withdraw_overdue)

    def _take(self) -> list[_Entry]:
        """(Under the lock) the next group: the oldest entries not withdrawn, up to ``max_items`` items."""
        taken: list[_Entry] = []
        count = 0
        while self._pending and (not taken or count + self._pending[0].size <= self._max_items):
            entry = self._pending.popleft()
            if entry.withdrawn:
                continue
            entry.taken = True
            self._queued -= entry.size
            taken.append(entry)
            count += entry.size
        self._in_flight = count
        return taken

    def _drain(self) -> None:
        """(Ledger thread) commit group after group, each the entries queued while the one before committed,
        until the queue has stayed empty for GATHER_AFTER_SECONDS; the outcomes go back to the loop."""
        assert self._loop is not None
        post = self._loop.call_soon_threadsafe
        try:
            while True:
                with self._lock:
                    self._wait_for(self._last_size if self._under_load() else 1)
                    batch = self._take()
                    if not batch:
                        self._draining = False
                        return
                    self._last_size = self._in_flight
                try:
                    self._commit(batch)
                finally:
                    self._in_flight = 0
                    self._last_end = time.monotonic()
        except BaseException as exc:  # pragma: no cover - a bug here must not leave the queue undrained
            with self._lock:
                self._draining = False
            log.error("group_commit_stopped", error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            post(self._drain_ended)

    def _under_load(self) -> bool:
        """(Under the lock) whether the last commit held more than one request and ended a moment ago (then a
        commit waits at most ``gather_seconds`` for as many)."""
        recent = time.monotonic() - self._last_end < GATHER_AFTER_SECONDS
        return self._gather_seconds > 0 and self._last_size > 1 and recent

    def _wait_for(self, wanted: int) -> None:
        """(Ledger thread, under the lock) wait for ``wanted`` items to be queued: ``submit`` notifies when they are,
        and the loop ``gather_seconds`` after the first of them (the loop's timer, not this thread's: a
        thread waking on its own would take the GIL from the loop while it is handling requests). With nothing
        queued for GATHER_AFTER_SECONDS it gives up (the drain ends)."""
        if self._queued >= wanted or self._stopping:
            return
        self._gather_round += 1
        self._gathering = wanted
        idle_until = time.monotonic() + GATHER_AFTER_SECONDS
        try:
            while self._queued < wanted and not self._stopping and not self._gather_due:
                if self._queued:  # the loop's timer ends this wait; a bound all the same
                    if not self._enough.wait(GATHER_AFTER_SECONDS):
                        return
                    continue
                remaining = idle_until - time.monotonic()
                if remaining <= 0:
                    return
                self._enough.wait(remaining)
        finally:
            self._gathering = 0
            self._gather_due = False
            self._gather_timer = False

    def _gather_expired(self, round_: int) -> None:
        """(Loop) the first request of a gathering group has waited ``gather_seconds`` for company."""
        with self._lock:
            if self._gathering and round_ == self._gather_round:
                self._gather_due = True
                self._enough.notify()

    def _commit(self, batch: list[_Entry]) -> None:
        """(Ledger thread) one group in one transaction; when it fails, request by request."""
        assert self._loop is not None
        post = self._loop.call_soon_threadsafe
        try:
            result = self._ledger.ingest([item for entry in batch for item in entry.items])
        except Exception as exc:
            if len(batch) == 1:
                post(_fail, batch[0], exc)
            else:
                self._one_by_one(batch, exc)
        else:
            # the answers first; the bookkeeping (a log line, counters) after them, on the loop
            post(self._committed, batch, result)

    def _one_by_one(self, batch: list[_Entry], group_error: Exception) -> None:
        """Retry a failed group request by request; once the database proves away, the rest fail without a try."""
        assert self._loop is not None
        post = self._loop.call_soon_threadsafe
        log.warning("group_commit_retried_per_request", requests=len(batch), error=type(group_error).__name__)
        away: Exception | None = None
        for entry in batch:
            if away is not None:
                post(_fail, entry, away)
                continue
            try:
                result = self._ledger.ingest(entry.items)
            except Exception as exc:
                post(_fail, entry, exc)
                if refusal(exc) is None:
                    away = exc
            else:
                post(self._committed, [entry], result)

    def _committed(self, batch: list[_Entry], result: IngestResult) -> None:
        """(Loop) the group is stored: its requests are answered, then ``on_commit`` runs (a log line and
        counters: the answers do not wait for them)."""
        for entry in batch:
            _succeed(entry)
        if self._on_commit is not None:
            asyncio.get_running_loop().call_soon(self._on_commit, result)  # after the requests' answers

    def _drain_ended(self) -> None:
        """(Loop) a ledger thread found the queue empty; ``stop`` waits for this."""
        if not self._draining and self._idle is not None:
            self._idle.set()


def _succeed(entry: _Entry) -> None:
    if not entry.future.done():
        entry.future.set_result(None)


def _fail(entry: _Entry, exc: Exception) -> None:
    if entry.future.done():
        return
    problem = refusal(exc)
    failure: Exception
    failure = IngestRefused(problem) if problem is not None else IngestUnavailable("the ledger is unavailable")
    failure.__cause__ = exc
    entry.future.set_exception(failure)

"""Group commit: the unsubscribes of many concurrent webhook requests stored in one ledger transaction.

Each request waits until the transaction holding its items has committed, so a 202
still means "durably stored"; while one commit is in flight the next requests gather
and go together in the following one.

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
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from unsubscribe_sync.ledger import IngestResult, Ledger, Unsubscribe
from unsubscribe_sync.ledger.engine import refused_data as refusal
from unsubscribe_sync.logs import get_logger

log = get_logger(__name__)

RETRY_AFTER_SECONDS = 5  # the database being away: a few seconds before the sender tries again
QUEUE_FULL_RETRY_AFTER_SECONDS = 1  # a full queue drains within a commit or two


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
    """One request's items, waiting for (or in) a commit; withdrawn past ``deadline`` (loop time) if still queued."""

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
    ) -> None:
        self._ledger = ledger
        self._executor = executor
        self._max_items = max_items
        self._max_queued_items = max_queued_items
        self._max_queue_wait = max_queue_wait
        self._on_commit = on_commit
        self._pending: deque[_Entry] = deque()
        self._queued = 0
        self._in_flight = 0
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
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
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
            await asyncio.sleep(0)  # the last commit's on_commit has run
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None

    async def submit(self, items: list[Unsubscribe]) -> None:
        """Store ``items``; returns once they are committed.

        Raises ``QueueFull`` / ``IngestUnavailable`` (nothing stored, retry later) or ``IngestRefused``.
        """
        if self._stopping:
            raise IngestUnavailable("the worker is shutting down")
        if self._queued + len(items) > self._max_queued_items:
            raise QueueFull("the ingest queue is full", QUEUE_FULL_RETRY_AFTER_SECONDS)
        loop = asyncio.get_running_loop()
        wait = self._max_queue_wait
        entry = _Entry(items, loop.create_future(), loop.time() + wait if wait else 0.0)
        self._pending.append(entry)
        self._queued += entry.size
        self._wake.set()
        if wait and self._sweep is None:
            self._sweep = loop.call_at(entry.deadline, self._withdraw_overdue)
        # not shielded: a cancelled request cancels its future only; the entry stays queued (or in its
        # commit) and is stored all the same, and _succeed/_fail skip a future already done
        await entry.future

    def _withdraw_overdue(self) -> None:
        """Withdraw the entries still queued past their ``max_queue_wait`` (a commit's outcome is the truth for
        those it took), then set the timer for the next one that may be."""
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        pending = self._pending
        while pending and pending[0].withdrawn:  # withdrawn before: no commit takes them
            pending.popleft()
        for entry in pending:  # in arrival order: deadlines ascending
            if entry.withdrawn or entry.future.done():  # a cancelled request's items stay queued and are stored
                continue
            if entry.deadline > now:
                self._sweep = loop.call_at(entry.deadline, self._withdraw_overdue)
                return
            entry.withdrawn = True
            self._queued -= entry.size
            entry.future.set_exception(IngestUnavailable(f"waited {self._max_queue_wait:g} s for the ledger"))

    def _take(self) -> list[_Entry]:
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

    async def _ingest(self, items: list[Unsubscribe]) -> IngestResult:
        result = await asyncio.get_running_loop().run_in_executor(self._executor, self._ledger.ingest, items)
        if self._on_commit is not None:
            self._on_commit(result)
        return result

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._stopping:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch = self._take()
            if not batch:
                continue
            try:
                result = await loop.run_in_executor(
                    self._executor, self._ledger.ingest, [item for entry in batch for item in entry.items]
                )
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0], exc)
                else:
                    await self._one_by_one(batch, exc)
            else:
                for entry in batch:
                    _succeed(entry)
                if self._on_commit is not None:
                    # after the answers to the requests it stored, and once the next commit is under way: the
                    # bookkeeping (a log line, counters) delays neither
                    loop.call_soon(self._on_commit, result)
            finally:
                self._in_flight = 0

    async def _one_by_one(self, batch: list[_Entry], group_error: Exception) -> None:
        """Retry a failed group request by request; once the database proves away, the rest fail without a try."""
        log.warning("group_commit_retried_per_request", requests=len(batch), error=type(group_error).__name__)
        away: Exception | None = None
        for entry in batch:
            if away is not None:
                _fail(entry, away)
                continue
            try:
                await self._ingest(entry.items)
            except Exception as exc:
                _fail(entry, exc)
                if refusal(exc) is None:
                    away = exc
            else:
                _succeed(entry)


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

"""The group committer's queue with a stand-in ledger (no database): withdrawal of requests queued past
``max_queue_wait`` by one timer for the whole queue, the items of a cancelled request still stored, and the
``on_commit`` bookkeeping once per commit, after the requests it stored are answered."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from unsubscribe_sync.ledger import IngestResult, Unsubscribe
from unsubscribe_sync.worker.ingest import GroupCommitter, IngestUnavailable


class _HeldLedger:
    """``ingest`` records its items; while ``hold`` is clear, a commit waits (the database being slow)."""

    def __init__(self) -> None:
        self.hold = threading.Event()
        self.hold.set()
        self.started = threading.Event()
        self.groups: list[list[str]] = []

    def ingest(self, items: list[Unsubscribe]) -> IngestResult:
        self.started.set()
        self.hold.wait(30)
        self.groups.append([item.email for item in items])
        return IngestResult(stored=len(items))


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


def _item(name: str) -> list[Unsubscribe]:
    return [Unsubscribe(email=f"{name}@example.com")]


async def _until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


async def test_requests_queued_past_their_wait_are_all_withdrawn_and_a_cancelled_one_is_still_stored(
    executor: ThreadPoolExecutor,
) -> None:
    ledger = _HeldLedger()
    committer = GroupCommitter(ledger, executor, max_queue_wait=0.05)  # type: ignore[arg-type]
    committer.start()
    ledger.hold.clear()
    in_flight = asyncio.ensure_future(committer.submit(_item("first")))
    await _until(lambda: committer.in_flight_items == 1)
    cancelled = asyncio.ensure_future(committer.submit(_item("cancelled")))
    waiting = [asyncio.ensure_future(committer.submit(_item(f"waited{n}"))) for n in range(5)]
    await asyncio.sleep(0)
    cancelled.cancel()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, IngestUnavailable) for o in outcomes)
    assert committer.queued_items == 1  # the cancelled request's item: still queued, stored next
    ledger.hold.set()
    await in_flight
    await committer.stop()
    assert ledger.groups == [["first@example.com"], ["cancelled@example.com"]]
    assert committer.queued_items == 0


async def test_a_request_taken_by_a_commit_waits_for_its_outcome_past_the_wait(executor: ThreadPoolExecutor) -> None:
    ledger = _HeldLedger()
    committer = GroupCommitter(ledger, executor, max_queue_wait=0.01)  # type: ignore[arg-type]
    committer.start()
    ledger.hold.clear()
    first = asyncio.ensure_future(committer.submit(_item("first")))
    await _until(lambda: committer.in_flight_items == 1)
    later = asyncio.ensure_future(committer.submit(_item("later")))
    with pytest.raises(IngestUnavailable):
        await later  # still queued past its wait
    ledger.hold.set()
    await first  # in the commit: stored, however long it took
    after = asyncio.ensure_future(committer.submit(_item("after")))
    await after  # the timer set again for the requests that came after
    await committer.stop()
    assert ledger.groups == [["first@example.com"], ["after@example.com"]]


async def test_on_commit_runs_once_per_commit_after_its_requests_are_answered(executor: ThreadPoolExecutor) -> None:
    ledger = _HeldLedger()
    seen: list[tuple[int, bool]] = []
    answered: list[asyncio.Future[None]] = []
    committer = GroupCommitter(
        ledger,  # type: ignore[arg-type]
        executor,
        max_queue_wait=5,
        on_commit=lambda result: seen.append((result.stored, all(f.done() for f in answered))),
    )
    committer.start()
    answered.extend(asyncio.ensure_future(committer.submit(_item(f"a{n}"))) for n in range(3))
    await asyncio.gather(*answered)
    await committer.stop()
    assert sum(stored for stored, _ in seen) == 3
    assert all(done for _, done in seen)
    assert len(seen) == len(ledger.groups)

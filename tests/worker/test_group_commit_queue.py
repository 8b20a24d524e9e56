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
    stored: list[int] = []
    answered_then: list[int] = []
    answered: list[asyncio.Future[None]] = []

    def on_commit(result: IngestResult) -> None:
        stored.append(result.stored)
        answered_then.append(sum(f.done() for f in answered))

    committer = GroupCommitter(ledger, executor, max_queue_wait=5, on_commit=on_commit)  # type: ignore[arg-type]
    committer.start()
    answered.extend(asyncio.ensure_future(committer.submit(_item(f"a{n}"))) for n in range(3))
    await asyncio.gather(*answered)
    await committer.stop()
    assert sum(stored) == 3 and len(stored) == len(ledger.groups)
    # each commit's requests were answered before its on_commit ran
    assert all(done >= sum(stored[: i + 1]) for i, done in enumerate(answered_then))


async def test_under_load_a_commit_waits_for_as_many_requests_as_the_last_one(executor: ThreadPoolExecutor) -> None:
    ledger = _HeldLedger()
    committer = GroupCommitter(ledger, executor, gather_seconds=30)  # type: ignore[arg-type]
    ledger.hold.clear()
    pair = [asyncio.ensure_future(committer.submit(_item(name))) for name in ("p1", "p2")]
    await asyncio.sleep(0)
    committer.start()  # both queued: one commit of two
    await _until(ledger.started.is_set)
    ledger.hold.set()
    await asyncio.gather(*pair)
    one = asyncio.ensure_future(committer.submit(_item("one")))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(ledger.groups) == 1 and not one.done()  # waiting for company: the last commit held two
    two = asyncio.ensure_future(committer.submit(_item("two")))
    await asyncio.gather(one, two)
    await committer.stop()
    assert ledger.groups == [["p1@example.com", "p2@example.com"], ["one@example.com", "two@example.com"]]


async def test_a_gathering_commit_goes_at_once_when_the_committer_stops(executor: ThreadPoolExecutor) -> None:
    ledger = _HeldLedger()
    committer = GroupCommitter(ledger, executor, gather_seconds=30)  # type: ignore[arg-type]
    pair = [asyncio.ensure_future(committer.submit(_item(name))) for name in ("p1", "p2")]
    await asyncio.sleep(0)
    committer.start()
    await asyncio.gather(*pair)
    one = asyncio.ensure_future(committer.submit(_item("one")))
    await asyncio.sleep(0)
    await committer.stop()
    await one
    assert ledger.groups == [["p1@example.com", "p2@example.com"], ["one@example.com"]]


async def test_after_a_quiet_spell_a_request_is_committed_at_once(
    executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unsubscribe_sync.worker import ingest

    monkeypatch.setattr(ingest, "GATHER_AFTER_SECONDS", 0.0)  # every last commit is long past
    ledger = _HeldLedger()
    committer = GroupCommitter(ledger, executor, gather_seconds=30)  # type: ignore[arg-type]
    pair = [asyncio.ensure_future(committer.submit(_item(name))) for name in ("p1", "p2")]
    await asyncio.sleep(0)
    committer.start()
    await asyncio.gather(*pair)
    await committer.submit(_item("alone"))  # no wait for company
    await committer.stop()
    assert ledger.groups == [["p1@example.com", "p2@example.com"], ["alone@example.com"]]


async def test_a_gathering_commit_goes_with_what_came_once_its_first_request_waited_enough(
    executor: ThreadPoolExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unsubscribe_sync.worker import ingest

    monkeypatch.setattr(ingest, "GATHER_AFTER_SECONDS", 30.0)  # every commit counts as under load
    ledger = _HeldLedger()
    committer = GroupCommitter(ledger, executor, gather_seconds=0.01)  # type: ignore[arg-type]
    pair = [asyncio.ensure_future(committer.submit(_item(name))) for name in ("p1", "p2")]
    await asyncio.sleep(0)
    committer.start()
    await asyncio.gather(*pair)
    await committer.submit(_item("one"))  # no company comes: committed once the loop's timer says so
    await committer.stop()
    assert ledger.groups == [["p1@example.com", "p2@example.com"], ["one@example.com"]]

"""The one writer step (writer.write_claim): fenced claims, lost leases re-queued, one outcome rule."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tests.fixtures.ledgers import contact_id
from unsubscribe_sync.ledger import Ledger, PushOutcome, Resubscribe, Unsubscribe
from unsubscribe_sync.salesforce.types import ErrorClass, RecordResult, SalesforceError
from unsubscribe_sync.writer import WriteSettings, drain, write_claim

FIELD = "HasOptedOutOfEmail"
SETTINGS = WriteSettings(lease_seconds=60, max_attempts=5, delay=lambda cls, n: 0.0)


async def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


class Client:
    """Salesforce stand-in: answers every record with success, running ``during`` while the call is in flight."""

    def __init__(self, during: Callable[[], None] | None = None, fail: SalesforceError | None = None) -> None:
        self.during, self.fail = during, fail
        self.calls: list[tuple[str, list[str], bool]] = []

    def write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]:
        self.calls.append((object_name, list(ids), value))
        if self.during is not None:
            self.during()
        if self.fail is not None:
            raise self.fail
        return [RecordResult(i, True) for i in ids]


def queue(ledger: Ledger, n: int) -> list[str]:
    sids = [contact_id(100 + i) for i in range(n)]
    ledger.ingest(
        [Unsubscribe(email=f"w{i}@example.com", salesforce_id=s, object="Contact") for i, s in enumerate(sids)]
    )
    return sids


def test_a_claim_is_written_and_completed(ledger: Ledger) -> None:
    sids = queue(ledger, 3)
    client = Client()
    report = asyncio.run(write_claim(ledger, client, ledger.claim("a", 10, 60), FIELD, SETTINGS, in_thread))
    assert [o.status for o in report.outcomes] == ["pushed"] * 3 and report.lost == 0
    assert client.calls == [("Contact", sids, True)] and ledger.backlog() == 0


def test_a_call_failing_as_a_whole_gives_the_rows_back(ledger: Ledger) -> None:
    queue(ledger, 2)
    client = Client(fail=SalesforceError("outage", error_class=ErrorClass.TRANSIENT))
    report = asyncio.run(write_claim(ledger, client, ledger.claim("a", 10, 60), FIELD, SETTINGS, in_thread))
    assert report.error is not None and report.outcomes == []
    assert len(ledger.claim("b", 10, 60)) == 2  # untouched, claimable at once


def test_a_lease_lost_mid_write_re_queues_the_row_after_the_new_holders_write(ledger: Ledger) -> None:
    [sid] = queue(ledger, 1)
    taken: list[Any] = []

    def other_writer_takes_it() -> None:  # this writer stalled past its lease: another one claims the row
        taken.append(ledger.claim("b", 10, 60, now=time.time() + 120))

    claim = ledger.claim("a", 10, 60)
    report = asyncio.run(write_claim(ledger, Client(other_writer_takes_it), claim, FIELD, SETTINGS, in_thread))
    assert report.lost == 1 and report.outcomes == []  # the stale answer is not trusted
    [fresh] = taken
    done = ledger.complete(fresh, [PushOutcome(fresh[0], "pushed")], field=FIELD)
    assert (done.settled, done.replaced) == (0, 1)  # the stale write may land last: one more write is owed
    again = ledger.claim("c", 10, 60, now=time.time() + 1)
    assert [(r.salesforce_id, r.value) for r in again] == [(sid, True)]


def test_a_lease_lost_after_the_new_holder_settled_queues_the_current_value_again(ledger: Ledger) -> None:
    [sid] = queue(ledger, 1)

    def other_writer_writes_it() -> None:
        fresh = ledger.claim("b", 10, 60, now=time.time() + 120)
        ledger.complete(fresh, [PushOutcome(fresh[0], "pushed")], field=FIELD)

    claim = ledger.claim("a", 10, 60)
    report = asyncio.run(write_claim(ledger, Client(other_writer_writes_it), claim, FIELD, SETTINGS, in_thread))
    assert report.lost == 1
    again = ledger.claim("c", 10, 60, now=time.time() + 1)
    assert [(r.salesforce_id, r.value) for r in again] == [(sid, True)]  # the value the ledger last confirmed


class BulkClient(Client):
    """Also answers Bulk 2.0 writes, running ``during`` while the job is in flight."""

    def __init__(self, during: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.bulk_calls: list[int] = []
        self.bulk_during = during

    def bulk_write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]:
        self.bulk_calls.append(len(ids))
        if self.bulk_during is not None:
            self.bulk_during()
        return [RecordResult(i, True) for i in ids]


def test_above_the_bulk_threshold_one_bulk_job_writes_a_bulk_sized_claim(ledger: Ledger) -> None:
    queue(ledger, 5)
    client = BulkClient()
    assert not ledger.claim("probe", 2, 60, bulk_threshold=10, bulk_limit=100).bulk  # below: a small claim
    ledger.release_all_leases()
    claim = ledger.claim("a", 2, 60, bulk_threshold=3, bulk_limit=100)
    assert claim.bulk and len(claim) == 5
    report = asyncio.run(write_claim(ledger, client, claim, FIELD, SETTINGS, in_thread))
    assert client.bulk_calls == [5] and client.calls == [] and ledger.backlog() == 0
    assert [o.status for o in report.outcomes] == ["pushed"] * 5


def test_a_backlog_just_over_the_bulk_limit_is_written_in_even_bulk_jobs(ledger: Ledger) -> None:
    queue(ledger, 7)
    client = BulkClient()
    sizes = []
    while ledger.backlog():
        claim = ledger.claim("a", 2, 60, bulk_threshold=2, bulk_limit=5)
        sizes.append((len(claim), claim.bulk))
        asyncio.run(write_claim(ledger, client, claim, FIELD, SETTINGS, in_thread))
    # 7 due with a limit of 5: two jobs of 4 and 3, not 5 and 2 left to Collections calls
    assert sizes == [(4, True), (3, True)] and client.bulk_calls == [4, 3] and client.calls == []


def test_an_act_replacing_a_row_during_a_bulk_job_is_written_after_it(ledger: Ledger) -> None:
    sids = queue(ledger, 5)

    def resubscribed_meanwhile() -> None:
        ledger.resubscribe([Resubscribe(email="w2@example.com", requested_by="ops", reason="asked")])

    claim = ledger.claim("a", 2, 60, bulk_threshold=3, bulk_limit=100)
    asyncio.run(write_claim(ledger, BulkClient(resubscribed_meanwhile), claim, FIELD, SETTINGS, in_thread))
    after = ledger.claim("b", 10, 60)
    assert [(r.salesforce_id, r.value) for r in after] == [(sids[2], False)]  # the newer act is still owed


class CountingLedger:
    """The ledger, noting how many outcomes each completion transaction records."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.completions: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    def complete(self, claim: Any, outcomes: Sequence[PushOutcome], **kwargs: Any) -> Any:
        self.completions.append(len(outcomes))
        return self.ledger.complete(claim, outcomes, **kwargs)


def test_a_bulk_claim_is_completed_in_transactions_of_at_most_the_chunk(ledger: Ledger) -> None:
    queue(ledger, 5)
    counting = CountingLedger(ledger)
    settings = WriteSettings(lease_seconds=60, max_attempts=5, delay=lambda cls, n: 0.0, complete_chunk=2)
    claim = ledger.claim("a", 2, 60, bulk_threshold=3, bulk_limit=100)
    report = asyncio.run(write_claim(counting, BulkClient(), claim, FIELD, settings, in_thread))  # type: ignore[arg-type]
    assert counting.completions == [2, 2, 1]
    assert [o.status for o in report.outcomes] == ["pushed"] * 5 and report.lost == 0
    assert ledger.backlog() == 0 and ledger.stats().by_status.get("pushed") == 5


def test_a_row_taken_by_another_writer_between_completion_chunks_is_not_settled_on_the_stale_answer(
    ledger: Ledger,
) -> None:
    sids = queue(ledger, 4)
    settings = WriteSettings(lease_seconds=60, max_attempts=5, delay=lambda cls, n: 0.0, complete_chunk=2)
    claim = ledger.claim("a", 2, 60, bulk_threshold=3, bulk_limit=100)
    taken: list[Any] = []

    class TakenMidway(CountingLedger):
        def complete(self, claim: Any, outcomes: Sequence[PushOutcome], **kwargs: Any) -> Any:
            if len(self.completions) == 1:  # after the first chunk, the last row's lease lapsed and was re-claimed
                released = self.ledger.claim("b", 10, 60, now=time.time() + 120, among=[sids[3]])
                taken.append(released)
            return super().complete(claim, outcomes, **kwargs)

    report = asyncio.run(
        write_claim(TakenMidway(ledger), BulkClient(), claim, FIELD, settings, in_thread)  # type: ignore[arg-type]
    )
    assert [len(t) for t in taken] == [1]
    assert report.lost == 1 and sorted(o.row.salesforce_id for o in report.outcomes) == sids[:3]
    left = ledger.claim("c", 10, 60, now=time.time() + 200)
    assert [r.salesforce_id for r in left] == [sids[3]]  # still owed: written again by its holder


def test_the_count_of_queued_writes_of_true_agrees_with_their_set(ledger: Ledger) -> None:
    sids = queue(ledger, 5)
    ledger.resubscribe([Resubscribe(email="w1@example.com", requested_by="ops", reason="asked")])  # now false
    asked = sorted([*sids, contact_id(9_999)])  # one id with nothing queued
    left, earliest = ledger.queued_true(asked)
    assert left == set(sids) - {sids[1]}
    assert ledger.count_queued_true(asked) == (4, earliest, earliest) and earliest is not None  # none leased
    assert ledger.count_queued_true([contact_id(9_999)]) == (0, None, None)


def test_the_count_and_the_set_of_queued_writes_of_true_agree_across_key_pages(ledger: Ledger) -> None:
    """More ids than one statement takes (SQLite's key lists hold 5,000): every page is asked, the earliest
    times are exact and the same both ways."""
    sids = queue(ledger, 5_003)
    ledger.resubscribe([Resubscribe(email="w5001@example.com", requested_by="ops", reason="asked")])  # now false
    held = ledger.claim("push", 2, 30)
    asked = sorted([*sids, contact_id(99_999)])
    left, earliest = ledger.queued_true(asked)
    assert left == set(sids) - {sids[5_001]}
    count, due, free = ledger.count_queued_true(asked)
    assert (count, due) == (5_002, earliest) and earliest is not None and free is not None
    assert due <= free < held.lease_expires_at  # rows nobody holds are claimable now


def test_rows_another_writer_holds_can_be_claimed_once_its_lease_expires(ledger: Ledger) -> None:
    sids = queue(ledger, 2)
    due = ledger.queued_true(sids)[1]
    held = ledger.claim("push", 1, 30)
    assert ledger.count_queued_true(sids) == (2, due, due)  # the other row is free now
    free = ledger.claim("push", 1, 30)
    assert ledger.count_queued_true(sids) == (2, due, min(held.lease_expires_at, free.lease_expires_at))


def test_a_drain_waiting_for_rows_another_writer_holds_returns_once_that_writer_completes_them(
    ledger: Ledger,
) -> None:
    sids = queue(ledger, 3)
    held = ledger.claim("push", 10, 30)  # the pusher writes them; its lease runs for 30 s

    def complete_later() -> None:
        time.sleep(0.3)
        ledger.complete(held, [PushOutcome(r, "pushed", None) for r in held.rows], field=FIELD)

    pusher = threading.Thread(target=complete_later)
    pusher.start()
    client = Client()
    started = time.monotonic()
    poll = 60.0  # the holder is in this process: the wait wakes on its commit, not at the next poll
    result = asyncio.run(
        drain(
            ledger, client, FIELD, "nightly", sids, SETTINGS, batch_size=200, bulk_threshold=10_000,
            bulk_limit=100_000, timeout_seconds=120, in_thread=in_thread, poll_seconds=poll,
        )
    )  # fmt: skip
    pusher.join()
    assert result.left == set() and result.pushed == {} and client.calls == []  # written once, by its holder
    assert time.monotonic() - started < 30  # not when the holder's lease would have expired


def test_a_drain_wakes_for_a_completion_committed_between_its_count_and_its_wait(ledger: Ledger) -> None:
    """The holder's last completion commits just after the drain counted its rows as still held, before the
    drain starts to wait: the wait sees that commit (its mark is from before the count), not the next poll."""
    sids = queue(ledger, 3)
    held = ledger.claim("push", 10, 600)  # its lease outlasts the test
    count = ledger.count_queued_true
    calls = 0

    def count_then_holder_completes(ids: Sequence[str]) -> tuple[int, float | None, float | None]:
        nonlocal calls
        calls += 1
        answer = count(ids)
        if calls == 1:  # the holder commits after the count was read: the drain's answer is already stale
            ledger.complete(held, [PushOutcome(r, "pushed", None) for r in held.rows], field=FIELD)
        return answer

    ledger.count_queued_true = count_then_holder_completes  # type: ignore[method-assign]
    client = Client()
    started = time.monotonic()
    result = asyncio.run(
        drain(
            ledger, client, FIELD, "nightly", sids, SETTINGS, batch_size=200, bulk_threshold=10_000,
            bulk_limit=100_000, timeout_seconds=120, in_thread=in_thread, poll_seconds=60,
        )
    )  # fmt: skip
    assert result.left == set() and client.calls == [] and calls == 2  # asked again at once, then done
    assert time.monotonic() - started < 30  # not at the next poll, 60 s on

"""The ledger on SQLite and on a real PostgreSQL: ingest, idempotency, outbox leases, nightly helpers."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, event, text

# contact_id stays importable from here (tests/writer/test_writer.py)
from tests.fixtures.ledgers import contact_id, lead_id
from unsubscribe_sync.ledger import Ledger, PushOutcome, Resubscribe, Unsubscribe
from unsubscribe_sync.ledger.schema import LATEST_VERSION
from unsubscribe_sync.salesforce.errors import decide_write
from unsubscribe_sync.salesforce.ids import normalize_id
from unsubscribe_sync.salesforce.types import ErrorClass, RecordResult


def unsub(email: str, sid: str | None = None, event_id: str | None = None, source: str = "webhook") -> Unsubscribe:
    obj = None if sid is None else ("Contact" if sid.startswith("003") else "Lead")
    return Unsubscribe(email=email, salesforce_id=sid, object=obj, source=source, event_id=event_id)


def test_ingest_stores_and_queues_targets(ledger: Ledger) -> None:
    result = ledger.ingest([unsub("A@Example.com", contact_id(1)), unsub("b@example.com", lead_id(2)), unsub("c@x.io")])
    assert (result.stored, result.enqueued, result.skipped_no_salesforce_id) == (3, 2, 1)
    assert ledger.backlog() == 2
    found = ledger.lookup("a@EXAMPLE.com")
    assert found is not None and found["unsubscribed"] is True and found["email"] == "a@example.com"
    assert [h["action"] for h in reversed(found["history"])] == ["unsubscribed"]
    assert found["salesforce"][0]["status"] == "pending"
    assert ledger.lookup("nobody@example.com") is None
    assert ledger.count_without_salesforce_id() == 1
    assert [h["action"] for h in reversed(ledger.lookup("c@x.io")["history"])] == ["unsubscribed", "push_skipped"]  # type: ignore[index]


def test_replayed_event_ids_are_accepted_but_not_stored_twice(ledger: Ledger) -> None:
    first = ledger.ingest(
        [unsub("a@example.com", contact_id(1), "evt-1"), unsub("a@example.com", contact_id(1), "evt-1")]
    )
    assert (first.stored, first.replayed) == (1, 1)
    counts = ledger.table_counts()
    again = ledger.ingest([unsub("a@example.com", contact_id(1), "evt-1")])
    assert (again.stored, again.replayed, again.enqueued) == (0, 1, 0)
    assert ledger.table_counts() == counts


def test_same_email_and_id_is_queued_once(ledger: Ledger) -> None:
    ledger.ingest([unsub("a@example.com", contact_id(1), "e1")])
    result = ledger.ingest([unsub("a@example.com", contact_id(1), "e2"), unsub("a@example.com", contact_id(1))])
    assert result.stored == 2 and result.enqueued == 0
    assert ledger.backlog() == 1
    assert ledger.table_counts()["unsubscribes"] == 1


def test_claim_complete_pushed_failed_and_retry(ledger: Ledger) -> None:
    ledger.ingest([unsub(f"p{i}@example.com", contact_id(i)) for i in range(3)])
    rows = ledger.claim("w1", 10, 60)
    assert sorted(r.salesforce_id for r in rows) == sorted(contact_id(i) for i in range(3))
    assert ledger.claim("w2", 10, 60) == []  # leased
    later = time.time() + 30
    ledger.complete(
        rows,
        [
            PushOutcome(rows[0], "pushed"),
            PushOutcome(rows[1], "failed", "ENTITY_IS_DELETED: gone"),
            PushOutcome(rows[2], "retry", "UNABLE_TO_LOCK_ROW: busy", later),
        ],
        field="HasOptedOutOfEmail",
    )
    assert ledger.backlog() == 1
    assert ledger.claim("w2", 10, 60) == []  # not due yet
    retried = ledger.claim("w2", 10, 60, now=later + 1)
    assert [r.salesforce_id for r in retried] == [rows[2].salesforce_id] and retried[0].attempts == 1
    pushed = ledger.lookup(rows[0].email)
    assert pushed is not None and pushed["salesforce"][0]["status"] == "pushed"
    assert pushed["history"][0]["action"] == "pushed"
    failed = ledger.lookup(rows[1].email)
    assert failed is not None and failed["salesforce"][0]["status"] == "failed"
    assert "ENTITY_IS_DELETED" in failed["salesforce"][0]["lastError"]
    assert failed["history"][0]["action"] == "push_failed"


def test_expired_lease_is_reclaimed_and_release_gives_rows_back(ledger: Ledger) -> None:
    ledger.ingest([unsub("a@example.com", contact_id(1)), unsub("b@example.com", contact_id(2))])
    rows = ledger.claim("dead-worker", 10, 5)
    assert len(rows) == 2
    assert ledger.claim("w2", 10, 5) == []
    reclaimed = ledger.claim("w2", 10, 5, now=time.time() + 6)
    assert len(reclaimed) == 2 and all(r.fence > old.fence for r, old in zip(reclaimed, rows, strict=True))
    ledger.release(rows, error="a stale release changes nothing")
    assert ledger.claim("w3", 10, 5, now=time.time() + 1) == []
    ledger.release(reclaimed, error="stopping")
    assert len(ledger.claim("w3", 10, 5)) == 2
    assert ledger.release_all_leases() == 2
    assert len(ledger.claim("w4", 10, 5)) == 2


def test_claim_takes_one_object_per_batch(ledger: Ledger) -> None:
    ledger.ingest([unsub(f"c{i}@example.com", contact_id(i)) for i in range(3)])
    ledger.ingest([unsub(f"l{i}@example.com", lead_id(i)) for i in range(2)])
    first = ledger.claim("w", 200, 60)
    second = ledger.claim("w", 200, 60)
    assert {r.object for r in first} == {"Contact"} and len(first) == 3
    assert {r.object for r in second} == {"Lead"} and len(second) == 2


def test_iter_targets_is_ordered_and_paged(ledger: Ledger) -> None:
    ids = [contact_id(i) for i in range(11)] + [normalize_id("003aB0000000xYz"), normalize_id("003Ab0000000XyZ")]
    ledger.ingest([unsub(f"u{i}@example.com", sid) for i, sid in enumerate(ids)])
    ledger.ingest([unsub("lead@example.com", lead_id(1))])
    got = list(ledger.iter_targets("Contact", page_size=3))
    assert [sid for sid, _, _ in got] == sorted(ids)  # bytewise order on both databases
    assert {sid: email for sid, email, _ in got}[ids[0]] == "u0@example.com"
    assert all(owed for _, _, owed in got)  # every one still has its write of true queued
    assert list(ledger.iter_targets("Lead")) == [(lead_id(1), "lead@example.com", True)]
    rows = ledger.claim("w", 200, 60)
    ledger.complete(rows, [PushOutcome(rows[0], "failed", "ENTITY_IS_DELETED")], field="HasOptedOutOfEmail")
    open_ids = [sid for sid, _, _ in ledger.iter_targets("Contact", include_failed=False)]
    assert rows[0].salesforce_id not in open_ids and len(open_ids) == len(ids) - 1


def test_a_record_added_from_salesforce_is_held_as_confirmed_true_since_the_read(ledger: Ledger) -> None:
    read_at = time.time() - 5
    added = ledger.add_salesforce_opt_outs([(contact_id(7), "Contact", "New@example.com")], read_at=read_at)
    assert added.added == 1 and ledger.backlog() == 0
    # Salesforce held true when it was read: a nightly that read it then has nothing to write
    assert ledger.queue_nightly_writes([contact_id(7)], read_at=read_at) == ([], 0, 1)
    found = ledger.lookup("new@example.com")
    assert found is not None and found["salesforce"][0]["status"] == "pushed"


def test_an_opt_out_read_from_salesforce_leaves_a_write_in_flight_to_its_writer(ledger: Ledger) -> None:
    ledger.ingest([unsub("a@example.com", contact_id(1))])
    claim = ledger.claim("push", 10, 60)  # the push is writing true to the record
    # the Salesforce poll reads the record opted out (the push's write landed) before the push completes
    ledger.add_salesforce_opt_outs([(contact_id(1), "Contact", "a@example.com")], read_at=time.time())
    completion = ledger.complete(claim, [PushOutcome(claim[0], "pushed", None)], field="HasOptedOutOfEmail")
    assert (completion.settled, completion.lost) == (1, 0)  # its lease was not taken away: no second write
    assert ledger.backlog() == 0


def test_a_target_is_owed_a_write_while_its_write_of_true_is_queued(ledger: Ledger) -> None:
    ledger.ingest([unsub("a@example.com", contact_id(1)), unsub("b@example.com", contact_id(2))])
    claim = ledger.claim("w", 1, 60)
    ledger.complete(claim, [PushOutcome(claim[0], "pushed", None)], field="HasOptedOutOfEmail")
    settled = claim[0].salesforce_id
    owed = {sid: bool(flag) for sid, _, flag in ledger.iter_targets("Contact")}
    assert owed == {settled: False, ({contact_id(1), contact_id(2)} - {settled}).pop(): True}


def test_add_salesforce_opt_outs_is_idempotent_and_settles_pending(ledger: Ledger) -> None:
    ledger.ingest([unsub("pending@example.com", contact_id(1))])
    records = [(contact_id(1), "Contact", "pending@example.com"), (lead_id(5), "Lead", "New@Example.com")]
    records.append((lead_id(6), "Lead", None))
    assert ledger.add_salesforce_opt_outs(records).added == 1
    assert ledger.add_salesforce_opt_outs(records).added == 0
    assert ledger.backlog() == 0  # Salesforce already has contact 1 opted out
    new = ledger.lookup("new@example.com")
    assert new is not None and new["unsubscribed"] and new["salesforce"][0]["status"] == "pushed"
    assert new["history"][-1]["source"] == "salesforce-sync"


def test_nightly_writes_are_recorded_by_the_outbox_completion(ledger: Ledger) -> None:
    ledger.ingest([unsub(f"m{i}@example.com", contact_id(i)) for i in range(3)])
    ids = [contact_id(i) for i in range(3)]
    assert ledger.queue_nightly_writes(ids) == (ids, 0, 0)  # already queued with true: not queued twice
    assert ledger.backlog() == 3
    claim = ledger.claim("nightly", 10, 60, among=ids)
    by_id = {r.salesforce_id: r for r in claim}
    results = [
        RecordResult(ids[0], True),
        RecordResult(ids[1], False, "ENTITY_IS_DELETED", "deleted", ErrorClass.PERMANENT),
        RecordResult(ids[2], False, "UNABLE_TO_LOCK_ROW", "busy", ErrorClass.TRANSIENT),
    ]
    outcomes = []
    for r in results:
        d = decide_write(r, 0, 3)
        outcomes.append(PushOutcome(by_id[r.id], d.status, d.reason, time.time() + 60))  # type: ignore[arg-type]
    ledger.complete(claim, outcomes, field="HasOptedOutOfEmail", source="salesforce-sync")
    assert ledger.backlog() == 1
    assert ledger.stats().by_status == {"pushed": 1, "failed": 1, "pending": 1}
    found = ledger.lookup("m0@example.com")
    assert found is not None and "salesforce-sync" in {h["source"] for h in found["history"]}


def test_a_record_a_push_set_after_the_nightly_read_is_not_queued_again(ledger: Ledger) -> None:
    ledger.ingest([unsub("a@example.com", contact_id(1))])
    read_at = time.time() - 5  # the nightly read Salesforce, then the push settled the record
    claim = ledger.claim("push", 10, 60)
    ledger.complete(claim, [PushOutcome(claim[0], "pushed", None)], field="HasOptedOutOfEmail")
    assert ledger.queue_nightly_writes([contact_id(1)], read_at=read_at) == ([], 0, 1)
    assert ledger.backlog() == 0
    # read after the push: Salesforce lacks it again (unset by hand), so the nightly queues it
    assert ledger.queue_nightly_writes([contact_id(1)], read_at=time.time() + 5) == ([contact_id(1)], 0, 0)
    assert ledger.backlog() == 1


def test_sync_runs(ledger: Ledger) -> None:
    assert ledger.last_sync_run() is None
    assert ledger.nightly_totals() == {"toSalesforce": 0, "fromSalesforce": 0}
    now = time.time()
    summary = {"toSalesforce": 3, "fromSalesforce": 2, "skippedNoSalesforceId": 1, "failed": 0}
    ledger.record_sync_run(summary, started_at=now - 100, ended_at=now - 90, outcome="Succeeded", dry_run=False)
    ledger.record_sync_run(summary, started_at=now - 50, ended_at=now - 40, outcome="Succeeded", dry_run=True)
    ledger.record_sync_run({"toSalesforce": 1}, started_at=now - 10, ended_at=now, outcome="Failed", dry_run=False)
    last = ledger.last_sync_run()
    assert last is not None and last["outcome"] == "Failed"
    success = ledger.last_sync_run(successful_only=True)
    assert success is not None and success["counts"] == summary and success["endedAtEpoch"] == pytest.approx(now - 90)
    dry = ledger.last_sync_run(include_dry_run=True, successful_only=True)
    assert dry is not None and dry["dryRun"] is True
    assert ledger.nightly_totals() == {"toSalesforce": 4, "fromSalesforce": 2}


def test_list_unsubscribes_pages_in_insertion_order(ledger: Ledger) -> None:
    emails = [f"l{i}@example.com" for i in range(7)]
    for email in emails:
        ledger.ingest([unsub(email)])
    seen: list[str] = []
    after = 0
    while True:
        items, nxt = ledger.list_unsubscribes(limit=3, after=after)
        seen += [i["email"] for i in items]
        if nxt is None:
            break
        after = nxt
    assert seen == emails


def test_reopen_keeps_data_and_schema_version(ledger_url: str) -> None:
    first = Ledger.open(ledger_url)
    first.ingest([unsub("kept@example.com", contact_id(9))])
    first.close()
    second = Ledger.open(ledger_url)
    try:
        assert second.lookup("kept@example.com") is not None
        assert second.migrate() == LATEST_VERSION
        assert second.backlog() == 1
    finally:
        second.close()


def test_refuses_a_newer_schema(ledger_url: str) -> None:
    led = Ledger.open(ledger_url)
    with led._engine.begin() as conn:  # simulate a ledger written by a newer release
        conn.execute(text("INSERT INTO schema_versions (version, applied_at) VALUES (999, 0)"))
    with pytest.raises(RuntimeError, match="newer than this program knows"):
        led.migrate()
    led.close()


@pytest.mark.postgres
def test_concurrent_claims_never_overlap_on_postgres(postgres_url: str) -> None:
    ledgers = [Ledger.open(postgres_url), Ledger.open(postgres_url)]
    ledgers[0].ingest([unsub(f"c{i}@example.com", contact_id(i)) for i in range(600)])
    claimed: dict[str, list[str]] = {"a": [], "b": []}

    def drain(name: str, led: Ledger) -> None:
        while rows := led.claim(name, 50, 60):
            claimed[name] += [r.salesforce_id for r in rows]
            led.complete(rows, [PushOutcome(r, "pushed") for r in rows], field="HasOptedOutOfEmail")

    threads = [threading.Thread(target=drain, args=(n, led)) for n, led in zip("ab", ledgers, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = claimed["a"] + claimed["b"]
    assert len(everything) == 600 and len(set(everything)) == 600
    for led in ledgers:
        led.close()


def _claims_beside_one_in_flight(postgres_url: str, limit: int, wait: float) -> tuple[list[str], list[str], bool]:
    """Claims of two lanes on one PostgreSQL ledger, the second made while the first is in flight (its rows
    locked, its transaction paused before it commits, for up to ``wait`` seconds of the second's): (objects of the
    first claim's rows, of the second's, whether the second ended while the first was in flight)."""
    ledgers = [Ledger.open(postgres_url), Ledger.open(postgres_url)]
    claimed: list[list[str]] = [[], []]
    lanes = [
        threading.Thread(target=lambda n=n: claimed[n].extend(r.object for r in ledgers[n].claim(f"w{n}", limit, 60)))
        for n in (0, 1)
    ]
    in_flight, go_on = threading.Event(), threading.Event()

    def pause_once_locked(conn: object, cursor: object, statement: str, *args: object) -> None:
        if threading.current_thread() is lanes[0] and "SKIP LOCKED" in statement and not in_flight.is_set():
            in_flight.set()
            go_on.wait(30)

    event.listen(Engine, "after_cursor_execute", pause_once_locked)
    try:
        lanes[0].start()
        assert in_flight.wait(30)
        lanes[1].start()
        lanes[1].join(wait)
        ended_beside = not lanes[1].is_alive()
        go_on.set()
        for lane in lanes:
            lane.join(30)
    finally:
        go_on.set()
        event.remove(Engine, "after_cursor_execute", pause_once_locked)
        for led in ledgers:
            led.close()
    return claimed[0], claimed[1], ended_beside


@pytest.mark.postgres
def test_a_claim_beside_another_in_flight_takes_the_next_object_due(postgres_url: str) -> None:
    """Two lanes claim at once after an outage: while one claim of the due Contacts is in flight, the other
    lane's claim takes the Leads due at once. It used to pick the oldest due row's object, Contact, find all its
    rows locked and come back empty: that lane then slept with Leads due."""
    ledger = Ledger.open(postgres_url)
    ledger.ingest([unsub(f"c{i}@example.com", contact_id(i)) for i in range(5)])
    ledger.ingest([unsub(f"l{i}@example.com", lead_id(i)) for i in range(3)])
    ledger.close()
    first, second, ended_beside = _claims_beside_one_in_flight(postgres_url, 200, 30)
    assert (first, second, ended_beside) == (["Contact"] * 5, ["Lead"] * 3, True)


@pytest.mark.postgres
def test_claims_of_one_object_take_turns_and_the_next_takes_the_rows_after(postgres_url: str) -> None:
    """With only Contacts due, a claim beside one in flight waits for its turn, then takes the rows the first
    left: never the same rows, and not nothing."""
    ledger = Ledger.open(postgres_url)
    ledger.ingest([unsub(f"c{i}@example.com", contact_id(i)) for i in range(8)])
    ledger.close()
    first, second, _ = _claims_beside_one_in_flight(postgres_url, 5, 0.2)
    assert (first, second) == (["Contact"] * 5, ["Contact"] * 3)


TRICKY_TEXTS = [
    "",
    "NULL",
    "null",
    'a "quoted" word',
    "back\\slash\\",
    '\\"',
    "a,b",
    "{braced}",
    " spaced ",
    "tab\there",
    "line\nbreak",
    "ünïcødé ✓",
    "\u3000ideographic space",
    "%s %(x)s",
    "'single'",
]


@pytest.mark.postgres
def test_lists_reach_postgresql_exactly(postgres_url: str) -> None:
    """The ledger binds lists (ids, addresses, errors, times, values) as array parameters through its own
    dumper: every value comes back as it was, None stays NULL."""
    from unsubscribe_sync.ledger.engine import create_ledger_engine

    cases: list[tuple[str, list[Any]]] = [
        ("TEXT[]", TRICKY_TEXTS),
        ("TEXT[]", [None, *TRICKY_TEXTS, None]),
        ("TEXT[]", []),
        ("TEXT[]", [None]),
        ("VARCHAR[]", ["only"]),
        ("BIGINT[]", [1, None, -(2**40), 0]),
        ("DOUBLE PRECISION[]", [1733.123456789012, None, -0.5, 1e-300, float("inf"), float("-inf")]),
        ("BOOLEAN[]", [True, None, False]),
        ("TEXT[]", [["nested", "a,b"], ["list", None]]),
    ]
    engine = create_ledger_engine(postgres_url)
    try:
        with engine.connect() as conn:
            for kind, values in cases:
                got = conn.exec_driver_sql(f"SELECT CAST(%(v)s AS {kind})", {"v": values}).scalar_one()
                assert got == values, kind
            with pytest.raises(sqlalchemy.exc.SQLAlchemyError):  # a text PostgreSQL cannot hold: refused, not split
                conn.exec_driver_sql("SELECT CAST(%(v)s AS TEXT[])", {"v": ["a\x00b", "c"]}).scalar_one()
    finally:
        engine.dispose()


def test_a_sqlite_ledger_never_loads_the_postgresql_driver(tmp_path: Path) -> None:
    """The worker and the nightly on a SQLite ledger do not import psycopg (~9 MB of a 1M nightly's 200 MB)."""
    code = (
        "import sys\n"
        "import unsubscribe_sync.nightly.job, unsubscribe_sync.worker.app\n"
        "from unsubscribe_sync.ledger import Ledger\n"
        f"Ledger.open('sqlite:///{tmp_path}/ledger.db').close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.postgres
def test_a_failed_write_keeps_its_error_text_exactly(postgres_url: str) -> None:
    ledger = Ledger.open(postgres_url)
    try:
        ledger.ingest([unsub(f"t{i}@example.com", contact_id(i)) for i in range(len(TRICKY_TEXTS))])
        claim = ledger.claim("w", 200, 60)
        rows = sorted(claim.rows, key=lambda r: r.salesforce_id)
        errors = {r.salesforce_id: text for r, text in zip(rows, TRICKY_TEXTS, strict=True)}
        ledger.complete(
            claim, [PushOutcome(r, "failed", errors[r.salesforce_id]) for r in rows], field="HasOptedOutOfEmail"
        )
        for i in range(len(TRICKY_TEXTS)):
            found = ledger.lookup(f"t{i}@example.com")
            assert found is not None
            target = found["salesforce"][0]
            assert target["status"] == "failed" and target["lastError"] == errors[contact_id(i)], target
            assert found["history"][0].get("detail", "") == errors[contact_id(i)]  # (an empty detail is left out)
    finally:
        ledger.close()


def test_bad_url_is_refused_without_echoing_it() -> None:
    from unsubscribe_sync.api.config import ConfigError

    with pytest.raises(ConfigError) as info:
        Ledger.open("mysql://user:secret@host/db")
    assert "secret" not in str(info.value)


# -- explicit resubscribes -----------------------------------------------------------------------


def resub(email: str, sid: str | None = None, event_id: str | None = None) -> Resubscribe:
    obj = None if sid is None else ("Contact" if sid.startswith("003") else "Lead")
    return Resubscribe(email, "jane", "asked", salesforce_id=sid, object=obj, event_id=event_id)


def test_resubscribe_marks_the_address_and_queues_false_writes(ledger: Ledger) -> None:
    ledger.ingest([unsub("r@example.com", contact_id(1)), unsub("r@example.com", lead_id(2))])
    result = ledger.resubscribe([resub("R@Example.com", event_id="re-1")])
    assert (result.stored, result.resubscribed, result.not_unsubscribed, result.enqueued) == (1, 1, 0, 2)
    assert ledger.backlog() == 2  # the queued opt-outs were replaced, not added to
    rows = ledger.claim("w", 10, 60)
    assert {r.value for r in rows} == {False} and len(rows) == 1  # one object a claim
    found = ledger.lookup("r@example.com")
    assert found is not None and found["unsubscribed"] is False
    last = found["history"][0]
    assert last["action"] == "resubscribed" and last["outcome"] == "resubscribed"
    assert (last["requestedBy"], last["reason"], last["detail"]) == ("jane", "asked", "by jane: asked")
    assert ledger.count_without_salesforce_id() == 0
    assert list(ledger.iter_targets("Contact")) == []  # the nightly never sets a resubscribed address
    counts = ledger.table_counts()
    again = ledger.resubscribe([resub("r@example.com", event_id="re-1")])
    assert (again.stored, again.replayed) == (0, 1) and ledger.table_counts() == counts


def test_an_older_write_in_flight_never_removes_a_newer_one(ledger: Ledger) -> None:
    ledger.ingest([unsub("f@example.com", contact_id(3))])
    claim = ledger.claim("w", 10, 60)
    (row,) = claim
    assert row.value is True
    ledger.resubscribe([resub("f@example.com")])
    assert ledger.claim("w2", 10, 60) == []  # still leased: the new value waits for the write in flight
    ledger.complete(claim, [PushOutcome(row, "pushed")], field="HasOptedOutOfEmail")
    claim2 = ledger.claim("w2", 10, 60)
    (again,) = claim2
    assert again.salesforce_id == row.salesforce_id and again.value is False
    ledger.complete(claim2, [PushOutcome(again, "pushed")], field="HasOptedOutOfEmail")
    assert ledger.backlog() == 0
    found = ledger.lookup("f@example.com")
    assert found is not None
    pushes = [h["detail"] for h in reversed(found["history"]) if h["action"] == "pushed"]
    assert pushes == ["HasOptedOutOfEmail", "HasOptedOutOfEmail = false"]
    assert found["salesforce"][0]["status"] == "pushed"


def test_unsubscribe_after_resubscribe_queues_true_again(ledger: Ledger) -> None:
    ledger.ingest([unsub("u@example.com", contact_id(4))])
    ledger.resubscribe([resub("u@example.com")])
    result = ledger.ingest([unsub("u@example.com")])
    assert result.enqueued == 1
    claim = ledger.claim("w", 10, 60)
    (row,) = claim
    assert row.value is True
    found = ledger.lookup("u@example.com")
    assert found is not None and found["unsubscribed"] is True
    assert [h["action"] for h in reversed(found["history"])] == ["unsubscribed", "resubscribed", "unsubscribed"]
    assert [t for t, _, _ in ledger.iter_targets("Contact")] == [contact_id(4)]


def test_resubscribe_of_unknown_or_resubscribed_address_is_a_recorded_no_op(ledger: Ledger) -> None:
    result = ledger.resubscribe([resub("new@example.com"), resub("new@example.com")])
    assert (result.stored, result.resubscribed, result.not_unsubscribed, result.enqueued) == (2, 0, 2, 0)
    found = ledger.lookup("new@example.com")
    assert found is not None and found["unsubscribed"] is False
    assert [h["outcome"] for h in reversed(found["history"])] == ["not_unsubscribed", "not_unsubscribed"]
    assert ledger.backlog() == 0


def test_nightly_helpers_respect_a_queued_resubscribe(ledger: Ledger) -> None:
    ledger.ingest([unsub("n@example.com", contact_id(5))])
    ledger.resubscribe([resub("n@example.com")])
    assert ledger.pending_clears() == ({contact_id(5)}, {"n@example.com"})
    # Salesforce still shows the record opted out: the queued write of false is not fought
    assert ledger.add_salesforce_opt_outs([(contact_id(5), "Contact", "n@example.com")]).added == 0
    assert ledger.queue_nightly_writes([contact_id(5)]) == ([], 1, 0)
    assert ledger.backlog() == 1  # a nightly write never replaces the resubscribe's write
    found = ledger.lookup("n@example.com")
    assert found is not None and found["unsubscribed"] is False
    claim = ledger.claim("w", 10, 60)
    (row,) = claim
    ledger.complete(claim, [PushOutcome(row, "pushed")], field="HasOptedOutOfEmail")
    # once cleared, an opt-out made in Salesforce again suppresses the address again
    assert ledger.add_salesforce_opt_outs([(contact_id(5), "Contact", "n@example.com")]).added == 1
    found = ledger.lookup("n@example.com")
    assert found is not None and found["unsubscribed"] is True
    assert found["history"][0]["outcome"] == "in_salesforce"


def test_schema_v1_ledger_is_migrated_to_v2(ledger_url: str) -> None:
    from unsubscribe_sync.ledger.engine import create_ledger_engine
    from unsubscribe_sync.ledger.schema import _migrate_v1

    engine = create_ledger_engine(ledger_url)
    with engine.begin() as conn:  # a ledger written by a release that knew version 1 only
        conn.execute(text("CREATE TABLE schema_versions (version INTEGER PRIMARY KEY, applied_at FLOAT NOT NULL)"))
        conn.execute(text("INSERT INTO schema_versions VALUES (1, 0)"))
        _migrate_v1(conn)
        conn.execute(text("DROP INDEX ix_outbox_clears"))  # version 6's, on a column version 1 had not
        added = (("outbox", "value"), ("outbox", "seq"), ("history", "requested_by"), ("history", "reason"))
        for table, column in added:
            conn.execute(text(f"ALTER TABLE {table} DROP COLUMN {column}"))
        conn.execute(
            text(
                "INSERT INTO outbox (salesforce_id, object, email, received_at, attempts, next_attempt_at)"
                f" VALUES ('{contact_id(7)}', 'Contact', 'old@example.com', 0, 0, 0)"
            )
        )
    engine.dispose()
    led = Ledger.open(ledger_url)
    try:
        assert led.migrate() == LATEST_VERSION == 6
        claim = led.claim("w", 10, 60)
        (row,) = claim
        assert row.value is True and row.seq == 0
        led.resubscribe([resub("old@example.com")])
        assert led.lookup("old@example.com")["history"][0]["requestedBy"] == "jane"  # type: ignore[index]
    finally:
        led.close()


def test_a_v5_ledger_gets_the_index_of_queued_writes_of_false(ledger_url: str) -> None:
    """Version 6 adds ix_outbox_clears (the queued writes of false, by address) to a ledger made before it; the
    writes of false queued before are still found."""
    from sqlalchemy import inspect

    from unsubscribe_sync.ledger.engine import create_ledger_engine

    led = Ledger.open(ledger_url)
    led.ingest([unsub("back@example.com", contact_id(1)), unsub("stays@example.com", contact_id(2))])
    led.resubscribe([resub("back@example.com")])
    led.close()
    engine = create_ledger_engine(ledger_url)
    with engine.begin() as conn:  # as a release that knew version 5 left it
        conn.execute(text("DROP INDEX ix_outbox_clears"))
        conn.execute(text("DELETE FROM schema_versions WHERE version = 6"))
    led = Ledger.open(ledger_url)
    try:
        assert led.migrate() == LATEST_VERSION == 6
        with engine.connect() as conn:
            assert "ix_outbox_clears" in {i["name"] for i in inspect(conn).get_indexes("outbox")}
        assert led.pending_clears() == ({contact_id(1)}, {"back@example.com"})
    finally:
        led.close()
        engine.dispose()


def test_nightly_queue_leaves_out_addresses_resubscribed_since_the_plan(ledger: Ledger) -> None:
    ledger.ingest([unsub("keep@example.com", contact_id(10)), unsub("gone@example.com", contact_id(11))])
    planned = [contact_id(11), contact_id(10)]
    ledger.resubscribe([resub("gone@example.com")])
    assert ledger.queue_nightly_writes(planned) == ([contact_id(10)], 1, 0)


def test_each_answered_write_leaves_one_history_row_with_its_own_address_record_source_and_detail(
    ledger: Ledger,
) -> None:
    """A completion's history, whatever path builds it: each settled write names its address, record, source and
    the value written; a failure its reason; a write whose row a newer act replaced is still recorded (with the
    address it was claimed for); a retry records nothing."""
    emails = [f"h{i}@example.com" for i in range(6)]
    ledger.ingest([unsub(email, contact_id(100 + i)) for i, email in enumerate(emails)])
    claim = ledger.claim("w", 10, 60)
    by_email = {r.email: r for r in claim}
    ledger.resubscribe([resub("h3@example.com")])  # h3's row moves on to a write of false while true is in flight
    outcomes = [
        PushOutcome(by_email["h0@example.com"], "pushed"),
        PushOutcome(by_email["h1@example.com"], "pushed"),
        PushOutcome(by_email["h2@example.com"], "failed", "ENTITY_IS_DELETED: gone"),
        PushOutcome(by_email["h3@example.com"], "pushed"),
        PushOutcome(by_email["h4@example.com"], "retry", "UNABLE_TO_LOCK_ROW: busy", time.time() + 30),
        PushOutcome(by_email["h5@example.com"], "held", "INSUFFICIENT_ACCESS: field"),
    ]
    before = ledger.table_counts()["history"]
    result = ledger.complete(claim, outcomes, field="HasOptedOutOfEmail", source="salesforce-sync")
    assert (result.settled, result.replaced, result.lost) == (3, 1, 0)
    assert ledger.table_counts()["history"] == before + 4

    def last(email: str) -> dict[str, object]:
        found = ledger.lookup(email)
        assert found is not None
        return found["history"][0]  # type: ignore[no-any-return]

    for i in (0, 1):
        assert last(emails[i]) == {
            "at": last(emails[i])["at"],
            "source": "salesforce-sync",
            "action": "pushed",
            "salesforceId": contact_id(100 + i),
            "outcome": "success",
            "detail": "HasOptedOutOfEmail",
        }
    failed = last(emails[2])
    assert (failed["action"], failed["outcome"], failed["salesforceId"]) == ("push_failed", "failed", contact_id(102))
    assert failed["detail"] == "ENTITY_IS_DELETED: gone"
    replaced = ledger.lookup(emails[3])
    assert replaced is not None
    assert [(h["action"], h.get("detail")) for h in replaced["history"][:2]] == [
        ("pushed", "HasOptedOutOfEmail"),
        ("resubscribed", "by jane: asked"),
    ]
    assert [h["action"] for h in reversed(ledger.lookup(emails[4])["history"])] == ["unsubscribed"]  # type: ignore[index]
    assert [h["action"] for h in reversed(ledger.lookup(emails[5])["history"])] == ["unsubscribed"]  # type: ignore[index]
    # the false write of the resubscribe, settled: its detail says the value
    again = ledger.claim("w2", 10, 60)
    if again and again[0].value:  # h5's held write of true, released due now, came first (one value per claim)
        again = ledger.claim("w2", 10, 60)
    (clear,) = again
    assert (clear.email, clear.value) == ("h3@example.com", False)
    ledger.complete(again, [PushOutcome(clear, "pushed")], field="HasOptedOutOfEmail")
    assert (last(emails[3])["detail"], last(emails[3])["source"]) == ("HasOptedOutOfEmail = false", "push")

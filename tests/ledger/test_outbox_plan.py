"""Plans: a claim scoped to Salesforce ids looks them up by the id index, on SQLite too (ledger.base.Unindexed);
the queued writes of false are read through their index (ix_outbox_clears), not by a scan of the outbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import and_, event, select
from sqlalchemy.dialects import postgresql, sqlite

from tests.fixtures.ledgers import contact_id
from unsubscribe_sync.ledger import Ledger, Resubscribe, Unsubscribe
from unsubscribe_sync.ledger.base import Unindexed
from unsubscribe_sync.ledger.schema import outbox


def test_an_unindexed_column_is_prefixed_on_sqlite_and_plain_on_postgresql() -> None:
    query = select(outbox.c.id).where(and_(Unindexed(outbox.c.object) == "Contact"))
    assert "+outbox.object = " in str(query.compile(dialect=sqlite.dialect()))
    assert "WHERE outbox.object = " in str(query.compile(dialect=postgresql.dialect()))


def test_a_claim_scoped_to_ids_never_scans_the_due_index(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    try:
        ids = [contact_id(i) for i in range(600)]
        ledger.ingest(
            [Unsubscribe(email=f"w{i}@example.com", salesforce_id=s, object="Contact") for i, s in enumerate(ids)]
        )
        statements: list[tuple[str, Any]] = []

        def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "outbox" in statement:
                statements.append((statement, parameters))

        engine = ledger._engine
        event.listen(engine, "before_cursor_execute", seen)
        try:
            claim = ledger.claim("nightly", 200, 60, bulk_threshold=100, bulk_limit=1_000, among=ids[:550])
        finally:
            event.remove(engine, "before_cursor_execute", seen)
        assert claim.bulk and len(claim) == 550
        assert statements
        with engine.connect() as conn:
            for statement, parameters in statements:
                plan = " | ".join(
                    row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                )
                assert "ix_outbox_due" not in plan and "ix_outbox_next" not in plan, (statement, plan)
                assert "(salesforce_id=?)" in plan, (statement, plan)  # each id looked up by the id index
    finally:
        ledger.close()


def test_a_claim_scoped_to_ids_across_key_pages_takes_those_ids_only(tmp_path: Path) -> None:
    """The ids of a scope are bound as key lists of KEY_LIST_SIZE ids each: a scope of 5,003 ids (two pages and
    one more) finds its rows in every page, in due order, and none outside it."""
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    try:
        ids = [contact_id(i) for i in range(10_010)]
        for start in range(0, len(ids), 5_000):
            ledger.ingest(
                [Unsubscribe(email=f"w{i}@example.com", salesforce_id=ids[i], object="Contact")
                 for i in range(start, min(start + 5_000, len(ids)))]
            )  # fmt: skip
        scope = ids[::2][:5_003]  # every other id: its pages interleave with rows outside it
        claim = ledger.claim("nightly", 200, 60, bulk_threshold=100, bulk_limit=20_000, among=scope)
        assert claim.bulk and sorted(r.salesforce_id for r in claim.rows) == sorted(scope)
        assert [r.salesforce_id for r in claim.rows] == scope  # due order: the order they were received in
        assert ledger.claim("nightly", 200, 60, among=scope).rows == []  # all leased
    finally:
        ledger.close()


def _statements_of(ledger: Ledger, call: Any) -> list[tuple[str, Any]]:
    """The SELECTs of the outbox that ``call()`` ran on ``ledger``'s connections (statement, parameters). On
    SQLite the driver's trace sees the ledger's driver SQL too (its parameters bound in the text)."""
    statements: list[tuple[str, Any]] = []

    def keep(statement: str, parameters: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM outbox" in statement:
            statements.append((statement, parameters))

    def seen(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        keep(statement, parameters)

    def trace(dbapi_connection: Any, *_args: Any) -> None:
        dbapi_connection.set_trace_callback(lambda statement: keep(statement, ()))

    def untrace(dbapi_connection: Any, *_args: Any) -> None:
        dbapi_connection.set_trace_callback(None)

    engine = ledger._engine
    hooks = [("checkout", trace), ("checkin", untrace)] if ledger.dialect == "sqlite" else []
    hooks = hooks or [("before_cursor_execute", seen)]
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        call()
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)
    return statements


def test_the_queued_writes_of_false_are_read_through_their_index(ledger: Ledger) -> None:
    """A Salesforce read (``add_salesforce_opt_outs``) and the nightly's plan (``pending_clears``) ask which
    records and addresses have a write of false queued. Beside a backlog of opt-outs (here 3,000) that was a
    scan of the whole outbox per 2,000 records read (four on PostgreSQL). On PostgreSQL the plan is asked with
    sequential scans off: the index's predicate must match the query's for the planner to use it at all."""
    ledger.ingest(
        [Unsubscribe(email=f"w{i}@example.com", salesforce_id=contact_id(i), object="Contact") for i in range(3000)]
    )
    ledger.resubscribe([Resubscribe("w1@example.com", "jane", "asked", salesforce_id=contact_id(1), object="Contact")])
    read = [(contact_id(5000 + i), "Contact", f"new{i}@example.com") for i in range(3)] + [
        (contact_id(1), "Contact", "w1@example.com")
    ]
    statements = _statements_of(ledger, lambda: ledger.add_salesforce_opt_outs(read, read_at=0.0))
    statements += _statements_of(ledger, ledger.pending_clears)
    false_reads = [(s, p) for s, p in statements if "value = 0" in s or "value = false" in s]
    assert len(false_reads) >= 2, statements
    explain = "EXPLAIN QUERY PLAN " if ledger.dialect == "sqlite" else "EXPLAIN "
    with ledger._engine.connect() as conn:
        if ledger.dialect == "postgresql":
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in false_reads:
            plan = " | ".join(str(row[-1]) for row in conn.exec_driver_sql(explain + statement, parameters))
            assert "ix_outbox_clears" in plan, (statement, plan)
    assert ledger.pending_clears() == ({contact_id(1)}, {"w1@example.com"})

"""A claim scoped to Salesforce ids looks them up by the id index, on SQLite too (ledger.base.Unindexed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import and_, event, select
from sqlalchemy.dialects import postgresql, sqlite

from tests.fixtures.ledgers import contact_id
from unsubscribe_sync.ledger import Ledger, Unsubscribe
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
    """The ids of a scope are bound as key lists of SQLITE_KEYS ids each: a scope of 5,003 ids (two pages and
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

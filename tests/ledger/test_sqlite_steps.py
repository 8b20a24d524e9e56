"""Statements over many rows in a few driver steps (ledger.sqlite_steps): every row in, every row out, times exact.

The point of the helpers is speed beside busy threads (measured in bench/bench_sqlite_steps.py, never here);
these tests hold them to what the statements they replace did.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.fixtures.ledgers import contact_id
from unsubscribe_sync.ledger import Ledger, PushOutcome, Resubscribe, Unsubscribe
from unsubscribe_sync.ledger.sqlite_steps import (
    ROWS_PER_INSERT,
    exact_real,
    insert_json_rows,
    insert_rows,
    json_columns,
    select_rows,
)

# a time whose 16 significant digits JSON's 15 would round (to ...635.54969: 4 us later)
PRECISE = 1_796_664_635.549686


def _table() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER, x REAL, flag BOOLEAN)")
    return db


def test_insert_rows_puts_every_row_in_when_the_connection_allows_few_parameters() -> None:
    db = _table()
    db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # 2 rows of 4 columns per statement
    rows = [(f"k{i:03d}", i, i + 0.5, i % 2 == 0) for i in range(7)]
    insert_rows(db, "INSERT INTO t (k, n, x, flag) {values}", rows)
    assert db.execute("SELECT k, n, x, flag FROM t ORDER BY k").fetchall() == [(k, n, x, int(f)) for k, n, x, f in rows]


def test_insert_rows_keeps_a_conflict_clause_after_the_values() -> None:
    db = _table()
    head = "INSERT INTO t (k, n, x, flag) {values} ON CONFLICT (k) DO UPDATE SET n = t.n + excluded.n"
    insert_rows(db, head, [("a", 1, 0.0, True), ("b", 2, 0.0, True), ("a", 10, 0.0, True)])
    assert db.execute("SELECT k, n FROM t ORDER BY k").fetchall() == [("a", 11), ("b", 2)]


def test_insert_rows_uses_a_few_statement_sizes_whatever_the_batch_sizes() -> None:
    # the driver keeps every statement text it ran prepared: sizes that vary with each batch would pile up
    db = _table()
    texts: set[str] = set()
    db.set_trace_callback(lambda sql: texts.add(sql.split(" VALUES ")[0] + str(sql.count("("))))
    for n in range(1, 301):
        db.execute("DELETE FROM t")
        insert_rows(db, "INSERT INTO t (k, n, x, flag) {values}", [(f"k{i}", i, 0.0, True) for i in range(n)])
        assert db.execute("SELECT count(*) FROM t").fetchone() == (n,)
    inserts = {t for t in texts if t.startswith("INSERT")}
    assert len(inserts) <= ROWS_PER_INSERT.bit_length()  # powers of two up to the largest


def test_insert_rows_of_nothing_runs_nothing() -> None:
    db = _table()
    insert_rows(db, "INSERT INTO t (k) {values}", [])
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_select_rows_returns_every_row_with_reals_exact_through_exact_real() -> None:
    db = _table()
    db.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [("a", 1, PRECISE, True), ("b", None, None, False)])
    sql = f"SELECT k, n, {exact_real('x')}, flag FROM t ORDER BY k"
    rows = select_rows(db, sql, (), 4)
    assert rows == [["a", 1, repr(PRECISE), 1], ["b", None, None, 0]]
    assert float(rows[0][2]) == PRECISE
    # the plain column through JSON would not be exact: why exact_real exists
    (plain,) = select_rows(db, "SELECT x FROM t WHERE k = ?", ("a",), 1)[0]
    assert plain != PRECISE


def test_insert_json_rows_keeps_text_exact_and_binds_the_shared_real() -> None:
    db = _table()
    sql = f"INSERT INTO t (x, k, n, flag) SELECT ?, {json_columns(3)} FROM json_each(?)"
    rows = [("ünïcødé ✓", 1, True), ('quote " and \\ back', None, False), ("tab\tnew\nline", 3, None)]
    insert_json_rows(db, sql, (PRECISE,), rows, batch=2)
    got = db.execute("SELECT k, n, flag, x FROM t ORDER BY rowid").fetchall()
    assert got == [(k, n, None if f is None else int(f), PRECISE) for k, n, f in rows]


def test_insert_json_rows_refuses_text_the_driver_cannot_encode() -> None:
    # a lone surrogate must fail the statement, as a bound value does, not be stored as an escape
    db = _table()
    sql = f"INSERT INTO t (x, k, n, flag) SELECT ?, {json_columns(3)} FROM json_each(?)"
    with pytest.raises(UnicodeEncodeError):
        insert_json_rows(db, sql, (0.0,), [("bad\ud800", 1, True)])
    assert db.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_select_rows_of_no_rows_is_an_empty_list() -> None:
    assert select_rows(_table(), "SELECT k FROM t WHERE n > ?", (5,), 1) == []


# -- through the ledger (SQLite and PostgreSQL) ------------------------------------------------------------


def test_a_claimed_row_carries_its_received_time_to_the_microsecond(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("precise@example.com", contact_id(1), "Contact")], received_at=PRECISE)
    (row,) = ledger.claim("w", 10, 60, now=PRECISE + 1)
    assert row.received_at == PRECISE


def test_a_resubscribe_one_microsecond_after_an_unsubscribe_wins(ledger: Ledger) -> None:
    ledger.ingest([Unsubscribe("tick@example.com", contact_id(2), "Contact", occurred_at=PRECISE)])
    later = PRECISE + 0.000001
    result = ledger.resubscribe([Resubscribe("tick@example.com", "support", "asked", occurred_at=later)])
    assert (result.resubscribed, result.superseded) == (1, 0)
    found = ledger.lookup("tick@example.com")
    assert found is not None and found["unsubscribed"] is False


@pytest.mark.parametrize("rows", [5_000, 12_001])
def test_a_bulk_claim_over_several_statements_leases_every_row_once_in_due_order(ledger: Ledger, rows: int) -> None:
    now = time.time()
    for start in range(0, rows, 5_000):
        ledger.ingest(
            [
                Unsubscribe(f"c{i}@example.com", contact_id(i), "Contact")
                for i in range(start, min(rows, start + 5_000))
            ],
            received_at=now + start,  # each ingest due a second later than the one before
        )
    claim = ledger.claim("w", 200, 60, now=now + rows, bulk_threshold=100, bulk_limit=100_000)
    assert claim.bulk and len(claim.rows) == rows
    assert len({r.id for r in claim.rows}) == rows
    assert [r.id for r in claim.rows] == sorted(r.id for r in claim.rows)  # due order: oldest ingest first
    assert {r.salesforce_id for r in claim.rows} == {contact_id(i) for i in range(rows)}
    held, _ = ledger.renew(claim, 60)
    assert held == {r.id for r in claim.rows}
    done = ledger.complete(claim, [PushOutcome(r, "pushed") for r in claim.rows], field="HasOptedOutOfEmail")
    assert done.settled == rows and ledger.backlog() == 0

"""SQLite statements beside a busy thread: one driver step per row against a few steps per statement.

Python's sqlite3 driver lets go of the GIL around each step, and each row of an ``executemany`` or of a fetch is
one step. Beside a thread running Python, each step waits to get the GIL back (up to the switch interval, 5 ms).
Measured in one run, side by side:

1. the driver's own way (``executemany`` of history rows, ``fetchall`` of rows) against ``ledger.sqlite_steps``
   (multi-row VALUES, rows sent as one JSON array, a select as one JSON array), alone and beside a thread
   running Python;
2. the ledger's claim and completion of a Bulk-sized claim (24,000 rows, SQLite), alone and beside that thread.

The busy thread stands for the worker's event loop parsing a campaign's webhooks, or the nightly planning in the
worker's process. ``BENCH_STEPS_ROWS`` sets the rows of part 1 (default 1,000: the per-row way beside the busy
thread takes seconds); part 1 reports medians of three runs.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from unsubscribe_sync.ledger import Ledger, PushOutcome, Unsubscribe
from unsubscribe_sync.ledger.sqlite_steps import insert_json_rows, insert_rows, json_columns, select_rows
from unsubscribe_sync.salesforce.ids import normalize_id

CLAIM_ROWS = 24_000


@contextmanager
def busy_thread(on: bool) -> Iterator[None]:
    """A thread running Python (no I/O, no waits) while the block runs, when ``on``."""
    stop = threading.Event()

    def spin() -> None:
        total = 0
        while not stop.is_set():
            for i in range(1_000):
                total += i

    thread = threading.Thread(target=spin, daemon=True)
    if on:
        thread.start()
        time.sleep(0.02)  # spinning before the block starts
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join()


def timed(fn: Callable[[], object], busy: bool) -> float:
    with busy_thread(busy):
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started


def driver_steps(directory: Path, rows: int) -> None:
    db = sqlite3.connect(directory / "steps.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE h (id INTEGER PRIMARY KEY, at REAL, email TEXT, sid TEXT, action TEXT, detail TEXT)")
    db.execute("CREATE INDEX ix_h_email ON h (email, id)")
    history = [
        (time.time(), f"c{i}@example.com", f"003{i:015d}", "pushed", "HasOptedOutOfEmail=true") for i in range(rows)
    ]
    head = "INSERT INTO h (at, email, sid, action, detail)"

    def per_row_insert() -> None:
        db.execute("BEGIN")
        db.executemany(f"{head} VALUES (?, ?, ?, ?, ?)", history)
        db.execute("COMMIT")

    def one_step_insert() -> None:
        db.execute("BEGIN")
        insert_rows(db, head + " {values}", history)
        db.execute("COMMIT")

    def json_insert() -> None:  # the history's way: the shared time bound once, the rest as one JSON array
        db.execute("BEGIN")
        insert_json_rows(
            db, f"{head} SELECT ?, {json_columns(4)} FROM json_each(?)", (history[0][0],), [r[1:] for r in history]
        )
        db.execute("COMMIT")

    select = "SELECT id, email, sid, action FROM h ORDER BY id DESC LIMIT ?"
    print(f"part 1: {rows:,} rows per statement, {os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}")
    print(f"  {'statement':34s} {'alone':>9s} {'beside a busy thread':>22s} {'slowdown':>9s}")
    for name, fn in (
        ("insert, executemany (per row)", per_row_insert),
        ("insert, multi-row VALUES", one_step_insert),
        ("insert, one JSON array", json_insert),
        ("select, fetchall (per row)", lambda: db.execute(select, (rows,)).fetchall()),
        ("select, one JSON array", lambda: select_rows(db, select, (rows,), 4)),
    ):
        fn()  # warm: the table holds rows, the statement is prepared
        alone = sorted(timed(fn, False) for _ in range(3))[1]  # medians of three
        beside = sorted(timed(fn, True) for _ in range(3))[1]
        print(f"  {name:34s} {alone * 1000:7.1f} ms {beside * 1000:18.1f} ms {beside / alone:8.1f}x")
    db.close()


def ledger_claim(directory: Path) -> None:
    print(f"part 2: the ledger's claim and completion of {CLAIM_ROWS:,} rows (SQLite, 2,000 per completion)")
    for busy in (False, True):
        ledger = Ledger.open(f"sqlite:///{directory / f'ledger-{busy}.db'}")
        try:
            items = [
                Unsubscribe(f"c{i}@example.com", normalize_id(f"003{i:012d}"), "Contact") for i in range(CLAIM_ROWS)
            ]
            for start in range(0, CLAIM_ROWS, 5_000):
                ledger.ingest(items[start : start + 5_000])
            with busy_thread(busy):
                started = time.perf_counter()
                claim = ledger.claim("bench", 200, 60, bulk_threshold=1_000, bulk_limit=100_000)
                claimed = time.perf_counter()
                outcomes = [PushOutcome(row, "pushed") for row in claim.rows]
                for start in range(0, len(outcomes), 2_000):
                    ledger.complete(claim, outcomes[start : start + 2_000], field="HasOptedOutOfEmail")
                completed = time.perf_counter()
            assert ledger.backlog() == 0
            label = "beside a busy thread" if busy else "alone"
            print(f"  {label:22s} claim {claimed - started:6.3f} s, completion {completed - claimed:6.3f} s")
        finally:
            ledger.close()


def main() -> None:
    rows = int(os.environ.get("BENCH_STEPS_ROWS", "1000"))
    with tempfile.TemporaryDirectory(prefix="bench-steps-") as name:
        driver_steps(Path(name), rows)
        ledger_claim(Path(name))


if __name__ == "__main__":
    main()

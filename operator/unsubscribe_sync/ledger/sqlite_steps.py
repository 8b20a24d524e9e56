"""SQLite statements over many rows, run in a few driver steps instead of one step per row.

Python's sqlite3 driver lets go of the GIL around each step of a statement, and every row of an
``executemany`` is one step, as is every row a cursor fetches. While another thread of the process runs Python
(the event loop parsing requests, the nightly planning, a pusher lane deciding outcomes), each step has to wait
to get the GIL back, for up to the switch interval (5 ms). Measured on 2 cores (``bench/bench_sqlite_steps.py``):
- inserting 2,000 history rows by ``executemany`` took 11 ms alone and 7.9 s beside a thread running Python;
- fetching 24,000 rows took 20 ms alone and 9.1 s beside it.

As one step, the statement waits for the GIL once and SQLite does the rows' work without holding it, so the
other thread keeps running meanwhile. The helpers:

- ``insert_rows``: an ``INSERT`` whose rows go in multi-row ``VALUES`` lists of up to ``ROWS_PER_INSERT`` rows
  (fewer where the connection allows fewer parameters).
- ``insert_stream``: the same over a stream of rows, a batch at a time.
- ``select_rows``: a select's rows as one JSON array that SQLite builds (``json_group_array``), parsed in
  one call. JSON has no REAL with all its digits (SQLite prints 15 significant digits), so a select hands a REAL
  column over as ``printf('%!.17g', column)`` text (``exact_real``), and the caller reads it with ``float``.
  Booleans come back as 0 or 1.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain, islice
from typing import Any

ROWS_PER_INSERT = 2_000  # rows per multi-row VALUES statement, within the connection's limit of parameters


def exact_real(column: str) -> str:
    """The select expression that hands a REAL column over with all its digits (as text: read it with float), NULL
    as NULL (``printf`` alone makes it 0.0)."""
    return f"(CASE WHEN {column} IS NULL THEN NULL ELSE printf('%!.17g', {column}) END)"


def insert_rows(raw: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run ``head`` (``INSERT INTO t (a, b) `` and any conflict clause placed after ``{values}``) over ``rows``.

    ``head`` holds ``{values}`` where the ``VALUES`` list goes, e.g. ``"INSERT INTO t (a, b) {values}"`` or
    ``"INSERT INTO t (a, b) {values} ON CONFLICT (a) DO NOTHING"``. All rows have the same width.
    """
    if not rows:
        return
    width = len(rows[0])
    one = "(" + ", ".join("?" * width) + ")"
    per = max(1, min(ROWS_PER_INSERT, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        values = "VALUES " + ", ".join([one] * len(chunk))
        raw.execute(head.format(values=values), list(chain.from_iterable(chunk)))


def insert_stream(raw: sqlite3.Connection, head: str, rows: Iterable[Sequence[Any]], batch: int = 5_000) -> None:
    """``insert_rows`` over a stream of rows, ``batch`` rows held at a time."""
    remaining = iter(rows)
    while chunk := list(islice(remaining, batch)):
        insert_rows(raw, head, chunk)


def select_rows(raw: sqlite3.Connection, sql: str, params: Sequence[Any], columns: int) -> list[list[Any]]:
    """The rows of a select of ``columns`` columns, as lists, fetched in one step.

    SQLite promises no order of an aggregate's input (before 3.44 there is no ORDER BY inside one): a caller that
    needs an order sorts the rows (linear on rows that come in order, as they do from an ordered select).
    """
    names = ", ".join(f"c{i}" for i in range(columns))
    wrapped = f"WITH selected_rows({names}) AS ({sql}) SELECT json_group_array(json_array({names})) FROM selected_rows"
    (text,) = raw.execute(wrapped, tuple(params)).fetchone()
    rows: list[list[Any]] = json.loads(text)
    return rows

"""SQLite statements over many rows, run in a few driver steps instead of one step per row.

Python's sqlite3 driver lets go of the GIL around each step of a statement, and every row of an
``executemany`` is one step, as is every row a cursor fetches. While another thread of the process runs Python
(the event loop parsing requests, the nightly planning, a pusher lane deciding outcomes), each step has to wait
to get the GIL back, for up to the switch interval (5 ms). Measured on 2 cores (``bench/bench_sqlite_steps.py``):
- inserting 2,000 history rows by ``executemany`` took 11 ms alone and 7.9 s beside a thread running Python;
- fetching 24,000 rows took 20 ms alone and 9.1 s beside it;
- the ledger's claim of 24,000 rows took 42 s beside it, its completion 79 s (0.4 s and 0.9 s this way).

As one step, the statement waits for the GIL once and SQLite does the rows' work without holding it, so the
other thread keeps running meanwhile. The helpers:

- ``insert_rows``: an ``INSERT`` whose rows go in multi-row ``VALUES`` lists of up to ``ROWS_PER_INSERT`` rows,
  in a few sizes only (see there).
- ``insert_stream``: the same over a stream of rows, a batch at a time.
- ``insert_json_rows``: an ``INSERT ... SELECT`` of rows sent as one JSON array, whose REAL values are the same for
  every row and bound apart (the history's time, a target's times): one step and one statement text whatever the
  count.
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

# Rows per multi-row VALUES statement (fewer where the connection's limit of parameters says so). The driver keeps
# every statement text it ran prepared (up to 128 per connection), and a prepared 2,000-row insert of 9 columns
# holds ~2.7 MB: so statements come in a few sizes only, the largest ROWS_PER_INSERT rows and the rest powers of
# two below it (a batch of 300 rows is 4 x 64 + 32 + 8 + 4), about 0.17 MB per 9-column table and connection.
ROWS_PER_INSERT = 64


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
    largest = max(1, min(ROWS_PER_INSERT, raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    start = 0
    while start < len(rows):
        size = min(largest, 1 << ((len(rows) - start).bit_length() - 1))  # the largest allowed power of two
        chunk = rows[start : start + size]
        raw.execute(head.format(values="VALUES " + ", ".join([one] * size)), list(chain.from_iterable(chunk)))
        start += size


def insert_stream(raw: sqlite3.Connection, head: str, rows: Iterable[Sequence[Any]], batch: int = 5_000) -> None:
    """``insert_rows`` over a stream of rows, ``batch`` rows held at a time."""
    remaining = iter(rows)
    while chunk := list(islice(remaining, batch)):
        insert_rows(raw, head, chunk)


def json_columns(count: int) -> str:
    """The select list of ``count`` columns read from each JSON array of ``json_each(?)`` (see ``insert_json_rows``)."""
    return ", ".join(f"json_extract(value, '$[{i}]')" for i in range(count))


def insert_json_rows(
    raw: sqlite3.Connection, sql: str, shared: Sequence[Any], rows: Sequence[Sequence[Any]], batch: int = 5_000
) -> None:
    """Run ``sql`` (``INSERT INTO t (...) SELECT ?, ..., {json_columns(n)} FROM json_each(?)``) over ``rows``, one
    step and one JSON array parameter per ``batch`` rows, after the ``shared`` parameters.

    One statement text whatever the count (no prepared statement per size). The rows hold text, integers, booleans
    and None only: a REAL goes in ``shared`` (a value every row has, bound exactly), never through JSON.
    """
    for start in range(0, len(rows), batch):
        # not ASCII-escaped: text the driver cannot encode (a lone surrogate) fails the statement, as a bound value
        # would, instead of reaching SQLite as an escape it would store
        raw.execute(sql, (*shared, json.dumps(rows[start : start + batch], ensure_ascii=False)))


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

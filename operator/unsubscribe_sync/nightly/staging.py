"""Sort and de-duplicate both sides of an object on disk, so the planner's merge join sees sorted streams.

Why: neither side can be trusted to arrive in the planner's order. Bulk API 2.0 query results have no
guaranteed order at all; SOQL ``ORDER BY Id`` and a PostgreSQL ``ORDER BY`` follow the server's
collation, which need not be plain code-point order (PostgreSQL's default locale collations sort
mixed-case ids differently). So the job streams each side into a table of its own throwaway SQLite file
(so both sides can load at once; ``WITHOUT ROWID`` tables keyed by id, so SQLite's B-tree does the external
sort and the de-duplication) and reads both back with ``ORDER BY id`` under SQLite's BINARY collation, i.e.
code-point order, the order the planner expects. Memory stays bounded by SQLite's page cache (a few MiB)
whatever the volume; the files live in a temporary directory ($TMPDIR) that is removed afterwards.

Staging the ledger side also gives the merge join a snapshot: the job adds Salesforce opt-outs to the
ledger while it walks the plan, and a ledger stream read live could see those new ids again later in
its pages and plan them a second time. Disk needed: roughly 60-80 bytes per staged row (the summary's
``stagedBytes`` per object says how much a run used).
"""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any

from unsubscribe_sync.ledger.sqlite_steps import insert_rows, select_rows
from unsubscribe_sync.salesforce.types import OptedOutRecord

_FETCH = 5_000


def open_scratch_db(path: Path, *, cache_kib: int = 16_000) -> sqlite3.Connection:
    """A throwaway SQLite file of the nightly: no journal, no sync, a page cache of at most ``cache_kib``;
    usable from another thread (the nightly loads the sides of its objects in worker threads, then plans
    them in its own)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{cache_kib}", "temp_store=FILE"):
        db.execute(f"PRAGMA {pragma}")
    return db


class SortedStage:
    """One object's two sides, staged in a temporary SQLite file. Use as a context manager."""

    def __init__(self, object_name: str, directory: str | Path | None = None) -> None:
        self.object_name = object_name
        self._tmp = tempfile.TemporaryDirectory(prefix="usync-nightly-", dir=directory)
        self.path = Path(self._tmp.name) / "stage.db"
        # One file per side, each with its own connection: the two sides can be loaded at the same time from
        # two threads (each connection is used by one thread at a time; none is shared while loading).
        self._ledger_path = Path(self._tmp.name) / "ledger.db"
        self._db = open_scratch_db(self.path)
        self._ledger_db = open_scratch_db(self._ledger_path)
        self._db.execute("CREATE TABLE salesforce (id TEXT PRIMARY KEY, email TEXT) WITHOUT ROWID")
        self._ledger_db.execute(
            "CREATE TABLE ledger (id TEXT, email TEXT, owed INTEGER, PRIMARY KEY (id, email)) WITHOUT ROWID"
        )

    def __enter__(self) -> SortedStage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._ledger_db.close()
        self._tmp.cleanup()

    def load_salesforce(self, records: Iterable[OptedOutRecord], on_rows: Callable[[int], None] | None = None) -> int:
        """Stage opted-out Salesforce records (any order, duplicates allowed); returns rows read.

        ``on_rows(n)`` is told of every batch of ``n`` rows staged.
        """
        remaining = iter(records)
        read = 0
        self._db.execute("BEGIN")
        while batch := [(r.id, r.email) for r in islice(remaining, _FETCH)]:
            insert_rows(self._db, _INSERT_SALESFORCE, batch)
            read += len(batch)
            if on_rows is not None:
                on_rows(len(batch))
        self._db.execute("COMMIT")
        return read

    def load_ledger(
        self, targets: Iterable[tuple[str, str, bool]], on_rows: Callable[[int], None] | None = None
    ) -> int:
        """Stage the ledger's (salesforce_id, email, owed) rows (any order, duplicates allowed); returns rows read.

        ``owed``: a write of true is already queued for the record (``Ledger.iter_targets``). ``on_rows(n)`` is
        told of every batch of ``n`` rows staged.
        """
        remaining = iter(targets)
        read = 0
        self._ledger_db.execute("BEGIN")
        while batch := list(islice(remaining, _FETCH)):
            insert_rows(self._ledger_db, _INSERT_LEDGER, batch)
            read += len(batch)
            if on_rows is not None:
                on_rows(len(batch))
        self._ledger_db.execute("COMMIT")
        return read

    def count(self) -> tuple[int, int]:
        """Distinct staged rows: (Salesforce records, ledger pairs)."""
        sf = self._db.execute("SELECT count(*) FROM salesforce").fetchone()[0]
        lg = self._ledger_db.execute("SELECT count(*) FROM ledger").fetchone()[0]
        return int(sf), int(lg)

    def size(self) -> int:
        """Bytes the staging files take on disk."""
        return self.path.stat().st_size + self._ledger_path.stat().st_size

    def salesforce(self) -> Iterator[OptedOutRecord]:
        """The staged Salesforce records, one per id, in code-point order of the id."""
        name = self.object_name
        for salesforce_id, email in keyset_pages(self._db, _SALESFORCE_PAGE, 2, key=1):
            yield OptedOutRecord(salesforce_id, name, email)

    def ledger(self) -> Iterator[tuple[str, str]]:
        """The staged ledger pairs, in code-point order of (id, email)."""
        for salesforce_id, email in keyset_pages(self._ledger_db, _LEDGER_PAGE, 2, key=2):  # noqa: UP028  # as tuples
            yield salesforce_id, email

    def owed(self) -> AscendingMembership:
        """The staged ids already owed a write of true, asked about in ascending order of id (as planned)."""
        return AscendingMembership(sid for (sid,) in keyset_pages(self._ledger_db, _OWED_PAGE, 1, key=1))


# Keyset pages of the staged sides, each fetched in one driver step (``ledger.sqlite_steps``: the nightly runs
# beside the push worker's threads) and sorted here (an aggregate keeps no promised order). Both tables are keyed
# by what they are ordered by, and the page's last key is where the next begins.
_INSERT_SALESFORCE = (
    "INSERT INTO salesforce (id, email) {values} ON CONFLICT (id) DO UPDATE SET"
    " email = COALESCE(salesforce.email, excluded.email)"
)
_INSERT_LEDGER = "INSERT OR IGNORE INTO ledger (id, email, owed) {values}"
_SALESFORCE_PAGE = "SELECT id, email FROM salesforce WHERE id > ? ORDER BY id LIMIT ?"
_LEDGER_PAGE = "SELECT id, email FROM ledger WHERE (id, email) > (?, ?) ORDER BY id, email LIMIT ?"
_OWED_PAGE = "SELECT DISTINCT id FROM ledger WHERE owed AND id > ? ORDER BY id LIMIT ?"


def keyset_pages(db: sqlite3.Connection, sql: str, columns: int, *, key: int) -> Iterator[list[Any]]:
    """The rows of a keyset-paged select of ``columns`` columns, the first ``key`` of them its order (its
    parameters: the last row's ``key`` values, then the page size)."""
    after: list[Any] = [""] * key
    while True:
        rows = select_rows(db, sql, (*after, _FETCH), columns)
        rows.sort()
        yield from rows
        if len(rows) < _FETCH:
            return
        after = rows[-1][:key]


class AscendingMembership:
    """Membership in a sorted stream of ids, for questions asked in ascending order: memory is one id."""

    def __init__(self, ids: Iterable[str]) -> None:
        self._ids = iter(ids)
        self._next: str | None = next(self._ids, None)

    def __contains__(self, salesforce_id: str) -> bool:
        while self._next is not None and self._next < salesforce_id:
            self._next = next(self._ids, None)
        return self._next == salesforce_id

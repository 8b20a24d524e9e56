"""The nightly in Email mode: find every record whose address is unsubscribed, before the object is planned.

Salesforce side: every record of the object with a non-empty Email whose field is false (Leads unconverted;
the records whose field is true reach the planner through the usual opted-out read), streamed into an on-disk
sort keyed by the normalised address. Ledger side: the unsubscribed addresses, staged the same way. A merge
join (SQLite's, over the two sorted tables) yields the records whose address is unsubscribed: a real run adds
them to the ledger as targets, so the object's usual plan writes them (``toSalesforce``) and the guard counts
them; a dry run stages them on the plan's ledger side only, changing nothing. Memory stays bounded by SQLite's
page cache whatever the volume (the same bound as staging.SortedStage).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from unsubscribe_sync.api.addresses import normalize_email
from unsubscribe_sync.ledger.sqlite_steps import insert_stream
from unsubscribe_sync.nightly.staging import keyset_pages, open_scratch_db
from unsubscribe_sync.salesforce.ids import normalize_id
from unsubscribe_sync.salesforce.matching import all_with_email_soql

# the matches in (address, record id) order, a keyset page at a time (``staging.keyset_pages``)
_MATCHES_PAGE = (
    "SELECT r.email, r.id FROM records r JOIN addresses a ON a.email = r.email"
    " WHERE (r.email, r.id) > (?, ?) ORDER BY r.email, r.id LIMIT ?"
)


class EmailQueryClient(Protocol):
    def count_query(self, soql: str) -> int: ...

    def query_pages_at_volume(
        self, object_name: str, soql: str, *, use_bulk: bool
    ) -> Iterator[list[dict[str, Any]]]: ...


def unset_with_email_soql(object_name: str, field: str, *, count: bool = False) -> str:
    """Records with an Email whose ``field`` is false (the only ones Email matching can still have to set)."""
    soql = all_with_email_soql(object_name, field) + f" AND {field} = false"
    return soql.replace("SELECT Id, Email, " + field, "SELECT COUNT()", 1) if count else soql


class AddressStage:
    """Salesforce records keyed by normalised address, and the unsubscribed addresses, on disk."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="usync-email-", dir=directory)
        self.path = Path(self._tmp.name) / "addresses.db"
        self._db = open_scratch_db(self.path)
        self._db.execute("CREATE TABLE records (email TEXT, id TEXT, PRIMARY KEY (email, id)) WITHOUT ROWID")
        self._db.execute("CREATE TABLE addresses (email TEXT PRIMARY KEY) WITHOUT ROWID")

    def __enter__(self) -> AddressStage:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._db.close()
        self._tmp.cleanup()

    def load_records(self, pages: Iterable[list[dict[str, Any]]]) -> int:
        read = 0

        def rows() -> Iterator[tuple[str, str]]:
            nonlocal read
            for page in pages:
                for row in page:
                    email = row.get("Email")
                    if email:
                        read += 1
                        yield normalize_email(str(email)), normalize_id(str(row["Id"]))
                # freed now, not when the next page is assigned: otherwise two pages (up to 50,000 rows of
                # dicts each) are alive while the next one is fetched and parsed
                page.clear()

        self._db.execute("BEGIN")
        insert_stream(self._db, "INSERT OR IGNORE INTO records (email, id) {values}", rows())
        self._db.execute("COMMIT")
        return read

    def load_addresses(self, emails: Iterable[str]) -> int:
        read = 0

        def rows() -> Iterator[tuple[str]]:
            nonlocal read
            for email in emails:
                read += 1
                yield (email,)

        self._db.execute("BEGIN")
        insert_stream(self._db, "INSERT OR IGNORE INTO addresses (email) {values}", rows())
        self._db.execute("COMMIT")
        return read

    def matches(self) -> Iterator[tuple[str, str]]:
        """(record id, address) of every record whose address is unsubscribed, in address order."""
        for email, record_id in keyset_pages(self._db, _MATCHES_PAGE, 2, key=2):
            yield record_id, email


def email_matches(
    client: EmailQueryClient,
    object_name: str,
    field: str,
    unsubscribed: Iterable[str],
    *,
    bulk_threshold: int,
    directory: str | Path | None = None,
) -> Iterator[tuple[str, str]]:
    """Stream (record id, address) of ``object_name``'s unset records whose address is in ``unsubscribed``."""
    count = client.count_query(unset_with_email_soql(object_name, field, count=True))
    pages = client.query_pages_at_volume(
        object_name, unset_with_email_soql(object_name, field), use_bulk=count >= bulk_threshold
    )
    with AddressStage(directory) as stage:
        stage.load_records(pages)
        stage.load_addresses(unsubscribed)
        yield from stage.matches()


class MatchedAddresses:
    """The addresses a dry run found records for, on disk (a dry run adds no target, so the ledger cannot tell).

    ``skippedNoSalesforceId`` of a dry run is then the ledger's addresses without a record less these: the count
    the real run reports for the same world. Memory stays bounded (SQLite's page cache), like AddressStage.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="usync-email-found-", dir=directory)
        self._db = open_scratch_db(Path(self._tmp.name) / "found.db", cache_kib=4_000)
        self._db.execute("CREATE TABLE found (email TEXT PRIMARY KEY) WITHOUT ROWID")

    def add(self, emails: Iterable[str]) -> None:
        self._db.execute("BEGIN")
        insert_stream(self._db, "INSERT OR IGNORE INTO found (email) {values}", ((e,) for e in emails))
        self._db.execute("COMMIT")

    def count_missing(self, emails: Iterable[str]) -> int:
        """How many of ``emails`` (streamed) were not found."""
        missing = 0
        for email in emails:
            if self._db.execute("SELECT 1 FROM found WHERE email = ?", (email,)).fetchone() is None:
                missing += 1
        return missing

    def close(self) -> None:
        self._db.close()
        self._tmp.cleanup()


def dry_run_skipped(ledger: _NoTargetLedger, matched: MatchedAddresses | None) -> int:
    """``skippedNoSalesforceId`` of an Email-mode dry run: addresses with no record held and none found."""
    emails = ledger.iter_emails_without_target()
    return sum(1 for _ in emails) if matched is None else matched.count_missing(emails)


class _NoTargetLedger(Protocol):
    def iter_emails_without_target(self) -> Iterator[str]: ...


class _Stage(Protocol):
    def load_ledger(self, targets: Iterable[tuple[str, str, bool]]) -> int: ...


class _Ledger(Protocol):
    def iter_unsubscribed_emails(self) -> Iterator[str]: ...

    def add_email_targets(self, targets: Sequence[tuple[str, str, str]]) -> int: ...


def stage_email_matches(
    client: EmailQueryClient,
    ledger: _Ledger,
    stage: _Stage,
    object_name: str,
    field: str,
    *,
    dry_run: bool,
    bulk_threshold: int,
    chunk: int = 2_000,
    matched: MatchedAddresses | None = None,
) -> int:
    """Email mode, before an object is staged: make its records of unsubscribed addresses part of the plan.

    A real run adds them to the ledger (the object's ledger side then holds them); a dry run stages them on the
    plan's ledger side only, and notes their addresses in ``matched`` (for its skipped count). Returns how many
    records were found.
    """
    found = 0
    batch: list[tuple[str, str, str]] = []
    for record_id, email in email_matches(
        client, object_name, field, ledger.iter_unsubscribed_emails(), bulk_threshold=bulk_threshold
    ):
        found += 1
        batch.append((record_id, object_name, email))
        if len(batch) >= chunk:
            _flush(ledger, stage, batch, dry_run, matched)
            batch = []
    if batch:
        _flush(ledger, stage, batch, dry_run, matched)
    return found


def _flush(
    ledger: _Ledger, stage: _Stage, batch: list[tuple[str, str, str]], dry_run: bool, matched: MatchedAddresses | None
) -> None:
    if dry_run:
        stage.load_ledger((sid, email, False) for sid, _, email in batch)
        if matched is not None:
            matched.add(email for _, _, email in batch)
    else:
        ledger.add_email_targets(batch)

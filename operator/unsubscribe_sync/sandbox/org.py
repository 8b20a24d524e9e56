"""The sandbox org's core: its lock, records, connected apps and sessions, faults, counters, cursors and jobs.

`Org` holds the data; `api.Api` (what the HTTP handlers call: the emulated Salesforce API), `jobs.BulkJobs`
(Bulk API 2.0) and `control.Control` (the test-control side: seeding, faults, inspection) are mixins over it that
`state.SandboxState` combines. Every public method takes the lock, so a test thread can drive the org while the
server thread answers requests.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any

from .auth import Authority, ConnectedApp
from .bulk import JobBase
from .errors import ApiError
from .faults import Faults
from .ids import IdMinter, normalize_id
from .schema import KEY_PREFIXES, OBJECT_BY_PREFIX, USER_ID, ObjectSchema, default_schemas
from .soql import SoqlError, malformed_message, parse, pointed_message
from .store import Selection, Table, format_datetime, parse_datetime, select
from .writes import PreparedWrite

DEFAULT_DAILY_API_LIMIT = 1_000_000
DEFAULT_SESSION_LIFETIME_S = 7200.0
DEFAULT_BULK_PROCESSING_S = 0.2
MAX_OPEN_CURSORS = 200
DEFAULT_QUERY_BATCH = 2000


@dataclass
class Cursor:
    """An open REST query: the selected rows, served `batch_size` at a time through nextRecordsUrl."""

    selection: Selection
    batch_size: int


class Org:
    """The sandbox org's data. Safe to call from any thread through the mixins' public methods."""

    def __init__(
        self,
        *,
        rng_seed: int = 0,
        daily_api_limit: int = DEFAULT_DAILY_API_LIMIT,
        session_lifetime_s: float = DEFAULT_SESSION_LIFETIME_S,
        bulk_processing_s: float = DEFAULT_BULK_PROCESSING_S,
    ) -> None:
        self.lock = threading.RLock()
        self._defaults = (rng_seed, daily_api_limit, session_lifetime_s, bulk_processing_s)
        self.auth = Authority(session_lifetime_s)
        self._init_data()

    def _init_data(self) -> None:
        rng_seed, daily_api_limit, session_lifetime_s, bulk_processing_s = self._defaults
        self.rng_seed = rng_seed
        self.rng = random.Random(rng_seed)
        self.daily_api_limit = daily_api_limit
        self.auth.sessions.clear()
        self.auth.session_lifetime_s = session_lifetime_s
        self.bulk_processing_s = bulk_processing_s
        self.clock_offset_s = 0.0  # advance_clock() moves the org's time ahead of the wall clock
        self._last_stamp = ""
        self._last_ms = -1
        self.schemas: dict[str, ObjectSchema] = default_schemas()
        self.tables: dict[str, Table] = {
            name: Table(schema, IdMinter(KEY_PREFIXES[name]), self.stamp) for name, schema in self.schemas.items()
        }
        self.undo: list[tuple[Table, int, dict[str, Any]]] | None = None  # while a composite request runs allOrNone
        self.faults = Faults()
        self.api_usage = 0
        self.calls: Counter[str] = Counter()
        self.writes: Counter[str] = Counter()  # successful updates per 18-character ID
        self.cursors: OrderedDict[str, Cursor] = OrderedDict()
        self.jobs: dict[str, JobBase] = {}
        self._cursor_ids = IdMinter("01g")
        self._job_ids = IdMinter("750")

    def reset(self) -> None:
        """Back to an empty org with default fields, no faults, no sessions, zero counters (apps stay)."""
        with self.lock:
            self._init_data()

    @property
    def apps(self) -> dict[str, ConnectedApp]:
        return self.auth.apps

    @property
    def session_lifetime_s(self) -> float:
        return self.auth.session_lifetime_s

    # ------------------------------------------------------------------ shared helpers

    def _table(self, sobject: str) -> Table:
        table = self.tables.get(sobject)
        if table is None:
            raise ValueError(f"unknown object {sobject!r}: the sandbox serves {', '.join(self.tables)}")
        return table

    def _table_named(self, name: str) -> Table | None:
        """The table of an object name, case-insensitive like Salesforce."""
        return next((t for n, t in self.tables.items() if n.lower() == name.lower()), None)

    def _locate(self, record_id: str) -> tuple[Table, int] | None:
        id18 = normalize_id(record_id)
        if id18 is None:
            return None
        sobject = OBJECT_BY_PREFIX.get(id18[:3])
        if sobject is None:
            return None
        table = self.tables[sobject]
        row = table.row_of(id18)
        return None if row is None else (table, row)

    def now(self) -> float:
        """The org's time (epoch seconds): the wall clock plus what advance_clock() added."""
        return time.time() + self.clock_offset_s

    def stamp(self) -> str:
        """The org's time as a datetime value, never earlier than the last one handed out (several writes in one
        millisecond share a stamp, as in Salesforce; a poll by SystemModstamp never sees time go back)."""
        millisecond = int(self.now() * 1000)
        if millisecond != self._last_ms:  # formatting once a millisecond keeps bulk writes cheap
            self._last_ms = millisecond
            current = format_datetime(dt.datetime.fromtimestamp(millisecond / 1000, dt.UTC))
            self._last_stamp = max(current, self._last_stamp)
        return self._last_stamp

    def _canonical_values(self, table: Table, values: dict[str, Any]) -> dict[str, Any]:
        """Control-API field values under their canonical names; datetimes and dates in the stored form."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            match = next((f for f in table.schema.all_fields() if f.name.lower() == name.lower()), None)
            if match is None or match.name == "Id":
                raise ValueError(f"{table.schema.name} has no field {name!r}")
            if match.name == "Name":
                raise ValueError("Name is computed from FirstName and LastName: set those")
            if value is not None and match.type == "datetime":
                value = parse_datetime(value)
            elif value is not None and match.type == "date":
                day = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
                value = day.isoformat()
            out[match.name] = value
        return out

    def _touch(self, table: Table, row: int) -> None:
        """A change by the org's user: LastModifiedDate, SystemModstamp and LastModifiedById move."""
        table.touch(row, self.stamp(), USER_ID)

    def _select(self, soql: str, include_deleted: bool) -> Selection:
        try:
            query = parse(soql)
        except SoqlError as exc:
            raise ApiError(400, "MALFORMED_QUERY", malformed_message(soql, exc)) from exc
        table = self._table_named(query.sobject)
        if table is None:
            raise ApiError(
                400,
                "INVALID_TYPE",
                pointed_message(
                    soql,
                    query.sobject_column,
                    f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom object, "
                    "be sure to append the '__c' after the entity name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                ),
            )
        return select(table, query, include_deleted=include_deleted)

    def _apply(self, write: PreparedWrite) -> None:
        """Write an update that passed its checks, stamping the record (and remembering how to undo it while an
        allOrNone composite request runs)."""
        table, row = write.table, write.row
        if self.undo is not None:
            touched = [*write.values, "LastModifiedDate", "SystemModstamp", "LastModifiedById"]
            self.undo.append((table, row, {name: table.columns[name][row] for name in touched}))
        for name, value in write.values.items():
            table.set(row, name, value)
        self._touch(table, row)
        self.writes[write.id18] += 1

    def _rollback(self, undo: list[tuple[Table, int, dict[str, Any]]]) -> None:
        """Undo writes in reverse order (their successful-write counts too)."""
        for table, row, old in reversed(undo):
            for name, value in old.items():
                table.set(row, name, value)
            self.writes[table.ids[row]] -= 1
            if not self.writes[table.ids[row]]:
                del self.writes[table.ids[row]]

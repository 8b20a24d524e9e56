"""Everything the sandbox org holds: records, connected apps and sessions, faults, counters, cursors, bulk jobs.

`SandboxState` is both what the HTTP handlers call and the Python control API tests use. Every public method
takes the state's lock, so a test thread can drive it while the server thread answers requests.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from .auth import USER_ID, Authority, ConnectedApp, Session, TokenError
from .bulk import TERMINAL_STATES, IngestJob, JobBase, QueryJob, job_options, process_ingest, query_results_page
from .errors import ApiError, RecordError, not_found
from .faults import Faults
from .ids import IdMinter, normalize_id
from .schema import KEY_PREFIXES, OBJECT_BY_PREFIX, FieldDef, ObjectSchema, default_schemas
from .soql import SoqlError, malformed_message, parse
from .store import Selection, Table, select
from .writes import (
    PreparedWrite,
    check_values,
    collection_results,
    duplicate_ids,
    parse_collection,
    prepare_write,
)

__all__ = ["SandboxState", "Session", "TokenError"]

J = TypeVar("J", bound=JobBase)

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


class SandboxState:
    """The sandbox org. Safe to call from any thread."""

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
        self.schemas: dict[str, ObjectSchema] = default_schemas()
        self.tables: dict[str, Table] = {
            name: Table(schema, IdMinter(KEY_PREFIXES[name])) for name, schema in self.schemas.items()
        }
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

    # ------------------------------------------------------------------ connected apps and sessions

    @property
    def apps(self) -> dict[str, ConnectedApp]:
        return self.auth.apps

    @property
    def session_lifetime_s(self) -> float:
        return self.auth.session_lifetime_s

    def register_app(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        public_key_pem: str | None = None,
        usernames: Iterable[str] = (),
    ) -> ConnectedApp:
        """A connected app for the client credentials flow (secret) and/or the JWT flow (public key, users)."""
        with self.lock:
            return self.auth.register(client_id, client_secret, public_key_pem, usernames)

    def token_client_credentials(self, client_id: str, client_secret: str, instance_url: str) -> dict[str, Any]:
        with self.lock:
            self.calls["token"] += 1
            return self.auth.client_credentials(client_id, client_secret, instance_url)

    def token_jwt_bearer(self, assertion: str, instance_url: str) -> dict[str, Any]:
        with self.lock:
            self.calls["token"] += 1
            return self.auth.jwt_bearer(assertion, instance_url)

    def authenticate(self, token: str | None) -> Session:
        with self.lock:
            return self.auth.authenticate(token)

    # ------------------------------------------------------------------ API allowance, outage, counters

    def unavailable(self) -> bool:
        with self.lock:
            return self.faults.unavailable()

    def admit(self, operation: str) -> None:
        """Count one API call against the daily allowance, or refuse it with REQUEST_LIMIT_EXCEEDED."""
        with self.lock:
            if self.faults.request_limit_exceeded or self.api_usage >= self.daily_api_limit:
                self.calls["refused:" + operation] += 1
                raise ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.api_usage += 1
            self.calls[operation] += 1

    def limit_info(self) -> str:
        """The Sforce-Limit-Info header value."""
        with self.lock:
            return f"api-usage={self.api_usage}/{self.daily_api_limit}"

    def limits(self) -> dict[str, Any]:
        with self.lock:
            remaining = max(0, self.daily_api_limit - self.api_usage)
            return {
                "DailyApiRequests": {"Max": self.daily_api_limit, "Remaining": remaining},
                "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
                "DailyBulkV2QueryJobs": {"Max": 10000, "Remaining": 10000},
                "DailyBulkV2QueryFileStorageMB": {"Max": 1024000, "Remaining": 1024000},
                "ConcurrentAsyncGetReportInstances": {"Max": 200, "Remaining": 200},
                "DataStorageMB": {"Max": 1024, "Remaining": 1024},
            }

    # ------------------------------------------------------------------ records (control API)

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

    def _canonical_values(self, table: Table, values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in values.items():
            match = next((f for f in table.schema.all_fields() if f.name.lower() == name.lower()), None)
            if match is None or match.name == "Id":
                raise ValueError(f"{table.schema.name} has no field {name!r}")
            out[match.name] = value
        return out

    def add_record(
        self,
        sobject: str,
        email: str | None,
        opted_out: bool = False,
        converted: bool = False,
        deleted: bool = False,
        fields: dict[str, Any] | None = None,
    ) -> str:
        """Create a record directly (no API call counted); returns its 18-character ID."""
        with self.lock:
            table = self._table(sobject)
            if converted and sobject != "Lead":
                raise ValueError("only Leads can be converted")
            values: dict[str, Any] = {
                "Email": email,
                "LastName": "Sandbox",
                "HasOptedOutOfEmail": opted_out,
                "IsDeleted": deleted,
            }
            if sobject == "Lead":
                values["IsConverted"] = converted
            values.update(self._canonical_values(table, fields or {}))
            return table.append(values)

    def get_record(self, record_id: str) -> dict[str, Any] | None:
        """All fields of a record (hidden and deleted ones too) plus "attributes": {"type"}, or None."""
        with self.lock:
            located = self._locate(record_id)
            if located is None:
                return None
            table, row = located
            return {"attributes": {"type": table.schema.name}, **table.get(row)}

    def set_fields(self, record_id: str, fields: dict[str, Any]) -> None:
        """Change fields directly, as a user in the Salesforce UI would (no API call, no write counted)."""
        with self.lock:
            located = self._locate(record_id)
            if located is None:
                raise KeyError(f"no record {record_id}")
            table, row = located
            for name, value in self._canonical_values(table, fields).items():
                table.set(row, name, value)

    def delete_record(self, record_id: str) -> None:
        self.set_fields(record_id, {"IsDeleted": True})

    def find_ids(self, sobject: str, **equals: Any) -> list[str]:
        """IDs (in ID order) of live records whose fields equal the given values, e.g. HasOptedOutOfEmail=True."""
        with self.lock:
            table = self._table(sobject)
            wanted = self._canonical_values(table, equals)
            deleted = table.true_rows["IsDeleted"]
            rows: Iterable[int] = range(len(table))
            for name, value in wanted.items():
                if value is True and name in table.true_rows:
                    rows = sorted(table.true_rows[name])
                    break
            return [
                table.ids[row]
                for row in rows
                if row not in deleted and all(table.columns[n][row] == v for n, v in wanted.items())
            ]

    def count(self, sobject: str, **equals: Any) -> int:
        return len(self.find_ids(sobject, **equals))

    def ids_by_email(self, email: str) -> list[str]:
        with self.lock:
            return [table.ids[row] for table in self.tables.values() for row in table.rows_with_email(email)]

    def seed(
        self,
        contacts: int = 0,
        leads: int = 0,
        *,
        opted_out_ratio: float = 0.1,
        marketo_opted_out_ratio: float = 0.0,
        converted_ratio: float = 0.05,
        deleted_ratio: float = 0.01,
        email_domain: str = "example.com",
        rng_seed: int | None = None,
    ) -> dict[str, dict[str, int]]:
        """Add `contacts` Contacts and `leads` Leads; exact shares of them opted out / converted / deleted,
        chosen by a seeded generator (same arguments, same org). Returns counts per object."""
        for name, ratio in (
            ("opted_out_ratio", opted_out_ratio),
            ("marketo_opted_out_ratio", marketo_opted_out_ratio),
            ("converted_ratio", converted_ratio),
            ("deleted_ratio", deleted_ratio),
        ):
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {ratio}")
        if contacts < 0 or leads < 0:
            raise ValueError("record counts must not be negative")
        summary: dict[str, dict[str, int]] = {}
        with self.lock:
            rng = random.Random(self.rng_seed if rng_seed is None else rng_seed)
            for sobject, count in (("Contact", contacts), ("Lead", leads)):
                if count:
                    summary[sobject] = self._seed_table(
                        sobject, count, rng, opted_out_ratio, marketo_opted_out_ratio, converted_ratio,
                        deleted_ratio, email_domain,
                    )  # fmt: skip
        return summary

    def _seed_table(
        self,
        sobject: str,
        count: int,
        rng: random.Random,
        opted_out_ratio: float,
        marketo_ratio: float,
        converted_ratio: float,
        deleted_ratio: float,
        email_domain: str,
    ) -> dict[str, int]:
        table = self.tables[sobject]
        first = len(table) + 1
        stem = sobject.lower()

        def flags(ratio: float) -> list[bool]:
            chosen = [False] * count
            for index in rng.sample(range(count), round(ratio * count)):
                chosen[index] = True
            return chosen

        first_names = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
        last_names = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman"]
        columns: dict[str, list[Any]] = {
            "FirstName": [first_names[i % len(first_names)] for i in range(count)],
            "LastName": [last_names[i % len(last_names)] for i in range(count)],
            "Email": [f"{stem}{n}@{email_domain}" for n in range(first, first + count)],
            "HasOptedOutOfEmail": flags(opted_out_ratio),
            "IsDeleted": flags(deleted_ratio),
        }
        marketo = [f.name for f in table.schema.custom.values() if f.type == "boolean"]
        if marketo and marketo_ratio:
            columns[marketo[0]] = flags(marketo_ratio)
        if sobject == "Lead":
            columns["IsConverted"] = flags(converted_ratio)
        table.append_many(count, columns)
        result = {
            "created": count,
            "optedOut": sum(columns["HasOptedOutOfEmail"]),
            "deleted": sum(columns["IsDeleted"]),
        }
        if sobject == "Lead":
            result["converted"] = sum(columns["IsConverted"])
        if marketo and marketo_ratio:
            result["marketoOptedOut"] = sum(columns[marketo[0]])
        return result

    # ------------------------------------------------------------------ fields

    def configure_field(
        self,
        sobject: str,
        name: str,
        *,
        label: str,
        updateable: bool = True,
        hidden: bool = False,
    ) -> None:
        """Install (or change) a custom boolean field on an object."""
        if not name.endswith("__c"):
            raise ValueError(f"custom field API names end in __c: {name!r}")
        with self.lock:
            table = self._table(sobject)
            definition = FieldDef(name, label, "boolean", updateable=updateable, custom=True, hidden=hidden,
                                  default=False)  # fmt: skip
            table.schema.set_custom(definition)
            table.ensure_column(definition)

    def remove_field(self, sobject: str, name: str) -> None:
        """Uninstall a custom field (its values stay stored, invisible, and come back if it is re-added)."""
        with self.lock:
            self._table(sobject).schema.remove_custom(name)

    # ------------------------------------------------------------------ faults

    def set_latency(self, milliseconds: float) -> None:
        if milliseconds < 0:
            raise ValueError("latency must not be negative")
        with self.lock:
            self.faults.latency_ms = float(milliseconds)

    def lock_records(self, ids: Iterable[str]) -> None:
        """UNABLE_TO_LOCK_ROW for every write to these records until unlocked."""
        normalized = []
        for record_id in ids:
            id18 = normalize_id(record_id)
            if id18 is None:
                raise ValueError(f"not a Salesforce ID: {record_id!r}")
            normalized.append(id18)
        with self.lock:
            self.faults.lock_ids.update(normalized)

    def unlock_records(self, ids: Iterable[str] | None = None) -> None:
        with self.lock:
            if ids is None:
                self.faults.lock_ids.clear()
            else:
                self.faults.lock_ids.difference_update(normalize_id(i) or i for i in ids)

    def set_lock_ratio(self, ratio: float) -> None:
        """UNABLE_TO_LOCK_ROW for this share of record writes (seeded random)."""
        if not 0.0 <= ratio <= 1.0:
            raise ValueError("lock ratio must be between 0 and 1")
        with self.lock:
            self.faults.lock_ratio = ratio

    def lock_next_writes(self, count: int) -> None:
        """UNABLE_TO_LOCK_ROW for the next `count` record writes."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self.lock:
            self.faults.lock_next = count

    def set_unavailable(self, seconds: float | None = None) -> None:
        """Answer every API call with HTTP 503 for `seconds` (None: until clear_unavailable())."""
        with self.lock:
            self.faults.unavailable_until = math.inf if seconds is None else time.monotonic() + seconds

    def clear_unavailable(self) -> None:
        with self.lock:
            self.faults.unavailable_until = None

    def expire_sessions(self) -> int:
        """Invalidate every access token now; returns how many there were."""
        with self.lock:
            return self.auth.expire_all()

    def set_session_lifetime(self, seconds: float) -> None:
        """Lifetime of tokens issued from now on."""
        if seconds <= 0:
            raise ValueError("session lifetime must be positive")
        with self.lock:
            self.auth.session_lifetime_s = seconds

    def set_request_limit_exceeded(self, on: bool) -> None:
        with self.lock:
            self.faults.request_limit_exceeded = on

    def set_daily_api_limit(self, limit: int, used: int | None = None) -> None:
        if limit < 0 or (used is not None and used < 0):
            raise ValueError("limits must not be negative")
        with self.lock:
            self.daily_api_limit = limit
            if used is not None:
                self.api_usage = used

    def clear_faults(self) -> None:
        with self.lock:
            self.faults = Faults()

    def fail_next_bulk_jobs(self, count: int) -> None:
        """The next `count` Bulk API 2.0 jobs to finish processing end in state Failed (nothing applied)."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self.lock:
            self.faults.bulk_fail_next = count

    def set_bulk_processing_time(self, seconds: float) -> None:
        with self.lock:
            self.bulk_processing_s = max(0.0, seconds)

    # ------------------------------------------------------------------ inspection

    def write_count(self, record_id: str) -> int:
        """Successful API updates of this record (single PATCH, collections, bulk ingest)."""
        with self.lock:
            return self.writes.get(normalize_id(record_id) or record_id, 0)

    def call_counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self.calls)

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready summary for the admin API and reports."""
        with self.lock:
            objects = {}
            for name, table in self.tables.items():
                deleted = table.true_rows["IsDeleted"]
                objects[name] = {
                    "records": len(table) - len(deleted),
                    "deleted": len(deleted),
                    "optedOut": len(table.true_rows["HasOptedOutOfEmail"] - deleted),
                    "customFields": [
                        {"name": f.name, "label": f.label, "updateable": f.updateable, "hidden": f.hidden}
                        for f in table.schema.custom.values()
                    ],
                }
            return {
                "objects": objects,
                "apiUsage": {"used": self.api_usage, "max": self.daily_api_limit},
                "calls": dict(self.calls),
                "writes": {"total": sum(self.writes.values()), "records": len(self.writes)},
                "faults": self.faults.as_dict(),
                "sessions": len(self.auth.sessions),
                "sessionLifetimeSeconds": self.session_lifetime_s,
            }

    # ------------------------------------------------------------------ describe and query (REST)

    def describe_global(self, version: str) -> dict[str, Any]:
        """GET sobjects: the objects this org serves."""
        keys = ("name", "label", "labelPlural", "keyPrefix", "custom", "queryable", "updateable", "urls")
        with self.lock:
            described = [table.schema.describe(version) for table in self.tables.values()]
            return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": [{k: d[k] for k in keys} for d in described]}

    def describe(self, sobject: str, version: str) -> dict[str, Any]:
        with self.lock:
            table = self._table_named(sobject)
            if table is None:
                raise not_found()
            return table.schema.describe(version)

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
                f"\n{soql}\n^\nERROR at Row:1:Column:1\nsObject type '{query.sobject}' is not supported. If you "
                "are attempting to use a custom object, be sure to append the '__c' after the entity name. Please "
                "reference your WSDL or the describe call for the appropriate names.",
            )
        return select(table, query, include_deleted=include_deleted)

    def _render(self, selection: Selection, rows: list[int], version: str) -> list[dict[str, Any]]:
        table = self.tables[selection.sobject]
        base = f"/services/data/v{version}/sobjects/{selection.sobject}/"
        records = []
        for row in rows:
            record: dict[str, Any] = {"attributes": {"type": selection.sobject, "url": base + table.ids[row]}}
            record.update(table.get(row, selection.fields))
            records.append(record)
        return records

    def _page(self, locator: str, cursor: Cursor, offset: int, version: str, path: str) -> dict[str, Any]:
        rows = cursor.selection.rows
        end = min(len(rows), offset + cursor.batch_size)
        page: dict[str, Any] = {
            "totalSize": len(rows),
            "done": end >= len(rows),
            "records": self._render(cursor.selection, rows[offset:end], version),
        }
        if end < len(rows):
            page["nextRecordsUrl"] = f"/services/data/v{version}/{path}/{locator}-{end}"
        else:
            self.cursors.pop(locator, None)
        return page

    def query(self, soql: str, version: str, batch_size: int | None = None, include_deleted: bool = False) -> dict:
        """GET query?q= / queryAll?q=: the first batch, with nextRecordsUrl when there is more."""
        with self.lock:
            selection = self._select(soql, include_deleted)
            if selection.count_only:
                return {"totalSize": len(selection.rows), "done": True, "records": []}
            size = DEFAULT_QUERY_BATCH if batch_size is None else min(2000, max(200, batch_size))
            cursor = Cursor(selection, size)
            locator = self._cursor_ids.mint()
            if len(selection.rows) > size:
                self.cursors[locator] = cursor
                while len(self.cursors) > MAX_OPEN_CURSORS:
                    self.cursors.popitem(last=False)
            return self._page(locator, cursor, 0, version, "queryAll" if include_deleted else "query")

    def query_more(self, locator_and_offset: str, version: str, include_deleted: bool = False) -> dict:
        """GET query/{locator}-{offset}: the next batch of an open cursor."""
        with self.lock:
            locator, _, offset_text = locator_and_offset.rpartition("-")
            cursor = self.cursors.get(locator)
            if cursor is None or not offset_text.isdigit():
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            offset = int(offset_text)
            if offset >= len(cursor.selection.rows):
                raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            self.cursors.move_to_end(locator)
            return self._page(locator, cursor, offset, version, "queryAll" if include_deleted else "query")

    def get_record_api(self, sobject: str, record_id: str, fields: list[str] | None) -> dict[str, Any]:
        """GET sobjects/{Obj}/{id}: the visible fields of a live record."""
        with self.lock:
            table = self.tables.get(sobject)
            id18 = normalize_id(record_id)
            if table is None or id18 is None:
                raise not_found()
            row = table.row_of(id18)
            if row is None or id18[:3] != table.schema.key_prefix:
                raise not_found()
            if table.is_deleted(row):
                raise ApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
            names = [f.name for f in table.schema.visible_fields()]
            if fields:
                names = []
                for name in fields:
                    definition = table.schema.lookup(name)
                    if definition is None:
                        raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {sobject}")
                    names.append(definition.name)
            record: dict[str, Any] = {"attributes": {"type": sobject, "url": ""}}
            record.update(table.get(row, names))
            return record

    # ------------------------------------------------------------------ writes

    def _apply(self, write: PreparedWrite) -> None:
        for name, value in write.values.items():
            write.table.set(write.row, name, value)
        self.writes[write.id18] += 1

    def update_one(self, sobject: str, record_id: str, body: Any) -> None:
        """PATCH sobjects/{Obj}/{id}: 204 on success, else the record's error as a top-level error."""
        with self.lock:
            table = self._table_named(sobject)
            if table is None:
                raise not_found()
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            if normalize_id(record_id) is None:
                message = f"Provided external ID field does not exist or is not accessible: {record_id}"
                raise ApiError(404, "NOT_FOUND", message)
            prepared = prepare_write(table, record_id, check_values(table, body), self.faults, self.rng)
            if isinstance(prepared, RecordError):
                if prepared.status_code == "INVALID_CROSS_REFERENCE_KEY":
                    raise not_found()
                raise prepared.as_api_error()
            self._apply(prepared)

    def update_collection(self, body: Any) -> list[dict[str, Any]]:
        """PATCH composite/sobjects: per-record results in request order (failed ones carry no "id")."""
        with self.lock:
            all_or_none, records = parse_collection(body, self._table_named)
            duplicates = duplicate_ids(records)
            outcomes: list[PreparedWrite | RecordError] = []
            for record in records:
                raw_id = record.raw_id
                if isinstance(raw_id, str) and (normalize_id(raw_id) or raw_id) in duplicates:
                    outcomes.append(RecordError("DUPLICATE_VALUE", f"Duplicate id in list: {raw_id}"))
                else:
                    outcomes.append(prepare_write(record.table, raw_id, record.values, self.faults, self.rng))
            return collection_results(outcomes, all_or_none, self._apply)

    # ------------------------------------------------------------------ Bulk API 2.0

    def _job(self, job_id: str, kind: type[J]) -> J:
        job = self.jobs.get(normalize_id(job_id) or job_id)
        if not isinstance(job, kind):
            raise not_found()
        self._advance(job)
        return job

    def _advance(self, job: JobBase) -> None:
        now = time.time()
        if job.state in TERMINAL_STATES or job.ready_at is None:
            return
        if now >= job.ready_at:
            if self.faults.bulk_fail_next > 0:
                self.faults.bulk_fail_next -= 1
                job.state, job.error_message = "Failed", "InternalServerError : the job failed; retry it later"
            elif isinstance(job, IngestJob):
                process_ingest(job, self.tables[job.sobject].schema, self._bulk_update(job.sobject))
            else:
                job.state = "JobComplete"
            job.modified_at = now
        elif job.state == "UploadComplete" and (
            isinstance(job, IngestJob) or now >= job.ready_at - self.bulk_processing_s / 2
        ):
            job.state = "InProgress"

    def _bulk_update(self, sobject: str) -> Any:
        table = self.tables[sobject]

        def update(raw_id: str, values: dict[str, Any]) -> str | RecordError:
            outcome = prepare_write(table, raw_id, values, self.faults, self.rng)
            if isinstance(outcome, RecordError):
                return outcome
            self._apply(outcome)
            return outcome.id18

        return update

    def advance_jobs(self) -> None:
        """Finish every job whose processing time is over (the server calls this on a timer)."""
        with self.lock:
            for job in list(self.jobs.values()):
                self._advance(job)

    def create_query_job(self, body: Any, version: str) -> dict[str, Any]:
        with self.lock:
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            operation = body.get("operation")
            if operation not in ("query", "queryAll"):
                raise ApiError(400, "INVALIDJOB", f"Invalid operation for a query job: {operation}")
            soql = body.get("query")
            if not isinstance(soql, str) or not soql.strip():
                raise ApiError(400, "INVALIDJOB", "A query job needs a query")
            delimiter, line_ending = job_options(body)
            selection = self._select(soql, include_deleted=operation == "queryAll")
            if selection.count_only:
                raise ApiError(400, "INVALIDJOB", "COUNT() is not supported by Bulk API 2.0 query jobs")
            now = time.time()
            job = QueryJob(
                id=self._job_ids.mint(), operation=operation, sobject=selection.sobject, api_version=version,
                created_by=USER_ID, created_at=now, column_delimiter=delimiter, line_ending=line_ending,
                state="UploadComplete", ready_at=now + self.bulk_processing_s, query=soql, selection=selection,
                number_records_processed=len(selection.rows),
            )  # fmt: skip
            self.jobs[job.id] = job
            info = job.info()
            info.pop("numberRecordsProcessed", None)
            return info

    def query_job_info(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id, QueryJob)
            info = job.info()
            if job.state != "JobComplete":
                info["numberRecordsProcessed"] = 0
            return info

    def query_job_results(self, job_id: str, locator: str | None, max_records: str | None) -> tuple[str, str, int]:
        """CSV page of a finished query job: (csv text, next locator or "null", records in this page)."""
        with self.lock:
            job = self._job(job_id, QueryJob)
            if job.state != "JobComplete":
                raise ApiError(400, "INVALIDJOB", f"The query job is not complete: its state is {job.state}")
            return query_results_page(job, self.tables[job.sobject], locator, max_records)

    def create_ingest_job(self, body: Any, version: str) -> dict[str, Any]:
        with self.lock:
            if not isinstance(body, dict):
                raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
            sobject = body.get("object")
            table = self._table_named(sobject) if isinstance(sobject, str) else None
            if table is None:
                raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid object: {sobject}")
            operation = body.get("operation")
            if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
                raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
            if operation != "update":
                message = f"InvalidJob : the sandbox supports only update jobs, not {operation}"
                raise ApiError(400, "INVALIDJOB", message)
            if body.get("contentType", "CSV") != "CSV":
                raise ApiError(400, "INVALIDJOB", f"InvalidJob : Invalid content type: {body.get('contentType')}")
            delimiter, line_ending = job_options(body)
            job = IngestJob(
                id=self._job_ids.mint(), operation=operation, sobject=table.schema.name, api_version=version,
                created_by=USER_ID, created_at=time.time(), column_delimiter=delimiter, line_ending=line_ending,
                state="Open", external_id_field=body.get("externalIdFieldName"),
            )  # fmt: skip
            self.jobs[job.id] = job
            return job.info(with_counts=False)

    def upload_ingest_data(self, job_id: str, text: str) -> None:
        with self.lock:
            job = self._job(job_id, IngestJob)
            if job.state != "Open":
                message = f"Data can be uploaded only while the job is Open, not {job.state}"
                raise ApiError(409, "INVALIDJOBSTATE", message)
            if not text.strip():
                raise ApiError(400, "INVALIDREQUEST", "The upload holds no CSV data")
            job.uploads.append(text)

    def set_ingest_state(self, job_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id, IngestJob)
            wanted = body.get("state") if isinstance(body, dict) else None
            if wanted == "UploadComplete" and job.state == "Open":
                job.state = "UploadComplete"
                job.ready_at = time.time() + self.bulk_processing_s
                if not job.uploads:
                    job.state = "Failed"
                    job.error_message = "InvalidBatch : No data uploaded for this job"
                    job.ready_at = None
            elif wanted == "Aborted" and job.state not in TERMINAL_STATES:
                job.state = "Aborted"
                job.ready_at = None
            else:
                raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition from {job.state} to {wanted}")
            job.modified_at = time.time()
            return job.info(with_counts=False)

    def abort_query_job(self, job_id: str, body: Any) -> dict[str, Any]:
        with self.lock:
            job = self._job(job_id, QueryJob)
            if not isinstance(body, dict) or body.get("state") != "Aborted" or job.state in TERMINAL_STATES:
                raise ApiError(400, "INVALIDJOBSTATE", f"Invalid state transition from {job.state}")
            job.state = "Aborted"
            job.ready_at = None
            return job.info()

    def ingest_job_info(self, job_id: str) -> dict[str, Any]:
        with self.lock:
            return self._job(job_id, IngestJob).info()

    def ingest_results(self, job_id: str, kind: str) -> str:
        with self.lock:
            job = self._job(job_id, IngestJob)
            if job.state != "JobComplete" and kind != "unprocessedrecords":
                raise ApiError(400, "INVALIDJOBSTATE", f"The job is not complete: its state is {job.state}")
            return job.results_csv(kind)

    def delete_job(self, job_id: str, kind: type[JobBase]) -> None:
        with self.lock:
            job = self._job(job_id, kind)
            if isinstance(job, IngestJob) and job.state not in (*TERMINAL_STATES, "Open"):
                raise ApiError(400, "INVALIDJOBSTATE", f"A job in state {job.state} cannot be deleted")
            self.jobs.pop(job.id, None)

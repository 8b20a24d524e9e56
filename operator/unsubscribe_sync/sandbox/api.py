"""The emulated REST API: token endpoint calls, the API allowance, describe, query, record reads and writes."""

from __future__ import annotations

from typing import Any

from .auth import Session
from .errors import ApiError, RecordError, not_found
from .ids import normalize_id
from .org import DEFAULT_QUERY_BATCH, MAX_OPEN_CURSORS, Cursor, Org
from .schema import FieldDef
from .store import Selection
from .writes import PreparedWrite, check_values, collection_results, duplicate_ids, parse_collection, prepare_write

MAX_RETRIEVE_IDS = 2000
APEX_TYPES = {"id": "Id", "reference": "Id", "boolean": "Boolean", "datetime": "Datetime", "date": "Date"}


def column_metadata(definition: FieldDef | None) -> dict[str, Any]:
    """One entry of a columns=true answer, for a selected field."""
    assert definition is not None  # the query was checked
    return {
        "aggregate": False,
        "apexType": APEX_TYPES.get(definition.type, "String"),
        "booleanType": definition.type == "boolean",
        "columnName": definition.name,
        "custom": definition.custom,
        "displayName": definition.name,
        "foreignKeyName": None,
        "insertable": definition.updateable,
        "joinColumns": [],
        "numberType": False,
        "textType": definition.type in ("string", "email", "picklist"),
        "updatable": definition.updateable,
    }


class Api(Org):
    """What the HTTP handlers call, one method per Salesforce operation."""

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

    def identity(self, token: str | None, base_url: str, version: str | None) -> dict[str, Any] | None:
        """The identity URL's answer for a live token, else None."""
        with self.lock:
            session = self.auth.session_of(token)
            return None if session is None else self.auth.identity(session, base_url, version)

    def userinfo(self, token: str | None, base_url: str) -> dict[str, Any] | None:
        """The OpenID Connect UserInfo answer for a live token, else None."""
        with self.lock:
            session = self.auth.session_of(token)
            return None if session is None else self.auth.userinfo(session, base_url)

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

    # ------------------------------------------------------------------ describe and query (REST)

    def describe_global(self, version: str) -> dict[str, Any]:
        """GET sobjects: the objects this org serves."""
        with self.lock:
            described = [table.schema.describe_global(version) for table in self.tables.values()]
            return {"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": described}

    def describe(self, sobject: str, version: str) -> dict[str, Any]:
        with self.lock:
            table = self._table_named(sobject)
            if table is None:
                raise not_found()
            return table.schema.describe(version)

    def describe_object(self, sobject: str, version: str) -> dict[str, Any]:
        """GET sobjects/{Obj}: the object's describe-global entry."""
        with self.lock:
            table = self._table_named(sobject)
            if table is None:
                raise not_found()
            return table.schema.describe_global(version)

    def _render(self, selection: Selection, rows: list[int], version: str) -> list[dict[str, Any]]:
        table = self.tables[selection.sobject]
        base = f"/services/data/v{version}/sobjects/{selection.sobject}/"
        fields = selection.fields
        columns = [table.column(name) for name in fields]
        ids = table.ids
        records = []
        for row in rows:
            record: dict[str, Any] = {"attributes": {"type": selection.sobject, "url": base + ids[row]}}
            record.update(zip(fields, [column[row] for column in columns], strict=True))
            records.append(record)
        return records

    def _page(self, locator: str, cursor: Cursor, offset: int, version: str) -> dict[str, Any]:
        """One batch of an open cursor. nextRecordsUrl is a `query/` URL for queryAll too, as the docs show."""
        rows = cursor.selection.rows
        end = min(len(rows), offset + cursor.batch_size)
        page: dict[str, Any] = {
            "totalSize": len(rows),
            "done": end >= len(rows),
            "records": self._render(cursor.selection, rows[offset:end], version),
        }
        if end < len(rows):
            page["nextRecordsUrl"] = f"/services/data/v{version}/query/{locator}-{end}"
        else:
            self.cursors.pop(locator, None)
        return page

    def query(self, soql: str, version: str, batch_size: int | None = None, include_deleted: bool = False) -> dict:
        """GET query?q= / queryAll?q=: the first batch, with nextRecordsUrl when there is more."""
        with self.lock:
            selection = self._select(soql, include_deleted)
            if selection.count_only:
                return {"totalSize": len(selection.rows), "done": True, "records": []}
            if selection.aggregate is not None:
                record = {"attributes": {"type": "AggregateResult"}, selection.aggregate[1]: selection.count_value}
                return {"totalSize": 1, "done": True, "records": [record]}
            size = DEFAULT_QUERY_BATCH if batch_size is None else min(2000, max(200, batch_size))
            cursor = Cursor(selection, size)
            locator = self._cursor_ids.mint()
            if len(selection.rows) > size:
                self.cursors[locator] = cursor
                while len(self.cursors) > MAX_OPEN_CURSORS:
                    self.cursors.popitem(last=False)
            return self._page(locator, cursor, 0, version)

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
            return self._page(locator, cursor, offset, version)

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

    def retrieve_many(self, sobject: str, body: Any, version: str) -> list[dict[str, Any] | None]:
        """POST composite/sobjects/{Obj} {"ids", "fields"}: the records in request order, null for an ID that
        matches no live record of that object."""
        with self.lock:
            table = self._table_named(sobject)
            if table is None:
                raise not_found()
            ids = body.get("ids") if isinstance(body, dict) else None
            fields = body.get("fields") if isinstance(body, dict) else None
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise ApiError(400, "JSON_PARSER_ERROR", "ids must be a non-empty list of record IDs")
            if not isinstance(fields, list) or not fields or not all(isinstance(f, str) for f in fields):
                raise ApiError(400, "JSON_PARSER_ERROR", "fields must be a non-empty list of field names")
            if len(ids) > MAX_RETRIEVE_IDS:
                raise ApiError(400, "EXCEEDED_ID_LIMIT", f"Exceeded the maximum of {MAX_RETRIEVE_IDS} IDs")
            names = []
            for name in fields:
                definition = table.schema.lookup(name)
                if definition is None:
                    message = f"No such column '{name}' on sobject of type {table.schema.name}"
                    raise ApiError(400, "INVALID_FIELD", message)
                names.append(definition.name)
            base = f"/services/data/v{version}/sobjects/{table.schema.name}/"
            records: list[dict[str, Any] | None] = []
            for raw in ids:
                id18 = normalize_id(raw)
                if id18 is None:
                    raise ApiError(400, "MALFORMED_ID", f"malformed id {raw}")
                row = table.row_of(id18) if id18[:3] == table.schema.key_prefix else None
                if row is None or table.is_deleted(row):
                    records.append(None)
                    continue
                records.append({"attributes": {"type": table.schema.name, "url": base + id18}, **table.get(row, names)})
            return records

    def query_columns(self, soql: str) -> dict[str, Any]:
        """GET query?q=...&columns=true: what the sf CLI asks to label its result columns (the query is checked,
        not run for records)."""
        with self.lock:
            selection = self._select(soql, include_deleted=False)
            schema = self.tables[selection.sobject].schema
            columns = [column_metadata(schema.lookup(name)) for name in selection.fields]
            if selection.aggregate is not None:
                columns.append(
                    {
                        "aggregate": True, "apexType": "Integer", "booleanType": False,
                        "columnName": selection.aggregate[1], "custom": False,
                        "displayName": f"COUNT({selection.aggregate[0]})", "foreignKeyName": None,
                        "insertable": False, "joinColumns": [], "numberType": True, "textType": False,
                        "updatable": False,
                    }
                )  # fmt: skip
            return {
                "columnMetadata": columns,
                "entityName": schema.name,
                "groupBy": False,
                "idSelected": "Id" in selection.fields,
                "keyPrefix": schema.key_prefix,
            }

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

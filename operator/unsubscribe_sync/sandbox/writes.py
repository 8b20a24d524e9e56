"""Record updates as Salesforce checks them: whole-request errors, per-record errors, sObject Collections rules."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import LOCK_MESSAGE, ApiError, RecordError
from .faults import Faults
from .ids import normalize_id
from .store import Table

MAX_COLLECTION_RECORDS = 200
MAX_COLLECTION_CHUNKS = 10  # runs of one object type in a request (docs: "A single request can process up to 10")
CHUNKS_MESSAGE = "Cannot have more than 10 chunks in a single operation. Please rearrange the data to reduce chunking."
ALL_OR_NONE_MESSAGE = "Record rolled back because not all records were valid and the request was using AllOrNone header"


@dataclass(frozen=True)
class PreparedWrite:
    """An update that passed every check: apply it, or drop it (allOrNone rollback)."""

    table: Table
    row: int
    id18: str
    values: dict[str, Any]


@dataclass(frozen=True)
class CollectionRecord:
    table: Table
    raw_id: Any
    values: dict[str, Any]


def check_values(table: Table, values: dict[str, Any]) -> dict[str, Any]:
    """Field names and JSON types of an update body (canonical names out); problems fail the whole request,
    as the body cannot be read into an sObject."""
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name == "attributes" or name.lower() == "id":
            continue
        definition = table.schema.lookup(name)
        if definition is None:
            raise ApiError(400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {table.schema.name}")
        if definition.type == "boolean" and not isinstance(value, bool):
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of boolean from {type(value).__name__} value {value!r} "
                f"for field {definition.name}",
            )
        if definition.type != "boolean" and value is not None and not isinstance(value, str):
            raise ApiError(
                400,
                "JSON_PARSER_ERROR",
                f"Cannot deserialize instance of string from {type(value).__name__} value for field {definition.name}",
            )
        checked[definition.name] = value
    return checked


def prepare_write(
    table: Table, raw_id: Any, values: dict[str, Any], faults: Faults, rng: random.Random
) -> PreparedWrite | RecordError:
    """Per-record checks of an update (canonical field names), in Salesforce's order; lock faults drawn last."""
    sobject = table.schema.name
    if not isinstance(raw_id, str) or not raw_id:
        return RecordError("MISSING_ARGUMENT", "Id not specified in an update call", ["Id"])
    id18 = normalize_id(raw_id)
    if id18 is None:
        return RecordError("MALFORMED_ID", f"malformed id {raw_id}", ["Id"])
    if id18[:3] != table.schema.key_prefix:
        return RecordError("MALFORMED_ID", f"{sobject} ID: id value of incorrect type: {raw_id}", ["Id"])
    row = table.row_of(id18)
    if row is None:
        return RecordError("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
    if table.is_deleted(row):
        return RecordError("ENTITY_IS_DELETED", "entity is deleted")
    if sobject == "Lead" and table.columns["IsConverted"][row]:
        return RecordError("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead")
    readonly = [name for name in values if not table.schema.field_named(name).updateable]
    if readonly:
        return RecordError(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            f"Unable to create/update fields: {', '.join(readonly)}. Please check the security settings of this "
            "field and verify that it is read/write for your profile or permission set.",
            readonly,
        )
    if faults.draw_lock(id18, rng):
        return RecordError("UNABLE_TO_LOCK_ROW", LOCK_MESSAGE.format(id=id18))
    return PreparedWrite(table, row, id18, values)


def parse_collection(body: Any, table_named: Callable[[str], Table | None]) -> tuple[bool, list[CollectionRecord]]:
    """The allOrNone flag and records of a PATCH composite/sobjects body; whole-request errors raise."""
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be an object with a records list")
    all_or_none = body.get("allOrNone", False)
    if not isinstance(all_or_none, bool):
        raise ApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
    records = body["records"]
    if len(records) > MAX_COLLECTION_RECORDS:
        raise ApiError(
            400,
            "EXCEEDED_ID_LIMIT",
            f"record limit reached. cannot submit more than {MAX_COLLECTION_RECORDS} records into this call",
        )
    parsed: list[CollectionRecord] = []
    for record in records:
        if not isinstance(record, dict):
            raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
        attributes = record.get("attributes")
        type_name = attributes.get("type") if isinstance(attributes, dict) else None
        if not isinstance(type_name, str) or not type_name:
            raise ApiError(400, "INVALID_TYPE", "Must send a concrete entity type.")
        table = table_named(type_name)
        if table is None:
            raise ApiError(400, "INVALID_TYPE", f"sObject type '{type_name}' is not supported.")
        raw_id = next((v for k, v in record.items() if k.lower() == "id"), None)
        parsed.append(CollectionRecord(table, raw_id, check_values(table, record)))
    if type_chunks([r.table.schema.name for r in parsed]) > MAX_COLLECTION_CHUNKS:
        raise ApiError(400, "INVALID_BATCH_REQUEST", CHUNKS_MESSAGE)
    return all_or_none, parsed


def type_chunks(types: list[str]) -> int:
    """How many chunks Salesforce cuts a request into: one per run of records of the same type."""
    return sum(1 for i, name in enumerate(types) if i == 0 or types[i - 1] != name)


def duplicate_ids(records: list[CollectionRecord]) -> set[str]:
    """IDs (18-character form) that appear more than once in one request: every occurrence fails."""
    counts = Counter(normalize_id(r.raw_id) or r.raw_id for r in records if isinstance(r.raw_id, str))
    return {key for key, count in counts.items() if count > 1}


def collection_results(
    outcomes: list[PreparedWrite | RecordError], all_or_none: bool, apply: Callable[[PreparedWrite], None]
) -> list[dict[str, Any]]:
    """Apply what passed (unless allOrNone and something failed) and build the per-record results, in order.
    Failed results carry no "id", like Salesforce's SaveResult of a failed update."""
    rollback = all_or_none and any(isinstance(o, RecordError) for o in outcomes)
    results: list[dict[str, Any]] = []
    for outcome in outcomes:
        if isinstance(outcome, RecordError):
            results.append({"success": False, "errors": [outcome.as_collections()]})
        elif rollback:
            rolled_back = RecordError("ALL_OR_NONE_OPERATION_ROLLED_BACK", ALL_OR_NONE_MESSAGE)
            results.append({"success": False, "errors": [rolled_back.as_collections()]})
        else:
            apply(outcome)
            results.append({"id": outcome.id18, "success": True, "errors": []})
    return results

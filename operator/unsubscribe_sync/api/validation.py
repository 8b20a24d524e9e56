"""Check an UnsubscribeSync the way the API server does, without one.

:func:`validate_unsubscribe_sync` applies the CRD's structural defaults (missing or null fields that
have a default get it, nested defaults included), rejects unknown fields (as ``kubectl`` with strict
field validation does), validates against the openAPIV3Schema with jsonschema, enforces the list types
(``set`` / ``map``), evaluates the CEL ``x-kubernetes-validations`` with cel-python, and finally parses
the spec with the pydantic model. Every problem is reported as ``<field path>: <what is wrong>``.
"""

from __future__ import annotations

import copy
import functools
import json
import zoneinfo
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema
import re2  # google-re2, a cel-python dependency: the regular expressions of the API server
from pydantic import ValidationError

from unsubscribe_sync.api.constants import API_VERSION, KIND
from unsubscribe_sync.api.crd import Schema, openapi_schema
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec

DEFAULT_NAMESPACE = "default"


class InvalidResourceError(ValueError):
    """An UnsubscribeSync the API server would reject; ``problems`` lists each one with its field path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ValidatedResource:
    name: str
    namespace: str
    spec: UnsubscribeSyncSpec
    manifest: dict[str, Any]  # the object with the CRD's defaults applied


# ---- paths -------------------------------------------------------------------------------------------


def format_path(parts: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    """``["spec", "salesforce", "objects", 0]`` -> ``spec.salesforce.objects[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(object)"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# ---- defaulting --------------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: Schema) -> Any:
    """A copy of ``value`` with the schema's defaults applied as the API server's structural defaulting does.

    Nulls of non-nullable fields are dropped first (then defaulted when the field has a default); a
    default that fills a missing object is itself defaulted, so nested defaults apply too.
    """
    value = copy.deepcopy(value)
    _default_in_place(value, schema)
    return value


def _default_in_place(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties", {})
        for key, prop in properties.items():
            if key in value and value[key] is None and not prop.get("nullable", False):
                del value[key]
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                _default_in_place(item, properties[key])
            elif isinstance(additional, dict):
                _default_in_place(item, additional)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(item, schema["items"])


# ---- structural checks -------------------------------------------------------------------------------


def unknown_field_problems(value: Any, schema: Schema, path: str = "") -> list[str]:
    """Fields the schema does not declare (the API server would prune them; strict validation rejects them)."""
    problems: list[str] = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return problems
    if isinstance(value, dict) and schema.get("type") == "object":
        properties: dict[str, Schema] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                if path or key != "metadata":  # metadata is the API server's own business
                    problems += unknown_field_problems(item, properties[key], _join(path, key))
            elif isinstance(additional, dict):
                problems += unknown_field_problems(item, additional, _join(path, key))
            elif additional is not True:
                problems.append(f"{_join(path, key)}: unknown field")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems += unknown_field_problems(item, schema["items"], _join(path, index))
    return problems


def list_type_problems(value: Any, schema: Schema, path: str = "") -> list[str]:
    """Duplicates in ``x-kubernetes-list-type: set`` lists and duplicate keys in ``map`` lists."""
    problems: list[str] = []
    if isinstance(value, dict):
        properties: dict[str, Schema] = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                problems += list_type_problems(item, properties[key], _join(path, key))
    elif isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        seen: set[str] = set()
        for index, item in enumerate(value):
            if list_type == "set":
                identity = json.dumps(item, sort_keys=True)
            elif list_type == "map" and isinstance(item, dict):
                identity = json.dumps([item.get(k) for k in schema.get("x-kubernetes-list-map-keys", [])])
            else:
                identity = ""
            if identity and identity in seen:
                problems.append(f"{_join(path, index)}: duplicate entry {identity}")
            seen.add(identity)
            if isinstance(schema.get("items"), dict):
                problems += list_type_problems(item, schema["items"], _join(path, index))
    return problems


_TYPE_WORDS = {
    "integer": "an integer",
    "string": "a string",
    "boolean": "true or false",
    "object": "an object",
    "array": "a list",
}


def _describe_error(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(field path, message) of one jsonschema error, in the words the API server would use."""
    path = format_path(list(error.absolute_path))
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if kind == "required":
        missing = [name for name in expected if isinstance(instance, dict) and name not in instance]
        return _join("" if path == "(object)" else path, missing[0] if missing else "?"), "required field is missing"
    if kind == "enum":
        return path, "must be one of " + ", ".join(str(v) for v in expected)
    if kind == "type":
        return path, f"must be {_TYPE_WORDS.get(expected, expected)}, not {json.dumps(instance)}"
    if kind == "anyOf":
        return path, "must be an integer or a string"
    if kind == "pattern":
        return path, f"invalid value {json.dumps(instance)}: must match {expected}"
    if kind == "minimum" and error.schema.get("exclusiveMinimum") is True:
        return path, f"must be greater than {expected}, not {instance}"
    if kind == "minimum":
        return path, f"must be at least {expected}, not {instance}"
    if kind == "maximum":
        return path, f"must be at most {expected}, not {instance}"
    if kind == "minLength":
        return path, "must not be empty" if expected == 1 else f"must be at least {expected} characters"
    if kind == "maxLength":
        return path, f"must be at most {expected} characters"
    if kind == "minItems":
        return path, f"must have at least {expected} item{'s' if expected != 1 else ''}"
    if kind == "maxItems":
        return path, f"must have at most {expected} items"
    return path, error.message


@functools.cache
def _re2(pattern: str) -> Any:
    return re2.compile(pattern)


def _re2_pattern(validator: Any, pattern: str, instance: Any, schema: Schema) -> Iterator[jsonschema.ValidationError]:
    """``pattern`` with RE2, as the API server reads it (Python's ``$`` would also match before a final newline)."""
    if isinstance(instance, str) and _re2(pattern).search(instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"pattern": _re2_pattern})


@functools.cache
def _validator() -> Any:
    return SchemaValidator(openapi_schema())


def schema_problems(value: Any, schema: Schema | None = None) -> list[str]:
    """openAPIV3Schema violations (types, enums, patterns, bounds, required fields)."""
    validator = _validator() if schema is None else SchemaValidator(schema)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        path, message = _describe_error(error)
        problems.append(f"{path}: {message}")
    return problems


# ---- CEL ---------------------------------------------------------------------------------------------


@functools.cache
def _cel_program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_problems(value: Any, schema: Schema, path: str = "") -> list[str]:
    """Failed ``x-kubernetes-validations`` rules, each reported at its field (``fieldPath`` when given)."""
    problems: list[str] = []
    for rule in schema.get("x-kubernetes-validations", []):
        outcome: object
        try:
            outcome = _cel_program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as exc:
            outcome = exc
        if isinstance(outcome, celpy.celtypes.BoolType) and bool(outcome):
            continue
        where = path + rule.get("fieldPath", "") if path else rule.get("fieldPath", "").lstrip(".")
        message = rule.get("message", f"failed rule: {rule['rule']}")
        if not isinstance(outcome, celpy.celtypes.BoolType):
            message = f"rule {rule['rule']!r} could not be evaluated: {outcome!s}"
        problems.append(f"{where or path or '(object)'}: {message}")
    if isinstance(value, dict):
        for key, prop in schema.get("properties", {}).items():
            if key in value:
                problems += cel_problems(value[key], prop, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems += cel_problems(item, schema["items"], _join(path, index))
    return problems


# ---- beyond the schema -------------------------------------------------------------------------------


@functools.cache
def _known_time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def time_zone_problems(spec: Mapping[str, Any]) -> list[str]:
    """The CronJob's timeZone must be in the tz database (the API server checks it on the CronJob)."""
    zone = spec.get("nightlySync", {}).get("timeZone")
    zones = _known_time_zones()
    if isinstance(zone, str) and zones and zone not in zones and zone != "UTC":
        return [f"spec.nightlySync.timeZone: unknown time zone {json.dumps(zone)} (use an IANA name such as UTC)"]
    return []


# ---- the whole check ---------------------------------------------------------------------------------


def _header_problems(doc: Mapping[str, Any]) -> list[str]:
    problems = []
    if doc.get("apiVersion") != API_VERSION:
        problems.append(f"apiVersion: must be {API_VERSION}, not {json.dumps(doc.get('apiVersion'))}")
    if doc.get("kind") != KIND:
        problems.append(f"kind: must be {KIND}, not {json.dumps(doc.get('kind'))}")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        problems.append("metadata: required field is missing")
    else:
        if not isinstance(metadata.get("name"), str) or not metadata["name"]:
            problems.append("metadata.name: required field is missing")
        if "namespace" in metadata and not isinstance(metadata["namespace"], str):
            problems.append("metadata.namespace: must be a string")
    return problems


def _pydantic_problems(exc: ValidationError) -> list[str]:
    return [f"{format_path(['spec', *err['loc']])}: {err['msg']}" for err in exc.errors()]


def validate_unsubscribe_sync(doc: Any, *, default_namespace: str = DEFAULT_NAMESPACE) -> ValidatedResource:
    """Default and validate one UnsubscribeSync manifest; raises InvalidResourceError listing every problem."""
    if not isinstance(doc, dict):
        raise InvalidResourceError(["(document): must be a mapping (an UnsubscribeSync manifest)"])
    problems = _header_problems(doc)
    if problems:
        raise InvalidResourceError(problems)
    schema = openapi_schema()
    # The status subresource: the API server ignores status on create and update of the main resource.
    manifest = apply_defaults({k: v for k, v in doc.items() if k != "status"}, schema)
    problems = unknown_field_problems(manifest, schema) + schema_problems(manifest)
    problems += list_type_problems(manifest, schema)
    if not problems:
        problems = cel_problems(manifest, schema) + time_zone_problems(manifest["spec"])
    if problems:
        raise InvalidResourceError(problems)
    try:
        spec = UnsubscribeSyncSpec.model_validate(manifest["spec"])
    except ValidationError as exc:
        raise InvalidResourceError(_pydantic_problems(exc)) from None
    metadata = manifest["metadata"]
    return ValidatedResource(
        name=metadata["name"],
        namespace=metadata.get("namespace") or default_namespace,
        spec=spec,
        manifest=manifest,
    )

"""A pydantic model's JSON schema as a Kubernetes structural schema (the openAPIV3Schema of a CRD).

pydantic writes JSON Schema 2020-12 with ``$defs``; the API server wants OpenAPI v3.0 in structural form.
:func:`structural_schema` converts one into the other:

- ``$ref`` is inlined; keys beside it (the referring field's description, defaults and refinements such as
  ``{"properties": {"name": {"description": ...}}}``) are merged into the referred schema, nested dicts key
  by key, so one model can be described differently where it is used;
- ``Optional[X]`` (``anyOf: [X, {"type": "null"}]``) becomes ``X``, and a ``None`` default is dropped;
- an integer-or-string union (a resource quantity) becomes ``x-kubernetes-int-or-string`` with the string
  branch's pattern;
- ``exclusiveMinimum: N`` becomes ``minimum: N, exclusiveMinimum: true``;
- ``dict[Literal[...], X]`` (``propertyNames`` with an enum) becomes one property of schema ``X`` per key;
- ``title`` and ``additionalProperties: false`` (``extra="forbid"``) are dropped; a required field keeps no
  default (the API server would apply it, making the field optional);
- keys come out in one fixed order (pydantic sorts them), so the YAML reads the same node after node.

Anything else a structural schema cannot hold (``oneOf``, ``allOf``, ``const``, other unions...) raises
:class:`SchemaConversionError` rather than producing a schema the API server would refuse.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel

Schema = dict[str, Any]

KEY_ORDER: Final = (
    "anyOf",
    "type",
    "description",
    "format",
    "properties",
    "items",
    "additionalProperties",
    "required",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "minItems",
    "maxItems",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
)
RULE_KEY_ORDER: Final = ("rule", "messageExpression", "message", "fieldPath", "reason", "optionalOldSelf")
_UNSUPPORTED: Final = ("allOf", "oneOf", "not", "const", "discriminator", "prefixItems", "patternProperties")
_NULL: Final = {"type": "null"}


class SchemaConversionError(ValueError):
    """A JSON schema construct with no structural equivalent; the message names where it is."""


def structural_schema(model: type[BaseModel]) -> Schema:
    """The structural openAPIV3Schema of ``model`` (a fresh dict each call)."""
    raw = model.model_json_schema()
    defs: Mapping[str, Schema] = raw.pop("$defs", {})
    return _convert(raw, defs, model.__name__)


def merge(base: Schema, refinement: Mapping[str, Any]) -> Schema:
    """``base`` with ``refinement`` laid over it: nested dicts merge key by key, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in refinement.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _convert(node: Mapping[str, Any], defs: Mapping[str, Schema], where: str) -> Schema:
    schema = _resolve(node, defs, where)
    for key in _UNSUPPORTED:
        if key in schema:
            raise SchemaConversionError(f"{where}: {key!r} has no structural equivalent")
    schema.pop("title", None)
    if schema.get("additionalProperties") is False:
        del schema["additionalProperties"]
    if schema.get("default", ...) is None:
        del schema["default"]
    if "anyOf" in schema:
        schema = _int_or_string(schema, where)
    minimum = schema.get("exclusiveMinimum")
    if isinstance(minimum, int | float) and not isinstance(minimum, bool):
        schema["minimum"], schema["exclusiveMinimum"] = minimum, True
    names = schema.pop("propertyNames", None)
    if names is not None:
        schema = _closed_keys(schema, names, where)
    if isinstance(schema.get("properties"), dict):
        schema["properties"] = {
            key: _convert(prop, defs, f"{where}.{key}") for key, prop in schema["properties"].items()
        }
        for key in schema.get("required", []):
            schema["properties"][key].pop("default", None)
    if isinstance(schema.get("items"), dict):
        schema["items"] = _convert(schema["items"], defs, f"{where}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _convert(schema["additionalProperties"], defs, f"{where}{{}}")
    if isinstance(schema.get("x-kubernetes-validations"), list):
        schema["x-kubernetes-validations"] = [
            _ordered(rule, RULE_KEY_ORDER) for rule in schema["x-kubernetes-validations"]
        ]
    return _ordered(schema, KEY_ORDER)


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Schema], where: str) -> Schema:
    """``node`` with ``Optional`` unwrapped and ``$ref`` inlined (the referring keys laid over the target)."""
    schema = dict(node)
    branches = schema.get("anyOf")
    if isinstance(branches, list) and _NULL in branches:
        rest = [branch for branch in branches if branch != _NULL]
        del schema["anyOf"]
        if len(rest) == 1:
            schema = merge(rest[0], schema)
        else:
            schema["anyOf"] = rest
    ref = schema.pop("$ref", None)
    if ref is not None:
        name = str(ref).rsplit("/", 1)[-1]
        if name not in defs:
            raise SchemaConversionError(f"{where}: unknown $ref {ref!r}")
        return _resolve(merge(defs[name], schema), defs, where)
    return schema


def _int_or_string(schema: Schema, where: str) -> Schema:
    branches = {branch.get("type"): branch for branch in schema.pop("anyOf")}
    allowed = {"integer": {"type"}, "string": {"type", "pattern"}}
    if set(branches) != set(allowed) or any(set(branches[kind]) - keys for kind, keys in allowed.items()):
        raise SchemaConversionError(f"{where}: only an integer-or-string union has a structural form")
    schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    pattern = branches["string"].get("pattern")
    if pattern is not None:
        schema["pattern"] = pattern
    schema["x-kubernetes-int-or-string"] = True
    return schema


def _closed_keys(schema: Schema, names: Mapping[str, Any], where: str) -> Schema:
    """``dict[Literal[...], X]``: one property per key, each of schema ``X`` (refined by ``properties``)."""
    keys = names.get("enum")
    value = schema.pop("additionalProperties", None)
    if not isinstance(keys, list) or not isinstance(value, dict):
        raise SchemaConversionError(f"{where}: propertyNames without an enum of keys")
    refinements: Mapping[str, Any] = schema.get("properties", {})
    schema["properties"] = {str(key): merge(value, refinements.get(str(key), {})) for key in keys}
    return schema


def _ordered(schema: Schema, order: tuple[str, ...]) -> Schema:
    known = {key: schema[key] for key in order if key in schema}
    return known | {key: value for key, value in schema.items() if key not in known}

"""api.schema: a pydantic model's JSON schema as a Kubernetes structural schema."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from unsubscribe_sync.api.schema import SchemaConversionError, merge, structural_schema


class Ref(BaseModel):
    """A reference (described where it is used)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"x-kubernetes-validations": [{"reason": "R", "rule": "true"}]}
    )

    name: str = Field(min_length=1, description="Generic name.")


class Limits(BaseModel):
    ratio: float | None = Field(default=None, gt=0, le=1, description="A share.")
    count: StrictInt | None = Field(default=None, ge=0, description="A count.")


class Holder(BaseModel):
    """The holder."""

    ref: Ref = Field(
        description="A specific ref.", json_schema_extra={"properties": {"name": {"description": "Its name."}}}
    )
    optional: Ref | None = Field(default=None, description="Maybe a ref.")
    limits: Limits = Field(default_factory=Limits, description="Bounds.", json_schema_extra={"default": {}})
    quantity: StrictInt | Annotated[str, StringConstraints(pattern=r"^[0-9]+m$")] = Field(default=1, description="Q.")
    sizes: dict[Literal["a", "b"], int] = Field(
        default_factory=dict, description="Per key.", json_schema_extra={"properties": {"a": {"description": "A."}}}
    )
    tags: list[Annotated[str, Field(description="A tag.")]] = Field(default_factory=list, description="Tags.")
    text: str = Field(default="", description="Required by the CRD only.")

    model_config = ConfigDict(json_schema_extra={"required": ["ref", "text"]})


def test_a_model_becomes_a_structural_object() -> None:
    schema = structural_schema(Holder)
    assert schema["type"] == "object"
    assert schema["description"] == "The holder."
    assert "title" not in schema and "$defs" not in schema
    assert schema["required"] == ["ref", "text"]


def test_a_ref_is_inlined_and_refined_by_the_referring_field() -> None:
    ref = structural_schema(Holder)["properties"]["ref"]
    assert ref == {
        "type": "object",
        "description": "A specific ref.",
        "properties": {"name": {"type": "string", "description": "Its name.", "minLength": 1}},
        "required": ["name"],
        "x-kubernetes-validations": [{"rule": "true", "reason": "R"}],
    }


def test_optional_is_the_inner_schema_without_a_null_default() -> None:
    optional = structural_schema(Holder)["properties"]["optional"]
    assert optional["description"] == "Maybe a ref."
    assert optional["properties"]["name"]["description"] == "Generic name."
    assert "anyOf" not in optional and "default" not in optional


def test_bounds_become_openapi_v3_0() -> None:
    limits = structural_schema(Holder)["properties"]["limits"]
    assert limits["default"] == {}
    assert limits["properties"]["ratio"] == {
        "type": "number",
        "description": "A share.",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 1,
    }
    assert limits["properties"]["count"] == {"type": "integer", "description": "A count.", "minimum": 0}


def test_an_int_or_string_union_keeps_the_string_pattern() -> None:
    assert structural_schema(Holder)["properties"]["quantity"] == {
        "anyOf": [{"type": "integer"}, {"type": "string"}],
        "description": "Q.",
        "default": 1,
        "pattern": r"^[0-9]+m$",
        "x-kubernetes-int-or-string": True,
    }


def test_a_dict_with_literal_keys_becomes_one_property_per_key() -> None:
    sizes = structural_schema(Holder)["properties"]["sizes"]
    assert "propertyNames" not in sizes and "additionalProperties" not in sizes
    assert sizes["properties"] == {"a": {"type": "integer", "description": "A."}, "b": {"type": "integer"}}


def test_list_items_keep_their_own_description() -> None:
    tags = structural_schema(Holder)["properties"]["tags"]
    assert tags["items"] == {"type": "string", "description": "A tag."}
    assert "default" not in tags  # a default_factory is not a schema default unless given in json_schema_extra


def test_a_required_field_keeps_no_default() -> None:
    assert "default" not in structural_schema(Holder)["properties"]["text"]


def test_keys_come_out_in_one_order() -> None:
    assert list(structural_schema(Holder)["properties"]["ref"]) == [
        "type",
        "description",
        "properties",
        "required",
        "x-kubernetes-validations",
    ]


def test_a_union_without_a_structural_form_is_refused() -> None:
    class Either(BaseModel):
        value: int | list[int]

    with pytest.raises(SchemaConversionError, match=r"Either\.value"):
        structural_schema(Either)


def test_a_constant_is_refused() -> None:
    class Fixed(BaseModel):
        kind: Literal["only"]

    with pytest.raises(SchemaConversionError, match="'const'"):
        structural_schema(Fixed)


def test_merge_lays_nested_dicts_over_each_other_and_replaces_the_rest() -> None:
    base = {"a": {"b": 1, "c": [1]}, "d": 1}
    assert merge(base, {"a": {"c": [2]}, "d": {"e": 1}}) == {"a": {"b": 1, "c": [2]}, "d": {"e": 1}}
    assert base == {"a": {"b": 1, "c": [1]}, "d": 1}

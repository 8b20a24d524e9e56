"""Property-based tests: the pydantic spec model (api/spec.py) and the committed CRD schema (crds/) agree.

Specs are drawn field by field from values on both sides of every constraint. For each one:
- whatever the pydantic model accepts validates against the CRD's openAPIV3Schema after defaulting;
- whatever validates against the schema after defaulting, the pydantic model accepts;
- for accepted specs both sides fill the same defaults.
The defaulting here is written from the Kubernetes rules (structural defaults, applied top-down to
objects that are present), independently of the project's own defaulting code.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from unsubscribe_sync.api.spec import UnsubscribeSyncSpec

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "optout.dev_unsubscribesyncs.yaml"
_CRD = yaml.safe_load(CRD_FILE.read_text())
SPEC_SCHEMA: dict[str, Any] = _CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def _go_pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    """`pattern` as the API server reads it (Go RE2): `$` is the end of the text, not "before a final newline"."""
    if isinstance(instance, str) and not re.search(re.sub(r"(?<!\\)\$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Any:
    """`x-kubernetes-list-type: set`: the API server refuses a list that repeats an item."""
    if list_type == "set" and isinstance(instance, list):
        seen: list[Any] = []
        for item in instance:
            if item in seen:
                yield jsonschema.ValidationError(f"duplicate value {item!r} in a set")
            seen.append(item)


VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft4Validator, {"pattern": _go_pattern, "x-kubernetes-list-type": _list_type}
)(SPEC_SCHEMA)

OMIT = object()


def structural_default(value: Any, schema: dict[str, Any]) -> Any:
    """Kubernetes defaulting: null values of non-nullable properties are pruned, then a missing property
    with a default gets it; then the same inside every object that is present."""
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key, prop in props.items():
            if key in value and value[key] is None and not prop.get("nullable"):
                del value[key]
            if "default" in prop and key not in value:
                value[key] = copy.deepcopy(prop["default"])
            if key in value:
                value[key] = structural_default(value[key], prop)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in props:
                    value[key] = structural_default(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [structural_default(v, schema["items"]) for v in value]
    return value


def choose(*values: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(values)


def obj(**fields: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping whose keys may each be left out (OMIT)."""
    return st.fixed_dictionaries({k: v for k, v in fields.items()}).map(
        lambda d: {k: v for k, v in d.items() if v is not OMIT}
    )


def field(valid: tuple[Any, ...], invalid: tuple[Any, ...], only_valid: bool) -> st.SearchStrategy[Any]:
    """Values of one field: OMIT or valid ones, and (unless only_valid) values on the wrong side of a constraint."""
    return st.sampled_from((OMIT, *valid) if only_valid else (OMIT, *valid, *invalid))


def spec_strategy(only_valid: bool) -> st.SearchStrategy[dict[str, Any]]:
    def f(valid: tuple[Any, ...], invalid: tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
        return field(valid, invalid, only_valid)

    def section(inner: st.SearchStrategy[dict[str, Any]], invalid: tuple[Any, ...] = ()) -> st.SearchStrategy[Any]:
        return st.one_of(f((None,), invalid), inner)

    names = ("acme-sf", "a", "x" * 253), ("", "x" * 254, 7, None)
    keys = ("token", "url", "a.b_c-d"), ("", "k" * 254, 3)
    required_ref = obj(name=st.sampled_from(names[0]) if only_valid else f(*names))
    return obj(
        suspend=f((True, False, None), ("yes",)),
        salesforce=st.one_of(
            st.just(OMIT) if not only_valid else st.nothing(),
            obj(
                loginUrl=f(
                    ("https://login.salesforce.com", "https://acme.my.salesforce.com/", "https://" + "a" * 2040),
                    (
                        "https://x.example/a b",
                        "http://login.salesforce.com",
                        "https://",
                        "",
                        "https://a/\n",
                        "https://" + "a" * 2050,
                    ),
                ),
                apiVersion=f(("62.0", "10.0", "100.0"), ("9.0", "62", "62.1", "1000.0", 62.0, "62.0\n")),
                credentialsSecretRef=required_ref if only_valid else st.one_of(f((), (None, "acme")), required_ref),
                objects=f(
                    (["Contact", "Lead"], ["Lead"], ["Contact"], ["Lead", "Contact"], None),
                    ([], ["Account"], ["Contact", "Contact"], ["Contact", "Lead", "Lead"], "Contact"),
                ),
            ).filter(lambda d: not only_valid or "credentialsSecretRef" in d),
        ),
        optOutField=section(
            obj(
                target=f(("EmailOptOut", "MarketoSalesOptOut", None), ("emailoptout", "")),
                marketoSalesOptOutField=f(
                    ("", "ToutApp__Opt_Out__c", "a" * 77 + "__c", None),
                    ("Opt_Out", "1abc__c", "a" * 78 + "__c", "X__c\n"),
                ),
            )
        ),
        nightlySync=section(
            obj(
                enabled=f((True, False, None), ("true",)),
                schedule=f(
                    ("0 20 * * *", "@daily", "*/5 * * * *", None),
                    ("0 20 * *", "", "TZ=UTC 0 20 * * *", "0 20 * * * *", "x" * 101, "@every 5m", "0 20 * * *\n"),
                ),
                timeZone=f(
                    ("America/Los_Angeles", "UTC", "Etc/GMT+8", None),
                    ("", "a b", "America/", "x" * 65, "Europe/Berlin\n"),
                ),
            )
        ),
        pushWorker=obj(
            replicas=f((1, 2, 20, None), (0, 21, -1, "1", 1.5, True)),
            webhookSecretRef=obj(name=st.sampled_from(names[0]) if only_valid else f(*names), key=f(*keys)),
            resources=f(
                ({}, {"limits": {"cpu": "100m", "memory": "128Mi"}}, {"requests": {"cpu": 1}}, None), ("small", [])
            ),
        ).filter(lambda d: not only_valid or "webhookSecretRef" in d),
        ledger=section(
            obj(
                databaseSecretRef=st.one_of(
                    f((None,)), obj(name=st.sampled_from(names[0]) if only_valid else f(*names), key=f(*keys))
                ),
                storage=section(
                    obj(
                        size=f(("1Gi", "10G", "1.5Gi", "500Mi", None), ("big", "", "1 Gi", 5, "1Gi\n")),
                        storageClassName=f(("fast", None), ("", 3)),
                    )
                ),
            )
        ),
        monitoring=section(
            obj(
                serviceMonitor=section(
                    obj(
                        enabled=f((True, False, None), ("no",)),
                        interval=f(("30s", "1m", "250ms", None), ("30", "", "1d", "30s\n")),
                        labels=f(({}, {"team": "sales"}, None), ({"n": 1}, ["a"])),
                    )
                ),
            )
        ),
    ).filter(lambda d: not only_valid or ("salesforce" in d and "pushWorker" in d))


specs = spec_strategy(only_valid=False)
valid_specs = spec_strategy(only_valid=True)


def defaulted(spec: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = structural_default(copy.deepcopy(spec), SPEC_SCHEMA)
    return result


def pydantic_accepts(spec: dict[str, Any]) -> tuple[bool, str]:
    try:
        UnsubscribeSyncSpec.model_validate(copy.deepcopy(spec))
    except ValidationError as exc:
        return False, str(exc)
    return True, ""


def crd_accepts(spec: dict[str, Any]) -> tuple[bool, str]:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in VALIDATOR.iter_errors(defaulted(spec))]
    return not errors, "; ".join(errors)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs)
def test_the_model_and_the_crd_schema_accept_the_same_specs(spec: dict[str, Any]) -> None:
    crd_ok, crd_why = crd_accepts(spec)
    model_ok, model_why = pydantic_accepts(spec)
    if model_ok:  # what the model takes as written, the API server takes too
        assert crd_ok, f"the model accepts, the CRD schema refuses: {crd_why}"
    # The controller reads specs the API server has defaulted: the model must take every one the schema allows.
    model_ok, model_why = pydantic_accepts(defaulted(spec))
    assert model_ok == crd_ok, f"model: {model_ok} {model_why}\nCRD: {crd_ok} {crd_why}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(valid_specs)
def test_both_fill_the_same_defaults(spec: dict[str, Any]) -> None:
    assert crd_accepts(spec) == (True, ""), "the valid-spec strategy makes a spec the CRD refuses"
    model = UnsubscribeSyncSpec.model_validate(defaulted(spec)).model_dump(mode="json", exclude_none=True)
    assert defaulted(spec) == model
    if pydantic_accepts(spec)[0]:  # the model's own defaults, when it takes the spec as written
        as_written = UnsubscribeSyncSpec.model_validate(copy.deepcopy(spec))
        assert as_written.model_dump(mode="json", exclude_none=True) == model


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(valid_specs)
def test_a_parsed_spec_dumps_to_something_the_crd_accepts(spec: dict[str, Any]) -> None:
    dumped = UnsubscribeSyncSpec.model_validate(defaulted(spec)).model_dump(mode="json", exclude_none=True)
    assert crd_accepts(dumped) == (True, "")


BASE = {"salesforce": {"credentialsSecretRef": {"name": "acme-sf"}}, "pushWorker": {"webhookSecretRef": {"name": "w"}}}


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        (None, "suspend", "yes"),
        ("nightlySync", "enabled", "true"),
        ("pushWorker", "replicas", "1"),
        ("pushWorker", "replicas", 2.0),
        ("pushWorker", "resources", {"limits": {"cpu": "lots"}}),
    ],
)
def test_the_model_refuses_what_the_crd_refuses(section: str | None, key: str, value: Any) -> None:
    """Examples the property test found: the API server refuses them, so must the model."""
    spec = copy.deepcopy(BASE)
    (spec if section is None else spec.setdefault(section, {}))[key] = value
    assert crd_accepts(spec)[0] is False
    assert pydantic_accepts(spec)[0] is False, f"the model coerces or accepts {key}={value!r}"

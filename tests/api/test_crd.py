"""The UnsubscribeSync CRD: committed file, Kubernetes validity, agreement with the pydantic models, CEL rules."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.fixtures.api import MINIMAL, problems_for
from unsubscribe_sync.api.crd import crd_manifest, crd_yaml, openapi_schema
from unsubscribe_sync.api.schema import structural_schema
from unsubscribe_sync.api.spec import CONDITION_TYPES, UnsubscribeSyncSpec, UnsubscribeSyncStatus
from unsubscribe_sync.api.validation import apply_defaults

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "optout.dev_unsubscribesyncs.yaml"
K8S_VERSION = "1.33.0"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, prop in schema.get("properties", {}).items():
        yield from _nodes(prop, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _nodes(schema["additionalProperties"], f"{path}{{}}")


def test_committed_crd_is_generated_from_the_source() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), "regenerate: unsubscribe-sync render --crd > " + str(
        CRD_FILE.relative_to(REPO)
    )
    assert yaml.safe_load(CRD_FILE.read_text()) == crd_manifest()


def test_crd_is_a_valid_kubernetes_object() -> None:
    kubernetes_validate.validate(yaml.safe_load(CRD_FILE.read_text()), K8S_VERSION, strict=True)


def test_crd_names_and_version() -> None:
    crd = crd_manifest()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "unsubscribesyncs.optout.dev"
    assert spec["group"] == "optout.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "UnsubscribeSync",
        "listKind": "UnsubscribeSyncList",
        "plural": "unsubscribesyncs",
        "singular": "unsubscribesync",
        "shortNames": ["usync"],
        "categories": ["optout"],
    }
    [version] = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: (c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Ready": ("string", '.status.conditions[?(@.type=="Ready")].status'),
        "Target": ("string", ".spec.optOutField.target"),
        "Nightly": ("boolean", ".spec.nightlySync.enabled"),
        "Last Sync": ("date", ".status.lastNightlySync.completionTime"),
        "Age": ("date", ".metadata.creationTimestamp"),
    }


def test_every_field_has_a_description_and_a_type() -> None:
    for path, node in _nodes(openapi_schema()):
        if path in ("", ".metadata"):
            continue
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert node.get("type") in {"object", "array", "string", "integer", "number", "boolean"}, path
        if not path.endswith(("[]", "{}")) or node.get("type") == "object":
            assert node.get("description"), f"{path} has no description"


def test_schema_is_structural() -> None:
    """Rules the API server enforces on CRD schemas that kubernetes-validate does not check."""
    for path, node in _nodes(openapi_schema()):
        assert node.get("additionalProperties") is not False, path
        assert not node.get("uniqueItems"), path  # forbidden: use x-kubernetes-list-type
        assert not ("properties" in node and "additionalProperties" in node), path
        if "default" in node:  # defaults must validate against their own schema
            jsonschema.Draft4Validator(node).validate(node["default"])


def test_defaults_validate_after_nested_defaulting() -> None:
    schema = openapi_schema()
    defaulted = apply_defaults(MINIMAL, schema)
    jsonschema.Draft4Validator(schema).validate(defaulted)


# ---- generated from the pydantic models ----------------------------------------------------------------


def test_spec_and_status_schemas_are_generated_from_the_models() -> None:
    properties = openapi_schema()["properties"]
    assert properties["spec"] == structural_schema(UnsubscribeSyncSpec)
    assert properties["status"] == structural_schema(UnsubscribeSyncStatus)


def test_condition_message_is_required_by_the_crd_and_defaulted_by_the_model() -> None:
    """metav1.Condition requires message; the model fills "" so the operator always writes one."""
    condition = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": "Ok"}
    items = openapi_schema()["properties"]["status"]["properties"]["conditions"]["items"]
    assert "default" not in items["properties"]["message"]
    with pytest.raises(jsonschema.ValidationError, match="'message' is a required property"):
        jsonschema.Draft4Validator(items).validate(condition)
    status = UnsubscribeSyncStatus.model_validate({"conditions": [condition]})
    jsonschema.Draft4Validator(items).validate(status.model_dump(mode="json", exclude_none=True)["conditions"][0])


@pytest.mark.parametrize(
    "spec_extra",
    [
        {},
        {  # every optional object present but empty: nested defaults must still agree
            "optOutField": {},
            "nightlySync": {},
            "ledger": {"storage": {}, "databaseSecretRef": {"name": "db"}},
            "monitoring": {"serviceMonitor": {}},
        },
        {"ledger": None, "monitoring": None, "nightlySync": {"schedule": None}},  # nulls are defaulted too
    ],
)
def test_crd_defaults_equal_model_defaults(spec_extra: dict[str, Any]) -> None:
    cr = copy.deepcopy(MINIMAL)
    cr["spec"].update(spec_extra)
    defaulted = apply_defaults(cr, openapi_schema())["spec"]
    without_nulls = {k: v for k, v in cr["spec"].items() if v is not None}
    for key, value in without_nulls.items():
        if isinstance(value, dict):
            without_nulls[key] = {k: v for k, v in value.items() if v is not None}
    from_model = UnsubscribeSyncSpec.model_validate(without_nulls).model_dump(mode="json", exclude_none=True)
    assert defaulted == from_model


def test_defaulting_fills_the_contract_defaults() -> None:
    spec = apply_defaults(MINIMAL, openapi_schema())["spec"]
    assert spec["optOutField"]["target"] == "EmailOptOut"
    assert spec["salesforce"]["objects"] == ["Contact", "Lead"]
    assert spec["nightlySync"] == {"enabled": True, "schedule": "0 20 * * *", "timeZone": "America/Los_Angeles"}
    assert spec["pushWorker"]["webhookSecretRef"] == {"name": "acme-webhook", "key": "token"}
    assert spec["ledger"]["storage"]["size"] == "1Gi"
    assert "databaseSecretRef" not in spec["ledger"]
    assert MINIMAL["spec"].get("ledger") is None  # the input is left alone


def test_list_types() -> None:
    spec = openapi_schema()["properties"]["spec"]
    objects = spec["properties"]["salesforce"]["properties"]["objects"]
    assert objects["x-kubernetes-list-type"] == "set"
    assert objects["items"]["enum"] == ["Contact", "Lead"]
    conditions = openapi_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_a_full_status_validates_against_the_status_schema() -> None:
    status = UnsubscribeSyncStatus.model_validate(
        {
            "observedGeneration": 3,
            "pushField": "HasOptedOutOfEmail",
            "conditions": [
                {
                    "type": t,
                    "status": "True",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                    "reason": "Ok",
                    "message": "",
                }
                for t in CONDITION_TYPES
            ],
            "lastNightlySync": {
                "startTime": "2026-01-01T04:00:00Z",
                "completionTime": "2026-01-01T04:01:00Z",
                "outcome": "Succeeded",
                "jobName": "acme-nightly-sync-29000000",
                "counts": {"toSalesforce": 5, "fromSalesforce": 2, "skippedNoSalesforceId": 1, "failed": 0},
            },
        }
    )
    schema = openapi_schema()["properties"]["status"]
    jsonschema.Draft4Validator(schema).validate(status.model_dump(mode="json", exclude_none=True))
    bad = status.model_dump(mode="json", exclude_none=True)
    bad["conditions"][0]["status"] = "Maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(bad)


# ---- CEL rules -----------------------------------------------------------------------------------------


def _rules() -> list[str]:
    return [rule["rule"] for _, node in _nodes(openapi_schema()) for rule in node.get("x-kubernetes-validations", [])]


def test_cel_rules_use_plain_cel_only() -> None:
    extension_functions = ("lowerAscii", "upperAscii", "split", "quantity", "isURL", "url(", "indexOf", "replace(")
    rules = _rules()
    assert len(rules) >= 6
    env = celpy.Environment()
    for rule in rules:
        env.compile(rule)
        assert not any(fn in rule for fn in extension_functions), rule


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"pushWorker.replicas": 1},
        {"pushWorker.replicas": 3, "ledger.databaseSecretRef": {"name": "db", "key": "url"}},
        {"optOutField.target": "MarketoSalesOptOut", "optOutField.marketoSalesOptOutField": "ToutApp__Opt_Out__c"},
        {"optOutField.target": "MarketoSalesOptOut"},
        {"salesforce.loginUrl": "https://acme.my.salesforce.com"},
        {"pushWorker.webhookSecretRef": {"name": "hooks.acme-1", "key": "webhook_token.v2"}},
        {"nightlySync.maxChangeRatio": 0.05, "nightlySync.maxChanges": 0},
        {"nightlySync.maxChangeRatio": 1},  # an integer where a number is expected
        {"publicEndpoint": {"baseUrl": "https://unsub.example.com"}, "oneClick": {"keySecretRef": {"name": "oc"}}},
    ],
)
def test_cel_accepts_good_specs(changes: dict[str, Any]) -> None:
    assert problems_for(changes) == []


@pytest.mark.parametrize(
    ("changes", "metadata", "field", "words"),
    [
        ({"pushWorker.replicas": 2}, None, "spec.pushWorker.replicas", "SQLite"),
        (
            {"optOutField.target": "EmailOptOut", "optOutField.marketoSalesOptOutField": "X__c"},
            None,
            "spec.optOutField.marketoSalesOptOutField",
            "MarketoSalesOptOut",
        ),
        ({"salesforce.loginUrl": "http://login.salesforce.com"}, None, "spec.salesforce.loginUrl", "https"),
        ({"salesforce.credentialsSecretRef": {"name": "Not_A_Name"}}, None, "credentialsSecretRef.name", "Secret"),
        ({"pushWorker.webhookSecretRef": {"name": "", "key": "token"}}, None, "webhookSecretRef.name", "Secret"),
        ({"ledger.databaseSecretRef": {"name": "db", "key": "a/b"}}, None, "databaseSecretRef.key", "Secret key"),
        ({"oneClick": {"keySecretRef": {"name": "oc"}}}, None, "spec.oneClick", "publicEndpoint"),
        (
            {
                "publicEndpoint": {"baseUrl": "https://u.example.com"},
                "oneClick": {"keySecretRef": {"name": "Bad_Name"}},
            },
            None,
            "keySecretRef.name",
            "Secret",
        ),
        ({}, {"name": "x" * 40}, "metadata.name", "39"),
        ({}, {"name": "1acme"}, "metadata.name", "DNS-1035"),
    ],
)
def test_cel_rejects_bad_specs(
    changes: dict[str, Any], metadata: dict[str, Any] | None, field: str, words: str
) -> None:
    problems = problems_for(changes, metadata)
    assert len(problems) == 1, problems
    where, message = problems[0].split(": ", 1)
    assert where.endswith(field)
    assert words in message


# ---- the README's reference stays complete ---------------------------------------------------------------


def _spec_leaves(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    properties = schema.get("properties")
    if not properties:
        yield path, schema
        return
    for key, prop in properties.items():
        yield from _spec_leaves(prop, f"{path}.{key}")


def _as_written(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return "{}" if not value else yaml.safe_dump(value, default_flow_style=True).strip()
    if isinstance(value, str) and (value == "" or yaml.safe_load(value) != value):
        return f'"{value}"'
    return str(value)


def test_readme_documents_every_spec_field_with_its_default() -> None:
    readme = (REPO / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines() if line.startswith("| `spec.")}
    leaves = dict(_spec_leaves(openapi_schema()["properties"]["spec"], "spec"))
    assert set(rows) == set(leaves)
    for path, node in leaves.items():
        if "default" in node:
            written = _as_written(node["default"])
            cell = rows[path].split("|")[2]
            assert f"`{written}`" in cell or f'`"{written}"`' in cell, path
    for heading in ("## Install", "## Operations", "## Push worker API", "## Nightly sync", "## Development"):
        assert f"\n{heading}\n" in readme

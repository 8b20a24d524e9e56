"""api.validation: API-server-like defaulting and validation of an UnsubscribeSync, without a cluster."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.fixtures.api import MINIMAL as CR
from unsubscribe_sync.api.spec import OptOutTarget
from unsubscribe_sync.api.validation import (
    InvalidResourceError,
    apply_defaults,
    cel_problems,
    list_type_problems,
    unknown_field_problems,
    validate_unsubscribe_sync,
)


def problems_of(doc: Any) -> list[str]:
    with pytest.raises(InvalidResourceError) as info:
        validate_unsubscribe_sync(doc)
    return info.value.problems


def changed(**spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(CR)
    doc["spec"].update(spec)
    return doc


def test_good_cr_gives_name_namespace_and_parsed_spec() -> None:
    resource = validate_unsubscribe_sync(changed(optOutField={"target": "MarketoSalesOptOut"}))
    assert (resource.name, resource.namespace) == ("acme", "sales")
    assert resource.spec.optOutField.target is OptOutTarget.MARKETO_SALES_OPT_OUT
    assert resource.spec.uses_sqlite
    assert resource.manifest["spec"]["nightlySync"]["schedule"] == "0 20 * * *"


def test_namespace_falls_back_to_the_default() -> None:
    doc = copy.deepcopy(CR)
    del doc["metadata"]["namespace"]
    assert validate_unsubscribe_sync(doc).namespace == "default"
    assert validate_unsubscribe_sync(doc, default_namespace="ops").namespace == "ops"


def test_status_is_ignored_like_the_status_subresource_does() -> None:
    doc = changed()
    doc["status"] = {"pushField": 42, "bogus": True}
    assert "status" not in validate_unsubscribe_sync(doc).manifest


def test_defaulting_does_not_override_given_values() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "object", "default": {}, "properties": {"b": {"type": "integer", "default": 1}}},
            "c": {"type": "string", "default": "x"},
            "list": {
                "type": "array",
                "items": {"type": "object", "properties": {"d": {"type": "boolean", "default": True}}},
            },
        },
    }
    assert apply_defaults({}, schema) == {"a": {"b": 1}, "c": "x"}
    assert apply_defaults({"a": {"b": 5}, "c": "y"}, schema) == {"a": {"b": 5}, "c": "y"}
    assert apply_defaults({"a": None, "list": [{}, {"d": False}]}, schema) == {
        "a": {"b": 1},
        "c": "x",
        "list": [{"d": True}, {"d": False}],
    }


def test_unknown_fields_at_any_depth() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "properties": {
                    "known": {"type": "object", "properties": {"x": {"type": "string"}}},
                    "free": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
    }
    doc = {"metadata": {"labels": {}}, "spec": {"known": {"x": "1", "y": 2}, "free": {"any": "ok"}, "extra": 1}}
    assert unknown_field_problems(doc, schema) == ["spec.known.y: unknown field", "spec.extra: unknown field"]


def test_list_types_reject_duplicates() -> None:
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "m": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
                "items": {"type": "object"},
            },
        },
    }
    assert list_type_problems({"s": ["a", "b"], "m": [{"type": "A"}, {"type": "B"}]}, schema) == []
    assert list_type_problems({"s": ["a", "a"], "m": [{"type": "A", "v": 1}, {"type": "A", "v": 2}]}, schema) == [
        's[1]: duplicate entry "a"',
        'm[1]: duplicate entry ["A"]',
    ]


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            changed(optOutField={"target": "Nope"}),
            "spec.optOutField.target: must be one of EmailOptOut, MarketoSalesOptOut",
        ),
        (changed(suspend="yes"), 'spec.suspend: must be true or false, not "yes"'),
        (
            changed(pushWorker={"webhookSecretRef": {"name": "w"}, "replicas": 0}),
            "spec.pushWorker.replicas: must be at least 1",
        ),
        (
            changed(pushWorker={"webhookSecretRef": {"name": "w"}, "replicas": 21}),
            "spec.pushWorker.replicas: must be at most 20",
        ),
        (
            changed(pushWorker={"webhookSecretRef": {"name": ""}}),
            "spec.pushWorker.webhookSecretRef.name: must not be empty",
        ),
        (changed(pushWorker={}), "spec.pushWorker.webhookSecretRef: required field is missing"),
        (
            changed(salesforce={"credentialsSecretRef": {"name": "s"}, "objects": []}),
            "spec.salesforce.objects: must have at least 1 item",
        ),
        (
            changed(salesforce={"credentialsSecretRef": {"name": "s"}, "objects": ["Lead", "Lead"]}),
            'spec.salesforce.objects[1]: duplicate entry "Lead"',
        ),
        (
            changed(salesforce={"credentialsSecretRef": {"name": "s"}, "apiVersion": 62}),
            "spec.salesforce.apiVersion: must be a string",
        ),
        (changed(ledger={"storage": {"size": "lots"}}), "spec.ledger.storage.size: invalid value"),
        (
            changed(pushWorker={"webhookSecretRef": {"name": "w"}, "resources": {"limits": {"memory": "1 GB"}}}),
            "spec.pushWorker.resources.limits.memory: invalid value",
        ),
        (
            changed(pushWorker={"webhookSecretRef": {"name": "w"}, "resources": {"claims": []}}),
            "spec.pushWorker.resources.claims: unknown field",
        ),
        (changed(monitoring={"serviceMonitor": {"interval": "soon"}}), "spec.monitoring.serviceMonitor.interval"),
        (changed(nightlySync={"schedule": "TZ=UTC 0 20 * * *"}), "spec.nightlySync.schedule: invalid value"),
        (changed(nightlySync={"timeZone": "Atlantis/Capital"}), "spec.nightlySync.timeZone: unknown time zone"),
        ({**CR, "apiVersion": "optout.dev/v1"}, "apiVersion: must be optout.dev/v1alpha1"),
        ({**CR, "metadata": {"namespace": "x"}}, "metadata.name: required field is missing"),
        ({k: v for k, v in CR.items() if k != "spec"}, "spec: required field is missing"),
        ([CR], "(document): must be a mapping"),
    ],
)
def test_problems_name_the_field(doc: Any, expected: str) -> None:
    problems = problems_of(doc)
    assert any(p.startswith(expected) for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    doc = changed(optOutField={"target": "Nope"}, suspend=3, bogus=True)
    problems = problems_of(doc)
    assert len(problems) == 3
    assert str(InvalidResourceError(problems)).count(";") == 2


def test_schedule_macros_and_zones_are_accepted() -> None:
    for schedule, zone in [("@daily", "UTC"), ("*/30 * * * *", "Europe/Berlin"), ("0 3 * * 1-5", "Etc/GMT+8")]:
        resource = validate_unsubscribe_sync(changed(nightlySync={"schedule": schedule, "timeZone": zone}))
        assert (resource.spec.nightlySync.schedule, resource.spec.nightlySync.timeZone) == (schedule, zone)


def test_the_input_is_not_changed() -> None:
    doc = changed(ledger=None)
    before = copy.deepcopy(doc)
    validate_unsubscribe_sync(doc)
    assert doc == before


def test_cel_rules_report_their_field_and_evaluation_errors() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "x-kubernetes-validations": [
                    {"rule": "self.a < 10", "message": "too big", "fieldPath": ".a"},
                    {"rule": "self.missing == 1", "message": "never shown"},
                ],
            }
        },
    }
    problems = cel_problems({"spec": {"a": 12}}, schema)
    assert problems[0] == "spec.a: too big"
    assert problems[1].startswith("spec: rule 'self.missing == 1' could not be evaluated")
    assert cel_problems({"spec": {"a": 1, "missing": 1}}, schema) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"salesforce": {"credentialsSecretRef": {"name": "s"}, "apiVersion": "62.0\n"}}, "spec.salesforce.apiVersion"),
        ({"nightlySync": {"schedule": "0 20 * * *\n"}}, "spec.nightlySync.schedule"),
        ({"ledger": {"storage": {"size": "1Gi\n"}}}, "spec.ledger.storage.size"),
    ],
)
def test_patterns_end_at_the_end_of_the_text(spec: dict[str, Any], field: str) -> None:
    """The API server's `$` (RE2) does not match before a trailing newline, unlike Python's."""
    problems = problems_of(changed(**spec))
    assert [p.split(":")[0] for p in problems] == [field]


@pytest.mark.parametrize(
    ("resources", "ok"),
    [
        ({"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": "250m"}}, True),
        ({"limits": {"cpu": "1.5"}}, True),
        ({"limits": {"cpu": 1.5}}, False),
        ({"limits": {"cpu": True}}, False),
        ({"limits": {"cpu": "lots"}}, False),
        ({"limits": "1Gi"}, False),
    ],
)
def test_resources_are_quantities(resources: dict[str, Any], ok: bool) -> None:
    doc = changed(pushWorker={"webhookSecretRef": {"name": "w"}, "resources": resources})
    if ok:
        assert validate_unsubscribe_sync(doc).spec.pushWorker.resources == resources
    else:
        assert problems_of(doc)[0].startswith("spec.pushWorker.resources.limits")

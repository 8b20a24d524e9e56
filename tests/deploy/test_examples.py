"""deploy/examples: every example is a valid UnsubscribeSync and renders into valid Kubernetes objects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from unsubscribe_sync.api.crd import openapi_schema
from unsubscribe_sync.api.validation import apply_defaults, validate_unsubscribe_sync
from unsubscribe_sync.resources import desired_children

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))
K8S_VERSION = "1.33.0"

# ServiceMonitor is not a built-in kind, so kubernetes-validate has no schema for it. This is the part of
# the Prometheus Operator's monitoring.coreos.com/v1 ServiceMonitor schema the builders use.
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"enum": ["monitoring.coreos.com/v1"]},
        "kind": {"enum": ["ServiceMonitor"]},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
                "namespace": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scheme": {"enum": ["http", "https"]},
                        },
                    },
                },
            },
        },
    },
}


def test_the_documented_examples_exist() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"email-opt-out.yaml", "marketo-sales-opt-out.yaml", "sqlite.yaml", "postgresql.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_commented_and_valid_against_the_crd(path: Path) -> None:
    text = path.read_text()
    assert text.lstrip().startswith("#"), "examples explain themselves in comments"
    [doc] = [d for d in yaml.safe_load_all(text) if d is not None]
    schema = openapi_schema()
    jsonschema.Draft4Validator(schema).validate(doc)  # as written
    jsonschema.Draft4Validator(schema).validate(apply_defaults(doc, schema))  # as stored
    resource = validate_unsubscribe_sync(doc)  # CEL rules and the pydantic model too
    assert resource.name == doc["metadata"]["name"]


def _render(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "unsubscribe_sync", "render", "-f", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [d for d in yaml.safe_load_all(result.stdout) if d is not None]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_rendered_example_is_valid_kubernetes(path: Path) -> None:
    docs = _render(path)
    assert docs
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            jsonschema.Draft4Validator(SERVICE_MONITOR_SCHEMA).validate(doc)
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_examples_render_what_their_comments_promise() -> None:
    by_name = {p.name: _kinds_and_docs(p) for p in EXAMPLES}
    kinds, docs = by_name["postgresql.yaml"]
    assert {"PodDisruptionBudget", "ServiceMonitor"} <= kinds and "PersistentVolumeClaim" not in kinds
    kinds, docs = by_name["sqlite.yaml"]
    assert "PersistentVolumeClaim" in kinds and docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"
    kinds, docs = by_name["marketo-sales-opt-out.yaml"]
    assert yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["optOut"]["target"] == "MarketoSalesOptOut"
    kinds, docs = by_name["email-opt-out.yaml"]
    assert yaml.safe_load(docs["ConfigMap"]["data"]["config.yaml"])["optOut"]["target"] == "EmailOptOut"
    if "nightly-disabled.yaml" in by_name:
        kinds, docs = by_name["nightly-disabled.yaml"]
        assert docs["CronJob"]["spec"]["suspend"] is True


def _kinds_and_docs(path: Path) -> tuple[set[str], dict[str, dict[str, Any]]]:
    resource = validate_unsubscribe_sync(yaml.safe_load(path.read_text()))
    children = desired_children(resource.name, resource.namespace, resource.spec)
    return {c["kind"] for c in children}, {c["kind"]: c for c in children}

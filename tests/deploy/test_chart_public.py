"""The chart and the public surface. The chart installs the operator only; the operator renders each
UnsubscribeSync's Service port `public`, Ingress, NetworkPolicy and sender mounts from the CR. So what the chart
must carry is the CRD with spec.publicEndpoint/oneClick/senders, and RBAC that lets the operator manage every
kind it renders for a CR with the whole public surface (deploy/examples/public-endpoint.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.deploy import by_kind, helm_template, tool_path
from unsubscribe_sync.api.validation import validate_unsubscribe_sync
from unsubscribe_sync.controller.kinds import kind_of
from unsubscribe_sync.resources import desired_children

pytestmark = pytest.mark.skipif(tool_path("helm") is None, reason="helm not available")

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "public-endpoint.yaml"
MANAGE = {"get", "list", "watch", "create", "patch"}


def _public_children() -> list[dict[str, Any]]:
    resource = validate_unsubscribe_sync(yaml.safe_load(EXAMPLE.read_text()))
    return desired_children(resource.name, resource.namespace, resource.spec)


def _granted(rules: list[dict[str, Any]], group: str, plural: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rules:
        if group in rule["apiGroups"] and plural in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_the_example_renders_the_whole_public_surface() -> None:
    children = _public_children()
    kinds = {c["kind"] for c in children}
    assert {"Ingress", "NetworkPolicy", "Service"} <= kinds
    [service] = [c for c in children if c["kind"] == "Service"]
    assert "public" in [p["name"] for p in service["spec"]["ports"]]


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["sales"]}], ids=["cluster", "namespaced"])
def test_chart_rbac_lets_the_operator_manage_every_public_child(values: dict[str, Any]) -> None:
    docs = helm_template(values)
    roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
    rules = [rule for role in roles for rule in role["rules"]]
    for child in _public_children():
        kind = kind_of(child)
        missing = MANAGE - _granted(rules, kind.group, kind.plural)
        assert not missing, f"{kind.kind}: the chart's RBAC lacks {sorted(missing)}"


def test_chart_crd_carries_the_public_fields() -> None:
    (crd,) = by_kind(helm_template(), "CustomResourceDefinition")
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert {"publicEndpoint", "oneClick", "senders"} <= set(spec)
    senders = spec["senders"]["properties"]
    assert set(senders) == {"sendgrid", "mailgun", "postmark", "mandrill", "ses"}
    assert senders["sendgrid"]["properties"]["publicKeySecretRef"]["required"] == ["name", "key"]

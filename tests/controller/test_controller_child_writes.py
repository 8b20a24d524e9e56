"""Pure child-write planning: hash annotation, containment with server defaults, quantities."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.controller.child_writes import (
    HASH_ANNOTATION,
    contains,
    desired_hash,
    newer,
    owner_name,
    plan_write,
    with_hash,
)
from unsubscribe_sync.resources import desired_children

SPEC = UnsubscribeSyncSpec.model_validate(
    {
        "salesforce": {"credentialsSecretRef": {"name": "sf"}},
        "pushWorker": {"webhookSecretRef": {"name": "hook"}, "resources": {"requests": {"cpu": "0.5"}}},
    }
)


def deployment() -> dict[str, Any]:
    children = desired_children("acme", "sales", SPEC, image="img:1")
    return with_hash(next(c for c in children if c["kind"] == "Deployment"))


def as_server_returns(child: dict[str, Any]) -> dict[str, Any]:
    """What an API server gives back: defaults filled in, quantities normalised, server metadata added."""
    obj = copy.deepcopy(child)
    obj["metadata"].update(uid="u1", resourceVersion="12", generation=1, creationTimestamp="2026-01-01T00:00:00Z")
    spec = obj["spec"]
    spec["progressDeadlineSeconds"] = 600
    pod = spec["template"]["spec"]
    pod["dnsPolicy"] = "ClusterFirst"
    container = pod["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["resources"]["requests"]["cpu"] = "500m"
    obj["status"] = {"availableReplicas": 1}
    return obj


def test_missing_child_is_created_with_its_hash() -> None:
    desired = deployment()
    write = plan_write(desired, None)
    assert write is not None and (write.action, write.reason) == ("create", "missing")
    assert write.body["metadata"]["annotations"][HASH_ANNOTATION] == desired_hash(desired)


def test_unchanged_child_with_server_defaults_needs_no_write() -> None:
    desired = deployment()
    assert plan_write(desired, as_server_returns(desired)) is None


def test_changed_spec_is_patched_as_changed() -> None:
    old = deployment()
    new_spec = SPEC.model_copy(update={"suspend": True})
    new = with_hash(
        next(c for c in desired_children("acme", "sales", new_spec, image="img:1") if c["kind"] == "Deployment")
    )
    write = plan_write(new, as_server_returns(old))
    assert write is not None and (write.action, write.reason) == ("patch", "changed")
    assert write.body["spec"]["replicas"] == 0
    assert "name" not in write.body["metadata"] and "apiVersion" not in write.body


def test_hand_edit_is_patched_as_drift() -> None:
    desired = deployment()
    actual = as_server_returns(desired)
    actual["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:latest"
    write = plan_write(desired, actual)
    assert write is not None and write.reason == "drifted"
    assert write.body["spec"]["template"]["spec"]["containers"][0]["image"] == "img:1"


def test_removed_label_is_drift() -> None:
    desired = deployment()
    actual = as_server_returns(desired)
    del actual["metadata"]["labels"]["app.kubernetes.io/managed-by"]
    write = plan_write(desired, actual)
    assert write is not None and write.reason == "drifted"


def test_hash_ignores_its_own_annotation_and_changes_with_content() -> None:
    desired = deployment()
    assert desired_hash(desired) == desired_hash(with_hash(desired))
    other = copy.deepcopy(desired)
    other["spec"]["replicas"] = 3
    assert desired_hash(other) != desired_hash(desired)


@pytest.mark.parametrize(
    ("actual", "desired", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([{"x": 1, "d": 0}], [{"x": 1}], True),
        ([{"x": 1}, {"x": 2}], [{"x": 1}], False),
        ("500m", "0.5", True),
        ("1Gi", "1024Mi", True),
        ("1Gi", "1G", False),
        ("0 20 * * *", "0 21 * * *", False),
        (True, "true", False),
        (None, {}, False),
    ],
)
def test_contains(actual: Any, desired: Any, expected: bool) -> None:
    assert contains(actual, desired) is expected


def test_owner_name_only_for_the_controlling_owner_of_the_kind() -> None:
    child = {
        "metadata": {
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Other", "name": "x", "controller": True},
                {"apiVersion": "optout.dev/v1alpha1", "kind": "UnsubscribeSync", "name": "acme", "controller": True},
            ]
        }
    }
    assert owner_name(child, "UnsubscribeSync", "optout.dev/v1alpha1") == "acme"
    assert owner_name({"metadata": {}}, "UnsubscribeSync", "optout.dev/v1alpha1") is None


def test_newer_compares_resource_versions_numerically() -> None:
    a = {"metadata": {"resourceVersion": "9"}}
    b = {"metadata": {"resourceVersion": "10"}}
    assert newer(a, b) is b and newer(b, a) is b
    assert newer(None, a) is a and newer(a, None) is a
    assert newer({"metadata": {"resourceVersion": "x"}}, b) == {"metadata": {"resourceVersion": "x"}}

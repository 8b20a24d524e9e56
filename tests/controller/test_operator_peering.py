"""Peering survives `helm upgrade` (issue 19, case 5): the KopfPeering object is created once and kept.

Deleting and recreating it on each upgrade (a hook with ``before-hook-creation``) made both replicas act as
leader for ~50 s. The object is a hook only so that it is created after the peering CRDs of the same release;
an upgrade renders it only while it does not exist, and nothing deletes it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.deploy import by_kind, helm_template, tool_path

pytestmark = pytest.mark.skipif(tool_path("helm") is None, reason="helm not available: scripts/fetch-helm.sh")


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        ({"replicas": 2, "peering.name": "usync-peers"}, "ClusterKopfPeering"),
        ({"replicas": 2, "peering.name": "usync-peers", "watchNamespaces": ["sales", "marketing"]}, "KopfPeering"),
    ],
    ids=["cluster", "namespaced"],
)
@pytest.mark.parametrize("extra", [(), ("--is-upgrade",)], ids=["install", "upgrade"])
def test_the_peering_object_is_created_once_and_never_deleted_by_helm(
    values: dict[str, Any], kind: str, extra: tuple[str, ...]
) -> None:
    peerings = by_kind(helm_template(values, extra=extra), kind)
    assert peerings
    for peering in peerings:
        annotations = peering["metadata"]["annotations"]
        assert "helm.sh/hook-delete-policy" not in annotations
        assert annotations["helm.sh/resource-policy"] == "keep"
        assert "post-install" in annotations["helm.sh/hook"]

"""The chart's and kustomize base's copies of the CRD, alerts, dashboard and RBAC rules match their sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.fixtures.deploy import RBAC_FILE, REPO_ROOT, by_kind, helm_template, tool_path


def load_sync_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart_assets", REPO_ROOT / "scripts/sync_chart_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_copies_are_up_to_date() -> None:
    stale = load_sync_script().stale(REPO_ROOT)
    assert stale == [], f"out of date (run scripts/sync_chart_assets.py): {[str(p) for p in stale]}"


def test_stale_copies_are_detected(tmp_path: Path) -> None:
    sync = load_sync_script()
    root = tmp_path  # a minimal project tree with one edited source
    (root / "crds").mkdir()
    (root / "crds/x.yaml").write_text("kind: CustomResourceDefinition\n")
    (root / "monitoring/dashboards").mkdir(parents=True)
    (root / "monitoring/alerts.yaml").write_text("groups: []\n")
    (root / "monitoring/dashboards/unsubscribe-sync.json").write_text("{}\n")
    for rel, content in sync.planned_copies(root).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    assert sync.stale(root) == []
    (root / "monitoring/alerts.yaml").write_text("groups: [{name: x, rules: []}]\n")
    assert [str(p) for p in sync.stale(root)] == ["charts/unsubscribe-sync-operator/files/monitoring/alerts.yaml"]


@pytest.mark.skipif(not RBAC_FILE.exists(), reason="deploy/base/rbac.yaml (the operator's RBAC) is not written yet")
@pytest.mark.skipif(tool_path("helm") is None, reason="helm not available: scripts/fetch-helm.sh could not fetch it")
def test_chart_cluster_role_mirrors_deploy_base_rbac() -> None:
    source_roles = by_kind(yaml.safe_load_all(RBAC_FILE.read_text()), "ClusterRole")
    assert len(source_roles) == 1
    (chart_role,) = by_kind(helm_template(), "ClusterRole")
    assert chart_role["rules"] == source_roles[0]["rules"]


@pytest.mark.skipif(not RBAC_FILE.exists(), reason="deploy/base/rbac.yaml (the operator's RBAC) is not written yet")
@pytest.mark.skipif(tool_path("helm") is None, reason="helm not available: scripts/fetch-helm.sh could not fetch it")
def test_namespaced_chart_rbac_grants_the_same_rules_split_by_scope() -> None:
    (source,) = by_kind(yaml.safe_load_all(RBAC_FILE.read_text()), "ClusterRole")
    docs = helm_template({"watchNamespaces": ["sales"]})
    (role,) = by_kind(docs, "Role")
    rules = [rule for cluster_role in by_kind(docs, "ClusterRole") for rule in cluster_role["rules"]] + role["rules"]
    assert sorted(map(repr, rules)) == sorted(map(repr, source["rules"]))

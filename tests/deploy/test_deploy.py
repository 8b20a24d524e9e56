"""Kustomize deploy/ and the plain manifests: they render, every object is valid Kubernetes 1.33,
deploy/install.yaml is the base rendered, the operator Deployment matches the chart's, and the
example overlay's UnsubscribeSync passes the CRD's schema."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.fixtures.deploy import (
    CRD_FILE,
    KUBE_VERSION,
    RBAC_FILE,
    REPO_ROOT,
    by_kind,
    helm_template,
    load_documents,
    tool_path,
)

DEPLOY = REPO_ROOT / "deploy"
needs_kubectl = pytest.mark.skipif(
    tool_path("kubectl") is None, reason="kubectl not available: scripts/fetch-helm.sh could not fetch it"
)
needs_rbac = pytest.mark.skipif(
    not RBAC_FILE.exists(), reason="deploy/base/rbac.yaml (the operator's RBAC) is not written yet"
)


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = tool_path("kubectl")
    assert kubectl is not None
    result = subprocess.run([str(kubectl), "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return load_documents(result.stdout)


def load_sync_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_chart_assets", REPO_ROOT / "scripts/sync_chart_assets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@needs_kubectl
@needs_rbac
def test_deploy_kustomization_renders_valid_objects() -> None:
    docs = kustomize(DEPLOY)
    kinds = {d["kind"] for d in docs}
    assert {
        "Namespace",
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "ClusterRole",
        "ClusterRoleBinding",
        "ServiceAccount",
    } <= kinds
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        if doc["kind"] not in {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert doc["metadata"]["namespace"] == "unsubscribe-sync-system"


@needs_kubectl
@needs_rbac
def test_install_yaml_is_the_rendered_base() -> None:
    expected = load_sync_script().render_install(REPO_ROOT, str(tool_path("kubectl")))
    actual = (DEPLOY / "install.yaml").read_text()
    assert actual == expected, "deploy/install.yaml is out of date: run scripts/sync_chart_assets.py --install"


@needs_kubectl
@needs_rbac
def test_base_service_account_is_bound_to_the_operator_role() -> None:
    docs = kustomize(DEPLOY / "base")
    (deployment,) = by_kind(docs, "Deployment")
    sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert sa_name in {sa["metadata"]["name"] for sa in by_kind(docs, "ServiceAccount")}
    subjects = [s for b in by_kind(docs, "ClusterRoleBinding") for s in b["subjects"]]
    assert {"kind": "ServiceAccount", "name": sa_name, "namespace": "unsubscribe-sync-system"} in subjects


def test_base_crd_is_the_crds_folder_copy() -> None:
    assert (DEPLOY / "base/crds" / CRD_FILE.name).read_bytes() == CRD_FILE.read_bytes()


def test_base_operator_matches_the_chart_defaults() -> None:
    files = ("operator.yaml", "metrics-service.yaml")
    base = [d for f in files for d in load_documents((DEPLOY / "base" / f).read_text())]
    chart = helm_template() if tool_path("helm") else None
    base_container = operator_container(base)
    if chart is None:
        pytest.skip("helm not available: scripts/fetch-helm.sh could not fetch it")
    chart_container = operator_container(chart)
    for key in (
        "image",
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "securityContext",
        "volumeMounts",
        "resources",
    ):
        assert base_container[key] == chart_container[key], key
    (base_deploy,) = by_kind(base, "Deployment")
    (chart_deploy,) = by_kind(chart, "Deployment")
    base_pod = base_deploy["spec"]["template"]["spec"]
    chart_pod = chart_deploy["spec"]["template"]["spec"]
    assert base_pod["securityContext"] == chart_pod["securityContext"]
    assert base_pod["volumes"] == chart_pod["volumes"]
    (base_service,) = by_kind(base, "Service")
    (chart_service,) = by_kind(chart, "Service")
    assert base_service["spec"]["ports"] == chart_service["spec"]["ports"]


def test_base_namespace_enforces_restricted_pod_security() -> None:
    (namespace,) = load_documents((DEPLOY / "base/namespace.yaml").read_text())
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@needs_kubectl
def test_example_overlay_renders_a_valid_unsubscribe_sync_with_placeholder_secrets() -> None:
    docs = kustomize(DEPLOY / "overlays/example")
    crd = yaml.safe_load(CRD_FILE.read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    schema = version["schema"]["openAPIV3Schema"]
    (usync,) = by_kind(docs, "UnsubscribeSync")
    assert usync["metadata"]["namespace"] == "sales"
    jsonschema.Draft4Validator(schema).validate(usync)  # OpenAPI v3.0 is Draft 4 style
    secrets = by_kind(docs, "Secret")
    assert {s["metadata"]["name"] for s in secrets} == {
        usync["spec"]["salesforce"]["credentialsSecretRef"]["name"],
        usync["spec"]["pushWorker"]["webhookSecretRef"]["name"],
    }
    for secret in secrets:
        kubernetes_validate.validate(secret, KUBE_VERSION, strict=True)
        assert secret["metadata"]["namespace"] == "sales"
        assert all(v.startswith("REPLACE_ME") for v in secret["stringData"].values())

"""End to end on a real kind cluster: build the image, load it, install the chart, apply an example, wait.

Run with `make e2e` (pytest -m e2e tests/e2e). Skipped, with the reason, unless a kind cluster is the
current kubectl context and the tools are installed: kind, kubectl, helm, and docker or podman.
No Salesforce is reachable from the cluster, so the operator runs with `--preflight-interval=0`
(CredentialsValid / FieldInstalled stay Unknown, reason PreflightDisabled, which does not block Ready).
Environment: E2E_KIND_CLUSTER (default: the cluster of the current kind-* context), E2E_IMAGE
(default unsubscribe-sync:e2e), E2E_BUILD=0 uses E2E_IMAGE as it is instead of building it from the
Containerfile, E2E_KEEP=1 keeps the namespaces for inspection.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "unsubscribe-sync-operator"
EXAMPLE = REPO / "deploy" / "examples" / "sqlite.yaml"
IMAGE = os.environ.get("E2E_IMAGE", "unsubscribe-sync:e2e")
OPERATOR_NS = "unsubscribe-sync-system"


def _run(*cmd: str, input_text: str | None = None, timeout: float = 600) -> str:
    result = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout


def _kind_cluster() -> str:
    """The kind cluster to use, or pytest.skip with the reason."""
    engine = shutil.which("docker") or shutil.which("podman")
    missing = [tool for tool in ("kind", "kubectl", "helm") if shutil.which(tool) is None]
    if engine is None:
        missing.append("docker or podman")
    if missing:
        pytest.skip(f"e2e needs {', '.join(missing)} on PATH")
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not any(Path(p).is_file() for p in kubeconfig.split(os.pathsep)):
        pytest.skip("e2e needs a kubeconfig (KUBECONFIG or ~/.kube/config) with a kind cluster")
    context = subprocess.run(["kubectl", "config", "current-context"], capture_output=True, text=True).stdout.strip()
    if not context.startswith("kind-"):
        pytest.skip(f"e2e needs the current kubectl context to be a kind cluster (kind-*), not {context or 'none'!r}")
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout.split()
    name = os.environ.get("E2E_KIND_CLUSTER", context.removeprefix("kind-"))
    if name not in clusters:
        pytest.skip(f"kind cluster {name!r} is not running (kind get clusters: {clusters})")
    if subprocess.run(["kubectl", "cluster-info"], capture_output=True, timeout=30).returncode != 0:
        pytest.skip("the kind cluster does not answer (kubectl cluster-info failed)")
    return name


def _engine() -> str:
    return "docker" if shutil.which("docker") else "podman"


@pytest.fixture(scope="module")
def installed() -> Iterator[str]:
    cluster = _kind_cluster()
    if os.environ.get("E2E_BUILD", "1") != "0":  # E2E_BUILD=0: test E2E_IMAGE as it is (the release workflow)
        _run(_engine(), "build", "-f", str(REPO / "Containerfile"), "-t", IMAGE, str(REPO), timeout=1800)
    _run("kind", "load", "docker-image", IMAGE, "--name", cluster, timeout=600)
    repository, _, tag = IMAGE.rpartition(":")
    _run(
        "helm", "upgrade", "--install", "unsubscribe-sync", str(CHART),
        "--namespace", OPERATOR_NS, "--create-namespace", "--wait", "--timeout", "5m",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "image.pullPolicy=Never", "--set", "operator.extraArgs={--preflight-interval=0}",
    )  # fmt: skip
    try:
        yield cluster
    finally:
        if not os.environ.get("E2E_KEEP"):
            subprocess.run(["helm", "uninstall", "unsubscribe-sync", "--namespace", OPERATOR_NS], capture_output=True)


def _get(kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = subprocess.run(
        ["kubectl", "get", kind, name, "-n", namespace, "-o", "json"], capture_output=True, text=True
    )
    return json.loads(result.stdout) if result.returncode == 0 else None


def _wait(predicate: Any, what: str, timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}")


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c  # type: ignore[no-any-return]
    return None


def _secret(name: str, namespace: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def test_example_becomes_ready_and_children_are_repaired(installed: str) -> None:
    namespace = f"e2e-{uuid.uuid4().hex[:6]}"
    example = yaml.safe_load(EXAMPLE.read_text())
    name = example["metadata"]["name"]
    example["metadata"]["namespace"] = namespace
    spec = example["spec"]
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        _secret(spec["salesforce"]["credentialsSecretRef"]["name"], namespace, client_id="e2e", client_secret="e2e"),
        _secret(spec["pushWorker"]["webhookSecretRef"]["name"], namespace, token=uuid.uuid4().hex),
        example,
    ]
    _run("kubectl", "apply", "-f", "-", input_text=yaml.safe_dump_all(docs))
    try:
        ready = _wait(
            lambda: (
                (c := _condition(_get("unsubscribesyncs.optout.dev", name, namespace), "Ready"))
                and c["status"] == "True"
                and c
            ),
            "Ready=True",
            timeout=600,
        )
        assert ready["reason"] == "Ready"
        obj = _get("unsubscribesyncs.optout.dev", name, namespace)
        assert obj is not None and obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
        for kind, child in (("deployment", f"{name}-push-worker"), ("cronjob", f"{name}-nightly-sync"),
                            ("configmap", f"{name}-config"), ("service", f"{name}-push-worker"),
                            ("persistentvolumeclaim", f"{name}-ledger")):  # fmt: skip
            got = _get(kind, child, namespace)
            assert got is not None, f"{kind}/{child} missing"
            owners = [r for r in got["metadata"].get("ownerReferences", []) if r.get("controller")]
            assert [r["uid"] for r in owners] == [obj["metadata"]["uid"]]

        # Drift repair on a real API server: delete a child, it comes back.
        _run("kubectl", "delete", "configmap", f"{name}-config", "-n", namespace, "--wait=true")
        _wait(lambda: _get("configmap", f"{name}-config", namespace), "ConfigMap restored", timeout=120)
    finally:
        if not os.environ.get("E2E_KEEP"):
            subprocess.run(["kubectl", "delete", "namespace", namespace, "--wait=false"], capture_output=True)

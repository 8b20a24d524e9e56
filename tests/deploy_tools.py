"""Helpers for the chart, kustomize, alert and dashboard suites: the helm/kubectl/promtool binaries
and the metric names the project's contract promises (the README, "Operations")."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CHART_DIR = REPO_ROOT / "charts/unsubscribe-sync-operator"
ALERTS_FILE = REPO_ROOT / "monitoring/alerts.yaml"
ALERTS_TEST_FILE = REPO_ROOT / "monitoring/alerts_test.yaml"
DASHBOARD_FILE = REPO_ROOT / "monitoring/dashboards/unsubscribe-sync.json"
CRD_FILE = REPO_ROOT / "crds/optout.dev_unsubscribesyncs.yaml"
RBAC_FILE = REPO_ROOT / "deploy/base/rbac.yaml"
OPERATIONS_DOC = REPO_ROOT / "docs/OPERATIONS.md"
KUBE_VERSION = "1.33.0"

# The README's "Operations" metric names plus the operator's Ready gauge.
WORKER_METRICS = frozenset(
    {
        "unsubscribe_sync_unsubscribes_received_total",
        "unsubscribe_sync_push_records_total",
        "unsubscribe_sync_push_backlog",
        "unsubscribe_sync_push_lag_seconds",
        "unsubscribe_sync_salesforce_requests_total",
        "unsubscribe_sync_salesforce_api_usage_ratio",
        "unsubscribe_sync_nightly_last_success_timestamp_seconds",
        "unsubscribe_sync_nightly_records_total",
        # issue 18 (the Salesforce poll)
        "unsubscribe_sync_salesforce_poll_last_success_timestamp_seconds",
        "unsubscribe_sync_salesforce_poll_records_total",
    }
)
OPERATOR_METRICS = frozenset(
    {
        "unsubscribe_sync_operator_reconcile_total",
        "unsubscribe_sync_operator_reconcile_duration_seconds",
        "unsubscribe_sync_operator_resources",
    }
)
CONTRACT_METRICS = WORKER_METRICS | OPERATOR_METRICS
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_PROMQL_WORDS = frozenset(
    [
        "sum", "rate", "irate", "increase", "delta", "deriv", "by", "without", "on", "ignoring", "group_left",
        "group_right", "and", "or", "unless", "max", "min", "avg", "count", "time", "histogram_quantile",
        "clamp_min", "clamp_max", "absent", "min_over_time", "max_over_time", "avg_over_time", "bool", "le",
        "offset", "topk", "bottomk", "label_values",
    ]
)


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression (identifiers that are not functions, keywords or labels)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # drop string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # drop label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # drop range selectors
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {n for n in names if n == "up" or (n not in _PROMQL_WORDS and "_" in n)}


def contract_base_name(metric: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if metric.endswith(suffix) and metric[: -len(suffix)] in CONTRACT_METRICS:
            return metric[: -len(suffix)]
    return metric


def _locked_fetch(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".fetch.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # pytest-xdist workers fetch once between them
        if not (dest / "bin/helm").exists():
            subprocess.run(
                ["bash", str(REPO_ROOT / "scripts/fetch-helm.sh"), str(dest)],
                check=True,
                capture_output=True,
                timeout=300,
            )


@functools.cache
def tool_path(name: str) -> Path | None:
    """helm or kubectl from .tools/bin (fetched by scripts/fetch-helm.sh on first use), else from PATH."""
    dest = REPO_ROOT / ".tools"
    local = dest / "bin" / name
    if not local.exists() and os.environ.get("UNSUBSCRIBE_SYNC_NO_FETCH") != "1":
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            _locked_fetch(dest)
    if local.exists():
        return local
    found = shutil.which(name)
    return Path(found) if found else None


def promtool_path() -> Path | None:
    found = shutil.which("promtool")
    return Path(found) if found else None


def load_documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    binary = tool_path("helm")
    assert binary is not None
    return subprocess.run([str(binary), *args], capture_output=True, text=True, check=check, timeout=120)


def set_args(values: dict[str, Any]) -> list[str]:
    """`--set-json key=value` arguments for a flat {dotted.key: value} mapping."""
    out: list[str] = []
    for key, value in values.items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def helm_template(values: dict[str, Any] | None = None, *, release: str = "usync", namespace: str = "ops",
                  extra: Iterable[str] = ()) -> list[dict[str, Any]]:
    result = helm("template", release, str(CHART_DIR), "--namespace", namespace, *set_args(values or {}), *extra)
    return load_documents(result.stdout)


def by_kind(docs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def walk_dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk_dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_dicts(item)

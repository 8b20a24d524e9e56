"""The Grafana dashboard: valid structure, datasource/namespace/instance variables, panels for the
operator, the worker and the nightly sync, and only the contract's metric names."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.deploy import (
    CONTRACT_METRICS,
    DASHBOARD_FILE,
    OPERATOR_METRICS,
    WORKER_METRICS,
    contract_base_name,
    metric_names,
)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD_FILE.read_text()))


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in panels(dashboard) for t in p["targets"]]


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "unsubscribe-sync"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_datasource_namespace_and_instance_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] is True
        assert variables[name]["datasource"]["uid"] == "${datasource}"


def test_every_panel_uses_the_datasource_variable_and_filters(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
            assert 'instance=~"$instance"' in target["expr"], panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_only_contract_metric_names(dashboard: dict[str, Any]) -> None:
    for expr in exprs(dashboard):
        for name in metric_names(expr):
            assert contract_base_name(name) in CONTRACT_METRICS, f"{name} is not a contract metric"


def test_every_contract_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = {contract_base_name(n) for e in exprs(dashboard) for n in metric_names(e)}
    assert used >= WORKER_METRICS | OPERATOR_METRICS


@pytest.mark.parametrize(
    "needle",
    [
        "histogram_quantile(0.5, sum by (le) (rate(unsubscribe_sync_operator_reconcile_duration_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(unsubscribe_sync_operator_reconcile_duration_seconds_bucket",
        "histogram_quantile(0.5, sum by (le) (rate(unsubscribe_sync_push_lag_seconds_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(unsubscribe_sync_push_lag_seconds_bucket",
        "sum by (ready) (unsubscribe_sync_operator_resources",
        "sum by (object, outcome) (rate(unsubscribe_sync_push_records_total",
        "sum by (operation, status) (rate(unsubscribe_sync_salesforce_requests_total",
        "sum by (direction) (increase(unsubscribe_sync_nightly_records_total",
        "time() - max(unsubscribe_sync_nightly_last_success_timestamp_seconds",
    ],
)
def test_required_queries_are_present(dashboard: dict[str, Any], needle: str) -> None:
    assert any(needle in e for e in exprs(dashboard)), needle


def test_rows_group_operator_worker_and_nightly(dashboard: dict[str, Any]) -> None:
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ["Operator", "Push worker", "Nightly sync"]

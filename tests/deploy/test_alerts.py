"""Prometheus alert rules: promtool accepts them, the promtool unit tests pass (each alert fires on
synthetic series and stays quiet on healthy ones), and every alert is documented."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.fixtures.deploy import (
    ALERTS_FILE,
    ALERTS_TEST_FILE,
    CONTRACT_METRICS,
    OPERATIONS_DOC,
    contract_base_name,
    metric_names,
    promtool_path,
)

EXPECTED_ALERTS = {
    "NightlySyncFailed",
    "NightlySyncMissed",
    "PushBacklogGrowing",
    "PushFailureRatioHigh",
    "PushLagHigh",
    "SalesforceApiUsageHigh",
    "WorkerDown",
    "OperatorDown",
    "UnsubscribeSyncNotReady",
    "UnsubscribeDeadlineAtRisk",
    "PushRecordsStuck",
    "SalesforcePollStale",
}
# Metrics from outside the project the rules may use (Prometheus itself, kube-state-metrics), and the
# project's own additions beyond the contract list: the worker's age of the oldest pending unsubscribe and
# the operator's per-resource Ready gauge, the worker's count of stuck writes.
EXTERNAL_METRICS = {
    "up",
    "kube_job_status_failed",
    "kube_job_status_start_time",
    "kube_deployment_status_replicas_available",
    "unsubscribe_sync_push_oldest_pending_seconds",
    "unsubscribe_sync_operator_resource_ready",
    "unsubscribe_sync_push_stuck_records",
    "unsubscribe_sync_salesforce_poll_last_success_timestamp_seconds",
    "unsubscribe_sync_salesforce_poll_interval_seconds",
}
needs_promtool = pytest.mark.skipif(
    promtool_path() is None, reason="promtool not installed (apt-get install prometheus; scripts/test-services.sh)"
)


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool_path()), *args], capture_output=True, text=True, timeout=120, cwd=ALERTS_FILE.parent
    )


@needs_promtool
def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", ALERTS_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", ALERTS_TEST_FILE.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@needs_promtool
def test_promtool_unit_tests_can_fail(tmp_path: Any) -> None:
    # the same tests against rules whose thresholds never trigger must fail
    relaxed = ALERTS_FILE.read_text().replace("> 0.9", "> 1.5")
    (tmp_path / "alerts.yaml").write_text(relaxed)
    (tmp_path / "alerts_test.yaml").write_text(ALERTS_TEST_FILE.read_text())
    result = subprocess.run(
        [str(promtool_path()), "test", "rules", "alerts_test.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "SalesforceApiUsageHigh" in result.stdout + result.stderr


def test_every_expected_alert_exists_once() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert sorted(names) == sorted(EXPECTED_ALERTS)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(ALERTS_TEST_FILE.read_text())["tests"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert fires == EXPECTED_ALERTS
    assert quiet == EXPECTED_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_has_severity_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    runbook = annotations["runbook_url"]
    anchor = runbook.rsplit("#", 1)[1]
    assert runbook.split("#")[0].endswith("docs/OPERATIONS.md")
    assert anchor == rule["alert"].lower()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", OPERATIONS_DOC.read_text(), flags=re.MULTILINE)
    }
    assert anchor in headings, f"docs/OPERATIONS.md has no section for {rule['alert']}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_alert_uses_only_contract_or_well_known_metrics(rule: dict[str, Any]) -> None:
    for name in metric_names(rule["expr"]):
        assert contract_base_name(name) in CONTRACT_METRICS | EXTERNAL_METRICS, name


def test_nightly_missed_threshold_is_26_hours() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "NightlySyncMissed"]
    assert "unsubscribe_sync_nightly_last_success_timestamp_seconds" in rule["expr"]
    assert "26 * 3600" in rule["expr"]


def test_api_usage_threshold_is_90_percent() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "SalesforceApiUsageHigh"]
    assert "> 0.9" in rule["expr"]

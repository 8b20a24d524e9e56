"""Status conditions from gathered inputs (pure)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from unsubscribe_sync.api.spec import (
    CONDITION_TYPES,
    LastNightlySync,
    NightlyCounts,
    UnsubscribeSyncSpec,
    UnsubscribeSyncStatus,
)
from unsubscribe_sync.controller.conditions import (
    DeploymentState,
    PreflightResult,
    StatusInputs,
    Verdict,
    build_status,
    compute_conditions,
    format_validation_error,
    merge_conditions,
    status_patch,
)

OK_PREFLIGHT = PreflightResult(
    credentials=Verdict("True", "LoginSucceeded", "logged in"),
    field=Verdict("True", "FieldInstalled", "HasOptedOutOfEmail is updateable on Contact, Lead"),
    discovered_field="HasOptedOutOfEmail",
)
AVAILABLE = DeploymentState(desired=1, available=1, updated=1, current_generation=True)
HEALTHY = StatusInputs(
    generation=3,
    push_field="HasOptedOutOfEmail",
    matching_mode="SalesforceId",
    credentials_secret="sales/sf",
    preflight=OK_PREFLIGHT,
    deployment=AVAILABLE,
    last_nightly=LastNightlySync(outcome="Succeeded", jobName="j1", counts=NightlyCounts(toSalesforce=2)),
)
T0, T1 = "2026-11-28T10:00:00Z", "2026-11-28T11:00:00Z"


def verdicts(inputs: StatusInputs) -> dict[str, tuple[str, str]]:
    return {k: (v.status, v.reason) for k, v in compute_conditions(inputs).items()}


def test_healthy_object_is_ready() -> None:
    got = verdicts(HEALTHY)
    assert got["Ready"] == ("True", "Ready")
    assert got["Reconciling"] == ("False", "Reconciled")
    assert got["Stalled"] == ("False", "Reconciled")
    assert got["NightlySyncSucceeded"] == ("True", "Succeeded")
    assert set(got) == set(CONDITION_TYPES)


@pytest.mark.parametrize(
    ("change", "ready_reason"),
    [
        ({"missing_secrets": ("sales/sf",)}, "SecretNotFound"),
        ({"missing_secrets": ("sales/hook",)}, "SecretNotFound"),
        ({"suspended": True}, "Suspended"),
        ({"deployment": None}, "DeploymentNotFound"),
        ({"deployment": DeploymentState(1, 0, 1, True)}, "NoReplicasAvailable"),
        ({"preflight": None}, "PreflightPending"),
        ({"child_rejected": ("ServiceMonitor acme: not served",)}, "ChildRejected"),
        ({"child_errors": ("Deployment acme: 500",)}, "RetryingWrites"),
        ({"last_nightly": LastNightlySync(outcome="Failed", jobName="j2")}, "NightlySyncFailed"),
        ({"deployment": DeploymentState(2, 1, 1, True)}, "RolloutInProgress"),
        ({"login_refused": "login host evil.example is not allowed"}, "LoginHostNotAllowed"),
        ({"api_refused": ("Secret sales/hook: 403 Forbidden: ...",)}, "APIRefused"),
        ({"api_errors": ("Secret sales/hook: 503 ServiceUnavailable",)}, "APIUnavailable"),
        ({"credentials_unreadable": "Secret sales/sf: 403 Forbidden"}, "SecretNotReadable"),
    ],
)
def test_ready_is_false_with_the_first_reason(change: dict[str, object], ready_reason: str) -> None:
    got = verdicts(replace(HEALTHY, **change))  # type: ignore[arg-type]
    assert got["Ready"] == ("False", ready_reason)


MONITORING_REFUSED = "ServiceMonitor acme-push-worker: servicemonitors is forbidden"


def test_a_refused_service_monitor_leaves_ready_true_with_its_own_reason() -> None:
    got = compute_conditions(replace(HEALTHY, monitoring_refused=MONITORING_REFUSED))
    assert (got["Ready"].status, got["Ready"].reason) == ("True", "ServiceMonitorRefused")
    assert MONITORING_REFUSED in got["Ready"].message
    assert (got["Stalled"].status, got["Reconciling"].status) == ("False", "False")


def test_a_refused_service_monitor_is_named_in_a_ready_false_for_another_reason() -> None:
    got = compute_conditions(replace(HEALTHY, monitoring_refused=MONITORING_REFUSED, deployment=None))
    assert (got["Ready"].status, got["Ready"].reason) == ("False", "DeploymentNotFound")
    assert MONITORING_REFUSED in got["Ready"].message


def test_missing_credentials_secret() -> None:
    got = compute_conditions(replace(HEALTHY, missing_secrets=("sales/sf",)))
    assert (got["CredentialsValid"].status, got["CredentialsValid"].reason) == ("False", "SecretNotFound")
    assert "sales/sf" in got["CredentialsValid"].message
    assert got["FieldInstalled"].status == "Unknown"


def test_unreachable_salesforce_degrades_conditions_only() -> None:
    unreachable = Verdict("Unknown", "SalesforceUnreachable", "503")
    got = verdicts(replace(HEALTHY, preflight=PreflightResult(credentials=unreachable, field=unreachable)))
    assert got["FieldInstalled"] == ("Unknown", "SalesforceUnreachable")
    assert got["Ready"] == ("False", "SalesforceUnreachable")
    assert got["PushWorkerAvailable"] == ("True", "MinimumReplicasAvailable")


def test_failed_nightly_says_why_in_the_condition_and_ready() -> None:
    failed = LastNightlySync(outcome="Failed", jobName="j9", counts=NightlyCounts())
    guard = "change guard: 900 to Salesforce > 100"
    got = compute_conditions(replace(HEALTHY, last_nightly=failed, nightly_error=guard))
    assert got["NightlySyncSucceeded"].status == "False"
    assert got["NightlySyncSucceeded"].reason == "JobFailed"
    assert "change guard: 900 to Salesforce > 100" in got["NightlySyncSucceeded"].message
    assert got["Ready"].reason == "NightlySyncFailed"
    assert "change guard" in got["Ready"].message
    without_reason = compute_conditions(replace(HEALTHY, last_nightly=failed))
    assert "see the job's logs" in without_reason["NightlySyncSucceeded"].message


def test_disabled_nightly_is_reported_but_not_blocking() -> None:
    got = verdicts(replace(HEALTHY, nightly_enabled=False, last_nightly=None))
    assert got["NightlySyncSucceeded"] == ("False", "NightlySyncDisabled")
    assert got["Ready"] == ("True", "Ready")


def test_disabled_preflight_does_not_block_ready() -> None:
    got = verdicts(replace(HEALTHY, preflight=None, preflight_enabled=False))
    assert got["CredentialsValid"] == ("Unknown", "PreflightDisabled")
    assert got["Ready"] == ("True", "Ready")


def test_invalid_spec_stalls_and_keeps_other_conditions() -> None:
    with pytest.raises(ValidationError) as info:
        UnsubscribeSyncSpec.model_validate(
            {"salesforce": {}, "pushWorker": {"webhookSecretRef": {"name": "h"}, "replicas": 0}}
        )
    message = format_validation_error(info.value)
    assert "spec.salesforce.credentialsSecretRef" in message and "spec.pushWorker.replicas" in message
    before = build_status(HEALTHY, None, T0)
    after = build_status(StatusInputs(generation=4, spec_error=message), before, T1)
    by_type = {c["type"]: c for c in after["conditions"]}
    assert by_type["Stalled"]["status"] == "True" and by_type["Stalled"]["reason"] == "InvalidSpec"
    assert by_type["Ready"]["status"] == "False"
    assert by_type["CredentialsValid"] == next(c for c in before["conditions"] if c["type"] == "CredentialsValid")
    assert after["observedGeneration"] == 4
    assert after["pushField"] == "HasOptedOutOfEmail"


def test_transition_time_changes_only_with_status() -> None:
    first = merge_conditions([], {"Ready": Verdict("False", "A", "a")}, generation=1, now=T0)
    same_status = merge_conditions(first, {"Ready": Verdict("False", "B", "b")}, generation=2, now=T1)
    assert same_status[0]["lastTransitionTime"] == T0
    assert (same_status[0]["reason"], same_status[0]["observedGeneration"]) == ("B", 2)
    flipped = merge_conditions(same_status, {"Ready": Verdict("True", "Ready", "")}, generation=2, now=T1)
    assert flipped[0]["lastTransitionTime"] == T1


def test_status_validates_against_the_status_model_and_repeats_without_patch() -> None:
    status = build_status(HEALTHY, None, T0)
    UnsubscribeSyncStatus.model_validate(status)
    assert status["lastNightlySync"]["counts"]["toSalesforce"] == 2
    again = build_status(HEALTHY, status, T1)
    assert again == status
    assert status_patch(status, again) is None
    assert status_patch({**status, "somethingElse": 1}, again) is None  # keys the operator does not own


def test_status_patch_removes_keys_that_went_away() -> None:
    old = build_status(HEALTHY, None, T0)
    new = build_status(replace(HEALTHY, last_nightly=None), None, T0)
    new.pop("lastNightlySync", None)
    patch = status_patch(old, new)
    assert patch is not None and patch["lastNightlySync"] is None


def test_long_messages_are_clipped() -> None:
    got = merge_conditions([], {"Ready": Verdict("False", "A", "x" * 5000)}, generation=1, now=T0)
    assert len(got[0]["message"]) == 1024


def test_deployment_state_from_object() -> None:
    state = DeploymentState.from_object(
        {
            "metadata": {"generation": 2},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "availableReplicas": 2, "updatedReplicas": 2},
        }
    )
    assert state == DeploymentState(desired=2, available=2, updated=2, current_generation=True)
    assert state.rolled_out
    stale = DeploymentState.from_object(
        {"metadata": {"generation": 3}, "spec": {}, "status": {"observedGeneration": 2}}
    )
    assert stale is not None and not stale.current_generation and stale.desired == 1
    assert DeploymentState.from_object(None) is None


def _crd_status_schema() -> dict[str, Any]:
    crd = yaml.safe_load((Path(__file__).resolve().parents[2] / "crds/optout.dev_unsubscribesyncs.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return version["schema"]["openAPIV3Schema"]["properties"]["status"]  # type: ignore[no-any-return]


def _undeclared(value: Any, schema: dict[str, Any], where: str = "status") -> list[str]:
    """Paths the structural schema does not declare (the API server would prune them silently)."""
    found: list[str] = []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is None:
            return found if schema.get("x-kubernetes-preserve-unknown-fields") else [where]
        for key, item in value.items():
            if key not in properties:
                found.append(f"{where}.{key}")
            else:
                found += _undeclared(item, properties[key], f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _undeclared(item, schema.get("items", {}), f"{where}[{i}]")
    return found


@pytest.mark.parametrize(
    "inputs",
    [
        HEALTHY,
        replace(HEALTHY, missing_secrets=("sales/sf",), preflight=None),
        StatusInputs(generation=2, spec_error="spec.pushWorker.replicas: too big"),
        replace(HEALTHY, last_nightly=LastNightlySync(outcome="Failed", jobName="j", startTime=T0, completionTime=T1)),
    ],
)
def test_status_fits_the_crd_schema_so_nothing_is_pruned(inputs: StatusInputs) -> None:
    """A field the CRD does not declare would be pruned and rewritten on every reconcile (a write loop)."""
    schema = _crd_status_schema()
    status = build_status(inputs, None, T0)
    assert _undeclared(status, schema) == []
    jsonschema.validate(status, schema, format_checker=jsonschema.FormatChecker())


def test_a_refused_login_host_stalls_and_says_why_on_credentials() -> None:
    message = "login host evil.example is not in the operator's allowed login hosts"
    conditions = compute_conditions(replace(HEALTHY, login_refused=message, preflight_enabled=False))
    assert (conditions["CredentialsValid"].status, conditions["CredentialsValid"].reason) == (
        "False",
        "LoginHostNotAllowed",
    )
    assert conditions["CredentialsValid"].message == message
    assert (conditions["Stalled"].status, conditions["Stalled"].reason) == ("True", "LoginHostNotAllowed")
    assert conditions["Reconciling"].status == "False"
    assert (conditions["Ready"].status, conditions["Ready"].reason) == ("False", "LoginHostNotAllowed")
    assert "children are left as they were" in conditions["Ready"].message


def test_status_shows_the_matching_mode_and_keeps_it_while_the_spec_is_invalid() -> None:
    email = build_status(replace(HEALTHY, matching_mode="Email"), None, T0)
    assert email["matchingMode"] == "Email"
    invalid = build_status(StatusInputs(generation=4, spec_error="spec.matching.mode: bad"), email, T1)
    assert invalid["matchingMode"] == "Email"
    UnsubscribeSyncStatus.model_validate(email)

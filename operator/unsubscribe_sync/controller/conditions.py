"""Status of an UnsubscribeSync, computed from gathered inputs (pure: no I/O, the clock is an argument).

Conditions follow metav1.Condition and kstatus: ``Ready`` summarises; ``Reconciling`` and ``Stalled`` are
the abnormal-true conditions kstatus reads; the others report one requirement each. A condition's
``lastTransitionTime`` changes only when its status changes.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import ValidationError

from unsubscribe_sync.api.spec import CONDITION_TYPES, LastNightlySync

Status = Literal["True", "False", "Unknown"]
MAX_MESSAGE: Final = 1024
LOGIN_HOST_NOT_ALLOWED: Final = "LoginHostNotAllowed"
# Ready's reason while everything works but the ServiceMonitor could not be written (403: the RBAC lacks it; 404:
# the Prometheus Operator's CRD is not installed). Monitoring is optional: nothing stalls, nothing else waits.
SERVICE_MONITOR_REFUSED: Final = "ServiceMonitorRefused"
READY_MESSAGE: Final = "the push worker is available and the Salesforce requirements are met"


@dataclass(frozen=True)
class Verdict:
    """The value of one condition: status, CamelCase reason, human message."""

    status: Status
    reason: str
    message: str = ""


@dataclass(frozen=True)
class PreflightResult:
    """What the Salesforce preflight (login + describe) found."""

    credentials: Verdict
    field: Verdict
    discovered_field: str | None = None


@dataclass(frozen=True)
class DeploymentState:
    desired: int
    available: int
    updated: int
    current_generation: bool  # the Deployment controller has seen the latest spec

    @classmethod
    def from_object(cls, deployment: Mapping[str, Any] | None) -> DeploymentState | None:
        if deployment is None:
            return None
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        generation = (deployment.get("metadata") or {}).get("generation")
        observed = status.get("observedGeneration")
        return cls(
            desired=int(spec.get("replicas", 1) or 0),
            available=int(status.get("availableReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            current_generation=observed is not None and generation is not None and int(observed) >= int(generation),
        )

    @property
    def rolled_out(self) -> bool:
        return self.current_generation and self.updated >= self.desired and self.available >= self.desired


@dataclass(frozen=True)
class StatusInputs:
    """Everything one reconcile gathered about an UnsubscribeSync."""

    generation: int
    spec_error: str | None = None
    login_refused: str | None = None  # the loginUrl's host is outside the operator's allowlist: why, and how to allow
    suspended: bool = False
    nightly_enabled: bool = True
    push_field: str | None = None
    matching_mode: str | None = None  # spec.matching.mode, shown in status.matchingMode (a config fact, like pushField)
    credentials_secret: str | None = None  # "namespace/name" of the Salesforce credentials Secret
    missing_secrets: tuple[str, ...] = ()  # referenced Secrets that do not exist ("namespace/name")
    credentials_unreadable: str | None = None  # the API server would not give the credentials Secret: why
    api_refused: tuple[str, ...] = ()  # reads the API server refused (403, ...): retrying alone will not help
    api_errors: tuple[str, ...] = ()  # reads that failed for now (5xx, 429, no answer): retried
    preflight: PreflightResult | None = None  # None: not run yet
    preflight_enabled: bool = True
    deployment: DeploymentState | None = None
    last_nightly: LastNightlySync | None = None
    nightly_error: str | None = None  # the failed run's own reason (from its summary), if it gave one
    wrote_children: bool = False
    child_errors: tuple[str, ...] = ()  # writes that failed for now (retried)
    child_rejected: tuple[str, ...] = ()  # writes the API server refused as invalid (retrying will not help)
    jobs_not_watchable: str | None = None  # the RBAC refuses listing Jobs: the nightly runs cannot be followed
    monitoring_refused: str | None = None  # the API server refused the ServiceMonitor write (403, 404): why


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def format_validation_error(exc: ValidationError, prefix: str = "spec") -> str:
    """Name every offending field (without echoing the values, which could be anything)."""
    parts = []
    for err in exc.errors():
        where = ".".join([prefix, *(str(p) for p in err["loc"])])
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)


def _credentials(inputs: StatusInputs) -> Verdict:
    if inputs.login_refused:
        return Verdict("False", LOGIN_HOST_NOT_ALLOWED, inputs.login_refused)
    if inputs.credentials_unreadable:
        return Verdict("False", "SecretNotReadable", inputs.credentials_unreadable)
    if inputs.credentials_secret and inputs.credentials_secret in inputs.missing_secrets:
        return Verdict("False", "SecretNotFound", f"Secret {inputs.credentials_secret} not found")
    if not inputs.preflight_enabled:
        return Verdict("Unknown", "PreflightDisabled", "the Salesforce preflight is turned off in the operator")
    if inputs.preflight is None:
        return Verdict("Unknown", "PreflightPending", "waiting for the first Salesforce login")
    return inputs.preflight.credentials


def _field(inputs: StatusInputs, credentials: Verdict) -> Verdict:
    if not inputs.preflight_enabled:
        return Verdict("Unknown", "PreflightDisabled", "the Salesforce preflight is turned off in the operator")
    if credentials.reason == LOGIN_HOST_NOT_ALLOWED:
        return Verdict("Unknown", LOGIN_HOST_NOT_ALLOWED, "no Salesforce describe for a login host not allowed")
    if credentials.reason in ("SecretNotFound", "SecretNotReadable"):
        return Verdict("Unknown", "CredentialsUnavailable", "cannot describe Salesforce objects without credentials")
    if inputs.preflight is None:
        return Verdict("Unknown", "PreflightPending", "waiting for the first Salesforce describe")
    return inputs.preflight.field


def _push_worker(inputs: StatusInputs) -> Verdict:
    if inputs.suspended:
        return Verdict("False", "Suspended", "spec.suspend is true: the push worker is scaled to zero")
    state = inputs.deployment
    if state is None:
        return Verdict("False", "DeploymentNotFound", "the push worker Deployment does not exist yet")
    counts = f"{state.available}/{state.desired} replicas available"
    if state.available >= 1:
        return Verdict("True", "MinimumReplicasAvailable", counts)
    return Verdict("False", "NoReplicasAvailable", counts)


def _nightly(inputs: StatusInputs) -> Verdict:
    if not inputs.nightly_enabled:
        return Verdict(
            "False",
            "NightlySyncDisabled",
            "nightly sync is disabled: the push writes HasOptedOutOfEmail and Salesforce opt-outs "
            "are not added to the ledger",
        )
    last = inputs.last_nightly
    if inputs.jobs_not_watchable and (last is None or last.outcome is None):
        return Verdict("Unknown", "JobsNotWatchable", f"{inputs.jobs_not_watchable}; grant list/watch on batch/jobs")
    if last is None or last.outcome is None:
        return Verdict("Unknown", "NoRunYet", "no nightly sync has finished yet")
    counts = last.counts
    summary = (
        f"toSalesforce={counts.toSalesforce} fromSalesforce={counts.fromSalesforce} "
        f"skippedNoSalesforceId={counts.skippedNoSalesforceId} failed={counts.failed}"
    )
    if last.outcome == "Succeeded":
        return Verdict("True", "Succeeded", f"job {last.jobName} succeeded: {summary}")
    reason = f"; {inputs.nightly_error}" if inputs.nightly_error else "; see the job's logs"
    return Verdict("False", "JobFailed", f"job {last.jobName} failed: {summary}{reason}")


def _stalled(inputs: StatusInputs) -> Verdict:
    if inputs.spec_error:
        return Verdict("True", "InvalidSpec", inputs.spec_error)
    if inputs.login_refused:
        return Verdict("True", LOGIN_HOST_NOT_ALLOWED, f"{inputs.login_refused}; the children are left as they were")
    if inputs.api_refused:
        return Verdict("True", "APIRefused", "; ".join(inputs.api_refused))
    if inputs.child_rejected:
        return Verdict("True", "ChildRejected", "; ".join(inputs.child_rejected))
    return Verdict("False", "Reconciled", "")


def _reconciling(inputs: StatusInputs, credentials: Verdict) -> Verdict:
    if inputs.spec_error or inputs.login_refused or inputs.api_refused or inputs.child_rejected:
        return Verdict("False", "Stalled", "")
    if inputs.child_errors:
        return Verdict("True", "RetryingWrites", "; ".join(inputs.child_errors))
    if inputs.api_errors:
        return Verdict("True", "APIUnavailable", "; ".join(inputs.api_errors))
    if credentials.reason == "PreflightPending":
        return Verdict("True", "PreflightPending", credentials.message)
    state = inputs.deployment
    if state is not None and not inputs.suspended and not state.rolled_out:
        return Verdict(
            "True",
            "RolloutInProgress",
            f"push worker: {state.updated}/{state.desired} updated, {state.available} available",
        )
    return Verdict("False", "Reconciled", "")


def compute_conditions(inputs: StatusInputs) -> dict[str, Verdict]:
    """The verdict of every condition type, ``Ready`` last (it summarises the others)."""
    stalled = _stalled(inputs)
    if inputs.spec_error:
        # An invalid spec: nothing else was evaluated; only the kstatus conditions and Ready change.
        return {
            "Stalled": stalled,
            "Reconciling": Verdict("False", "Stalled", ""),
            "Ready": Verdict("False", "InvalidSpec", inputs.spec_error),
        }
    credentials = _credentials(inputs)
    verdicts = {
        "CredentialsValid": credentials,
        "FieldInstalled": _field(inputs, credentials),
        "PushWorkerAvailable": _push_worker(inputs),
        "NightlySyncSucceeded": _nightly(inputs),
        "Stalled": stalled,
        "Reconciling": _reconciling(inputs, credentials),
    }
    verdicts["Ready"] = _ready(inputs, verdicts)
    return verdicts


def _ready(inputs: StatusInputs, verdicts: Mapping[str, Verdict]) -> Verdict:
    """The summary; a refused ServiceMonitor is named in it (reason ServiceMonitorRefused if nothing else is wrong)."""
    verdict = _ready_verdict(inputs, verdicts)
    if not inputs.monitoring_refused:
        return verdict
    message = f"{verdict.message}; not monitored: {inputs.monitoring_refused}"
    return Verdict(verdict.status, SERVICE_MONITOR_REFUSED if verdict.status == "True" else verdict.reason, message)


def _ready_verdict(inputs: StatusInputs, verdicts: Mapping[str, Verdict]) -> Verdict:
    if verdicts["Stalled"].status == "True":
        return Verdict("False", verdicts["Stalled"].reason, verdicts["Stalled"].message)
    if inputs.suspended:
        return Verdict("False", "Suspended", "spec.suspend is true: nothing is pushed or synced")
    others = [s for s in inputs.missing_secrets if s != inputs.credentials_secret]
    if others:
        return Verdict("False", "SecretNotFound", "; ".join(f"Secret {s} not found" for s in others))
    for kind in ("CredentialsValid", "FieldInstalled"):
        verdict = verdicts[kind]
        if verdict.status != "True" and verdict.reason != "PreflightDisabled":
            return Verdict("False", verdict.reason, f"{kind}: {verdict.message}")
    if verdicts["PushWorkerAvailable"].status != "True":
        verdict = verdicts["PushWorkerAvailable"]
        return Verdict("False", verdict.reason, f"PushWorkerAvailable: {verdict.message}")
    if verdicts["NightlySyncSucceeded"].reason == "JobFailed":
        return Verdict("False", "NightlySyncFailed", verdicts["NightlySyncSucceeded"].message)
    if verdicts["Reconciling"].status == "True":
        return Verdict("False", verdicts["Reconciling"].reason, verdicts["Reconciling"].message)
    return Verdict("True", "Ready", READY_MESSAGE)


def merge_conditions(
    previous: Sequence[Mapping[str, Any]],
    verdicts: Mapping[str, Verdict],
    *,
    generation: int,
    now: str,
) -> list[dict[str, Any]]:
    """metav1.Conditions for ``verdicts``, keeping lastTransitionTime of any condition whose status held.

    Condition types without a new verdict keep their previous entry unchanged.
    """
    before = {str(c.get("type")): dict(c) for c in previous if c.get("type")}
    result = []
    for kind in CONDITION_TYPES:
        verdict = verdicts.get(kind)
        if verdict is None:
            if kind in before:
                result.append(before[kind])
            continue
        old = before.get(kind)
        moved = old is None or old.get("status") != verdict.status or not old.get("lastTransitionTime")
        result.append(
            {
                "type": kind,
                "status": verdict.status,
                "observedGeneration": generation,
                "lastTransitionTime": now if moved else old["lastTransitionTime"],  # type: ignore[index]
                "reason": verdict.reason,
                "message": _clip(verdict.message),
            }
        )
    return result


def build_status(inputs: StatusInputs, previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    """The whole ``status`` an UnsubscribeSync should have after this reconcile."""
    previous = dict(previous or {})
    verdicts = compute_conditions(inputs)
    status: dict[str, Any] = {
        "observedGeneration": inputs.generation,
        "conditions": merge_conditions(
            previous.get("conditions") or [], verdicts, generation=inputs.generation, now=now
        ),
    }
    if inputs.spec_error:
        for key in ("pushField", "matchingMode", "lastNightlySync"):
            if previous.get(key) is not None:
                status[key] = previous[key]
        return status
    if inputs.push_field is not None:
        status["pushField"] = inputs.push_field
    if inputs.matching_mode is not None:
        status["matchingMode"] = inputs.matching_mode
    if inputs.last_nightly is not None:
        status["lastNightlySync"] = inputs.last_nightly.model_dump(exclude_none=True)
    elif previous.get("lastNightlySync") is not None:
        status["lastNightlySync"] = previous["lastNightlySync"]
    return status


def status_patch(previous: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch turning ``previous`` status into ``new`` (None when they already agree)."""
    previous = dict(previous or {})
    if {k: v for k, v in previous.items() if k in _OWNED} == dict(new):
        return None
    patch: dict[str, Any] = dict(new)
    for key in _OWNED:
        if key in previous and key not in new:
            patch[key] = None
    return patch


_OWNED: Final = ("observedGeneration", "conditions", "pushField", "matchingMode", "lastNightlySync")


def utc_now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

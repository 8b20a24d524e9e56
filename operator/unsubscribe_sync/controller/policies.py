"""The reconcile's decisions that are not status conditions: pure functions of what the gather step read.

``reconciler.py`` gathers every input in one step (``Observed``: the CR, the children, the Secrets and the
preflight, the Deployment, the nightly Job and its pods), asks these functions and ``conditions.py`` /
``child_writes.py`` what to do, then only writes. Each function here has one caller and a table test
(tests/controller/test_controller_policies.py), so a behaviour is changed in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from unsubscribe_sync.api.push_field import effective_push_field
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.controller import kinds
from unsubscribe_sync.controller.child_writes import ChildWrite, plan_write
from unsubscribe_sync.controller.conditions import (
    SERVICE_MONITOR_REFUSED,
    DeploymentState,
    PreflightResult,
    StatusInputs,
)
from unsubscribe_sync.controller.kinds import Kind
from unsubscribe_sync.controller.kubeapi import KubeApiError
from unsubscribe_sync.controller.login_hosts import LoginHostVerdict
from unsubscribe_sync.controller.nightly_status import JobRun, last_nightly_sync, parse_error

Result = Literal["success", "temporary_error", "invalid_spec", "stalled", "error"]
EVENT_CONDITIONS: Final = (
    "Ready",
    "CredentialsValid",
    "FieldInstalled",
    "PushWorkerAvailable",
    "NightlySyncSucceeded",
    "Stalled",
)
# Reasons of a condition that holds a healthy status while something optional is missing: entering one is a
# warning, leaving one is news, even when the status itself does not change.
DEGRADED_REASONS: Final = frozenset({SERVICE_MONITOR_REFUSED})
# Children the product works without: a write of one the API server refuses degrades the status instead of
# stalling the resource (the ServiceMonitor only feeds Prometheus).
MONITORING_ONLY: Final = (kinds.SERVICE_MONITOR,)


# ---- the gather step's answer: every input the decisions below need ----------------------------------------
@dataclass(frozen=True)
class SecretCheck:
    """What reading the referenced Secrets found (names as "namespace/name")."""

    missing: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()  # reads the API server refused (e.g. 403): "Secret ns/x: <server message>"
    errors: tuple[str, ...] = ()  # reads that failed for now (5xx, 429, no answer) after the client's retries
    credentials_unreadable: str | None = None  # why the credentials Secret could not be read


@dataclass
class ChildReads:
    """Each desired child with its copy in the cluster (None: missing), and the optional ones not wanted."""

    found: list[tuple[Kind, str, dict[str, Any], Mapping[str, Any] | None]] = field(default_factory=list)
    unwanted: list[tuple[Kind, str, Mapping[str, Any] | None]] = field(default_factory=list)  # with their copy
    errors: list[str] = field(default_factory=list)  # reads that failed for now
    rejected: list[str] = field(default_factory=list)  # reads the API server refused


@dataclass(frozen=True)
class Observed:
    """Every input one reconcile's decisions need, read by its one gather step (``Reconciler._gather``)."""

    current: Mapping[str, Any]  # the CR as last seen (the watch's copy or this operator's last write, the newer)
    generation: int
    spec: UnsubscribeSyncSpec | None = None  # None: the spec is invalid (spec_error says why); nothing else read
    spec_error: str | None = None
    login: LoginHostVerdict | None = None  # refused: no Secret, no preflight, no child is read or written
    children: ChildReads | None = None  # None: not read
    secrets: SecretCheck = SecretCheck()
    deployment: Mapping[str, Any] | None = None  # the push worker Deployment before this reconcile's writes
    run: JobRun | None = None  # the latest nightly run
    job_message: str | None = None  # its termination message (its JSON summary)
    preflight: PreflightResult | None = None  # None: not run yet, or the login host is refused


# ---- the children: what to write, and what a failed write means ---------------------------------------------
@dataclass(frozen=True)
class ChildPlan:
    """The writes and deletions the children need."""

    writes: list[tuple[Kind, str, ChildWrite, dict[str, Any]]] = field(default_factory=list)  # with the desired
    prunes: list[tuple[Kind, str]] = field(default_factory=list)


def plan_children(reads: ChildReads | None, owner_uid: str | None) -> ChildPlan:
    """Which children to write (``child_writes.plan_write``) and which unwanted ones to delete (``may_prune``)."""
    if reads is None:
        return ChildPlan()
    writes = [
        (kind, child, write, desired)
        for kind, child, desired, actual in reads.found
        if (write := plan_write(desired, actual)) is not None
    ]
    prunes = [(kind, child) for kind, child, actual in reads.unwanted if may_prune(actual, owner_uid)]
    return ChildPlan(writes, prunes)


@dataclass
class ChildResults:
    """What the act step did to the children."""

    writes: int = 0  # objects created, patched or deleted
    errors: list[str] = field(default_factory=list)  # writes that failed for now (retried)
    rejected: list[str] = field(default_factory=list)  # writes refused: retrying alone will not help
    degraded: list[str] = field(default_factory=list)  # writes of optional children refused (MONITORING_ONLY)
    deployment: Mapping[str, Any] | None = None  # the push worker Deployment as this reconcile wrote it


@dataclass(frozen=True)
class WriteFailure:
    """Why a child write failed, and what it does to the reconcile."""

    message: str
    # retried: for now (Reconciling, retried with backoff); rejected: refused, retrying will not help (Stalled);
    # degraded: refused, but the child is optional (named in Ready, nothing stalls; the next resync tries again)
    effect: Literal["retried", "rejected", "degraded"]


def write_failure(kind: Kind, child: str, action: Literal["create", "patch"], exc: KubeApiError) -> WriteFailure:
    """The error class of a failed child write.

    A conflict (409) or a transient failure is retried; any other refusal is a rejection, or only degrades the
    status for a child the product works without (``MONITORING_ONLY``). A 404 on create means the API server
    does not serve the kind at all (a CRD such as ServiceMonitor is not installed).
    """
    message = f"{kind.kind} {child}: {exc.message or exc.reason}"
    if exc.status == 404 and action == "create":
        message = f"{kind.kind} {child}: {kind.api_version} {kind.plural} is not served here (CRD not installed?)"
    if exc.transient or exc.status == 409:
        return WriteFailure(message, "retried")
    return WriteFailure(message, "degraded" if kind in MONITORING_ONLY else "rejected")


def may_prune(actual: Mapping[str, Any] | None, owner_uid: str | None) -> bool:
    """Whether an optional child no longer wanted may be deleted: only when this very owner controls it.

    An object of the same name that someone else made, or that another owner controls, is left alone.
    """
    refs = ((actual or {}).get("metadata") or {}).get("ownerReferences") or []
    return owner_uid is not None and any(ref.get("uid") == owner_uid and ref.get("controller") for ref in refs)


def job_pods(pods: Iterable[Mapping[str, Any]], job_name: str) -> list[Mapping[str, Any]]:
    """The pods the Job ``job_name`` owns (a ``job-name`` label alone can be set by anyone)."""
    return [
        pod
        for pod in pods
        if any(
            ref.get("kind") == "Job" and ref.get("name") == job_name
            for ref in (pod.get("metadata") or {}).get("ownerReferences") or []
        )
    ]


@dataclass(frozen=True)
class Event:
    """One Kubernetes Event to post about the owner."""

    reason: str
    message: str
    warning: bool


def events_to_post(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]]) -> list[Event]:
    """The Events a status change is worth: one per condition of ``EVENT_CONDITIONS`` whose status changed, or
    whose reason entered or left one of ``DEGRADED_REASONS``.

    A condition appearing in a fine or undecided state is not news; a change to an unhealthy state is a
    warning (for Stalled, True is the unhealthy state), and so is a degraded reason. The status written is the
    memory: a reconcile that finds the same status (and degraded reason) posts nothing.
    """
    previous = {c.get("type"): c for c in before}
    events: list[Event] = []
    for condition in after:
        if condition["type"] not in EVENT_CONDITIONS:
            continue
        status, reason = condition["status"], condition["reason"]
        old = previous.get(condition["type"])
        degraded = reason in DEGRADED_REASONS
        if old is not None and old.get("status") == status:
            held = old.get("reason")
            if held == reason or not (degraded or str(held) in DEGRADED_REASONS):
                continue
        healthy = ((status == "False") if condition["type"] == "Stalled" else (status == "True")) and not degraded
        if old is None and (healthy or status == "Unknown"):
            continue
        message = f"{condition['type']}={status}: {condition['message']}".strip().rstrip(":")
        events.append(Event(reason, message, warning=not (healthy or status == "Unknown")))
    return events


# ---- the status and the outcome ------------------------------------------------------------------------------
def status_inputs(
    seen: Observed, done: ChildResults, *, jobs_not_watchable: str | None, preflight_enabled: bool
) -> StatusInputs:
    """The status's inputs from what the gather step read and what the child writes did.

    The push worker's state is the Deployment this reconcile wrote, else the one it read; the push field is
    the one the preflight discovered, else the spec's; a failed run's own reason comes from its summary.
    """
    if seen.spec is None:
        return StatusInputs(generation=seen.generation, spec_error=seen.spec_error)
    spec, preflight, run = seen.spec, seen.preflight, seen.run
    namespace = str((seen.current.get("metadata") or {}).get("namespace"))
    reads = seen.children or ChildReads()
    return StatusInputs(
        generation=seen.generation,
        login_refused=None if seen.login is None or seen.login.allowed else seen.login.message,
        suspended=spec.suspend,
        nightly_enabled=spec.nightlySync.enabled,
        jobs_not_watchable=jobs_not_watchable,
        push_field=effective_push_field(spec, preflight.discovered_field if preflight else None),
        matching_mode=spec.matching.mode.value,
        credentials_secret=f"{namespace}/{spec.salesforce.credentialsSecretRef.name}",
        missing_secrets=seen.secrets.missing,
        credentials_unreadable=seen.secrets.credentials_unreadable,
        api_refused=seen.secrets.refused,
        api_errors=seen.secrets.errors,
        preflight=preflight,
        preflight_enabled=preflight_enabled,
        deployment=DeploymentState.from_object(done.deployment if done.deployment is not None else seen.deployment),
        last_nightly=last_nightly_sync(run, seen.job_message),
        nightly_error=parse_error(seen.job_message) if run is not None and run.phase == "Failed" else None,
        wrote_children=done.writes > 0,
        child_errors=(*reads.errors, *done.errors),
        child_rejected=(*reads.rejected, *done.rejected),
        monitoring_refused="; ".join(done.degraded) or None,
    )


@dataclass
class Outcome:
    """How a reconcile ended; with ``retry`` the handler asks kopf to run it again after a backoff."""

    result: Result
    message: str = ""
    writes: int = 0
    retry: bool = False


def outcome(inputs: StatusInputs, status_error: str | None, writes: int) -> Outcome:
    """The reconcile's result: what can clear by itself is retried, what needs a fix of the spec, the
    allowlist or a child is stalled (a refused Secret read, which an RBAC fix clears, is retried slowly)."""
    if inputs.spec_error is not None:
        return Outcome("invalid_spec", inputs.spec_error, writes=writes)
    if inputs.login_refused is not None:
        return Outcome("stalled", inputs.login_refused, writes=writes)
    problems = [f"Secret {s} not found" for s in inputs.missing_secrets]
    problems += [*inputs.child_errors, *inputs.api_errors, *([status_error] if status_error else [])]
    if problems or inputs.api_refused:
        return Outcome("temporary_error", "; ".join([*problems, *inputs.api_refused]), writes=writes, retry=True)
    if inputs.child_rejected:
        return Outcome("stalled", "; ".join(inputs.child_rejected), writes=writes)
    return Outcome("success", writes=writes)

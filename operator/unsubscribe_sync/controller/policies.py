"""The reconcile's decisions that are not status conditions: pure functions of what the gather step read.

``reconciler.py`` gathers (the CR, the children, the Secrets, the Job's pods), asks these functions and
``conditions.py`` / ``child_writes.py`` what to do, then only writes. Each function here has one caller
and a table test (tests/controller/test_controller_policies.py), so a behaviour is changed in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

from unsubscribe_sync.controller import kinds
from unsubscribe_sync.controller.conditions import SERVICE_MONITOR_REFUSED
from unsubscribe_sync.controller.kinds import Kind
from unsubscribe_sync.controller.kubeapi import KubeApiError

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

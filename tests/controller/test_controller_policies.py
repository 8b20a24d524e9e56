"""The reconcile's decisions (controller/policies.py), one table per decision, keyed by the behaviour."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from unsubscribe_sync.controller import kinds
from unsubscribe_sync.controller.kubeapi import KubeApiError
from unsubscribe_sync.controller.policies import Event, events_to_post, job_pods, may_prune, write_failure

Effect = Literal["retried", "rejected", "degraded"]
WRITE_FAILURES: dict[str, tuple[kinds.Kind, Literal["create", "patch"], KubeApiError, str, Effect]] = {
    "an invalid object is rejected, not retried": (
        kinds.DEPLOYMENT,
        "patch",
        KubeApiError(422, "Invalid", "spec.replicas: must be >= 0"),
        "Deployment c: spec.replicas: must be >= 0",
        "rejected",
    ),
    "a conflict is retried": (
        kinds.DEPLOYMENT,
        "patch",
        KubeApiError(409, "Conflict", "the object has been modified"),
        "Deployment c: the object has been modified",
        "retried",
    ),
    "an overloaded API server is retried": (
        kinds.CONFIG_MAP,
        "create",
        KubeApiError(503, "Service Unavailable", ""),
        "ConfigMap c: Service Unavailable",
        "retried",
    ),
    "no answer at all is retried": (
        kinds.CONFIG_MAP,
        "patch",
        KubeApiError(0, "no answer", ""),
        "ConfigMap c: no answer",
        "retried",
    ),
    "a create of a kind not served says the CRD is not installed": (
        kinds.PDB,
        "create",
        KubeApiError(404, "Not Found", "the server could not find the requested resource"),
        "PodDisruptionBudget c: policy/v1 poddisruptionbudgets is not served here (CRD not installed?)",
        "rejected",
    ),
    "a ServiceMonitor whose CRD is not installed degrades the status, nothing stalls": (
        kinds.SERVICE_MONITOR,
        "create",
        KubeApiError(404, "Not Found", "the server could not find the requested resource"),
        "ServiceMonitor c: monitoring.coreos.com/v1 servicemonitors is not served here (CRD not installed?)",
        "degraded",
    ),
    "a ServiceMonitor write the RBAC forbids degrades the status, nothing stalls": (
        kinds.SERVICE_MONITOR,
        "patch",
        KubeApiError(403, "Forbidden", "cannot patch servicemonitors"),
        "ServiceMonitor c: cannot patch servicemonitors",
        "degraded",
    ),
    "a ServiceMonitor write failing for now is retried like any other": (
        kinds.SERVICE_MONITOR,
        "patch",
        KubeApiError(503, "Service Unavailable", ""),
        "ServiceMonitor c: Service Unavailable",
        "retried",
    ),
    "a forbidden write is rejected (RBAC must change)": (
        kinds.INGRESS,
        "create",
        KubeApiError(403, "Forbidden", "cannot create ingresses"),
        "Ingress c: cannot create ingresses",
        "rejected",
    ),
}


@pytest.mark.parametrize("case", WRITE_FAILURES, ids=list(WRITE_FAILURES))
def test_write_failure(case: str) -> None:
    kind, action, exc, message, effect = WRITE_FAILURES[case]
    failure = write_failure(kind, "c", action, exc)
    assert (failure.message, failure.effect) == (message, effect)


def _owned(uid: str | None, controller: bool = True) -> dict[str, Any]:
    refs = [] if uid is None else [{"uid": uid, "controller": controller, "kind": "UnsubscribeSync", "name": "a"}]
    return {"metadata": {"name": "c", "ownerReferences": refs}}


PRUNES: dict[str, tuple[dict[str, Any] | None, str | None, bool]] = {
    "a child this owner controls may be pruned": (_owned("u1"), "u1", True),
    "a child another owner controls is left alone": (_owned("u2"), "u1", False),
    "an object of the same name nobody owns is left alone": (_owned(None), "u1", False),
    "an owner reference that is not the controller is left alone": (_owned("u1", controller=False), "u1", False),
    "a child that is not there is not pruned": (None, "u1", False),
    "an owner without a uid prunes nothing": (_owned("u1"), None, False),
}


@pytest.mark.parametrize("case", PRUNES, ids=list(PRUNES))
def test_may_prune(case: str) -> None:
    actual, uid, expected = PRUNES[case]
    assert may_prune(actual, uid) is expected


def _pod(name: str, owner_kind: str, owner_name: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "ownerReferences": [{"kind": owner_kind, "name": owner_name}]}}


JOB_PODS: dict[str, tuple[list[dict[str, Any]], list[str]]] = {
    "the pods the Job owns belong to it": ([_pod("p1", "Job", "j1"), _pod("p2", "Job", "j1")], ["p1", "p2"]),
    "a pod of another Job does not": ([_pod("p1", "Job", "j2")], []),
    "a pod only labelled with the job name does not": (
        [{"metadata": {"name": "p1", "labels": {"job-name": "j1"}}}],
        [],
    ),
    "a pod another kind owns under the same name does not": ([_pod("p1", "ReplicaSet", "j1")], []),
}


@pytest.mark.parametrize("case", JOB_PODS, ids=list(JOB_PODS))
def test_job_pods(case: str) -> None:
    pods, expected = JOB_PODS[case]
    assert [pod["metadata"]["name"] for pod in job_pods(pods, "j1")] == expected


def _c(kind: str, status: str, reason: str = "R", message: str = "m") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


EVENTS: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]], list[Event]]] = {
    "a condition turning unhealthy is a warning": (
        [_c("Ready", "True")],
        [_c("Ready", "False", "SecretMissing", "Secret x not found")],
        [Event("SecretMissing", "Ready=False: Secret x not found", warning=True)],
    ),
    "a condition recovering is a normal event": (
        [_c("Ready", "False")],
        [_c("Ready", "True", "Ready", "")],
        [Event("Ready", "Ready=True", warning=False)],
    ),
    "a condition appearing healthy is not news": ([], [_c("Ready", "True")], []),
    "a condition appearing undecided is not news": ([], [_c("CredentialsValid", "Unknown")], []),
    "a condition appearing unhealthy is a warning": (
        [],
        [_c("FieldInstalled", "False", "FieldMissing", "no field")],
        [Event("FieldMissing", "FieldInstalled=False: no field", warning=True)],
    ),
    "Stalled turning True is a warning": (
        [_c("Stalled", "False")],
        [_c("Stalled", "True", "InvalidSpec", "bad")],
        [Event("InvalidSpec", "Stalled=True: bad", warning=True)],
    ),
    "Stalled appearing False is not news": ([], [_c("Stalled", "False")], []),
    "an unchanged status posts nothing": ([_c("Ready", "False")], [_c("Ready", "False", "Other", "x")], []),
    "Reconciling changes are not posted": ([_c("Reconciling", "False")], [_c("Reconciling", "True")], []),
    "Ready staying True but turning to a degraded reason is a warning": (
        [_c("Ready", "True", "Ready", "")],
        [_c("Ready", "True", "ServiceMonitorRefused", "not monitored")],
        [Event("ServiceMonitorRefused", "Ready=True: not monitored", warning=True)],
    ),
    "Ready turning True in a degraded reason is a warning": (
        [_c("Ready", "False", "NoReplicasAvailable", "0/1")],
        [_c("Ready", "True", "ServiceMonitorRefused", "not monitored")],
        [Event("ServiceMonitorRefused", "Ready=True: not monitored", warning=True)],
    ),
    "a degraded reason held is not news again": (
        [_c("Ready", "True", "ServiceMonitorRefused", "not monitored")],
        [_c("Ready", "True", "ServiceMonitorRefused", "not monitored: other words")],
        [],
    ),
    "leaving a degraded reason is a normal event": (
        [_c("Ready", "True", "ServiceMonitorRefused", "not monitored")],
        [_c("Ready", "True", "Ready", "all good")],
        [Event("Ready", "Ready=True: all good", warning=False)],
    ),
    "a condition appearing in a degraded reason is a warning": (
        [],
        [_c("Ready", "True", "ServiceMonitorRefused", "not monitored")],
        [Event("ServiceMonitorRefused", "Ready=True: not monitored", warning=True)],
    ),
}


@pytest.mark.parametrize("case", EVENTS, ids=list(EVENTS))
def test_events_to_post(case: str) -> None:
    before, after, expected = EVENTS[case]
    assert events_to_post(before, after) == expected

"""The reconcile's decisions (controller/policies.py), one table per decision, keyed by the behaviour."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import pytest

from unsubscribe_sync.api.spec import OptOutTarget, UnsubscribeSyncSpec
from unsubscribe_sync.controller import kinds
from unsubscribe_sync.controller.child_writes import HASH_ANNOTATION
from unsubscribe_sync.controller.conditions import DeploymentState, PreflightResult, StatusInputs, Verdict
from unsubscribe_sync.controller.kubeapi import KubeApiError
from unsubscribe_sync.controller.login_hosts import LoginHostVerdict
from unsubscribe_sync.controller.nightly_status import JobRun
from unsubscribe_sync.controller.policies import (
    ChildReads,
    ChildResults,
    Event,
    Observed,
    SecretCheck,
    events_to_post,
    job_pods,
    may_prune,
    outcome,
    plan_children,
    status_inputs,
    write_failure,
)

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


# ---- the children's plan -------------------------------------------------------------------------------------
def _desired(name: str, hash_: str = "h1") -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {HASH_ANNOTATION: hash_}}, "data": {"k": "v"}}


PLANS: dict[str, tuple[ChildReads | None, list[tuple[str, str]], list[str]]] = {
    "a missing child is created": (
        ChildReads(found=[(kinds.CONFIG_MAP, "c", _desired("c"), None)]),
        [("c", "create")],
        [],
    ),
    "a child as desired is left alone": (
        ChildReads(found=[(kinds.CONFIG_MAP, "c", _desired("c"), _desired("c"))]),
        [],
        [],
    ),
    "a child of an older spec is patched": (
        ChildReads(found=[(kinds.CONFIG_MAP, "c", _desired("c", "h2"), _desired("c"))]),
        [("c", "patch")],
        [],
    ),
    "an unwanted child this owner controls is deleted": (
        ChildReads(unwanted=[(kinds.PDB, "p", _owned("u1"))]),
        [],
        ["p"],
    ),
    "an unwanted child of another owner is left alone": (
        ChildReads(unwanted=[(kinds.PDB, "p", _owned("u2"))]),
        [],
        [],
    ),
    "children not read (login host refused) are neither written nor deleted": (None, [], []),
}


@pytest.mark.parametrize("case", PLANS, ids=list(PLANS))
def test_plan_children(case: str) -> None:
    reads, writes, prunes = PLANS[case]
    plan = plan_children(reads, "u1")
    assert [(child, write.action) for _, child, write, _ in plan.writes] == writes
    assert [child for _, child in plan.prunes] == prunes


# ---- the status's inputs -------------------------------------------------------------------------------------
SPEC = UnsubscribeSyncSpec.model_validate(
    {
        "salesforce": {"credentialsSecretRef": {"name": "acme-salesforce"}},
        "pushWorker": {"webhookSecretRef": {"name": "acme-webhook", "key": "token"}},
    }
)
MARKETO = SPEC.model_copy(
    update={"optOutField": SPEC.optOutField.model_copy(update={"target": OptOutTarget.MARKETO_SALES_OPT_OUT})}
)
SEEN = Observed(
    current={"metadata": {"name": "acme", "namespace": "sales"}},
    generation=3,
    spec=SPEC,
    login=LoginHostVerdict(True, "login.salesforce.com", ""),
    children=ChildReads(),
)
NOTHING_DONE = ChildResults()
PREFLIGHT = PreflightResult(
    credentials=Verdict("True", "LoginSucceeded", ""),
    field=Verdict("True", "FieldInstalled", ""),
    discovered_field="ToutApp__Marketo_Sales_Opt_Out__c",
)
DEPLOYMENT = {
    "metadata": {"generation": 2},
    "spec": {"replicas": 2},
    "status": {"observedGeneration": 2, "availableReplicas": 1, "updatedReplicas": 2},
}
RUN = JobRun("acme-nightly-sync-1", "j1", "Failed", "2026-01-01T04:00:00Z", "2026-01-01T04:01:00Z", "c")
SUMMARY = '{"toSalesforce": 4, "error": "change guard: 900 to Salesforce > 100"}'

STATUS_INPUTS: dict[str, tuple[Observed, ChildResults, dict[str, Any]]] = {
    "an invalid spec gives the generation and the error, nothing else": (
        Observed(current={}, generation=4, spec_error="spec.x: bad"),
        NOTHING_DONE,
        {"generation": 4, "spec_error": "spec.x: bad", "push_field": None, "credentials_secret": None},
    ),
    "a login host outside the allowlist is passed on": (
        replace(SEEN, login=LoginHostVerdict(False, "evil.example", "login host evil.example is not allowed")),
        NOTHING_DONE,
        {"login_refused": "login host evil.example is not allowed"},
    ),
    "the spec's facts are passed on (suspend, nightly, matching mode, credentials Secret by namespace)": (
        SEEN,
        NOTHING_DONE,
        {
            "suspended": False,
            "nightly_enabled": True,
            "matching_mode": "SalesforceId",
            "credentials_secret": "sales/acme-salesforce",
            "login_refused": None,
        },
    ),
    "without a preflight the push field follows the spec": (
        replace(SEEN, spec=MARKETO),
        NOTHING_DONE,
        {"push_field": "MarketoSalesOptOut", "preflight": None},
    ),
    "the push field is the one the preflight discovered": (
        replace(SEEN, spec=MARKETO, preflight=PREFLIGHT),
        NOTHING_DONE,
        {"push_field": "ToutApp__Marketo_Sales_Opt_Out__c", "preflight": PREFLIGHT},
    ),
    "the Secret reads are passed on": (
        replace(
            SEEN,
            secrets=SecretCheck(("sales/acme-webhook",), ("Secret sales/x: 403",), ("Secret sales/y: 503",), "why"),
        ),
        NOTHING_DONE,
        {
            "missing_secrets": ("sales/acme-webhook",),
            "api_refused": ("Secret sales/x: 403",),
            "api_errors": ("Secret sales/y: 503",),
            "credentials_unreadable": "why",
        },
    ),
    "without a write the Deployment read is the push worker's state": (
        replace(SEEN, deployment=DEPLOYMENT),
        NOTHING_DONE,
        {"deployment": DeploymentState(desired=2, available=1, updated=2, current_generation=True)},
    ),
    "the Deployment this reconcile wrote is the push worker's state, not the one read before": (
        replace(SEEN, deployment=DEPLOYMENT),
        ChildResults(writes=1, deployment={"metadata": {"generation": 3}, "spec": {"replicas": 1}}),
        {
            "deployment": DeploymentState(desired=1, available=0, updated=0, current_generation=False),
            "wrote_children": True,
        },
    ),
    "a failed run's own reason is passed on with its counts": (
        replace(SEEN, run=RUN, job_message=SUMMARY),
        NOTHING_DONE,
        {"nightly_error": "change guard: 900 to Salesforce > 100"},
    ),
    "a succeeded run gives no nightly error, whatever its summary says": (
        replace(SEEN, run=replace(RUN, phase="Succeeded"), job_message=SUMMARY),
        NOTHING_DONE,
        {"nightly_error": None},
    ),
    "child read and write failures keep their class, reads first": (
        replace(SEEN, children=ChildReads(errors=["read 503"], rejected=["read 403"])),
        ChildResults(errors=["write 409"], rejected=["write 422"]),
        {"child_errors": ("read 503", "write 409"), "child_rejected": ("read 403", "write 422")},
    ),
    "refused ServiceMonitor writes are named together": (
        SEEN,
        ChildResults(degraded=["ServiceMonitor a: 403", "ServiceMonitor b: 404"]),
        {"monitoring_refused": "ServiceMonitor a: 403; ServiceMonitor b: 404", "child_rejected": ()},
    ),
    "no refused ServiceMonitor write names none": (SEEN, NOTHING_DONE, {"monitoring_refused": None}),
}


@pytest.mark.parametrize("case", STATUS_INPUTS, ids=list(STATUS_INPUTS))
def test_status_inputs(case: str) -> None:
    seen, done, expected = STATUS_INPUTS[case]
    got = status_inputs(seen, done, jobs_not_watchable=None, preflight_enabled=True)
    assert {key: getattr(got, key) for key in expected} == expected


def test_status_inputs_pass_on_the_operators_own_facts() -> None:
    got = status_inputs(SEEN, NOTHING_DONE, jobs_not_watchable="cannot list Job", preflight_enabled=False)
    assert (got.jobs_not_watchable, got.preflight_enabled) == ("cannot list Job", False)


def test_a_failed_runs_counts_reach_last_nightly_sync() -> None:
    got = status_inputs(
        replace(SEEN, run=RUN, job_message=SUMMARY), NOTHING_DONE, jobs_not_watchable=None, preflight_enabled=True
    )
    assert got.last_nightly is not None and (got.last_nightly.outcome, got.last_nightly.counts.toSalesforce) == (
        "Failed",
        4,
    )


# ---- the outcome ---------------------------------------------------------------------------------------------
OUTCOMES: dict[str, tuple[StatusInputs, str | None, tuple[str, str, bool]]] = {
    "a healthy reconcile succeeds": (StatusInputs(generation=1), None, ("success", "", False)),
    "an invalid spec is reported, not retried": (
        StatusInputs(generation=1, spec_error="spec.x: bad"),
        None,
        ("invalid_spec", "spec.x: bad", False),
    ),
    "a refused login host stalls": (
        StatusInputs(generation=1, login_refused="host not allowed"),
        None,
        ("stalled", "host not allowed", False),
    ),
    "a missing Secret is retried": (
        StatusInputs(generation=1, missing_secrets=("sales/x",)),
        None,
        ("temporary_error", "Secret sales/x not found", True),
    ),
    "a refused Secret read is retried (an RBAC fix clears it)": (
        StatusInputs(generation=1, api_refused=("Secret sales/x: 403",)),
        None,
        ("temporary_error", "Secret sales/x: 403", True),
    ),
    "a failed status write is retried": (
        StatusInputs(generation=1),
        "status: 500",
        ("temporary_error", "status: 500", True),
    ),
    "a child write failing for now is retried before a rejected one stalls": (
        StatusInputs(generation=1, child_errors=("Deployment a: 503",), child_rejected=("Ingress a: 422",)),
        None,
        ("temporary_error", "Deployment a: 503", True),
    ),
    "a rejected child write stalls": (
        StatusInputs(generation=1, child_rejected=("Ingress a: 422",)),
        None,
        ("stalled", "Ingress a: 422", False),
    ),
    "a refused ServiceMonitor write neither stalls nor retries": (
        StatusInputs(generation=1, monitoring_refused="ServiceMonitor a: 403"),
        None,
        ("success", "", False),
    ),
}


@pytest.mark.parametrize("case", OUTCOMES, ids=list(OUTCOMES))
def test_outcome(case: str) -> None:
    inputs, status_error, expected = OUTCOMES[case]
    got = outcome(inputs, status_error, writes=2)
    assert (got.result, got.message, got.retry, got.writes) == (*expected, 2)

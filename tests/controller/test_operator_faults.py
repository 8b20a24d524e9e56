"""The operator under Kubernetes API faults (issue 19): the real operator (kopf) against the emulator with
faults injected by ``FaultyClusterEmulator`` (tests/fixtures/kube.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kopf
import pytest
import pytest_asyncio

from tests.fixtures.controller import (
    CR_PATH,
    NS,
    Client,
    children_present,
    condition,
    cr,
    report_push_worker_available,
    usync,
)
from tests.fixtures.kube import (
    USYNC_RESOURCE,
    Fault,
    FaultyClusterEmulator,
    RunningCluster,
    RunningOperator,
    running_faulty_cluster,
    start_operator,
    wait_for,
)
from unsubscribe_sync.api.constants import GROUP, PLURAL
from unsubscribe_sync.controller.health import cache_problem, crd_problem
from unsubscribe_sync.controller.kubeapi import KubeApi, KubeApiError


@pytest_asyncio.fixture
async def faulty() -> AsyncIterator[RunningCluster]:
    async with running_faulty_cluster() as cluster:
        yield cluster


@pytest_asyncio.fixture
async def client(faulty: RunningCluster) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(faulty, session)


def emulator(cluster: RunningCluster) -> FaultyClusterEmulator:
    assert isinstance(cluster.emulator, FaultyClusterEmulator)
    return cluster.emulator


# ---- 1: a child deleted while the watch was interrupted ------------------------------------------------
async def test_a_child_deleted_during_a_watch_gap_is_repaired_after_the_relist(
    faulty: RunningCluster, client: Client
) -> None:
    """API server restart with compacted history: open watches end, resuming gets 410 Gone, kopf re-lists.

    The Deployment deleted meanwhile is in no event; kopf keeps it in its cache. The periodic resync (300 s
    here) must not be what brings it back: the re-list does, within seconds."""
    running = await start_operator(faulty, resync_interval=300.0)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: children_present(faulty), what="children")
        before = faulty.emulator.get("apps/v1/deployments", NS, "acme-push-worker")
        assert before is not None

        emulator(faulty).delete_silently("apps/v1/deployments", NS, "acme-push-worker")
        emulator(faulty).restart()
        restored = await wait_for(
            lambda: faulty.emulator.get("apps/v1/deployments", NS, "acme-push-worker"),
            timeout=15,
            what="the Deployment restored after the re-list",
        )
        assert restored["metadata"]["uid"] != before["metadata"]["uid"]
        assert restored["spec"] == before["spec"]
    finally:
        await running.stopped()


# ---- 3: transient API errors, refusals, retries ---------------------------------------------------------
STATUS_PATH = f"{CR_PATH}/acme/status"


async def test_a_transient_write_error_costs_seconds_not_a_minute(faulty: RunningCluster, client: Client) -> None:
    """A status write failing with 500 (more often than the client retries) is retried by the handler within
    seconds; a spec change made meanwhile is applied at once, not after kopf's 60 s default backoff."""
    fault = emulator(faulty).inject(Fault(500, path=STATUS_PATH, method="PATCH", times=6))
    running = await start_operator(faulty)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: fault.hits >= 4, what="the first status write failing")
        await client.patch(f"{CR_PATH}/acme", {"spec": {"nightlySync": {"enabled": False}}})
        await wait_for(
            lambda: (
                (faulty.emulator.get("batch/v1/cronjobs", NS, "acme-nightly-sync") or {}).get("spec", {}).get("suspend")
            ),
            timeout=15,
            what="the spec change applied",
        )
        obj = await wait_for(
            lambda: (o := usync(faulty)) and o.get("status", {}).get("observedGeneration") == 2 and o,
            timeout=15,
            what="status of generation 2",
        )
        assert condition(obj, "NightlySyncSucceeded")["reason"] == "NightlySyncDisabled"  # type: ignore[index]
        events = faulty.emulator.list("v1/events", NS)
        assert any(e["reason"] == "StatusWriteFailed" and e["type"] == "Warning" for e in events)
    finally:
        await running.stopped()


async def test_a_create_answered_409_for_a_child_already_in_shape_is_not_counted_as_a_write(
    faulty: RunningCluster, client: Client
) -> None:
    """A create that landed though the operator saw 409 (created meanwhile, or a retried POST): the child read
    back is already what is wanted, so nothing is written, logged or counted for it."""
    configmaps = f"/api/v1/namespaces/{NS}/configmaps"
    fault = emulator(faulty).inject(Fault(409, path=configmaps, method="POST", after=True, message="already exists"))
    running = await start_operator(faulty)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: children_present(faulty), what="children")
        assert fault.hits == 1 and faulty.emulator.list("v1/configmaps", NS)
        writes = running.runtime.metrics.registry.get_sample_value
        assert writes("unsubscribe_sync_operator_child_writes_total", {"kind": "ConfigMap", "reason": "missing"}) in (
            None,
            0.0,
        )
        assert writes("unsubscribe_sync_operator_child_writes_total", {"kind": "Deployment", "reason": "missing"}) == 1
    finally:
        await running.stopped()


async def test_a_refused_secret_read_becomes_conditions_and_an_event(faulty: RunningCluster, client: Client) -> None:
    forbidden = 'secrets "acme-salesforce" is forbidden: User "system:serviceaccount:ops:usync" cannot get resource'
    emulator(faulty).inject(
        Fault(403, path=f"/api/v1/namespaces/{NS}/secrets/acme-salesforce", method="GET", times=None, message=forbidden)
    )
    running = await start_operator(faulty)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        credentials = await wait_for(
            lambda: (c := condition(usync(faulty), "CredentialsValid")) and c["reason"] == "SecretNotReadable" and c,
            what="SecretNotReadable",
        )
        assert credentials["status"] == "False" and forbidden in credentials["message"]
        stalled = condition(usync(faulty), "Stalled")
        assert stalled is not None and (stalled["status"], stalled["reason"]) == ("True", "APIRefused")
        assert forbidden in stalled["message"]
        await wait_for(
            lambda: any(
                e["reason"] == "SecretNotReadable" and e["type"] == "Warning"
                for e in faulty.emulator.list("v1/events", NS)
            ),
            what="a Warning event",
        )
        assert children_present(faulty)  # the children do not depend on reading the Secret

        emulator(faulty).clear_faults()  # RBAC fixed: no change to the resource is needed
        await wait_for(
            lambda: (c := condition(usync(faulty), "CredentialsValid")) and c["reason"] == "PreflightDisabled",
            what="recovered",
        )
        stalled = condition(usync(faulty), "Stalled")
        assert stalled is not None and stalled["status"] == "False"
    finally:
        await running.stopped()


@pytest.mark.parametrize(
    ("fault", "retried_after"),
    [
        (Fault(503, times=2), [0.2, 0.4]),
        (Fault(429, times=1, retry_after=3), [3.0]),
        (Fault(500, times=1, retry_after=600), [5.0]),  # capped
        (Fault(0, times=2), [0.2, 0.4]),  # connection dropped
    ],
    ids=["5xx-backoff", "429-retry-after", "retry-after-capped", "dropped-connection"],
)
async def test_the_client_retries_transient_failures(
    faulty: RunningCluster, fault: Fault, retried_after: list[float]
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    fault.path = f"/api/v1/namespaces/{NS}/configmaps"
    emulator(faulty).inject(fault)
    api = KubeApi(lambda: kopf.ConnectionInfo(server=faulty.url), sleep=sleep)
    try:
        created = await api.create(f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "x"}, "data": {}})
        assert created["metadata"]["name"] == "x"
    finally:
        await api.close()
    assert slept == retried_after


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
async def test_the_client_does_not_retry_refusals(faulty: RunningCluster, status: int) -> None:
    emulator(faulty).inject(Fault(status, path=f"/api/v1/namespaces/{NS}/configmaps", times=None))
    api = KubeApi(lambda: kopf.ConnectionInfo(server=faulty.url))
    try:
        with pytest.raises(KubeApiError) as excinfo:
            await api.create(f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": "x"}, "data": {}})
    finally:
        await api.close()
    assert excinfo.value.status == status
    assert sum(api.requests.values()) == 1


# ---- 2: the operator's CRD installed after start-up -------------------------------------------------------
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


async def health(running: RunningOperator, expected: int) -> None:
    """Wait until /healthz answers ``expected`` (the endpoint starts a moment after the operator is ready)."""
    port = running.runtime.options.liveness_port
    seen: list[int] = []

    async def probe() -> None:
        try:
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/healthz") as r:
                seen.append(r.status)
        except aiohttp.ClientConnectionError:
            seen.append(0)

    for _ in range(200):
        await probe()
        if seen[-1] == expected:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"/healthz never answered {expected}: {sorted(set(seen))}")


async def test_a_crd_installed_after_start_up_is_served_and_liveness_fails_until_then(client: Client) -> None:
    """GitOps ordering: the operator starts before its CRD exists. /healthz fails meanwhile (a restart would
    not help either, but the Deployment shows why); once the CRD is installed, resources are served."""
    async with running_faulty_cluster(without=(USYNC_RESOURCE,)) as cluster:
        client = Client(cluster, client.session)
        running = await start_operator(cluster)
        try:
            await health(running, 500)
            await wait_for(lambda: cluster.emulator.watch_params(CRD_PATH), what="kopf watching CRDs")
            emulator(cluster).declare(USYNC_RESOURCE, "UnsubscribeSync", subresources=("status",))
            await client.post(CRD_PATH, {"metadata": {"name": f"{PLURAL}.{GROUP}"}, "spec": {"group": GROUP}})
            await client.secrets()
            await client.post(CR_PATH, cr())
            await wait_for(lambda: children_present(cluster), timeout=15, what="children of the late CRD")
            await health(running, 200)
        finally:
            await running.stopped()


@pytest.mark.parametrize(
    ("discovery", "problem"),
    [
        (None, "is not installed"),
        ({"resources": [{"name": "other"}]}, "is not served"),
        ({"resources": [{"name": PLURAL}, {"name": f"{PLURAL}/status"}]}, None),
    ],
    ids=["no-group-version", "plural-missing", "served"],
)
def test_crd_problem(discovery: dict[str, Any] | None, problem: str | None) -> None:
    found = crd_problem(discovery)
    assert (found is None) if problem is None else (found is not None and problem in found)


# ---- 4a: a ServiceMonitor write the API server refuses -------------------------------------------------
SERVICE_MONITORS = "monitoring.coreos.com/v1/servicemonitors"


async def test_a_refused_service_monitor_write_is_reported_once_without_stalling(
    faulty: RunningCluster, client: Client
) -> None:
    """RBAC without create on ServiceMonitors: the other children are made, the resource is Ready with the refusal
    in the Ready condition (reason ServiceMonitorRefused) instead of Stalled, one Warning Event says so however
    many reconciles follow, and once the RBAC is fixed the ServiceMonitor is made and the reason clears."""
    forbidden = (
        'servicemonitors.monitoring.coreos.com is forbidden: User "system:serviceaccount:ops:usync" '
        'cannot create resource "servicemonitors"'
    )
    path = f"/apis/monitoring.coreos.com/v1/namespaces/{NS}/servicemonitors"
    emulator(faulty).inject(Fault(403, path=path, method="POST", times=None, message=forbidden))
    running = await start_operator(faulty, resync_interval=0.3)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr(monitoring={"serviceMonitor": {"enabled": True}}))
        await wait_for(lambda: children_present(faulty), what="the other children")
        await report_push_worker_available(faulty, client)
        ready = await wait_for(
            lambda: (c := condition(usync(faulty), "Ready")) and c["status"] == "True" and c, what="Ready"
        )
        assert ready["reason"] == "ServiceMonitorRefused" and forbidden in ready["message"]
        stalled = condition(usync(faulty), "Stalled")
        assert stalled is not None and stalled["status"] == "False"

        reconciles = running.runtime.reconciler.reconciles
        await wait_for(lambda: running.runtime.reconciler.reconciles >= reconciles + 3, what="three more reconciles")
        warnings = [e for e in faulty.emulator.list("v1/events", NS) if e["reason"] == "ServiceMonitorRefused"]
        assert [e["type"] for e in warnings] == ["Warning"] and forbidden in warnings[0]["message"]

        emulator(faulty).clear_faults()  # RBAC fixed: no change to the resource is needed
        await wait_for(lambda: faulty.emulator.get(SERVICE_MONITORS, NS, "acme-push-worker"), what="ServiceMonitor")
        await wait_for(lambda: (c := condition(usync(faulty), "Ready")) and c["reason"] == "Ready", what="cleared")
    finally:
        await running.stopped()


# ---- 4: an optional cache the RBAC does not allow -------------------------------------------------------
async def test_jobs_not_listable_degrade_the_nightly_condition_instead_of_blocking(
    faulty: RunningCluster, client: Client
) -> None:
    """Tightened RBAC without list/watch on batch/jobs: the children are still made and the status says why the
    nightly runs are not followed; the operator keeps running."""
    forbidden = 'jobs.batch is forbidden: User "system:serviceaccount:ops:usync" cannot list resource "jobs"'
    emulator(faulty).inject(Fault(403, path="/apis/batch/v1/jobs", times=None, message=forbidden))
    running = await start_operator(faulty)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: children_present(faulty), timeout=15, what="children despite the refused Jobs")
        nightly = await wait_for(
            lambda: (c := condition(usync(faulty), "NightlySyncSucceeded")) and c["reason"] == "JobsNotWatchable" and c,
            timeout=15,
            what="JobsNotWatchable",
        )
        assert nightly["status"] == "Unknown" and forbidden in nightly["message"] and "Job" in nightly["message"]
        assert running.alive
    finally:
        await running.stopped()


# ---- 4b: a required cache that cannot fill fails liveness; optional ones never do -----------------------
@pytest.mark.parametrize(
    "path",
    ["/apis/apps/v1/deployments", "/api/v1/configmaps", f"/apis/{GROUP}/v1alpha1/{PLURAL}"],
    ids=["deployments", "configmaps", "unsubscribesyncs"],
)
async def test_a_required_cache_that_cannot_fill_fails_liveness_until_it_fills_again(
    faulty: RunningCluster, path: str
) -> None:
    """The list of a required kind refused (RBAC tightened): no UnsubscribeSync is reconciled, so /healthz
    fails (here at once: grace 0); listing allowed again, it passes without a restart."""
    forbidden = "is forbidden: cannot list resource"
    fault = emulator(faulty).inject(Fault(403, path=path, method="GET", times=None, message=forbidden))
    running = await start_operator(faulty, cache_grace=0.0)
    try:
        await health(running, 500)
        assert running.alive
        emulator(faulty).faults.remove(fault)
        await health(running, 200)
    finally:
        await running.stopped()


async def test_optional_caches_refused_never_fail_liveness(faulty: RunningCluster) -> None:
    for path in ("/apis/batch/v1/jobs", "/apis/monitoring.coreos.com/v1/servicemonitors"):
        emulator(faulty).inject(Fault(403, path=path, method="GET", times=None, message="forbidden"))
    running = await start_operator(faulty, cache_grace=0.0)
    try:
        await health(running, 200)
    finally:
        await running.stopped()


@pytest.mark.parametrize(
    ("failures", "since", "now", "expected_since", "fails"),
    [
        ({"Deployment": None}, {}, 100.0, {}, False),
        ({"Deployment": "403 forbidden"}, {}, 100.0, {"Deployment": 100.0}, False),  # first failure: grace starts
        ({"Deployment": "403 forbidden"}, {"Deployment": 50.0}, 100.0, {"Deployment": 50.0}, False),  # within grace
        ({"Deployment": "500 boom"}, {"Deployment": 30.0}, 100.0, {"Deployment": 30.0}, True),  # grace over
        ({"Deployment": None}, {"Deployment": 30.0}, 100.0, {}, False),  # filled again: reset
    ],
    ids=["ok", "first-failure", "within-grace", "grace-over", "recovered"],
)
def test_cache_problem(
    failures: dict[str, str | None], since: dict[str, float], now: float, expected_since: dict[str, float], fails: bool
) -> None:
    new_since, problem = cache_problem(failures, since, now, 60.0)
    assert new_since == expected_since
    assert (problem is not None) == fails
    if problem is not None:
        assert "Deployment" in problem and "for 70 s" in problem

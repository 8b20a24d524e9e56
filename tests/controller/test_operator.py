"""The real operator (kopf, in-process) against the Kubernetes API emulator over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from tests.fixtures.common import free_port
from tests.fixtures.controller import (
    CHILDREN,
    CR_PATH,
    NS,
    Client,
    children_present,
    condition,
    cr,
    report_push_worker_available,
    secret,
    usync,
)
from tests.fixtures.kube import (
    RunningCluster,
    RunningOperator,
    running_cluster,
    start_operator,
    wait_for,
)
from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.api.spec import Condition, UnsubscribeSyncStatus
from unsubscribe_sync.controller.preflight import run_preflight

MARKETO_FIELD = "ToutApp__Marketo_Sales_Opt_Out__c"


@pytest_asyncio.fixture
async def client(kube: RunningCluster) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(kube, session)


@pytest_asyncio.fixture
async def operator(kube: RunningCluster) -> AsyncIterator[RunningOperator]:
    running = await start_operator(kube)
    yield running
    await running.stopped()


async def test_create_makes_every_child_owned_and_labelled(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets()
    created = await client.post(CR_PATH, cr())
    await wait_for(lambda: children_present(kube), what="children")

    uid = created["metadata"]["uid"]
    for resource, name in CHILDREN.items():
        child = kube.emulator.get(resource, NS, name)
        assert child is not None
        refs = child["metadata"]["ownerReferences"]
        assert refs == [
            {
                "apiVersion": "optout.dev/v1alpha1",
                "kind": "UnsubscribeSync",
                "name": "acme",
                "uid": uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ], resource
        labels = child["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "unsubscribe-sync-operator"
        assert labels["app.kubernetes.io/instance"] == "acme"
        assert child["metadata"]["annotations"]["optout.dev/desired-hash"]
    deployment = kube.emulator.get("apps/v1/deployments", NS, "acme-push-worker")
    assert deployment is not None
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "example.test/unsubscribe-sync:test"
    cronjob = kube.emulator.get("batch/v1/cronjobs", NS, "acme-nightly-sync")
    assert cronjob is not None and cronjob["spec"]["suspend"] is False
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    # No Secret value is copied anywhere the operator writes.
    for resource in CHILDREN:
        for obj in kube.emulator.list(resource, NS):
            text = json.dumps(obj)
            assert "s3cr3t-value" not in text and "hook-t0ken" not in text

    obj = await wait_for(lambda: condition(usync(kube), "CredentialsValid") and usync(kube), what="status")
    assert obj["status"]["observedGeneration"] == 1
    # Children are watched with a server-side selector: other apps' Deployments never reach the operator.
    watches = kube.emulator.watch_params("/apis/apps/v1/deployments")
    assert watches and all(
        p.get("labelSelector") == "app.kubernetes.io/managed-by=unsubscribe-sync-operator" for p in watches
    )
    assert all(p.get("timeoutSeconds", "").isdigit() for p in watches)
    assert obj["status"]["pushField"] == "HasOptedOutOfEmail"


async def test_status_conditions_are_metav1_conditions(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets()
    await client.post(CR_PATH, cr())
    obj = await wait_for(lambda: condition(usync(kube), "Ready") and usync(kube), what="status")
    status = UnsubscribeSyncStatus.model_validate(obj["status"])  # extra="forbid": nothing else in there
    kinds = [c.type for c in status.conditions]
    assert kinds == [
        "Ready",
        "CredentialsValid",
        "FieldInstalled",
        "PushWorkerAvailable",
        "NightlySyncSucceeded",
        "Reconciling",
        "Stalled",
    ]
    for c in status.conditions:
        assert isinstance(c, Condition)
        assert c.observedGeneration == 1
        assert c.lastTransitionTime.endswith("Z")
    ready = condition(obj, "Ready")
    assert ready is not None and ready["status"] == "False"  # no pod is available in the emulator
    assert ready["reason"] == "NoReplicasAvailable"
    assert "status.kopf" not in json.dumps(obj) and "kopf" not in obj["status"]


async def test_push_worker_available_follows_the_deployment_status(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets()
    await client.post(CR_PATH, cr())
    await wait_for(lambda: condition(usync(kube), "PushWorkerAvailable"), what="status")
    first = condition(usync(kube), "PushWorkerAvailable")
    assert first is not None and first["status"] == "False"

    await report_push_worker_available(kube, client)
    available = await wait_for(
        lambda: (c := condition(usync(kube), "PushWorkerAvailable")) and c["status"] == "True" and c, what="available"
    )
    assert available["reason"] == "MinimumReplicasAvailable"
    assert available["lastTransitionTime"] >= first["lastTransitionTime"]
    reconciling = condition(usync(kube), "Reconciling")
    assert reconciling is not None and reconciling["status"] == "False"


async def test_update_target_and_nightly_off_suspends_cronjob_and_switches_push_field(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets()
    await client.post(
        CR_PATH, cr(optOutField={"target": "MarketoSalesOptOut", "marketoSalesOptOutField": "Mkto_Opt_Out__c"})
    )
    await wait_for(
        lambda: (usync(kube) or {}).get("status", {}).get("pushField") == "Mkto_Opt_Out__c", what="pushField"
    )
    config = kube.emulator.get("v1/configmaps", NS, "acme-config")
    assert config is not None and "MarketoSalesOptOut" in json.dumps(config["data"])

    await client.patch(f"{CR_PATH}/acme", {"spec": {"nightlySync": {"enabled": False}}})
    await wait_for(
        lambda: (kube.emulator.get("batch/v1/cronjobs", NS, "acme-nightly-sync") or {}).get("spec", {}).get("suspend"),
        what="suspended cronjob",
    )
    obj = await wait_for(
        lambda: (o := usync(kube)) and o.get("status", {}).get("observedGeneration") == 2 and o, what="generation 2"
    )
    assert obj["status"]["pushField"] == "HasOptedOutOfEmail"
    nightly = condition(obj, "NightlySyncSucceeded")
    assert nightly is not None and (nightly["status"], nightly["reason"]) == ("False", "NightlySyncDisabled")
    config = kube.emulator.get("v1/configmaps", NS, "acme-config")
    assert config is not None
    rendered = "\n".join(config["data"].values())
    assert "enabled: false" in rendered


async def test_deleted_child_is_restored(kube: RunningCluster, client: Client, operator: RunningOperator) -> None:
    await client.secrets()
    await client.post(CR_PATH, cr())
    await wait_for(lambda: children_present(kube), what="children")
    before = kube.emulator.get("apps/v1/deployments", NS, "acme-push-worker")
    assert before is not None

    await client.delete(f"/apis/apps/v1/namespaces/{NS}/deployments/acme-push-worker")
    restored = await wait_for(
        lambda: (
            (d := kube.emulator.get("apps/v1/deployments", NS, "acme-push-worker"))
            and d["metadata"]["uid"] != before["metadata"]["uid"]
            and d
        ),
        what="restored deployment",
    )
    assert restored["spec"] == before["spec"]

    await client.delete(f"/api/v1/namespaces/{NS}/configmaps/acme-config")
    await wait_for(lambda: kube.emulator.get("v1/configmaps", NS, "acme-config"), what="restored configmap")


async def test_edited_child_is_restored(kube: RunningCluster, client: Client, operator: RunningOperator) -> None:
    await client.secrets()
    await client.post(CR_PATH, cr())
    await wait_for(lambda: children_present(kube), what="children")
    cronjob = kube.emulator.get("batch/v1/cronjobs", NS, "acme-nightly-sync")
    assert cronjob is not None
    schedule = cronjob["spec"]["schedule"]

    await client.patch(
        f"/apis/batch/v1/namespaces/{NS}/cronjobs/acme-nightly-sync", {"spec": {"schedule": "* * * * *"}}
    )
    await wait_for(
        lambda: (kube.emulator.get("batch/v1/cronjobs", NS, "acme-nightly-sync") or {})["spec"]["schedule"] == schedule,
        what="schedule restored",
    )
    await client.patch(f"/apis/apps/v1/namespaces/{NS}/deployments/acme-push-worker", {"spec": {"replicas": 7}})
    await wait_for(
        lambda: (kube.emulator.get("apps/v1/deployments", NS, "acme-push-worker") or {})["spec"]["replicas"] == 1,
        what="replicas restored",
    )


async def test_optional_children_follow_the_spec(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets()
    db = {"databaseSecretRef": {"name": "acme-db", "key": "url"}}
    await client.post(f"/api/v1/namespaces/{NS}/secrets", secret("acme-db", url="postgresql://u:pw@db/ledger"))
    monitoring = {"serviceMonitor": {"enabled": True}}
    push = {"webhookSecretRef": {"name": "acme-webhook"}, "replicas": 2}
    await client.post(CR_PATH, cr(pushWorker=push, ledger=db, monitoring=monitoring))
    await wait_for(lambda: kube.emulator.get("policy/v1/poddisruptionbudgets", NS, "acme-push-worker"), what="PDB")
    await wait_for(
        lambda: kube.emulator.get("monitoring.coreos.com/v1/servicemonitors", NS, "acme-push-worker"), what="SM"
    )
    assert kube.emulator.get("v1/persistentvolumeclaims", NS, "acme-ledger") is None  # PostgreSQL: no volume

    push["replicas"] = 1
    await client.patch(
        f"{CR_PATH}/acme", {"spec": {"pushWorker": push, "monitoring": {"serviceMonitor": {"enabled": False}}}}
    )
    await wait_for(
        lambda: kube.emulator.get("policy/v1/poddisruptionbudgets", NS, "acme-push-worker") is None, what="PDB removed"
    )
    await wait_for(
        lambda: kube.emulator.get("monitoring.coreos.com/v1/servicemonitors", NS, "acme-push-worker") is None,
        what="ServiceMonitor removed",
    )
    deployment = kube.emulator.get("apps/v1/deployments", NS, "acme-push-worker")
    assert deployment is not None and deployment["spec"]["replicas"] == 1


async def test_service_monitor_without_its_crd_is_named_in_ready_and_nothing_stalls() -> None:
    async with (
        running_cluster(without=["monitoring.coreos.com/v1/servicemonitors"]) as kube,
        aiohttp.ClientSession() as s,
    ):
        running = await start_operator(kube)
        try:
            client = Client(kube, s)
            await client.secrets()
            await client.post(CR_PATH, cr(monitoring={"serviceMonitor": {"enabled": True}}))
            await wait_for(lambda: children_present(kube), what="the other children")
            await report_push_worker_available(kube, client)
            ready = await wait_for(
                lambda: (c := condition(usync(kube), "Ready")) and c["status"] == "True" and c, what="Ready"
            )
            assert ready["reason"] == "ServiceMonitorRefused"
            assert "ServiceMonitor acme-push-worker" in ready["message"] and "not served" in ready["message"]
            stalled = condition(usync(kube), "Stalled")
            assert stalled is not None and stalled["status"] == "False"
        finally:
            await running.stopped()


async def test_periodic_resync_of_an_unchanged_cr_writes_nothing(kube: RunningCluster, client: Client) -> None:
    running = await start_operator(kube, resync_interval=0.2)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: children_present(kube) and condition(usync(kube), "Ready"), what="reconciled")
        await asyncio.sleep(0.5)
        mark, reconciles = len(kube.emulator.writes), running.runtime.reconciler.reconciles
        await wait_for(lambda: running.runtime.reconciler.reconciles >= reconciles + 3, what="three timer runs")
        assert kube.emulator.writes_since(mark, include_events=True) == []
        # ...and the timer is a safety net: drift the watch did not report gets repaired on the next run.
        original = (kube.emulator.get("v1/configmaps", NS, "acme-config") or {})["data"]
        tampered = {key: "tampered" for key in original}
        kube.emulator.objects["v1/configmaps", NS, "acme-config"]["data"] = tampered  # no watch event
        await wait_for(
            lambda: (kube.emulator.get("v1/configmaps", NS, "acme-config") or {}).get("data") == original,
            what="silent drift repaired",
        )
    finally:
        await running.stopped()


async def test_missing_secret_is_reported_then_recovers(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.post(f"/api/v1/namespaces/{NS}/secrets", secret("acme-webhook", token="hook-t0ken"))
    await client.post(CR_PATH, cr())
    # GitOps order: the children are made even though the Secret is not there yet.
    await wait_for(lambda: children_present(kube), what="children")
    missing = await wait_for(
        lambda: (c := condition(usync(kube), "CredentialsValid")) and c["reason"] == "SecretNotFound" and c,
        what="SecretNotFound",
    )
    assert missing["status"] == "False"
    assert "sales/acme-salesforce" in missing["message"]

    await client.post(
        f"/api/v1/namespaces/{NS}/secrets", secret("acme-salesforce", client_id="id", client_secret="s3cr3t-value")
    )
    recovered = await wait_for(
        lambda: (c := condition(usync(kube), "CredentialsValid")) and c["reason"] != "SecretNotFound" and c,
        what="recovery",
    )
    assert recovered["reason"] == "PreflightDisabled"  # this operator runs without a Salesforce preflight
    obj = usync(kube)
    assert obj is not None and "s3cr3t-value" not in json.dumps(obj)
    events = kube.emulator.list("v1/events", NS)
    assert any(e.get("reason") == "SecretNotFound" and e.get("type") == "Warning" for e in events)
    # The recovery is an event too (CredentialsValid left False).
    await wait_for(
        lambda: any(
            e.get("reason") == "PreflightDisabled" and e.get("type") == "Normal"
            for e in kube.emulator.list("v1/events", NS)
        ),
        what="recovery event",
    )
    events = kube.emulator.list("v1/events", NS)
    assert all("s3cr3t-value" not in json.dumps(e) for e in events)


async def test_invalid_spec_stalls_without_crashing(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets("bad")
    await client.post(CR_PATH, cr("bad", pushWorker={"webhookSecretRef": {"name": "bad-webhook"}, "replicas": 99}))
    stalled = await wait_for(
        lambda: (c := condition(usync(kube, "bad"), "Stalled")) and c["status"] == "True" and c, what="Stalled"
    )
    assert stalled["reason"] == "InvalidSpec"
    assert "spec.pushWorker.replicas" in stalled["message"]
    ready = condition(usync(kube, "bad"), "Ready")
    assert ready is not None and ready["status"] == "False"
    # A good object alongside is still served: the operator did not crash.
    await client.secrets()
    await client.post(CR_PATH, cr())
    await wait_for(lambda: children_present(kube), what="children of the good object")
    assert operator.alive


async def test_deleted_cr_leaves_children_to_garbage_collection(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets()
    created = await client.post(CR_PATH, cr())
    await wait_for(lambda: children_present(kube), what="children")
    await wait_for(
        lambda: "optout.dev/finalizer" in ((usync(kube) or {}).get("metadata", {}).get("finalizers") or []),
        what="finalizer",
    )
    await client.delete(f"{CR_PATH}/acme")
    await wait_for(lambda: usync(kube) is None, what="CR gone (finalizer released)")
    # The emulator has no garbage collector: what matters is that each child names the CR as its controller.
    for resource, name in CHILDREN.items():
        child = kube.emulator.get(resource, NS, name)
        assert child is not None
        owners = [r for r in child["metadata"]["ownerReferences"] if r.get("controller")]
        assert [r["uid"] for r in owners] == [created["metadata"]["uid"]]


async def test_unchanged_cr_makes_zero_writes_after_restart(kube: RunningCluster, client: Client) -> None:
    running = await start_operator(kube)
    await client.secrets()
    await client.post(CR_PATH, cr())
    await wait_for(lambda: children_present(kube) and condition(usync(kube), "Ready"), what="reconciled")
    await report_push_worker_available(kube, client)
    await wait_for(lambda: (condition(usync(kube), "Ready") or {}).get("status") == "True", what="Ready")
    await running.stopped()

    mark = len(kube.emulator.writes)
    restarted = await start_operator(kube)
    try:
        # The resume handler has reconciled once everything is read back: wait for it, then a little longer.
        await wait_for(lambda: restarted.runtime.reconciler.reconciles >= 1, what="resume reconcile")
        await asyncio.sleep(1.0)  # room for any late write to show up (none may)
        assert restarted.runtime.reconciler.reconciles >= 1
        assert kube.emulator.writes_since(mark, include_events=True) == []
    finally:
        await restarted.stopped()


async def test_metrics_are_exposed(kube: RunningCluster, client: Client) -> None:
    port = free_port()
    running = await start_operator(kube, metrics_port=port)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: condition(usync(kube), "Ready"), what="status")
        async with client.session.get(f"http://127.0.0.1:{port}/metrics") as response:
            assert response.status == 200
            text = await response.text()
        assert 'unsubscribe_sync_operator_reconcile_total{result="success"}' in text
        assert "unsubscribe_sync_operator_reconcile_duration_seconds_bucket" in text
        assert 'unsubscribe_sync_operator_resources{ready="false"} 1.0' in text
        assert 'unsubscribe_sync_operator_resources{ready="true"} 0.0' in text
        assert f'unsubscribe_sync_operator_resource_ready{{resource_name="acme",resource_namespace="{NS}"}} 0.0' in text
        successes = [
            line
            for line in text.splitlines()
            if line.startswith('unsubscribe_sync_operator_reconcile_total{result="success"}')
        ]
        assert float(successes[0].split()[-1]) >= 1
    finally:
        await running.stopped()


async def test_preflight_against_the_sandbox_sets_credentials_and_field_conditions(
    kube: RunningCluster, client: Client, sandbox: SandboxHandle
) -> None:
    sandbox.state.remove_field("Contact", MARKETO_FIELD)
    running = await start_operator(kube, preflight=partial(run_preflight, ca_file=sandbox.ca_file))
    try:
        creds = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}
        await client.post(f"/api/v1/namespaces/{NS}/secrets", secret("acme-salesforce", **creds))
        await client.post(f"/api/v1/namespaces/{NS}/secrets", secret("acme-webhook", token="hook-t0ken"))
        salesforce = {"loginUrl": sandbox.url, "credentialsSecretRef": {"name": "acme-salesforce"}}
        await client.post(CR_PATH, cr(salesforce=salesforce, optOutField={"target": "MarketoSalesOptOut"}))
        field = await wait_for(
            lambda: (c := condition(usync(kube), "FieldInstalled")) and c["status"] != "Unknown" and c, what="preflight"
        )
        assert (field["status"], field["reason"]) == ("False", "FieldNotInstalled")
        assert "Contact" in field["message"]
        credentials = condition(usync(kube), "CredentialsValid")
        assert credentials is not None and (credentials["status"], credentials["reason"]) == ("True", "LoginSucceeded")
        ready = condition(usync(kube), "Ready")
        assert ready is not None and (ready["status"], ready["reason"]) == ("False", "FieldNotInstalled")

        # The field gets installed; a spec change (here: the explicit API name) runs the preflight again.
        sandbox.state.configure_field("Contact", MARKETO_FIELD, label="Marketo Sales Opt Out")
        await client.patch(f"{CR_PATH}/acme", {"spec": {"optOutField": {"marketoSalesOptOutField": MARKETO_FIELD}}})
        installed = await wait_for(
            lambda: (c := condition(usync(kube), "FieldInstalled")) and c["status"] == "True" and c, what="installed"
        )
        assert MARKETO_FIELD in installed["message"]
        obj = usync(kube)
        assert obj is not None and obj["status"]["pushField"] == MARKETO_FIELD
        assert sandbox.client_secret not in json.dumps(obj)
    finally:
        await running.stopped()


async def test_nightly_job_termination_message_becomes_last_nightly_sync(
    kube: RunningCluster, client: Client, operator: RunningOperator
) -> None:
    await client.secrets()
    created = await client.post(CR_PATH, cr())
    await wait_for(lambda: children_present(kube), what="children")
    cronjob = kube.emulator.get("batch/v1/cronjobs", NS, "acme-nightly-sync")
    assert cronjob is not None and created
    labels = cronjob["spec"]["jobTemplate"]["metadata"]["labels"]
    job_ref = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "name": "acme-nightly-sync",
        "uid": cronjob["metadata"]["uid"],
        "controller": True,
    }
    job = await client.post(
        f"/apis/batch/v1/namespaces/{NS}/jobs",
        {
            "metadata": {"name": "acme-nightly-sync-29000000", "labels": labels, "ownerReferences": [job_ref]},
            "spec": {"template": {"spec": {"containers": []}}},
        },
    )
    summary = {"toSalesforce": 3, "fromSalesforce": 2, "skippedNoSalesforceId": 1, "failed": 0}
    pod = "acme-nightly-sync-29000000-x1"
    await client.post(
        f"/api/v1/namespaces/{NS}/pods",
        {
            "metadata": {
                "name": pod,
                "labels": {"job-name": "acme-nightly-sync-29000000"},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": "acme-nightly-sync-29000000",
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"containers": []},
        },
    )
    await client.patch(
        f"/api/v1/namespaces/{NS}/pods/{pod}/status",
        {
            "status": {
                "containerStatuses": [
                    {
                        "name": "nightly-sync",
                        "state": {
                            "terminated": {
                                "exitCode": 0,
                                "finishedAt": "2026-11-28T04:10:00Z",
                                "message": "planning...\n" + json.dumps(summary),
                            }
                        },
                    }
                ]
            },
        },
    )
    await client.patch(
        f"/apis/batch/v1/namespaces/{NS}/jobs/acme-nightly-sync-29000000/status",
        {
            "status": {
                "startTime": "2026-11-28T04:00:00Z",
                "completionTime": "2026-11-28T04:10:00Z",
                "succeeded": 1,
                "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-11-28T04:10:00Z"}],
            }
        },
    )

    obj = await wait_for(
        lambda: (o := usync(kube)) and o.get("status", {}).get("lastNightlySync") and o, what="lastNightlySync"
    )
    last = obj["status"]["lastNightlySync"]
    assert last["outcome"] == "Succeeded"
    assert last["counts"] == summary
    assert last["jobName"] == "acme-nightly-sync-29000000"
    nightly = condition(obj, "NightlySyncSucceeded")
    assert nightly is not None and nightly["status"] == "True"


@pytest.mark.parametrize("argv", [["--namespace", "Bad_NS"], ["--resync-interval", "0"]])
def test_operator_command_rejects_bad_input(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from unsubscribe_sync.cli import main

    assert main(["operator", *argv]) == 2
    assert "unsubscribe-sync operator:" in capsys.readouterr().err


async def test_operator_command_runs_with_a_kubeconfig(kube: RunningCluster, client: Client, tmp_path: Path) -> None:
    """The real command line: kubeconfig login (as in-cluster would be), JSON logs without secrets, clean stop."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": kube.url}}],
        "users": [{"name": "u", "user": {"token": "kube-t0ken"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "u"}}],
    }))  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(kubeconfig)
    metrics = free_port()
    log = tmp_path / "operator.log"
    with log.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "unsubscribe_sync", "operator", "--namespace", NS, "--standalone",
             "--metrics-port", str(metrics), "--liveness-port", str(free_port()), "--preflight-interval", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        try:
            await client.secrets()
            await client.post(CR_PATH, cr())
            await wait_for(lambda: children_present(kube), timeout=60, what="children made by the command")
            assert "Bearer kube-t0ken" in kube.emulator.header_values("Authorization")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r.get("event") == "child written" for r in records)
    assert not any(s in line for line in lines for s in ("s3cr3t-value", "hook-t0ken", "kube-t0ken"))

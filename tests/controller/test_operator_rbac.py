"""The RBAC grants what the operator sends, and nothing more (issue 19): the emulator records every request's
(group, resource, verb) as RBAC would check it; deploy/base/rbac.yaml (the source of the chart's rules) is
compared with them after a run through creation, optional children on and off, drift and deletion."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import kopf
import pytest_asyncio
import yaml

from tests.fixtures.controller import CR_PATH, NS, Client, cr, secret, usync
from tests.fixtures.deploy import RBAC_FILE
from tests.fixtures.kube import RunningCluster, running_cluster, start_operator, wait_for

TOKEN = "operator-t0ken"
# Granted but sent by no request: RBAC checks it for blockOwnerDeletion on clusters enforcing owner references.
NOT_REQUESTS = {("optout.dev", "unsubscribesyncs/finalizers", "update")}


def granted() -> set[tuple[str, str, str]]:
    docs = [d for d in yaml.safe_load_all(RBAC_FILE.read_text()) if d and d.get("kind") == "ClusterRole"]
    return {
        (group, resource, verb)
        for rule in docs[0]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[RunningCluster]:
    async with running_cluster() as running:
        yield running


async def test_the_rbac_grants_exactly_the_verbs_the_operator_sends(cluster: RunningCluster) -> None:
    running = await start_operator(cluster, connection=kopf.ConnectionInfo(server=cluster.url, token=TOKEN))
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(cluster, session)
            await client.secrets()
            await client.post(f"/api/v1/namespaces/{NS}/secrets", secret("acme-db", url="postgresql://u:pw@db/l"))
            db = {"databaseSecretRef": {"name": "acme-db", "key": "url"}}
            push = {"webhookSecretRef": {"name": "acme-webhook"}, "replicas": 2}
            monitoring = {"serviceMonitor": {"enabled": True}}
            await client.post(CR_PATH, cr(pushWorker=push, ledger=db, monitoring=monitoring))
            await wait_for(
                lambda: cluster.emulator.get("monitoring.coreos.com/v1/servicemonitors", NS, "acme-push-worker"),
                what="ServiceMonitor",
            )
            push["replicas"] = 1
            await client.patch(
                f"{CR_PATH}/acme", {"spec": {"pushWorker": push, "monitoring": {"serviceMonitor": {"enabled": False}}}}
            )
            await wait_for(
                lambda: cluster.emulator.get("policy/v1/poddisruptionbudgets", NS, "acme-push-worker") is None,
                what="PDB removed",
            )
            await client.delete(f"/apis/apps/v1/namespaces/{NS}/deployments/acme-push-worker")
            await wait_for(lambda: cluster.emulator.get("apps/v1/deployments", NS, "acme-push-worker"), what="restored")
            await client.delete(f"{CR_PATH}/acme")
            await wait_for(lambda: usync(cluster) is None, what="CR gone")
    finally:
        await running.stopped()
    sent = cluster.emulator.verbs_sent(authorization=f"Bearer {TOKEN}")
    assert sent - granted() == set(), "sent without permission"
    # Verbs no code path sends (kopf and the operator patch, never update; events are only created; the nightly
    # pods are only listed): this run sent none of them, and none is granted.
    never = {(g, r, v) for g, r, v in granted() | sent if v == "update"} - NOT_REQUESTS
    never |= {("", "events", "patch"), ("", "pods", "get")}
    assert sent & never == set()
    assert granted() & never == set(), "granted but never sent"

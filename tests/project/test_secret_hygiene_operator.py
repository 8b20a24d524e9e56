"""Secret hygiene of the operator: canary values in the Secrets it reads (Salesforce credentials, a wrong
client secret, the webhook token, a database URL with a password) never reach the CR status, events,
child objects, the operator's log records or its metrics.

The operator runs for real (kopf) against the Kubernetes emulator, with its Salesforce preflight against
the sandbox, so the credentials are actually used.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.fixtures.common import free_port
from tests.fixtures.kube import CORE_RESOURCES, USYNC_RESOURCE, RunningCluster, start_operator, wait_for
from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.controller.preflight import run_preflight

NS = "sales"
CR_PATH = f"/apis/optout.dev/v1alpha1/namespaces/{NS}/unsubscribesyncs"


def _secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def _cr(name: str, login_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "optout.dev/v1alpha1",
        "kind": "UnsubscribeSync",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "salesforce": {"loginUrl": login_url, "credentialsSecretRef": {"name": f"{name}-salesforce"}},
            "pushWorker": {"replicas": 2, "webhookSecretRef": {"name": f"{name}-webhook", "key": "token"}},
            "ledger": {"databaseSecretRef": {"name": f"{name}-db", "key": "url"}},
            "monitoring": {"serviceMonitor": {"enabled": True}},
        },
    }


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def _condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    for c in ((obj or {}).get("status") or {}).get("conditions", []):
        if c.get("type") == kind:
            return dict(c)
    return None


async def test_operator_never_shows_a_secret(
    kube: RunningCluster, sandbox: SandboxHandle, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    canaries = {
        "client secret": sandbox.client_secret,
        "wrong client secret": f"wrong-secret-canary-{secrets.token_hex(12)}",
        "webhook token": f"whk-canary-{secrets.token_hex(12)}",
        "database password": f"dbpw-canary-{secrets.token_hex(12)}",
    }
    db_url = f"postgresql://app:{canaries['database password']}@db.example:5432/ledger"
    secrets_to_create = [
        _secret("good-salesforce", client_id=sandbox.client_id, client_secret=canaries["client secret"]),
        _secret("bad-salesforce", client_id=sandbox.client_id, client_secret=canaries["wrong client secret"]),
    ]
    for name in ("good", "bad"):
        secrets_to_create += [
            _secret(f"{name}-webhook", token=canaries["webhook token"]),
            _secret(f"{name}-db", url=db_url),
        ]
    metrics_port = free_port()
    running = await start_operator(
        kube, preflight=partial(run_preflight, ca_file=sandbox.ca_file), metrics_port=metrics_port
    )
    try:
        for body in secrets_to_create:
            async with http.post(f"{kube.url}/api/v1/namespaces/{NS}/secrets", json=body) as resp:
                assert resp.status < 300, await resp.text()
        for name in ("good", "bad"):
            async with http.post(kube.url + CR_PATH, json=_cr(name, sandbox.url)) as resp:
                assert resp.status < 300, await resp.text()

        def settled(name: str) -> dict[str, Any] | None:
            c = _condition(kube.emulator.get(USYNC_RESOURCE, NS, name), "CredentialsValid")
            return c if c and c["status"] != "Unknown" else None

        good = await wait_for(lambda: settled("good"), what="preflight of good", timeout=60)
        bad = await wait_for(lambda: settled("bad"), what="preflight of bad", timeout=60)
        assert good["status"] == "True", good
        assert bad["status"] == "False" and bad["message"], bad
        async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
            metrics = await resp.text()
    finally:
        await running.stopped()

    surfaces: dict[str, str] = {"metrics": metrics}
    for resource, _, _, _ in CORE_RESOURCES:
        if resource == "v1/secrets":
            continue
        for obj in kube.emulator.list(resource):
            surfaces[f"{resource}/{obj['metadata'].get('name')}"] = json.dumps(obj)
    for obj in kube.emulator.list(USYNC_RESOURCE):
        surfaces[f"UnsubscribeSync/{obj['metadata']['name']}"] = json.dumps(obj)
    surfaces["operator log"] = "\n".join(
        f"{r.name} {r.levelname} {r.getMessage()} {json.dumps(getattr(r, '__dict__', {}), default=str)}"
        for r in caplog.records
    )
    assert any(k.startswith("apps/v1/deployments/") for k in surfaces), "the operator created its children"
    assert any("events" in k for k in surfaces), "the operator posted events"
    leaks = [
        f"{canary} in {where}"
        for where, text in surfaces.items()
        for canary, value in canaries.items()
        if value in text or base64.b64encode(value.encode()).decode() in text
    ]
    assert not leaks, leaks

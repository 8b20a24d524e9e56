"""The login host allowlist, end to end: the real operator (kopf) against the Kubernetes emulator.

A resource whose loginUrl names a host outside the allowlist gets CredentialsValid/Ready False with
reason LoginHostNotAllowed and a Warning event; no Secret is read for it, no login reaches the host
(a local listener records any connection), and its children are neither created nor changed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import aiohttp
import pytest_asyncio

from tests.fixtures.controller import CHILDREN, CR_PATH, NS, Client, children_present, condition, cr, secret, usync
from tests.fixtures.kube import RunningCluster, start_operator, wait_for
from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.controller.preflight import run_preflight


@pytest_asyncio.fixture
async def client(kube: RunningCluster) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(kube, session)


@pytest_asyncio.fixture
async def listener() -> AsyncIterator[tuple[str, list[str]]]:
    """A TCP listener on 127.0.0.2 (loopback, but not the allowed 127.0.0.1) recording every connection."""
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append("connection")
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.2", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"https://127.0.0.2:{port}", seen


def refused(kube: RunningCluster, name: str) -> dict[str, Any] | None:
    c = condition(usync(kube, name), "CredentialsValid")
    return c if c and c["reason"] == "LoginHostNotAllowed" else None


async def test_a_login_host_outside_the_allowlist_gets_no_secret_read_no_login_and_no_children(
    kube: RunningCluster, client: Client, sandbox: SandboxHandle, listener: tuple[str, list[str]]
) -> None:
    url, connections = listener
    running = await start_operator(kube, preflight=partial(run_preflight, ca_file=sandbox.ca_file))
    try:
        creds = {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}
        for name in ("evil", "good"):
            await client.post(f"/api/v1/namespaces/{NS}/secrets", secret(f"{name}-salesforce", **creds))
            await client.post(f"/api/v1/namespaces/{NS}/secrets", secret(f"{name}-webhook", token="hook-t0ken"))
        evil = {"loginUrl": url, "credentialsSecretRef": {"name": "evil-salesforce"}}
        await client.post(CR_PATH, cr("evil", salesforce=evil))
        credentials = await wait_for(lambda: refused(kube, "evil"), what="LoginHostNotAllowed")

        # An allowed one alongside proceeds: it logs in to the sandbox (127.0.0.1, allowed by the tests).
        good = {"loginUrl": sandbox.url, "credentialsSecretRef": {"name": "good-salesforce"}}
        await client.post(CR_PATH, cr("good", salesforce=good))
        logged_in = await wait_for(
            lambda: (c := condition(usync(kube, "good"), "CredentialsValid")) and c["status"] == "True" and c,
            timeout=60,
            what="preflight of the allowed resource",
        )
        assert logged_in["reason"] == "LoginSucceeded"
        assert children_present(kube, "good")
    finally:
        await running.stopped()

    assert credentials["status"] == "False"
    assert "127.0.0.2" in credentials["message"] and "--allowed-login-hosts=127.0.0.2" in credentials["message"]
    obj = usync(kube, "evil")
    ready, stalled = condition(obj, "Ready"), condition(obj, "Stalled")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "LoginHostNotAllowed")
    assert stalled is not None and (stalled["status"], stalled["reason"]) == ("True", "LoginHostNotAllowed")
    assert connections == [], "a request reached the refused login host"
    assert not [p for p in kube.emulator.requested_paths() if p.startswith(f"/api/v1/namespaces/{NS}/secrets/evil-")]
    for resource, child in CHILDREN.items():
        assert kube.emulator.get(resource, NS, child.replace("acme", "evil", 1)) is None, resource
    events = [e for e in kube.emulator.list("v1/events", NS) if e["involvedObject"]["name"] == "evil"]
    assert any(e["reason"] == "LoginHostNotAllowed" and e["type"] == "Warning" for e in events), events
    assert sandbox.client_secret not in json.dumps(obj)


async def test_a_refused_login_host_leaves_existing_children_as_they_were(kube: RunningCluster, client: Client) -> None:
    running = await start_operator(kube)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: children_present(kube) and condition(usync(kube), "Ready"), what="reconciled")
        before = {resource: kube.emulator.get(resource, NS, child) for resource, child in CHILDREN.items()}
        secret_reads = len([p for p in kube.emulator.requested_paths("GET") if "/secrets/" in p])

        await client.patch(
            f"{CR_PATH}/acme", {"spec": {"salesforce": {"loginUrl": "https://evil.example", "apiVersion": "61.0"}}}
        )
        ready = await wait_for(
            lambda: (
                (o := usync(kube))
                and o["status"].get("observedGeneration") == 2
                and (c := condition(o, "Ready"))
                and c["reason"] == "LoginHostNotAllowed"
                and c
            ),
            what="refused after the change",
        )
        assert "evil.example" in ready["message"]
        after = {resource: kube.emulator.get(resource, NS, child) for resource, child in CHILDREN.items()}
        assert after == before  # the ConfigMap still names the old host; nothing was rolled
        assert len([p for p in kube.emulator.requested_paths("GET") if "/secrets/" in p]) == secret_reads

        # Back to an allowed host: the change made meanwhile (apiVersion) is applied and the refusal clears.
        await client.patch(f"{CR_PATH}/acme", {"spec": {"salesforce": {"loginUrl": "https://acme.my.salesforce.com"}}})
        await wait_for(
            lambda: "acme.my.salesforce.com" in json.dumps(kube.emulator.get("v1/configmaps", NS, "acme-config") or {}),
            what="ConfigMap follows the allowed host",
        )
        config = kube.emulator.get("v1/configmaps", NS, "acme-config")
        assert config is not None and "61.0" in json.dumps(config["data"])
        await wait_for(lambda: refused(kube, "acme") is None, what="refusal cleared")
    finally:
        await running.stopped()

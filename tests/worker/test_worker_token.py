"""The webhook token file of a running worker: a rotated Secret needs no restart; a deleted or emptied file refuses
every /v1 request (401) until a non-empty token is back, instead of leaving the old token valid."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.fixtures.worker import make_config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.worker.app import create_app

OLD = "old-webhook-token-0f3a"
NEW = "new-webhook-token-9c1e"


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.close()


async def _status(client: TestClient[Any, Any], token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    resp = await client.post("/v1/unsubscribes", json={"email": "t@example.com"}, headers=headers)
    return resp.status


async def _serve(tmp_path: Path, ledger: Ledger, token_file: Path) -> TestClient[Any, Any]:
    config = make_config(tmp_path)
    config.worker.tokenFile = token_file
    app = create_app(config, ledger=ledger, push=False, token_recheck_seconds=0.0)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_deleting_emptying_and_restoring_the_token_file(tmp_path: Path, ledger: Ledger) -> None:
    token_file = tmp_path / "webhook-token"
    token_file.write_text(OLD + "\n")
    client = await _serve(tmp_path, ledger, token_file)
    try:
        assert await _status(client, OLD) == 202
        token_file.unlink()
        assert await _status(client, OLD) == 401, "a deleted token file must not leave the old token valid"
        assert (await client.get("/v1/unsubscribes", headers={"Authorization": f"Bearer {OLD}"})).status == 401
        token_file.write_text(OLD)
        assert await _status(client, OLD) == 202, "the token is back"
        for emptied in ("", "  \n"):
            token_file.write_text(emptied)
            assert await _status(client, OLD) == 401, f"an emptied token file ({emptied!r}) refuses every request"
            assert await _status(client, "") == 401
        token_file.write_text(NEW)
        assert await _status(client, NEW) == 202
        assert await _status(client, OLD) == 401
        assert (await client.get("/livez")).status == 200, "probes need no token"
    finally:
        await client.close()


async def test_a_kubernetes_secret_swap_is_picked_up_even_with_the_same_mtime_and_size(
    tmp_path: Path, ledger: Ledger
) -> None:
    """A Secret volume holds token -> ..data/token, ..data -> ..<timestamp>/; an update swaps the ..data symlink."""
    mount = tmp_path / "secret"
    for version, token in (("..v1", OLD), ("..v2", NEW)):
        (mount / version).mkdir(parents=True)
        (mount / version / "token").write_text(token)
        os.utime(mount / version / "token", (1_700_000_000, 1_700_000_000))
    (mount / "..data").symlink_to("..v1")
    (mount / "token").symlink_to("..data/token")
    client = await _serve(tmp_path, ledger, mount / "token")
    try:
        assert await _status(client, OLD) == 202
        (mount / "..data_tmp").symlink_to("..v2")
        os.replace(mount / "..data_tmp", mount / "..data")  # what the kubelet does: one atomic rename
        assert await _status(client, NEW) == 202
        assert await _status(client, OLD) == 401
        (mount / "..data_tmp").symlink_to("..v3")  # a swap to a version that is not there: the file is gone
        os.replace(mount / "..data_tmp", mount / "..data")
        assert await _status(client, NEW) == 401
    finally:
        await client.close()


async def test_a_worker_started_without_a_usable_token_refuses_everything(tmp_path: Path, ledger: Ledger) -> None:
    """The CLI stops at start on an unusable file (config.worker.read_token); the app itself fails closed."""
    client = await _serve(tmp_path, ledger, tmp_path / "missing")
    try:
        assert await _status(client, "") == 401
        assert await _status(client, OLD) == 401
        (tmp_path / "missing").write_text(OLD)
        assert await _status(client, OLD) == 202
    finally:
        await client.close()


async def test_a_token_that_is_not_utf8_is_a_401_not_a_500(tmp_path: Path, ledger: Ledger) -> None:
    token_file = tmp_path / "webhook-token"
    token_file.write_text(OLD)
    client = await _serve(tmp_path, ledger, token_file)
    try:
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        body = b'{"email": "t@example.com"}'
        writer.write(
            b"POST /v1/unsubscribes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n".encode()
            + b"Authorization: Bearer "
            + OLD.encode()
            + b"\xff\xfe\r\nConnection: close\r\n\r\n"
            + body
        )
        await writer.drain()
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    finally:
        await client.close()

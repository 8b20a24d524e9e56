"""Every Salesforce HTTP call has a hard deadline: connect plus the whole answer, whatever the server does.

A local server drips a valid JSON answer one byte every 0.5 s (about a minute in all); with
``requestTimeoutSeconds`` 1.5 the connector must give up with its transient error long before the answer
would have finished. Before the deadline existed, requests' per-read timeout kept such a call open for the
whole drip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.scripted_http import Reply, Request, ScriptedServer
from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.salesforce.client import COLLECTIONS_LIMIT, MAX_REAUTH, SalesforceClient
from unsubscribe_sync.salesforce.types import ErrorClass, SalesforceCallError
from unsubscribe_sync.sandbox.tls import TlsFiles, ensure_tls_files

DEADLINE = 1.5
DRIP = 0.5  # seconds between bytes
GIVE_UP_WITHIN = 10.0  # the drip takes about a minute
SECRET = "drip-secret-5b1e"
TOKEN = "drip-token-93ac"
FIELD = "HasOptedOutOfEmail"
CONTACT = "003000000000001AAA"

pytestmark = pytest.mark.timeout(60)


def padded(value: Any, size: int = 120) -> bytes:
    """``value`` as JSON of at least ``size`` bytes (trailing blanks), so a drip lasts size x DRIP seconds."""
    text = json.dumps(value).encode()
    return text + b" " * max(0, size - len(text))


class Org:
    """A fake org whose token and data routes can be told to drip (``slow`` holds route names)."""

    def __init__(self, slow: set[str], *, drip_headers: bool = False, length: bool = True) -> None:
        self.slow = slow
        self.drip_headers = drip_headers
        self.length = length
        self.url = ""
        self.tokens = 0
        self.refuse_sessions = 0  # data calls answered 401 INVALID_SESSION_ID first

    def _reply(self, route: str, value: Any, status: int = 200) -> Reply:
        if route in self.slow:
            return Reply(
                status=status, body=padded(value), drip=DRIP, drip_headers=self.drip_headers, length=self.length
            )
        return Reply.json(value, status)

    def __call__(self, request: Request) -> Reply:
        path = request.path.split("?", 1)[0].rstrip("/")
        if path == "/services/oauth2/token":
            self.tokens += 1
            route = "token" if self.tokens == 1 else "retoken"
            return self._reply(route, {"access_token": TOKEN, "instance_url": self.url, "token_type": "Bearer"})
        if self.refuse_sessions:
            self.refuse_sessions -= 1
            return Reply.json([{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}], 401)
        if path.endswith("/limits"):
            return self._reply("limits", {"DailyApiRequests": {"Max": 100000, "Remaining": 99000}})
        if path.endswith("/composite/sobjects"):
            return self._reply("collections", [{"id": CONTACT, "success": True, "errors": []}])
        if path.endswith("/jobs/ingest"):
            return self._reply("bulk", {"id": "7500000000000001AAA", "state": "Open"})
        return Reply.json([{"errorCode": "NOT_FOUND", "message": "no such route"}], 404)


def write_credentials(directory: Path, grant: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "client_id").write_text("drip-client")
    if grant == "jwt":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        (directory / "username").write_text("drip@example.com")
        (directory / "private_key").write_bytes(pem)
    else:
        (directory / "client_secret").write_text(SECRET)
    return directory


OrgFactory = Callable[..., tuple[SalesforceClient, Org, ScriptedServer]]


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return ensure_tls_files(tmp_path / "tls")


@pytest.fixture
def org(tmp_path: Path, tls_files: TlsFiles) -> Iterator[OrgFactory]:
    opened: list[tuple[SalesforceClient, ScriptedServer]] = []

    def make(
        slow: set[str], *, grant: str = "client_credentials", tls: bool = True, **options: Any
    ) -> tuple[SalesforceClient, Org, ScriptedServer]:
        fake = Org(slow, **options)
        server = ScriptedServer(fake, tls=tls_files if tls else None).__enter__()
        fake.url = server.url
        cfg = SalesforceConfig(
            loginUrl=server.url,
            credentialsDir=write_credentials(tmp_path / f"creds-{len(opened)}", grant),
            caFile=tls_files.ca_file if tls else None,
            requestTimeoutSeconds=DEADLINE,
        )
        client = SalesforceClient.from_config(cfg, bulk_poll_interval=(0.01, 0.05))
        opened.append((client, server))
        return client, fake, server

    yield make
    for client, server in opened:
        client.close()
        server.__exit__(None, None, None)


def gives_up(call: Callable[[], object]) -> tuple[SalesforceCallError, float]:
    started = time.monotonic()
    with pytest.raises(SalesforceCallError) as info:
        call()
    return info.value, time.monotonic() - started


def assert_deadline_error(error: SalesforceCallError, elapsed: float, server: ScriptedServer) -> None:
    assert error.error_class is ErrorClass.TRANSIENT
    assert "deadline" in str(error) and "requestTimeoutSeconds" in str(error)
    assert SECRET not in str(error) and TOKEN not in str(error)
    assert elapsed < GIVE_UP_WITHIN
    # The server was still dripping when the client hung up: the answer never completed.
    deadline = time.monotonic() + 5
    while len(server.sent) < len(server.requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    sent, planned = server.sent[-1]
    assert sent < planned


@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
@pytest.mark.parametrize("grant", ["client_credentials", "jwt"])
def test_a_dripping_token_exchange_hits_the_deadline(org: OrgFactory, grant: str, tls: bool) -> None:
    client, _, server = org({"token"}, grant=grant, tls=tls)
    error, elapsed = gives_up(client.login)
    assert "token request" in str(error)
    assert_deadline_error(error, elapsed, server)


def test_a_dripping_rest_answer_hits_the_deadline(org: OrgFactory) -> None:
    client, _, server = org({"limits"})
    error, elapsed = gives_up(client.limits)
    assert "limits" in str(error)
    assert_deadline_error(error, elapsed, server)


def test_a_dripping_collections_write_hits_the_deadline(org: OrgFactory) -> None:
    client, _, server = org({"collections"})
    error, elapsed = gives_up(lambda: client.write_opt_outs("Contact", [CONTACT], FIELD))
    assert "collections_update" in str(error)
    assert_deadline_error(error, elapsed, server)


def test_a_dripping_reauthentication_hits_the_deadline(org: OrgFactory) -> None:
    client, fake, server = org({"retoken"})
    client.login()
    fake.refuse_sessions = 1
    error, elapsed = gives_up(client.limits)
    assert fake.tokens == 2
    assert_deadline_error(error, elapsed, server)


def test_a_dripping_bulk_job_call_hits_the_deadline(org: OrgFactory) -> None:
    client, _, server = org({"bulk"})
    error, elapsed = gives_up(lambda: client.bulk_write_opt_outs("Contact", [CONTACT], FIELD))
    assert "bulk_ingest" in str(error)
    assert_deadline_error(error, elapsed, server)


def test_dripping_status_line_and_headers_hit_the_deadline(org: OrgFactory) -> None:
    client, _, server = org({"limits"}, drip_headers=True)
    error, elapsed = gives_up(client.limits)
    assert_deadline_error(error, elapsed, server)


def test_a_body_without_length_cut_at_the_deadline_is_not_taken_as_complete(org: OrgFactory) -> None:
    client, _, server = org({"limits"}, length=False)
    error, elapsed = gives_up(client.limits)
    assert_deadline_error(error, elapsed, server)


def test_the_client_works_again_after_a_call_hit_the_deadline(org: OrgFactory) -> None:
    client, fake, _server = org({"limits"})
    gives_up(client.limits)
    fake.slow.clear()
    assert client.limits().max == 100000


def test_the_deadline_and_the_write_budget_are_exposed(tmp_path: Path) -> None:
    cfg = SalesforceConfig(credentialsDir=write_credentials(tmp_path, "client_credentials"), requestTimeoutSeconds=7)
    per_chunk = 2 * MAX_REAUTH + 1
    assert SalesforceClient.max_http_calls(0) == 0
    assert SalesforceClient.max_http_calls(1) == 1 + per_chunk == 6
    assert SalesforceClient.max_http_calls(COLLECTIONS_LIMIT) == 6
    assert SalesforceClient.max_http_calls(COLLECTIONS_LIMIT + 1) == 1 + 2 * per_chunk
    client = SalesforceClient.from_config(cfg)
    assert client.request_deadline_seconds == 7
    assert client.update_deadline_seconds(COLLECTIONS_LIMIT) == 6 * 7

"""TLS trust, proxies and where credentials go.

- ``salesforce.caFile`` ADDS to the default roots (certifi's bundle); a certificate from any other CA is refused;
  REQUESTS_CA_BUNDLE in the environment neither replaces nor widens that trust.
- HTTPS_PROXY / NO_PROXY from the environment are honoured with caFile set, and TLS through the tunnel is
  still verified against caFile.
- Credentials only go to the configured hosts: the token request follows no redirect, and a data call that
  is redirected to another host does not carry the bearer token there.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests.utils

from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.scripted_http import ConnectProxy, Reply, Request, ScriptedServer
from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.salesforce.transport import build_session
from unsubscribe_sync.salesforce.types import AuthenticationError, ErrorClass, SalesforceError
from unsubscribe_sync.sandbox.tls import TlsFiles, ensure_tls_files

SECRET = "trust-secret-0c4d"
TOKEN = "trust-token-77e1"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def other_ca(tmp_path: Path) -> TlsFiles:
    """A second local CA (and a 127.0.0.1 / localhost server certificate it signed)."""
    return ensure_tls_files(tmp_path / "other-ca")


@pytest.fixture
def clients() -> Iterator[list[SalesforceClient]]:
    made: list[SalesforceClient] = []
    yield made
    for client in made:
        client.close()


def make_client(clients: list[SalesforceClient], login_url: str, creds: Path, **cfg: Any) -> SalesforceClient:
    client = SalesforceClient.from_config(SalesforceConfig(loginUrl=login_url, credentialsDir=creds, **cfg))
    clients.append(client)
    return client


def secret_creds(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "client_id").write_text("trust-client")
    (directory / "client_secret").write_text(SECRET)
    return directory


def token_reply(instance_url: str) -> Reply:
    return Reply.json({"access_token": TOKEN, "instance_url": instance_url, "token_type": "Bearer"})


def ca_subjects(context: ssl.SSLContext) -> list[str]:
    names = []
    for cert in context.get_ca_certs():
        for rdn in cert["subject"]:
            names.extend(value for key, value in rdn if key == "commonName")
    return names


# ---------------------------------------------------------------- trust store


def test_ca_file_is_added_to_the_default_roots(sandbox: SandboxHandle) -> None:
    session = build_session(ca_file=sandbox.ca_file, insecure_skip_tls_verify=False, timeout=5)
    context = session.get_adapter("https://example.invalid").ssl_context  # type: ignore[attr-defined]
    certifi_only = ssl.create_default_context(cafile=requests.utils.DEFAULT_CA_BUNDLE_PATH)
    default_roots = certifi_only.cert_store_stats()["x509_ca"]
    assert default_roots > 50  # the public roots
    assert context.cert_store_stats()["x509_ca"] == default_roots + 1  # ... and the sandbox CA on top
    assert "unsubscribe-sync sandbox local CA" in ca_subjects(context)
    assert set(ca_subjects(certifi_only)) <= set(ca_subjects(context))
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname


def test_without_ca_file_the_default_roots_alone_are_trusted() -> None:
    session = build_session(ca_file=None, insecure_skip_tls_verify=False, timeout=5)
    context = session.get_adapter("https://example.invalid").ssl_context  # type: ignore[attr-defined]
    assert "unsubscribe-sync sandbox local CA" not in ca_subjects(context)
    assert context.cert_store_stats()["x509_ca"] > 50


def test_the_sandbox_is_trusted_through_ca_file_whatever_requests_ca_bundle_says(
    sandbox: SandboxHandle, clients: list[SalesforceClient], other_ca: TlsFiles, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca.ca_file))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(other_ca.ca_file))
    client = make_client(clients, sandbox.url, sandbox.write_credentials(tmp_path / "c"), caFile=sandbox.ca_file)
    assert client.login() == sandbox.url
    assert client.limits().max > 0


def test_a_server_signed_by_another_ca_is_refused_and_accepted_once_its_ca_is_the_ca_file(
    sandbox: SandboxHandle, clients: list[SalesforceClient], other_ca: TlsFiles, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Even with the environment naming the other CA: only caFile (and the default roots) count.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca.ca_file))
    with ScriptedServer(lambda r: token_reply("https://127.0.0.1"), tls=other_ca) as server:
        refused = make_client(clients, server.url, secret_creds(tmp_path / "c"), caFile=sandbox.ca_file)
        with pytest.raises(SalesforceError) as info:
            refused.login()
        assert "TLS verification failed" in str(info.value) and "salesforce.caFile" in str(info.value)
        assert server.requests == []  # nothing was sent to an untrusted server

        accepted = make_client(clients, server.url, secret_creds(tmp_path / "c"), caFile=other_ca.ca_file)
        assert accepted.login() == "https://127.0.0.1"


@pytest.mark.parametrize("content", ["not a certificate\n", ""])
def test_a_ca_file_without_a_certificate_is_a_configuration_error(
    tmp_path: Path, clients: list[SalesforceClient], content: str
) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text(content)
    with pytest.raises(SalesforceError) as info:
        make_client(clients, "https://login.salesforce.com", secret_creds(tmp_path / "c"), caFile=bad)
    assert info.value.error_class is ErrorClass.CONFIGURATION and str(bad) in str(info.value)


def test_insecure_skip_tls_verify_accepts_any_certificate(
    clients: list[SalesforceClient], other_ca: TlsFiles, tmp_path: Path
) -> None:
    with ScriptedServer(lambda r: token_reply("https://127.0.0.1"), tls=other_ca) as server:
        client = make_client(clients, server.url, secret_creds(tmp_path / "c"), insecureSkipTlsVerify=True)
        assert client.login() == "https://127.0.0.1"


# ---------------------------------------------------------------- proxies


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    with ConnectProxy() as running:
        for name in ("https_proxy", "http_proxy", "all_proxy", "ALL_PROXY", "HTTP_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", running.url)
        monkeypatch.setenv("NO_PROXY", "")
        yield running


def test_calls_go_through_the_https_proxy_of_the_environment_with_ca_file_set(
    sandbox: SandboxHandle, clients: list[SalesforceClient], proxy: ConnectProxy, tmp_path: Path
) -> None:
    client = make_client(clients, sandbox.url, sandbox.write_credentials(tmp_path / "c"), caFile=sandbox.ca_file)
    assert client.login() == sandbox.url
    assert client.limits().max > 0
    target = sandbox.url.removeprefix("https://")
    assert len(proxy.connects) >= 2 and set(proxy.connects) == {target}  # the token session and the data session


def test_tls_through_the_proxy_is_still_verified_against_ca_file(
    sandbox: SandboxHandle, clients: list[SalesforceClient], proxy: ConnectProxy, other_ca: TlsFiles,
    tmp_path: Path,
) -> None:  # fmt: skip
    client = make_client(clients, sandbox.url, sandbox.write_credentials(tmp_path / "c"), caFile=other_ca.ca_file)
    with pytest.raises(SalesforceError) as info:
        client.login()
    assert "TLS verification failed" in str(info.value)
    assert proxy.connects == [sandbox.url.removeprefix("https://")]


def test_no_proxy_is_honoured(
    sandbox: SandboxHandle, clients: list[SalesforceClient], proxy: ConnectProxy, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = make_client(clients, sandbox.url, sandbox.write_credentials(tmp_path / "c"), caFile=sandbox.ca_file)
    assert client.login() == sandbox.url
    assert proxy.connects == []


# ---------------------------------------------------------------- credentials stay on the configured hosts


def test_the_token_request_does_not_follow_a_redirect(
    clients: list[SalesforceClient], other_ca: TlsFiles, tmp_path: Path
) -> None:
    with ScriptedServer(lambda r: token_reply("https://127.0.0.1"), tls=other_ca, host="localhost") as elsewhere:

        def login(request: Request) -> Reply:
            target = f"{elsewhere.url}/services/oauth2/token"
            return Reply(status=307, body=b"", headers={"Location": target})

        with ScriptedServer(login, tls=other_ca) as server:
            client = make_client(clients, server.url, secret_creds(tmp_path / "c"), caFile=other_ca.ca_file)
            with pytest.raises(AuthenticationError) as info:
                client.login()
    assert "redirect to localhost" in str(info.value) and "salesforce.loginUrl" in str(info.value)
    assert SECRET not in str(info.value)
    assert elsewhere.requests == []  # the secret never left for the other host


def test_a_redirected_data_call_does_not_carry_the_token_to_another_host(
    clients: list[SalesforceClient], other_ca: TlsFiles, tmp_path: Path
) -> None:
    limits = Reply.json({"DailyApiRequests": {"Max": 1000, "Remaining": 990}})
    with ScriptedServer(lambda r: limits, tls=other_ca, host="localhost") as elsewhere:
        instance = ""

        def org(request: Request) -> Reply:
            if request.path.startswith("/services/oauth2/token"):
                return token_reply(instance)
            return Reply(status=302, body=b"", headers={"Location": elsewhere.url + request.path})

        with ScriptedServer(org, tls=other_ca) as server:
            instance = server.url
            client = make_client(clients, server.url, secret_creds(tmp_path / "c"), caFile=other_ca.ca_file)
            assert client.limits().max == 1000
    data_calls = [r for r in server.requests if not r.path.startswith("/services/oauth2/token")]
    assert data_calls and data_calls[0].headers.get("authorization") == f"Bearer {TOKEN}"
    assert elsewhere.requests and all("authorization" not in r.headers for r in elsewhere.requests)

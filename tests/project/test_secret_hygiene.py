"""Secret hygiene: run the real flow with canary secrets and look for them everywhere they must not be.

Canaries: the Salesforce client secret (client credentials flow) or private key (JWT bearer flow), the
webhook token, and a PostgreSQL password in the ledger URL. The flow: the sandbox, a worker, webhook
traffic (good and bad), /metrics, a nightly run, failing runs (unreachable database, refused
credentials) and `render`. No canary may appear in any process's stdout/stderr, any HTTP answer
(body or headers), any metric, or the rendered manifests.

TLS: verification is on by default (a client without the sandbox's CA fails, whatever the
environment says) and only the explicit config key ``salesforce.insecureSkipTlsVerify`` turns it off,
with a warning.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.common import free_port
from tests.fixtures.postgres import PostgresServer
from tests.soak.processes import ManagedProcess, cli, wait_http
from unsubscribe_sync.sandbox import SandboxAdmin

pytestmark = pytest.mark.postgres

JSON = "application/json"
BEARER_LEAK = re.compile(r"Bearer\s+(?!\[REDACTED\])[A-Za-z0-9._~+/=!-]{8,}")


@dataclass
class Evidence:
    """Everything the flow said, by where it came from."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        self.texts[where] = self.texts.get(where, "") + text

    def add_response(self, where: str, resp: requests.Response) -> None:
        headers = "\n".join(f"{k}: {v}" for k, v in resp.headers.items())
        self.add(where, f"HTTP {resp.status_code}\n{headers}\n\n{resp.text}\n")

    def leaks(self, canaries: dict[str, str]) -> list[str]:
        found = []
        for where, text in self.texts.items():
            for name, value in canaries.items():
                if value in text:
                    line = next(li for li in text.splitlines() if value in li)
                    found.append(f"{name} in {where}: {line[:300]}")
            for match in BEARER_LEAK.finditer(text):
                found.append(f"a bearer token in {where}: {match.group(0)[:40]}...")
        return found


def _run(argv: list[str], evidence: Evidence, where: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    evidence.add(where, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done


def _pem_lines(pem: str) -> dict[str, str]:
    """Each base64 line of a PEM body is a canary of its own (a log that prints part of the key leaks it)."""
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return {f"private key line {n}": line for n, line in enumerate(body) if len(line) >= 40}


@pytest.fixture
def canary_db_url(postgres_server: PostgresServer | str, postgres_url: str) -> str:
    """The test database, reached as a role whose password is a canary (trust auth ignores it; it is
    still in the URL, which is what must never be shown)."""
    if not isinstance(postgres_server, PostgresServer):
        pytest.skip("needs the throwaway PostgreSQL server to create a role with a canary password")
    role = f"canary_{secrets.token_hex(4)}"
    password = f"dbpw-canary-{secrets.token_hex(12)}"
    with psycopg.connect(postgres_server.admin_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")
    parts = urllib.parse.urlsplit(postgres_url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))


@dataclass
class Sandbox:
    process: ManagedProcess
    info: dict[str, Any]
    admin: SandboxAdmin


def _start_sandbox(workdir: Path, grant: str) -> Sandbox:
    state_dir = workdir / "sandbox"
    admin_token = secrets.token_hex(16)
    argv = cli(
        "sandbox", "--port", str(free_port()), "--state-dir", str(state_dir),
        "--write-credentials", str(workdir / "credentials"), "--credentials-grant", grant,
        "--seed-contacts", "20", "--seed-leads", "20", "--opted-out-ratio", "0", "--deleted-ratio", "0",
        "--converted-ratio", "0", "--admin-token", admin_token,
    )  # fmt: skip
    proc = ManagedProcess("sandbox", argv, workdir)
    proc.start()
    info_file = state_dir / "sandbox.json"
    deadline = time.monotonic() + 60
    while not (info_file.exists() and info_file.read_text().strip().endswith("}")):
        assert proc.alive and time.monotonic() < deadline, proc.logs()[-2000:]
        time.sleep(0.1)
    info = json.loads(info_file.read_text())
    admin = SandboxAdmin(info["adminUrl"], admin_token, info["caFile"])
    return Sandbox(proc, info, admin)


def _config(sandbox: Sandbox, workdir: Path, name: str, **sections: dict[str, Any]) -> Path:
    config: dict[str, Any] = {
        "salesforce": {
            "loginUrl": sandbox.info["url"],
            "credentialsDir": sandbox.info["credentialsDir"],
            "caFile": sandbox.info["caFile"],
        },
        "logging": {"format": "json", "level": "debug"},
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(params=["client_credentials", "jwt"])
def grant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def sandbox_process(tmp_path: Path, grant: str) -> Iterator[Sandbox]:
    sandbox = _start_sandbox(tmp_path, grant)
    try:
        yield sandbox
    finally:
        sandbox.process.stop()


@pytest.mark.timeout(240)
def test_no_canary_secret_escapes(tmp_path: Path, grant: str, sandbox_process: Sandbox, canary_db_url: str) -> None:
    sandbox = sandbox_process
    evidence = Evidence()
    credentials = Path(sandbox.info["credentialsDir"])
    canaries: dict[str, str] = {}
    if grant == "client_credentials":
        canaries["client secret"] = (credentials / "client_secret").read_text().strip()
    else:
        canaries.update(_pem_lines((credentials / "private_key").read_text()))
    canaries["webhook token"] = f"whk-canary-{secrets.token_hex(12)}"
    canaries["database password"] = urllib.parse.urlsplit(canary_db_url).password or ""
    assert all(len(v) >= 16 for v in canaries.values()), canaries.keys()

    token_file = tmp_path / "webhook-token"
    token_file.write_text(canaries["webhook token"] + "\n")
    url_file = tmp_path / "ledger-url"
    url_file.write_text(canary_db_url)
    port = free_port()
    worker_section = {
        "listen": f"127.0.0.1:{port}",
        "publicListen": None,
        "tokenFile": str(token_file),
        "url": f"http://127.0.0.1:{port}",
    }
    worker_cfg = _config(sandbox, tmp_path, "worker", ledger={"urlFile": str(url_file)}, worker=worker_section)
    worker = ManagedProcess("worker", cli("worker", "--config", str(worker_cfg)), tmp_path)
    worker.start()
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {canaries['webhook token']}"}
    try:
        wait_http(f"{base}/readyz", process=worker, timeout=60)
        contacts = sandbox.admin.find_ids("Contact")[:5]
        good = {"unsubscribes": [{"email": f"contact{n + 1}@example.com", "salesforceId": i, "eventId": f"c{n}"}
                                 for n, i in enumerate(contacts)] + [{"email": "noid@example.com"}]}  # fmt: skip
        resp = requests.post(f"{base}/v1/unsubscribes", json=good, headers=auth, timeout=30)
        assert resp.status_code == 202, resp.text
        evidence.add_response("POST accepted", resp)
        deadline = time.monotonic() + 60
        while set(contacts) - set(sandbox.admin.find_ids("Contact", HasOptedOutOfEmail=True)):
            assert time.monotonic() < deadline, "the push did not land:\n" + worker.logs()[-3000:]
            time.sleep(0.2)
        auth_value = canaries["webhook token"]
        attempts: list[tuple[str, str, dict[str, Any]]] = [
            ("no token", "POST", {"json": good}),
            ("wrong token", "POST", {"json": good, "headers": {"Authorization": "Bearer not-the-token"}}),
            ("token as basic", "POST", {"json": good, "headers": {"Authorization": f"Basic {auth_value}"}}),
            ("invalid body", "POST", {"json": {"email": "x", "salesforceId": "001"}, "headers": auth}),
            ("not json", "POST", {"data": "a=b", "headers": {**auth, "Content-Type": "text/plain"}}),
            ("too big", "POST", {"data": b"x" * (1024 * 1024 + 1), "headers": {**auth, "Content-Type": JSON}}),
            ("broken json", "POST", {"data": "{", "headers": {**auth, "Content-Type": "application/json"}}),
        ]  # fmt: skip
        for name, method, kwargs in attempts:
            evidence.add_response(name, requests.request(method, f"{base}/v1/unsubscribes", timeout=30, **kwargs))
        for path in ("/v1/unsubscribes/contact1@example.com", "/v1/unsubscribes/nobody@example.com",
                     "/v1/unsubscribes?limit=1000", "/v1/unsubscribes?cursor=bogus", "/readyz", "/livez"):  # fmt: skip
            evidence.add_response(f"GET {path}", requests.get(f"{base}{path}", headers=auth, timeout=30))
        evidence.add_response("GET /metrics", requests.get(f"{base}/metrics", timeout=30))

        nightly_cfg = _config(sandbox, tmp_path, "nightly", ledger={"url": canary_db_url}, worker=worker_section)
        done = _run(cli("nightly", "--config", str(nightly_cfg)), evidence, "nightly")
        assert done.returncode == 0, done.stdout + done.stderr
        _run(cli("nightly", "--config", str(nightly_cfg), "--dry-run"), evidence, "nightly --dry-run")
        _run(cli("check", "--config", str(nightly_cfg)), evidence, "check")

        # Failing runs: the database is unreachable (the URL with its password is in every error path).
        dead = urllib.parse.urlsplit(canary_db_url)
        dead_netloc = f"{dead.username}:{dead.password}@127.0.0.1:{free_port()}"
        dead_url = urllib.parse.urlunsplit(dead._replace(netloc=dead_netloc))
        dead_cfg = _config(sandbox, tmp_path, "dead-db", ledger={"url": dead_url},
                           worker={**worker_section, "listen": f"127.0.0.1:{free_port()}"})  # fmt: skip
        assert _run(cli("nightly", "--config", str(dead_cfg)), evidence, "nightly, database down").returncode != 0
        assert _run(cli("worker", "--config", str(dead_cfg)), evidence, "worker, database down").returncode != 0
        # ... and Salesforce refuses the credentials (a wrong secret or a key it does not know).
        wrong = tmp_path / "wrong-credentials"
        wrong.mkdir()
        for item in credentials.iterdir():
            (wrong / item.name).write_text(item.read_text())
        if grant == "client_credentials":
            canaries["wrong client secret"] = f"wrong-secret-canary-{secrets.token_hex(12)}"
            (wrong / "client_secret").write_text(canaries["wrong client secret"])
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            canaries.update({f"wrong {k}": v for k, v in _pem_lines(pem).items()})
            (wrong / "private_key").write_text(pem)
        wrong_cfg = _config(sandbox, tmp_path, "wrong-creds", salesforce={"credentialsDir": str(wrong)},
                            ledger={"url": canary_db_url}, worker=worker_section)  # fmt: skip
        assert _run(cli("check", "--config", str(wrong_cfg)), evidence, "check, refused").returncode != 0
        assert _run(cli("nightly", "--config", str(wrong_cfg)), evidence, "nightly, refused").returncode != 0
    finally:
        worker.stop()
        sandbox.process.stop()
    evidence.add("worker log", worker.logs())
    evidence.add("sandbox log", sandbox.process.logs())
    (tmp_path / "evidence.json").write_text(json.dumps(evidence.texts, indent=1))
    leaks = evidence.leaks(canaries)
    assert not leaks, "\n".join(leaks)
    # The evidence is real: the flow ran and its logs mention what happened.
    assert "unsubscribe" in evidence.texts["worker log"]
    assert '"toSalesforce"' in evidence.texts["nightly"]


CR = """\
apiVersion: optout.dev/v1alpha1
kind: UnsubscribeSync
metadata: {name: acme, namespace: sales}
spec:
  salesforce:
    credentialsSecretRef: {name: acme-salesforce}
  pushWorker:
    replicas: 2
    webhookSecretRef: {name: acme-webhook, key: token}
  ledger:
    databaseSecretRef: {name: acme-db, key: url}
"""


def test_rendered_config_map_refers_to_secrets_by_path_only(tmp_path: Path) -> None:
    (tmp_path / "cr.yaml").write_text(CR)
    done = subprocess.run(cli("render", "-f", str(tmp_path / "cr.yaml")), capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    config_maps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert config_maps
    for cm in config_maps:
        for text in cm["data"].values():
            config = yaml.safe_load(text)
            if not isinstance(config, dict) or "ledger" not in config:
                continue
            assert "url" not in config["ledger"] and config["ledger"].get("urlFile"), config["ledger"]
            assert config["worker"]["tokenFile"] and config["salesforce"]["credentialsDir"]
            assert not re.search(r"(client_secret|private_key|password)\s*:", text, re.I), text
    assert not [d for d in docs if d["kind"] == "Secret"], "render must never produce a Secret"


# ---- TLS -------------------------------------------------------------------------------------------------


def _check(config: Path, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    import os

    done = subprocess.run(cli("check", "--config", str(config), "--json"), capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, **(env or {})})  # fmt: skip
    last = [line for line in done.stdout.splitlines() if line.strip()]
    verdict = json.loads(last[-1]) if last and last[-1].startswith("{") else {}
    return done.returncode, verdict, done.stdout + done.stderr


def _credentials(verdict: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in verdict.get("requirements", []) if r["name"] == "credentials")


@pytest.mark.parametrize("grant", ["client_credentials"])
@pytest.mark.timeout(180)
def test_tls_is_verified_unless_the_config_says_otherwise(tmp_path: Path, sandbox_process: Sandbox) -> None:
    sandbox = sandbox_process
    trusted = _config(sandbox, tmp_path, "trusted")
    status, verdict, output = _check(trusted)
    assert _credentials(verdict)["status"] == "ok", output

    untrusted = _config(sandbox, tmp_path, "untrusted", salesforce={"caFile": None})
    for env in (None, {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "", "PYTHONHTTPSVERIFY": "0", "SSL_CERT_FILE": ""}):
        status, verdict, output = _check(untrusted, env)
        assert status != 0, output
        credentials = _credentials(verdict)
        assert credentials["status"] == "fail", output
        assert re.search(r"certificate|TLS|SSL", credentials["detail"], re.I), credentials
        assert "tls_verification_disabled" not in output

    insecure = _config(sandbox, tmp_path, "insecure", salesforce={"caFile": None, "insecureSkipTlsVerify": True})
    status, verdict, output = _check(insecure)
    assert _credentials(verdict)["status"] == "ok", output
    assert "tls_verification_disabled" in output and "insecureSkipTlsVerify" in output

"""`unsubscribe-sync demo`: the whole flow on this machine, then a short report.

In a temporary directory: a sandbox Salesforce (HTTPS, local CA) seeded with Contacts and Leads (some
already opted out there), the credentials and config files a deployment would mount, the push worker
(a subprocess, SQLite ledger); a few unsubscribes posted to the webhook (Contacts, a Lead given by its
15-character id, one without an id), read back from Salesforce once pushed; a Mailgun-signed unsubscribe
webhook and an RFC 8058 one-click link on the worker's public listener; then one nightly sync (run by the
worker, as in SQLite mode in a cluster) and a report; last, a second worker in the Email matching mode sets
every record sharing an unsubscribed address. Everything is stopped and removed at the end.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import yaml
from rich.console import Console
from rich.table import Table

from unsubscribe_sync.api.config import Config, load_config
from unsubscribe_sync.logs import mask_email

SEED_CONTACTS = 60
SEED_LEADS = 40
EMAIL_DOMAIN = "acme-demo.com"
READY_TIMEOUT = 30.0
PUSH_TIMEOUT = 30.0


class DemoError(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (prints its path)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _secret_file(path: Path, value: str) -> Path:
    path.write_text(value)
    path.chmod(0o600)
    return path


def _write_files(tmp: Path, sandbox: Any, port: int, public_port: int) -> tuple[Path, str, str]:
    """Config and secret files; returns (config path, bearer token, Mailgun signing key)."""
    creds = sandbox.credentials.write(tmp / "salesforce")
    token = secrets.token_urlsafe(24)
    token_file = _secret_file(tmp / "webhook-token", token)
    mailgun_key = secrets.token_hex(16)
    config = write_local_config(
        tmp,
        sandbox,
        creds,
        token_file,
        port,
        public_port=public_port,
        one_click_key_file=_secret_file(tmp / "one-click-keys", secrets.token_urlsafe(32) + "\n"),
        mailgun_key_file=_secret_file(tmp / "mailgun-signing-key", mailgun_key),
        poll_seconds=0,  # off: the demo shows the nightly bringing Salesforce's opt-outs in (the poll is quicker)
    )
    return config, token, mailgun_key


def write_local_config(
    tmp: Path,
    sandbox: Any,
    credentials_dir: Path,
    token_file: Path,
    port: int,
    *,
    public_port: int | None = None,
    one_click_key_file: Path | None = None,
    mailgun_key_file: Path | None = None,
    poll_seconds: int | None = None,
    matching_mode: str | None = None,
) -> Path:
    """A config file for a worker on 127.0.0.1:``port`` with a SQLite ledger in ``tmp``, against ``sandbox``.

    The public listener is off unless ``public_port`` is given (then on 127.0.0.1, with one-click links and the
    Mailgun webhook when their key files are given)."""
    config = {
        "salesforce": {
            "loginUrl": sandbox.url,
            "credentialsDir": str(credentials_dir),
            "caFile": str(sandbox.ca_file),
            "objects": ["Contact", "Lead"],
        },
        "optOut": {"target": "EmailOptOut"},
        "nightly": {"enabled": True},
        "ledger": {"url": f"sqlite:///{tmp / 'ledger.db'}"},
        "worker": {"listen": f"127.0.0.1:{port}", "tokenFile": str(token_file), "url": f"http://127.0.0.1:{port}"},
        "logging": {"format": "json", "level": "warning"},
    }
    if matching_mode is not None:
        config["matching"] = {"mode": matching_mode}
    if poll_seconds is not None:
        config["salesforcePoll"] = {"intervalSeconds": poll_seconds}
    config["worker"]["publicListen"] = f"127.0.0.1:{public_port}" if public_port else None
    if public_port and one_click_key_file is not None:
        config["oneClick"] = {"keyFile": str(one_click_key_file), "baseUrl": f"http://127.0.0.1:{public_port}"}
    if public_port and mailgun_key_file is not None:
        config["senders"] = {"mailgun": {"signingKeyFile": str(mailgun_key_file)}}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _start_worker(config_path: Path, tmp: Path, url: str) -> subprocess.Popen[bytes]:
    log = (tmp / "worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise DemoError(f"the worker exited ({proc.returncode}): {(tmp / 'worker.log').read_text()[-2000:]}")
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise DemoError("the worker did not become ready in time")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _pick(state: Any, sobject: str, count: int) -> list[tuple[str, str]]:
    """(id, email) of records that are not opted out yet (nor converted/deleted)."""
    extra = {"IsConverted": False} if sobject == "Lead" else {}
    ids = state.find_ids(sobject, HasOptedOutOfEmail=False, **extra)[:count]
    return [(rid, str(state.get_record(rid)["Email"])) for rid in ids]


def _wait_pushed(state: Any, ids: list[str]) -> dict[str, bool]:
    deadline = time.monotonic() + PUSH_TIMEOUT
    while True:
        done = {rid: bool(state.get_record(rid)["HasOptedOutOfEmail"]) for rid in ids}
        if all(done.values()) or time.monotonic() > deadline:
            return done
        time.sleep(0.1)


def _run(console: Console, tmp: Path) -> int:
    from unsubscribe_sync.commands.nightly import execute
    from unsubscribe_sync.sandbox import SandboxServer

    started = time.monotonic()
    with SandboxServer(tmp / "tls") as sandbox:
        state = sandbox.state
        state.set_bulk_processing_time(0.05)
        seeded = state.seed(
            SEED_CONTACTS, SEED_LEADS, opted_out_ratio=0.15, converted_ratio=0.1, deleted_ratio=0.0,
            email_domain=EMAIL_DOMAIN, rng_seed=7,
        )  # fmt: skip
        console.print(f"[bold]1.[/] Sandbox Salesforce at {sandbox.url}: {_seed_text(seeded)}")
        port = _free_port()
        public_port = _free_port()
        config_path, token, mailgun_key = _write_files(tmp, sandbox, port, public_port)
        config: Config = load_config(config_path)
        url = config.worker.url
        worker = _start_worker(config_path, tmp, url)
        try:
            console.print(
                f"[bold]2.[/] Push worker at {url} (SQLite ledger {tmp / 'ledger.db'}); "
                f"public listener at http://127.0.0.1:{public_port}"
            )
            contacts = _pick(state, "Contact", 2)
            leads = _pick(state, "Lead", 1)
            body = {
                "unsubscribes": [
                    {"email": contacts[0][1], "salesforceId": contacts[0][0], "source": "demo"},
                    {"email": contacts[1][1], "salesforceId": contacts[1][0], "source": "demo"},
                    {"email": leads[0][1], "salesforceId": leads[0][0][:15], "source": "demo"},
                    {"email": f"no-salesforce-id@{EMAIL_DOMAIN}", "source": "demo"},
                ]
            }
            headers = {"Authorization": f"Bearer {token}"}
            answer = requests.post(f"{url}/v1/unsubscribes", json=body, headers=headers, timeout=10)
            if answer.status_code != 202:
                raise DemoError(f"the webhook refused the unsubscribes: HTTP {answer.status_code} {answer.text}")
            console.print(f"[bold]3.[/] Posted 4 unsubscribes to the webhook: {answer.json()}")
            targets = [contacts[0], contacts[1], leads[0]]
            pushed = _wait_pushed(state, [rid for rid, _ in targets])
            table = Table(title="Real-time push, read back from Salesforce")
            for column in ("object", "Salesforce id", "email", "HasOptedOutOfEmail"):
                table.add_column(column)
            for (rid, email), obj in zip(targets, ("Contact", "Contact", "Lead (sent as 15-char id)"), strict=True):
                table.add_row(obj, rid, email, "true" if pushed[rid] else "[red]false[/]")
            table.add_row("-", "(none)", str(body["unsubscribes"][3]["email"]), "skipped: no id")
            console.print(table)
            if not all(pushed.values()):
                raise DemoError("the push did not reach Salesforce in time")
            public_emails = _public_listener(console, url, f"http://127.0.0.1:{public_port}", headers, mailgun_key)

            state.set_fields(contacts[1][0], {"HasOptedOutOfEmail": False})
            console.print(
                f"[bold]4.[/] A Salesforce user clears the opt-out of {contacts[1][1]} ({contacts[1][0]}); "
                "opt-out wins, so the nightly sync sets it again"
            )
            console.print("[bold]5.[/] Nightly sync (SQLite ledger: the worker runs it)")
            summary, where = execute(config, dry_run=False, local=False)
            if summary.get("outcome") != "Succeeded":
                raise DemoError(f"the nightly sync failed: {summary.get('error')}")
            _report(console, summary, where)
            from_sf = _first_from_salesforce(state, url, headers)
            _history(console, url, headers, [contacts[1][1], *from_sf, *public_emails])
        finally:
            _stop(worker)
        _email_matching(console, tmp / "email-mode", sandbox)
    console.print(f"[bold green]Demo finished in {time.monotonic() - started:.1f} s[/]; everything stopped.")
    return 0


def _public_listener(console: Console, url: str, public: str, headers: dict[str, str], mailgun_key: str) -> list[str]:
    """A Mailgun-signed unsubscribe and a one-click link, on the public listener; returns the two addresses.

    Both carry an address only: in the SalesforceId matching mode they are stored and counted skipped.
    """
    import hashlib
    import hmac

    sender_email, link_email = f"mailgun-recipient@{EMAIL_DOMAIN}", f"one-click-recipient@{EMAIL_DOMAIN}"
    timestamp, token = str(int(time.time())), secrets.token_hex(25)
    event = {
        "signature": {
            "timestamp": timestamp,
            "token": token,
            "signature": hmac.new(mailgun_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest(),
        },
        "event-data": {"event": "unsubscribed", "id": secrets.token_urlsafe(16), "recipient": sender_email,
                       "timestamp": time.time()},
    }  # fmt: skip
    webhook = requests.post(f"{public}/v1/webhooks/mailgun", json=event, timeout=10)
    made = requests.post(
        f"{url}/v1/unsubscribe-links", json={"recipients": [{"email": link_email}]}, headers=headers, timeout=10
    )
    if webhook.status_code != 200 or made.status_code != 200:
        raise DemoError(f"public listener: webhook HTTP {webhook.status_code}, links HTTP {made.status_code}")
    link = made.json()["links"][0]
    preview = requests.get(link["url"], timeout=10)  # a link scanner's GET: a confirm page, nothing stored
    clicked = requests.post(
        link["url"], data=link["listUnsubscribePost"], timeout=10, allow_redirects=False,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    if preview.status_code != 200 or clicked.status_code != 200:
        raise DemoError(f"one-click link: GET HTTP {preview.status_code}, POST HTTP {clicked.status_code}")
    table = Table(title="Public listener (address-only unsubscribes: stored, push skipped in SalesforceId mode)")
    for column in ("request", "answer"):
        table.add_column(column)
    table.add_row("POST /v1/webhooks/mailgun (signed 'unsubscribed' event)", f"{webhook.status_code} {webhook.json()}")
    table.add_row("POST /v1/unsubscribe-links (internal, bearer)", f"{made.status_code} List-Unsubscribe: <.../u/...>")
    table.add_row("GET /u/<token> (a link scanner)", f"{preview.status_code} confirm page, nothing stored")
    table.add_row("POST /u/<token> List-Unsubscribe=One-Click", f"{clicked.status_code} unsubscribed")
    console.print(table)
    return [sender_email, link_email]


def _email_matching(console: Console, tmp: Path, sandbox: Any) -> None:
    """A worker in the Email matching mode: one address-only unsubscribe sets every record of the address."""
    state = sandbox.state
    address = f"pat.doe@{EMAIL_DOMAIN}"
    records = [
        ("Contact", state.add_record("Contact", "Pat.Doe@acme-demo.com"), "Pat.Doe@acme-demo.com"),
        ("Lead", state.add_record("Lead", "pat.doe@ACME-DEMO.com"), "pat.doe@ACME-DEMO.com"),
        ("Lead", state.add_record("Lead", "PAT.DOE@acme-demo.com"), "PAT.DOE@acme-demo.com"),
    ]
    converted = state.add_record("Lead", address, converted=True)
    tmp.mkdir()
    token = secrets.token_urlsafe(24)
    port = _free_port()
    config_path = write_local_config(
        tmp, sandbox, tmp.parent / "salesforce", _secret_file(tmp / "webhook-token", token), port,
        poll_seconds=0, matching_mode="Email",
    )  # fmt: skip
    url = load_config(config_path).worker.url
    worker = _start_worker(config_path, tmp, url)
    try:
        console.print(
            f"[bold]6.[/] Email matching (matching.mode: Email), a second worker at {url}: a Contact and two "
            f"Leads share {address} in mixed case, a fourth record is a converted Lead; one unsubscribe "
            "with the address only"
        )
        answer = requests.post(
            f"{url}/v1/unsubscribes", json={"unsubscribes": [{"email": address, "source": "demo"}]},
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        )  # fmt: skip
        if answer.status_code != 202:
            raise DemoError(f"the Email-mode webhook refused the unsubscribe: HTTP {answer.status_code}")
        pushed = _wait_pushed(state, [rid for _, rid, _ in records])
    finally:
        _stop(worker)
    table = Table(title="Email matching: every record of the address, read back from Salesforce")
    for column in ("object", "Salesforce id", "Email in Salesforce", "HasOptedOutOfEmail"):
        table.add_column(column)
    for obj, rid, email in records:
        table.add_row(obj, rid, email, "true" if pushed[rid] else "[red]false[/]")
    left = bool(state.get_record(converted)["HasOptedOutOfEmail"])
    table.add_row("Lead (converted)", converted, address, f"{str(left).lower()} (converted Leads are left alone)")
    console.print(table)
    if not all(pushed.values()) or left:
        raise DemoError("Email matching did not set exactly the address's unconverted records in time")


def _seed_text(seeded: dict[str, dict[str, int]]) -> str:
    parts = []
    for name, info in seeded.items():
        extra = f", {info['converted']} converted" if "converted" in info else ""
        parts.append(f"{info['created']} {name}s ({info['optedOut']} opted out{extra})")
    return "; ".join(parts)


def _report(console: Console, summary: dict[str, Any], where: str) -> None:
    table = Table(title=f"Nightly sync ({summary.get('outcome')}, field {summary.get('field')}, ran in the {where})")
    for column in ("object", "to Salesforce", "from Salesforce", "already in sync", "failed"):
        table.add_column(column, justify="right")
    for name, totals in (summary.get("objects") or {}).items():
        table.add_row(
            name,
            str(totals["toSalesforce"]),
            str(totals["fromSalesforce"]),
            str(totals["inSync"]),
            str(totals["failed"]),
        )
    table.add_row(
        "total",
        str(summary["toSalesforce"]),
        str(summary["fromSalesforce"]),
        "",
        str(summary["failed"]),
        style="bold",
    )
    console.print(table)
    console.print(
        f"toSalesforce={summary['toSalesforce']} fromSalesforce={summary['fromSalesforce']} "
        f"skippedNoSalesforceId={summary['skippedNoSalesforceId']} failed={summary['failed']} "
        f"(Salesforce API calls: {summary.get('apiCalls')})"
    )


def _first_from_salesforce(state: Any, url: str, headers: dict[str, str]) -> list[str]:
    """The email of one record the nightly sync brought in from Salesforce."""
    for sobject in ("Contact", "Lead"):
        for rid in state.find_ids(sobject, HasOptedOutOfEmail=True):
            email = str(state.get_record(rid)["Email"])
            found = requests.get(f"{url}/v1/unsubscribes/{email}", headers=headers, timeout=10)
            if found.status_code == 200 and any(
                h["source"] == "salesforce-sync" and h["action"] == "unsubscribed" for h in found.json()["history"]
            ):
                return [email]
    return []


def _history(console: Console, url: str, headers: dict[str, str], emails: list[str]) -> None:
    table = Table(title="Unsubscribe history (GET /v1/unsubscribes/{email})")
    for column in ("email", "at", "source", "action", "outcome"):
        table.add_column(column)
    for email in emails:
        found = requests.get(f"{url}/v1/unsubscribes/{email}", headers=headers, timeout=10)
        if found.status_code != 200:
            raise DemoError(f"GET /v1/unsubscribes/{mask_email(email)}: HTTP {found.status_code}")
        for entry in found.json()["history"]:
            table.add_row(email, entry["at"][:19], entry["source"], entry["action"], entry.get("outcome", ""))
    console.print(table)


def run(args: argparse.Namespace) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=130)
    tmp = Path(tempfile.mkdtemp(prefix="usync-demo-"))
    try:
        return _run(console, tmp)
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
        return 1
    finally:
        if args.keep:
            console.print(f"files kept in {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)

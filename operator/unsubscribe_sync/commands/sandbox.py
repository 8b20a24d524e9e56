"""`unsubscribe-sync sandbox`: a local Salesforce-compatible server over TLS, seeded, with fault injection.

Prints the URL (login and instance URL), the CA file to trust, where the credentials were written, and the
admin API; the last stdout line is the same as JSON (also written to STATE_DIR/sandbox.json) for programs that
start the sandbox as a subprocess. The admin token is written to STATE_DIR/admin_token, never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from unsubscribe_sync.sandbox import SandboxServer, SandboxState
from unsubscribe_sync.sandbox.credentials import GRANTS


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from exc
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_count, default=0, help="port to listen on (default: a free port)")
    parser.add_argument("--seed-contacts", type=_count, default=0, metavar="N", help="Contacts to create")
    parser.add_argument("--seed-leads", type=_count, default=0, metavar="N", help="Leads to create")
    parser.add_argument("--opted-out-ratio", type=_ratio, default=0.1, metavar="R", help="share opted out (0.1)")
    parser.add_argument("--marketo-opted-out-ratio", type=_ratio, default=0.0, metavar="R",
                        help="share with the Marketo Sales Opt Out field set (0)")  # fmt: skip
    parser.add_argument("--converted-ratio", type=_ratio, default=0.05, metavar="R", help="share of converted Leads")
    parser.add_argument("--deleted-ratio", type=_ratio, default=0.01, metavar="R", help="share deleted (0.01)")
    parser.add_argument("--rng-seed", type=int, default=0, help="seed of the record generator (default 0)")
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="MS", help="added latency per request")
    parser.add_argument("--daily-api-limit", type=_count, default=None, metavar="N", help="daily API allowance")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help="where the CA, server certificate, admin token and sandbox.json go "
                        "(default: a temporary directory)")  # fmt: skip
    parser.add_argument("--write-credentials", type=Path, default=None, metavar="DIR",
                        help="write the connected app's credentials here, one file per Secret key")  # fmt: skip
    parser.add_argument("--credentials-grant", choices=GRANTS, default="client_credentials",
                        help="which credentials to write: client_id + client_secret, or client_id + username + "
                        "private_key (jwt)")  # fmt: skip
    parser.add_argument("--admin-token", default=None, help="token the admin API requires (default: random)")


async def _serve(server: SandboxServer, info: dict[str, Any]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start_async()
    print(f"sandbox URL (login and instance): {info['url']}")
    print(f"CA file: {info['caFile']}")
    if info["credentialsDir"]:
        print(f"credentials ({info['credentialsGrant']}): {info['credentialsDir']}")
    print(f"admin API: {info['adminUrl']} (header X-Sandbox-Admin-Token, token in {info['adminTokenFile']})")
    print(json.dumps(info), flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop_async()


def run(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir or Path(tempfile.mkdtemp(prefix="unsubscribe-sync-sandbox-"))
    state_dir.mkdir(parents=True, exist_ok=True)
    state = SandboxState(rng_seed=args.rng_seed)
    if args.daily_api_limit is not None:
        state.set_daily_api_limit(args.daily_api_limit)
    state.set_latency(args.latency_ms)
    if args.seed_contacts or args.seed_leads:
        state.seed(
            args.seed_contacts, args.seed_leads, opted_out_ratio=args.opted_out_ratio,
            converted_ratio=args.converted_ratio, deleted_ratio=args.deleted_ratio,
            marketo_opted_out_ratio=args.marketo_opted_out_ratio,
        )  # fmt: skip
    admin_token = args.admin_token or secrets.token_hex(16)
    token_file = state_dir / "admin_token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(admin_token)
    try:
        server = SandboxServer(state_dir / "tls", state, host=args.host, port=args.port, admin_token=admin_token)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    credentials_dir = None
    if args.write_credentials is not None:
        credentials_dir = server.credentials.write(args.write_credentials, args.credentials_grant)
    info = {
        "url": server.url,
        "caFile": str(server.ca_file),
        "credentialsDir": str(credentials_dir) if credentials_dir else None,
        "credentialsGrant": args.credentials_grant if credentials_dir else None,
        "adminUrl": server.admin_url,
        "adminTokenFile": str(token_file),
        "records": {name: summary["records"] for name, summary in state.snapshot()["objects"].items()},
    }
    (state_dir / "sandbox.json").write_text(json.dumps(info, indent=2) + "\n")
    asyncio.run(_serve(server, info))
    return 0

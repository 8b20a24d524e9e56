"""`unsubscribe-sync nightly --config FILE [--dry-run] [--local]`: one nightly bidirectional sync.

Exit status 0 when the run succeeded, 1 when it failed (a requirement not met, Salesforce or the
ledger failing mid-run), 2 when the config file cannot be used. The LAST stdout line is always the
JSON summary ``{"toSalesforce":N,"fromSalesforce":N,"skippedNoSalesforceId":N,"failed":N}``; the same
counts plus startTime, completionTime and outcome go to the container's termination message file
(``/dev/termination-log`` when it is writable, or ``$UNSUBSCRIBE_SYNC_TERMINATION_LOG``), where the
operator reads them into the CR's status. ``--dry-run`` prints the plan and writes nothing anywhere.

With the blast-radius guard set (``nightly.maxChangeRatio`` / ``nightly.maxChanges``), a run that would
change more stops before its first write: exit 1, the error names the direction, the count and the limit,
and the contract line's counts are what was written (zeros). ``--dry-run`` says whether the guard would
stop the run (and still exits 0: the plan was made).

Where the run happens (same config file as the worker):

- PostgreSQL ledger: in this process. The database serialises the writes of the job and the worker.
- SQLite ledger: the file belongs to the push worker (in Kubernetes, on the worker's ReadWriteOnce
  volume, which the CronJob's pod may not be able to mount). So the command asks the worker to run the
  sync in its own process: ``POST {worker.url}/v1/nightly-runs?dryRun=...`` with the webhook token from
  ``worker.tokenFile``, and prints the summary the worker returns. Only when the worker cannot be
  reached (connection refused / no token) and the SQLite file is present on this machine does the
  command open the file itself: WAL mode, ``BEGIN IMMEDIATE`` and a busy timeout make a second process
  on the same host safe. ``--local`` skips the worker and always runs in this process.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import requests
from sqlalchemy.engine import make_url

from unsubscribe_sync.api.config import Config, ConfigError
from unsubscribe_sync.commands.common import BAD_CONFIG_EXIT, limit_malloc_arenas, load_config_for
from unsubscribe_sync.logs import get_logger, redact_text
from unsubscribe_sync.nightly.report import contract_line, termination_log_path, write_termination_log

log = get_logger(__name__)

WORKER_CONNECT_TIMEOUT = 5.0
WORKER_READ_TIMEOUT = 6 * 3600.0  # a run over millions of records takes minutes; the worker answers at the end


class WorkerUnreachable(Exception):
    """The worker could not be asked (no answer, or no token to ask with)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file (the same one the worker reads)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; write nothing anywhere")
    parser.add_argument(
        "--local", action="store_true", help="run in this process even with a SQLite ledger (do not ask the worker)"
    )


def _sqlite_path(config: Config) -> Path | None:
    """The SQLite ledger file of the config, or None for PostgreSQL."""
    url = config.ledger.resolve_url()
    if not url.startswith("sqlite://"):
        return None
    database = make_url(url).database
    return Path(database) if database else None


def ask_worker(config: Config, *, dry_run: bool) -> dict[str, Any]:
    """Run the sync inside the worker; WorkerUnreachable when it cannot be asked, RuntimeError on a refusal."""
    try:
        token = config.worker.read_token()
    except ConfigError as exc:
        raise WorkerUnreachable(str(exc)) from None
    url = config.worker.url.rstrip("/") + "/v1/nightly-runs"
    try:
        response = requests.post(
            url,
            params={"dryRun": "true" if dry_run else "false"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=(WORKER_CONNECT_TIMEOUT, WORKER_READ_TIMEOUT),
        )
    except requests.ConnectionError as exc:
        raise WorkerUnreachable(f"worker at {config.worker.url} unreachable ({type(exc).__name__})") from None
    if response.status_code == 200:
        body = response.json()
        if isinstance(body, dict):
            return body
    try:
        detail = response.json().get("error")
    except (ValueError, AttributeError):
        detail = response.text[:300]
    raise RuntimeError(
        f"the worker at {config.worker.url} refused the nightly run: HTTP {response.status_code} {detail}"
    )


def _progress(dry_run: bool) -> Any:
    from unsubscribe_sync.nightly.progress import LogProgress, RichProgress

    return RichProgress() if sys.stderr.isatty() else LogProgress()


def run_here(config: Config, *, dry_run: bool) -> dict[str, Any]:
    from unsubscribe_sync.nightly.job import run_nightly

    progress = _progress(dry_run)
    try:
        return run_nightly(config, dry_run=dry_run, progress=progress)
    finally:
        close = getattr(progress, "close", None)
        if close is not None:
            close()


def execute(config: Config, *, dry_run: bool, local: bool) -> tuple[dict[str, Any], str]:
    """(summary, where it ran: "local" or "worker")."""
    sqlite_file = _sqlite_path(config)
    if sqlite_file is None or local:
        return run_here(config, dry_run=dry_run), "local"
    print(f"unsubscribe-sync nightly: SQLite ledger: asking the worker at {config.worker.url}", file=sys.stderr)
    try:
        return ask_worker(config, dry_run=dry_run), "worker"
    except WorkerUnreachable as exc:
        if not sqlite_file.exists():
            raise RuntimeError(
                f"{exc}, and the SQLite ledger {sqlite_file} is not on this machine: run the nightly sync where "
                "the worker runs, or start the worker"
            ) from None
        print(f"unsubscribe-sync nightly: {exc}; running here on the local SQLite ledger", file=sys.stderr)
        return run_here(config, dry_run=dry_run), "local"


def print_plan(summary: dict[str, Any]) -> None:
    """The dry run's plan: counts per object and direction, and a sample with masked emails."""
    print(f"Nightly sync plan (dry run, field {summary.get('field')}): nothing was written.")
    for name, totals in (summary.get("objects") or {}).items():
        print(
            f"  {name}: {totals.get('toSalesforce', 0)} to Salesforce, {totals.get('fromSalesforce', 0)} from "
            f"Salesforce, {totals.get('inSync', 0)} already in sync "
            f"({totals.get('salesforceOptedOut', 0)} opted out in Salesforce, {totals.get('ledgerTargets', 0)} in "
            "the ledger)"
        )
    print(f"  without Salesforce ID (skipped): {summary.get('skippedNoSalesforceId', 0)}")
    guard = summary.get("guard")
    if isinstance(guard, dict):
        keys = ("maxChangeRatio", "maxChanges")
        limits = ", ".join(f"{key} {guard[key]}" for key in keys if guard.get(key) is not None)
        if guard.get("tripped"):
            print(f"  change guard ({limits}): WOULD STOP a real run: {guard.get('reason')}")
        else:
            print(f"  change guard ({limits}): within the limits")
    sample = summary.get("sample") or []
    if sample:
        print("  sample:")
        for item in sample:
            print(f"    {item.get('direction')} {item.get('object')} {item.get('id')} {item.get('email')}")


def run(args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # before the job's threads start
    config = load_config_for("nightly", args.config)
    if config is None:
        return BAD_CONFIG_EXIT
    try:
        summary, where = execute(config, dry_run=args.dry_run, local=args.local)
    except (ConfigError, RuntimeError) as exc:
        summary = {"outcome": "Failed", "error": redact_text(str(exc)), "dryRun": args.dry_run}
        where = "none"
    outcome = summary.get("outcome")
    if not args.dry_run:
        write_termination_log(summary, termination_log_path())
    if args.dry_run and outcome == "Succeeded":
        print_plan(summary)
    if outcome != "Succeeded":
        print(f"unsubscribe-sync nightly: failed: {summary.get('error', 'unknown error')}", file=sys.stderr)
    log.info(
        "nightly.finished",
        outcome=outcome,
        ran=where,
        dry_run=args.dry_run,
        **{k: summary.get(k) for k in ("toSalesforce", "fromSalesforce", "skippedNoSalesforceId", "failed")},
    )
    print(contract_line(summary), flush=True)
    return 0 if outcome == "Succeeded" else 1

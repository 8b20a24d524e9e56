"""Nightly sync at volume: 1,000,000 Salesforce records (10% opted out) and 200,000 ledger unsubscribes.

Setup (not timed): a sandbox subprocess seeded with 600k Contacts + 400k Leads, 10% of them opted out
(no converted or deleted records, so every count is predictable); a SQLite ledger holding 200,000
unsubscribes with Salesforce ids: half of the Salesforce opted-out records (50k, with their emails: in sync)
plus 150k records that are not opted out (to be set). Expected: toSalesforce 150k, fromSalesforce 50k.

Measured: the job as a subprocess (`unsubscribe-sync nightly --local`): wall time, peak RSS (the
process's own VmHWM, polled), Salesforce API calls (the sandbox's own counters, before/after),
compared with the fewest calls the chosen APIs allow for the same work (Bulk 2.0 query and ingest, see
``minimum_calls``) and with a REST-only baseline (SOQL pages of 2,000 + sObject Collections of 200).
Then a second run (idempotency: no writes).

Aims: under 5 minutes, peak RSS under 300 MB, API calls within 1.2x the minimum.
Scale: ``BENCH_NIGHTLY_SCALE=0.1 python -m bench nightly`` or ``python -m bench.bench_nightly --scale 0.1``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.sandbox import SandboxAdmin

CONTACTS, LEADS = 600_000, 400_000
OPTED_OUT_RATIO = 0.1
LEDGER_SIZE = 200_000
OVERLAP = 0.5  # share of the Salesforce opted-out records that the ledger holds too
BULK_QUERY_PAGE = 50_000  # the connector's Bulk 2.0 results page size
BULK_INGEST_JOB = 100_000  # the job's ids per bulk_write_opt_outs call (one ingest job each)


def start_sandbox(tmp: Path, contacts: int, leads: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unsubscribe_sync",
            "sandbox",
            "--seed-contacts",
            str(contacts),
            "--seed-leads",
            str(leads),
            "--opted-out-ratio",
            str(OPTED_OUT_RATIO),
            "--converted-ratio",
            "0",
            "--deleted-ratio",
            "0",
            "--state-dir",
            str(tmp / "sandbox"),
            "--write-credentials",
            str(tmp / "creds"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, json.loads(line)
    raise RuntimeError(f"the sandbox exited ({proc.wait()}) before printing its address")


def build_ledger(url: str, admin: SandboxAdmin, scale: float) -> dict[str, int]:
    """Ledger unsubscribes: OVERLAP of the opted-out records (with their emails) + the rest not opted out."""
    ledger = Ledger.open(url)
    per_object: dict[str, int] = {}
    try:
        total_opted = 0
        objects = (("Contact", "contact"), ("Lead", "lead"))
        ids_by_object = {name: admin.find_ids(name) for name, _ in objects}
        opted_by_object = {name: set(admin.find_ids(name, HasOptedOutOfEmail=True)) for name, _ in objects}
        total_opted = sum(len(v) for v in opted_by_object.values())
        ledger_size = round(LEDGER_SIZE * scale)
        not_opted_wanted = ledger_size - round(total_opted * OVERLAP)
        total_records = sum(len(v) for v in ids_by_object.values())
        for name, stem in objects:
            all_ids, opted = ids_by_object[name], opted_by_object[name]
            # the sandbox seeds emails <stem><row>@example.com in id order; check a few before relying on it
            for index in (0, len(all_ids) // 2, len(all_ids) - 1):
                record = admin.get_record(all_ids[index])
                assert record is not None and record["Email"] == f"{stem}{index + 1}@example.com", record
            overlap = [i for i in range(len(all_ids)) if all_ids[i] in opted][: round(len(opted) * OVERLAP)]
            share = round(not_opted_wanted * len(all_ids) / total_records)
            rest = [i for i in range(len(all_ids)) if all_ids[i] not in opted][:share]
            items = [Unsubscribe(f"{stem}{i + 1}@example.com", all_ids[i], name) for i in overlap + rest]
            for start in range(0, len(items), 5000):
                ledger.ingest(items[start : start + 5000])
            per_object[name] = len(items)
            per_object[f"{name}.toSalesforce"] = len(rest)
            per_object[f"{name}.fromSalesforce"] = len(opted) - len(overlap)
            per_object[f"{name}.optedOut"] = len(opted)
    finally:
        ledger.close()
    return per_object


def minimum_calls(opted_out: int, to_write: int) -> int:
    """Fewest calls for one object's reads and writes, each with the cheaper of the two APIs:
    read: Bulk 2.0 query (create, one status poll, result pages of 50k) or SOQL pages of 2,000;
    write: Bulk 2.0 ingest per job of 100k (create, upload, close, one status poll; no results when every
    record succeeded, as here: the job's counts say so) or sObject Collections of 200."""
    bulk_read = 2 + max(1, math.ceil(opted_out / BULK_QUERY_PAGE))
    rest_read = max(1, math.ceil(opted_out / 2000))
    bulk_write = 4 * math.ceil(to_write / BULK_INGEST_JOB)
    rest_write = math.ceil(to_write / 200)
    return min(bulk_read, rest_read) + min(bulk_write, rest_write)


def rest_only_calls(opted_out: int, to_write: int) -> int:
    return max(1, math.ceil(opted_out / 2000)) + math.ceil(to_write / 200)


def _peak_rss_kib(pid: int) -> int | None:
    """VmHWM (peak resident set) of a running process, in KiB; None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def run_job(config: Path) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS bytes, exit status, stdout) of one `nightly --local` subprocess.

    Peak RSS is the process's own VmHWM, polled until it exits (the rusage of a child started by fork
    would report the parent's resident set at fork time when that is larger).
    """
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "unsubscribe_sync", "nightly", "--config", str(config), "--local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "UNSUBSCRIBE_SYNC_TERMINATION_LOG": str(config.parent / "termination-log")},
    )
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            value = _peak_rss_kib(proc.pid)
            if value is not None:
                peak = max(peak, value)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    stop.set()
    watcher.join()
    wall = time.perf_counter() - started
    return wall, peak * 1024, proc.returncode, out


def _calls(admin: SandboxAdmin) -> dict[str, int]:
    return {k: v for k, v in admin.calls().items() if not k.startswith("refused:")}


def main(scale: float | None = None) -> None:
    if scale is None:
        scale = float(os.environ.get("BENCH_NIGHTLY_SCALE", "1"))
    contacts, leads = round(CONTACTS * scale), round(LEADS * scale)
    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as name:
        tmp = Path(name)
        t0 = time.perf_counter()
        sandbox, info = start_sandbox(tmp, contacts, leads)
        try:
            admin = SandboxAdmin(info["adminUrl"], Path(info["adminTokenFile"]).read_text(), info["caFile"], 300)
            admin.set_faults(bulkProcessingSeconds=0.2)
            ledger_url = f"sqlite:///{tmp / 'ledger.db'}"
            expected = build_ledger(ledger_url, admin, scale)
            (tmp / "token").write_text("bench")
            config = tmp / "config.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "salesforce": {
                            "loginUrl": info["url"],
                            "credentialsDir": info["credentialsDir"],
                            "caFile": info["caFile"],
                        },
                        "ledger": {"url": ledger_url},
                        "worker": {"tokenFile": str(tmp / "token")},
                        "logging": {"format": "json", "level": "warning"},
                    }
                )
            )
            setup = time.perf_counter() - t0
            print(
                f"setup {setup:.1f}s: {contacts:,} Contacts + {leads:,} Leads "
                f"({expected['Contact.optedOut'] + expected['Lead.optedOut']:,} opted out), "
                f"{expected['Contact'] + expected['Lead']:,} ledger unsubscribes",
                flush=True,
            )
            before = _calls(admin)
            wall, rss, code, out = run_job(config)
            after = _calls(admin)
            summary = json.loads(out.strip().splitlines()[-1])
            calls = sum(after.values()) - sum(before.values())
            by_op = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            want_to = expected["Contact.toSalesforce"] + expected["Lead.toSalesforce"]
            want_from = expected["Contact.fromSalesforce"] + expected["Lead.fromSalesforce"]
            minimum = 1 + 2  # token + one describe per object
            rest = 1 + 2
            for obj in ("Contact", "Lead"):
                minimum += minimum_calls(expected[f"{obj}.optedOut"], expected[f"{obj}.toSalesforce"])
                rest += rest_only_calls(expected[f"{obj}.optedOut"], expected[f"{obj}.toSalesforce"])
            print(
                f"run 1: exit {code}, summary {summary} (expected toSalesforce {want_to}, fromSalesforce {want_from})"
            )
            print(f"  wall time       {wall:8.1f} s     (aim < 300 s)")
            print(f"  peak RSS        {rss / 2**20:8.1f} MB    (aim < 300 MB)")
            print(f"  API calls       {calls:8d}       minimum {minimum}, ratio {calls / minimum:.2f}x "
                  f"(aim <= 1.2x); REST-only baseline {rest} ({rest / calls:.1f}x ours)")  # fmt: skip
            print(f"  calls by operation: {by_op}")
            ok = summary["toSalesforce"] == want_to and summary["fromSalesforce"] == want_from
            print(f"  counts as expected: {ok}")

            writes_before = admin.writes()["total"]
            before = _calls(admin)
            wall2, rss2, code2, out2 = run_job(config)
            after = _calls(admin)
            print(
                f"run 2 (idempotency): exit {code2}, {out2.strip().splitlines()[-1]}, {wall2:.1f} s, "
                f"{rss2 / 2**20:.1f} MB, {sum(after.values()) - sum(before.values())} API calls, "
                f"new Salesforce writes {admin.writes()['total'] - writes_before}"
            )
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=None, help="fraction of the full size (default 1 or env)")
    main(parser.parse_args().scale)

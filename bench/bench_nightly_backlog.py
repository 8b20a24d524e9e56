"""The nightly beside a pusher draining a 40,000 backlog (issue 13): wall, API calls, writes per changed record.

Setup (not timed): a sandbox subprocess seeded with 120,000 Contacts + 80,000 Leads, 10% opted out, no
converted or deleted records, Bulk jobs processed in 0.2 s (``BENCH_BULK_SECONDS``: a real org's jobs take seconds
to minutes); a SQLite ledger holding 40,000 unsubscribes
ingested during an outage (24,000 Contacts + 16,000 Leads, none opted out in Salesforce yet): all queued in the
outbox, no pusher running. None of the Salesforce opt-outs is in the ledger (the nightly adds them).

Baseline (same run, before the outage ends): the raw Bulk download of the opted-out set, one Bulk 2.0 query job
per object with a fresh client (token, create, polls, result pages), nothing else.

Then the outage ends: the push worker starts as a subprocess (`unsubscribe-sync worker`, its pusher draining
the outbox at once; the Salesforce poll off) and the nightly is asked to run beside it the way a SQLite ledger
runs it, in the worker's process (``POST /v1/nightly-runs``, what `unsubscribe-sync nightly` does). Measured:
the nightly's wall (the request's duration), the ratio to the baseline, API calls of the nightly (its summary's
``apiCalls``) and of the pusher (the worker's ``unsubscribe_sync_salesforce_requests_total``), cross-checked
with the sandbox's own counters; Salesforce writes (the sandbox counts each record's successful updates) per
changed record; records lost (an unsubscribe whose record is not opted out at the end: must be 0) and the final
agreement of the ledger and Salesforce (every ledger target opted out, every Salesforce opt-out in the ledger).

With ``--ledger postgresql`` (``BENCH_BACKLOG_LEDGER=postgresql``) the ledger is a throwaway PostgreSQL server
and the nightly runs the way it does there, in a process of its own (a CronJob's pod): here, this bench's
process calls ``run_nightly`` while the worker's pusher drains in the worker's process.

``--pusher-alone``: the same backlog drained by the pusher with no nightly beside it, timed the same way (from
the worker's readiness): the floor of the nightly's wall, which ends only once the records it owes are written.

Aims (issue 13): the nightly <= 2.0x the raw Bulk download, <= 40 API calls in all (nightly + pusher),
<= 1.1 Salesforce writes per changed record.
Scale: ``BENCH_BACKLOG_SCALE=0.5 python -m bench nightly_backlog`` or ``python -m bench.bench_nightly_backlog
--scale 0.5``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests
import yaml

from bench.bench_nightly import start_sandbox
from unsubscribe_sync.api.config import SalesforceConfig, load_config
from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.logs import configure_logging
from unsubscribe_sync.nightly.job import BULK_POLL_INTERVAL, run_nightly
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.sandbox import SandboxAdmin

CONTACTS, LEADS = 120_000, 80_000
BACKLOG = 40_000  # unsubscribes ingested during the outage, split between the objects as their sizes
FIELD = "HasOptedOutOfEmail"
TOKEN = "bench-token"
OBJECTS = (("Contact", "contact"), ("Lead", "lead"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc (0 where /proc is not there)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _calls(admin: SandboxAdmin) -> dict[str, int]:
    return {k: v for k, v in admin.calls().items() if not k.startswith("refused:")}


def build_backlog(url: str, admin: SandboxAdmin, backlog: int) -> dict[str, int]:
    """The outage's unsubscribes: records not opted out in Salesforce, with their emails, one outbox row each."""
    ledger = Ledger.open(url)
    per_object: dict[str, int] = {}
    try:
        total = CONTACTS + LEADS
        for name, stem in OBJECTS:
            ids = admin.find_ids(name)
            opted = set(admin.find_ids(name, HasOptedOutOfEmail=True))
            for index in (0, len(ids) // 2, len(ids) - 1):  # seeded emails are <stem><row>@example.com in id order
                record = admin.get_record(ids[index])
                assert record is not None and record["Email"] == f"{stem}{index + 1}@example.com", record
            share = round(backlog * (CONTACTS if name == "Contact" else LEADS) / total)
            rows = [i for i in range(len(ids)) if ids[i] not in opted][:share]
            items = [Unsubscribe(f"{stem}{i + 1}@example.com", ids[i], name) for i in rows]
            for start in range(0, len(items), 5000):
                ledger.ingest(items[start : start + 5000])
            per_object[name] = len(items)
            per_object[f"{name}.optedOut"] = len(opted)
        per_object["outbox"] = ledger.backlog()
    finally:
        ledger.close()
    return per_object


def raw_bulk_download(info: dict[str, Any]) -> tuple[float, int, int]:
    """(seconds, rows, API calls) of one Bulk 2.0 query job per object, downloaded with a fresh client."""
    calls = 0

    def count(op: str, status: str) -> None:
        nonlocal calls
        calls += 1

    cfg = SalesforceConfig(loginUrl=info["url"], credentialsDir=info["credentialsDir"], caFile=info["caFile"])
    started = time.perf_counter()
    client = SalesforceClient.from_config(cfg, on_request=count, bulk_poll_interval=BULK_POLL_INTERVAL)
    try:
        client.login()
        rows = sum(1 for name, _ in OBJECTS for _ in client.iter_opted_out(name, FIELD, use_bulk=True))
    finally:
        client.close()
    return time.perf_counter() - started, rows, calls


def start_worker(config: Path, log: Path | None) -> subprocess.Popen[bytes]:
    out = log.open("wb") if log is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(config)], stdout=out, stderr=out
        )
    finally:
        if log is not None:
            out.close()  # type: ignore[union-attr]


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({proc.returncode}) before it listened")
        try:
            if requests.get(f"{base}/livez", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.02)
    raise RuntimeError("the worker did not listen in time")


def pusher_calls(base: str) -> dict[str, int]:
    """The worker's Salesforce requests by operation (its pusher's client: the poll is off)."""
    out: dict[str, int] = {}
    for line in requests.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("unsubscribe_sync_salesforce_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            op = labels.split('operation="', 1)[1].split('"', 1)[0]
            out[op] = out.get(op, 0) + int(float(value))
    return out


def wait_drained(url: str, started: float, every: float, timeout: float = 600.0) -> float:
    """Seconds from ``started`` until the outbox is empty, asked every ``every`` seconds on one open ledger (a
    ledger opened per question costs ~4 ms of CPU: beside the worker on 2 cores, that would slow what is timed)."""
    ledger = Ledger.open(url, migrate_schema=False)
    try:
        while ledger.backlog() > 0 and time.perf_counter() - started < timeout:
            time.sleep(every)
        return time.perf_counter() - started
    finally:
        ledger.close()


def agreement(url: str, admin: SandboxAdmin) -> tuple[int, int, int]:
    """(ledger targets not opted out in Salesforce: lost, Salesforce opt-outs missing from the ledger, targets)."""
    ledger = Ledger.open(url, migrate_schema=False)
    try:
        lost = missing = targets = 0
        for name, _ in OBJECTS:
            ledger_ids = {sid for sid, _, _ in ledger.iter_targets(name, include_failed=True)}
            opted = set(admin.find_ids(name, HasOptedOutOfEmail=True))
            targets += len(ledger_ids)
            lost += len(ledger_ids - opted)
            missing += len(opted - ledger_ids)
    finally:
        ledger.close()
    return lost, missing, targets


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the worker (every thread, raw stacks to ``out``) until interrupted; None without py-spy."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: no profile")
        return None
    cmd = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--threads",
        "--idle",
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(out),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached
    return proc


def run_beside(base: str, config: Path, ledger: str) -> tuple[dict[str, Any], float, int]:
    """One nightly run beside the worker, as the ledger runs it: (summary, seconds, HTTP status or 0)."""
    started = time.perf_counter()
    if ledger == "sqlite":  # in the worker's process: what ``unsubscribe-sync nightly`` asks of it
        response = requests.post(f"{base}/v1/nightly-runs", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=3600)
        return response.json(), time.perf_counter() - started, response.status_code
    summary = run_nightly(load_config(config), dry_run=False)  # a process of its own (this one)
    return summary, time.perf_counter() - started, 0


def ledger_server(tmp: Path, ledger: str, stack: ExitStack) -> str:
    """The ledger's URL: a SQLite file, or a database on a throwaway PostgreSQL server stopped on exit."""
    if ledger == "sqlite":
        return f"sqlite:///{tmp / 'ledger.db'}"
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fixtures.postgres import PostgresServer, _create_database, _pg_bindir

    bindir = _pg_bindir()
    if bindir is None:
        raise SystemExit("PostgreSQL binaries not found: the PostgreSQL variant needs them")
    server = PostgresServer(bindir)
    server.start()
    stack.callback(server.stop)
    _create_database(server.admin_dsn, "backlog")
    return server.admin_dsn.rsplit("/", 1)[0] + "/backlog"


def main(
    scale: float | None = None,
    log: Path | None = None,
    profile: Path | None = None,
    ledger: str | None = None,
    pusher_alone: bool = False,
) -> None:
    """``log``: keep the worker's log (level info) in this file; ``profile``: py-spy's raw stacks of the worker;
    ``ledger``: sqlite (default) or postgresql; ``pusher_alone``: only the pusher's drain of the backlog, no
    nightly. Without it the pusher alone runs first, on a backlog of its own, as the floor of the nightly's
    wall beside it (the nightly ends only once the records it owes are written)."""
    if pusher_alone:
        run(scale, log, profile, ledger, pusher_alone=True)
        return
    floor, floor_baseline = run(scale, None, None, ledger, pusher_alone=True)
    wall, baseline = run(scale, log, profile, ledger, pusher_alone=False)
    print(
        f"the nightly beside the pusher {wall / baseline:.2f}x the raw Bulk download; the pusher alone "
        f"{floor / floor_baseline:.2f}x (its floor); the nightly's wall / the pusher alone {wall / floor:.2f}"
    )


def run(
    scale: float | None, log: Path | None, profile: Path | None, ledger: str | None, *, pusher_alone: bool
) -> tuple[float, float]:
    """One run on a fresh sandbox and ledger: (seconds measured, seconds of the raw Bulk download)."""
    if scale is None:
        scale = float(os.environ.get("BENCH_BACKLOG_SCALE", "1"))
    ledger = ledger or os.environ.get("BENCH_BACKLOG_LEDGER", "sqlite")
    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115  # the bench's own client quiet
    contacts, leads, backlog = round(CONTACTS * scale), round(LEADS * scale), round(BACKLOG * scale)
    with tempfile.TemporaryDirectory(prefix="bench-backlog-") as name, ExitStack() as stack:
        tmp = Path(name)
        t0 = time.perf_counter()
        ledger_url = ledger_server(tmp, ledger, stack)
        sandbox, info = start_sandbox(tmp, contacts, leads)
        worker: subprocess.Popen[bytes] | None = None
        try:
            admin = SandboxAdmin(info["adminUrl"], Path(info["adminTokenFile"]).read_text(), info["caFile"], 300)
            bulk_seconds = float(os.environ.get("BENCH_BULK_SECONDS", "0.2"))
            admin.set_faults(bulkProcessingSeconds=bulk_seconds)
            built = build_backlog(ledger_url, admin, backlog)
            (tmp / "token").write_text(TOKEN)
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
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
                        "worker": {"tokenFile": str(tmp / "token"), "listen": f"127.0.0.1:{port}"},
                        "salesforcePoll": {"intervalSeconds": 0},
                        "logging": {"format": "json", "level": "info" if log else "warning"},
                    }
                )
            )
            opted_before = built["Contact.optedOut"] + built["Lead.optedOut"]
            print(
                f"setup {time.perf_counter() - t0:.1f}s ({ledger} ledger): {contacts:,} Contacts + {leads:,} Leads "
                f"({opted_before:,} opted out), outage backlog {built['outbox']:,} queued "
                f"({built['Contact']:,} Contacts + {built['Lead']:,} Leads); Bulk jobs processed in {bulk_seconds} s",
                flush=True,
            )
            baseline, rows, baseline_calls = raw_bulk_download(info)
            print(f"baseline: raw Bulk download of {rows:,} opted-out rows, {baseline:.2f} s, {baseline_calls} calls")

            calls_before, writes_before = _calls(admin), admin.writes()["total"]
            worker = start_worker(config, log)
            wait_ready(base, worker)
            spy = start_profile(worker.pid, profile) if profile is not None else None
            started = time.perf_counter()  # the pusher started draining at the worker's start-up, just before
            pids = (worker.pid, sandbox.pid)
            cpu_before = [cpu_seconds(p) for p in pids]
            if pusher_alone:  # the floor of the nightly's wall: it waits for the pusher's writes of the backlog
                drained = wait_drained(ledger_url, started, 0.01)
                worker_cpu, sandbox_cpu = (cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True))
                lost, missing, targets = agreement(ledger_url, admin)
                print(f"pusher alone (no nightly): backlog drained after {drained:.2f} s ({drained / baseline:.2f}x "
                      f"the raw Bulk download), {sum(pusher_calls(base).values())} API calls, "
                      f"{admin.writes()['total'] - writes_before} Salesforce writes, {lost} lost; CPU: worker "
                      f"{worker_cpu:.2f} s, Salesforce stand-in {sandbox_cpu:.2f} s")  # fmt: skip
                return drained, baseline
            summary, wall, status = run_beside(base, config, ledger)
            drained = wait_drained(ledger_url, started, 0.05)
            worker_cpu, sandbox_cpu = (cpu_seconds(p) - b for p, b in zip(pids, cpu_before, strict=True))
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
            time.sleep(0.3)  # let the pusher's last metrics land
            pushed = pusher_calls(base)
            calls_after, writes = _calls(admin), admin.writes()
            sandbox_calls = sum(calls_after.values()) - sum(calls_before.values())
            by_op = {k: n - calls_before.get(k, 0) for k, n in calls_after.items() if n != calls_before.get(k, 0)}
            written = writes["total"] - writes_before
            twice = sum(1 for n in writes["byId"].values() if n > 1)
            opted_after = sum(len(admin.find_ids(n, HasOptedOutOfEmail=True)) for n, _ in OBJECTS)
            changed = opted_after - opted_before
            lost, missing, targets = agreement(ledger_url, admin)
            nightly_calls, pusher_total = int(summary.get("apiCalls", 0)), sum(pushed.values())
            print(f"nightly: HTTP {status or '-'}, outcome {summary.get('outcome')}, toSalesforce "
                  f"{summary.get('toSalesforce')}, fromSalesforce {summary.get('fromSalesforce')}, error "
                  f"{summary.get('error')}")  # fmt: skip
            print(f"  objects: {json.dumps(summary.get('objects'))}")
            ratio = wall / baseline
            print(f"  wall of the nightly   {wall:7.2f} s   ({ratio:.2f}x the raw Bulk download; aim <= 2.0x)")
            print(f"  backlog drained after {drained:7.2f} s")
            print(f"  CPU                   {worker_cpu:7.2f} s   of the worker (pusher and, on SQLite, nightly); "
                  f"the Salesforce stand-in {sandbox_cpu:.2f} s; {os.cpu_count()} CPUs")  # fmt: skip
            print(f"  API calls             {nightly_calls + pusher_total:7d}     nightly {nightly_calls} + pusher "
                  f"{pusher_total} {pushed} (aim <= 40); the sandbox counted {sandbox_calls} {by_op}")  # fmt: skip
            print(f"  Salesforce writes     {written:7d}     for {changed:,} changed records: "
                  f"{written / max(1, changed):.2f} per changed record (aim <= 1.1); records written twice or more "
                  f"{twice}")  # fmt: skip
            print(f"  records lost          {lost:7d}     (aim 0); Salesforce opt-outs missing from the ledger "
                  f"{missing}; ledger targets {targets:,}, Salesforce opted out {opted_after:,}")  # fmt: skip
            baseline2, rows2, _ = raw_bulk_download(info)
            print(f"baseline again: raw Bulk download of {rows2:,} opted-out rows, {baseline2:.2f} s")
            summary2, wall2, _ = run_beside(base, config, ledger)
            print(f"run 2 (nothing left to change, no pusher work): outcome {summary2.get('outcome')}, toSalesforce "
                  f"{summary2.get('toSalesforce')}, fromSalesforce {summary2.get('fromSalesforce')}, {wall2:.2f} s "
                  f"({wall2 / baseline2:.2f}x the raw Bulk download of {rows2:,}), {summary2.get('apiCalls')} API "
                  f"calls, new Salesforce writes {admin.writes()['total'] - writes['total']}")  # fmt: skip
            return wall, baseline
        finally:
            if worker is not None:
                worker.terminate()
                worker.wait(timeout=60)
            sandbox.terminate()
            sandbox.wait(timeout=30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=None, help="fraction of the full size (default 1 or env)")
    parser.add_argument("--log", type=Path, default=None, help="keep the worker's log (level info) in this file")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy's raw stacks of the worker, to this file")
    parser.add_argument("--ledger", choices=("sqlite", "postgresql"), default=None, help="default sqlite or env")
    parser.add_argument(
        "--pusher-alone", action="store_true", help="only the pusher's drain, no nightly: the floor of the nightly"
    )
    args = parser.parse_args()
    main(args.scale, args.log, args.profile, args.ledger, args.pusher_alone)

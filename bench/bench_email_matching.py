"""Email matching: queries per resolved batch, and the nightly at 1M records in Email mode within the RSS bound.

1. Resolution: 10,000 unsubscribed addresses (each with a Contact and a Lead, a third with a second Lead in
   another case) in a SQLite ledger in Email mode; the resolver claims batches of N = worker.batchSize (200)
   and resolves each with its escaped ``Email IN (...)`` queries against an in-process sandbox org. Counted:
   SOQL queries per object (aim: at most ceil(10000/N)), records matched, time.
2. The nightly at volume in Email mode: the bench_nightly setup (1,000,000 records, 200,000 ledger
   unsubscribes with ids) plus address-only unsubscribes of records the ledger does not hold; the job as a
   subprocess; peak RSS (aim < 200 MB) and wall time.

Scale: ``BENCH_EMAIL_SCALE=0.1`` (part 2 only). ``BENCH_EMAIL_TRACE=1``: part 2 only, the job runs under
tracemalloc (bench/_trace_job.py) and prints the allocation sites alive at its peak instead of the RSS figure.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench.bench_nightly import CONTACTS, LEADS, build_ledger, run_job, start_sandbox
from unsubscribe_sync.api.config import parse_config
from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.sandbox import SandboxAdmin, SandboxState
from unsubscribe_sync.worker.metrics import WorkerMetrics
from unsubscribe_sync.worker.resolver import Resolver

ADDRESSES = 10_000


class _OrgClient:
    """The resolver's client over an in-process sandbox org (no HTTP: the figure is the query count)."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.by_object: dict[str, int] = {}

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        obj = soql.split(" FROM ", 1)[1].split(" ", 1)[0]
        self.by_object[obj] = self.by_object.get(obj, 0) + 1
        body = self.state.query(soql, "62.0", batch_size=2000)
        yield list(body["records"])
        while not body.get("done", True):
            locator = str(body["nextRecordsUrl"]).rsplit("/", 1)[1]
            body = self.state.query_more(locator, "62.0")
            yield list(body["records"])


def bench_resolution(tmp: Path) -> None:
    state = SandboxState()
    for i in range(ADDRESSES):
        state.add_record("Contact", f"user{i}@example.com")
        state.add_record("Lead", f"user{i}@example.com")
        if i % 3 == 0:
            state.add_record("Lead", f"USER{i}@Example.com")
    config = parse_config({"matching": {"mode": "Email"}, "ledger": {"url": f"sqlite:///{tmp / 'resolve.db'}"}})
    ledger = Ledger.open(config.ledger.resolve_url())
    ledger.match_by_email = True
    try:
        items = [Unsubscribe(f"user{i}@example.com") for i in range(ADDRESSES)]
        for start in range(0, len(items), 5000):
            ledger.ingest(items[start : start + 5000])
        client = _OrgClient(state)
        with ThreadPoolExecutor(1) as executor:  # unused: the bench calls resolve() directly
            resolver = Resolver(config, ledger, lambda _on_request: client, WorkerMetrics(ledger), executor)
        n = resolver.policy.batch_size
        started = time.perf_counter()
        matched = batches = 0
        while True:
            claim = ledger.claim_resolutions("bench", n, 60.0)
            if not claim.rows:
                break
            batches += 1
            result = ledger.complete_resolutions(claim, resolver.resolve([r.email for r in claim.rows]))
            matched += sum(result.matches_per_address)
        wall = time.perf_counter() - started
        bound = math.ceil(ADDRESSES / n)
        print(f"resolution: {ADDRESSES:,} addresses, N = {n} per batch, {batches} batches, {wall:.1f} s")
        for obj, count in sorted(client.by_object.items()):
            verdict = "ok" if count <= bound else "OVER"
            print(f"  {obj}: {count} queries (aim <= ceil({ADDRESSES}/{n}) = {bound}): {verdict}")
        print(f"  records matched {matched:,} (expected {ADDRESSES * 2 + math.ceil(ADDRESSES / 3):,}), "
              f"outbox writes queued {ledger.backlog():,}")  # fmt: skip
    finally:
        ledger.close()


def bench_nightly_email(tmp: Path, scale: float) -> None:
    contacts, leads = round(CONTACTS * scale), round(LEADS * scale)
    sandbox, info = start_sandbox(tmp, contacts, leads)
    try:
        admin = SandboxAdmin(info["adminUrl"], Path(info["adminTokenFile"]).read_text(), info["caFile"], 300)
        admin.set_faults(bulkProcessingSeconds=0.2)
        ledger_url = f"sqlite:///{tmp / 'ledger.db'}"
        expected = build_ledger(ledger_url, admin, scale)
        extra = round(25_000 * scale)  # address-only unsubscribes of the last Contacts (the ledger holds none)
        ledger = Ledger.open(ledger_url)
        try:
            items = [Unsubscribe(f"contact{contacts - i}@example.com") for i in range(extra)]
            for start in range(0, len(items), 5000):
                ledger.ingest(items[start : start + 5000])
        finally:
            ledger.close()
        (tmp / "token").write_text("bench")
        config = tmp / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "salesforce": {
                        "loginUrl": info["url"], "credentialsDir": info["credentialsDir"], "caFile": info["caFile"]
                    },
                    "matching": {"mode": "Email"},
                    "ledger": {"url": ledger_url},
                    "worker": {"tokenFile": str(tmp / "token")},
                    "logging": {"format": "json", "level": "warning"},
                }
            )
        )  # fmt: skip
        if os.environ.get("BENCH_EMAIL_TRACE"):
            trace_job(config)
            return
        wall, rss, code, out = run_job(config)
        summary = json.loads(out.strip().splitlines()[-1])
        print(f"nightly, Email mode: {contacts + leads:,} records, "
              f"{expected['Contact'] + expected['Lead']:,} unsubscribes with ids + {extra:,} address-only")  # fmt: skip
        counts = {k: summary.get(k) for k in ("toSalesforce", "fromSalesforce", "skippedNoSalesforceId")}
        print(f"  exit {code}, {counts}, outcome {summary.get('outcome')}")
        print(f"  wall time {wall:.1f} s, peak RSS {rss / 2**20:.1f} MB (aim < 200 MB)")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)


def trace_job(config: Path) -> None:
    """The nightly job under tracemalloc: where its memory is at the peak (stderr passes through)."""
    tracer = Path(__file__).with_name("_trace_job.py")
    subprocess.run(
        [sys.executable, str(tracer), "nightly", "--config", str(config), "--local"],
        stdout=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "UNSUBSCRIBE_SYNC_TERMINATION_LOG": str(config.parent / "termination-log")},
    )


def main(scale: float | None = None) -> None:
    if scale is None:
        scale = float(os.environ.get("BENCH_EMAIL_SCALE", "1"))
    with tempfile.TemporaryDirectory(prefix="bench-email-") as name:
        if not os.environ.get("BENCH_EMAIL_TRACE"):
            bench_resolution(Path(name))
        bench_nightly_email(Path(name), scale)


if __name__ == "__main__":
    main()

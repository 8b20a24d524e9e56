"""Writing 10,000 opt-outs to Salesforce: one PATCH per record vs sObject Collections vs Bulk API 2.0.

Runs against an in-process sandbox over HTTPS on 127.0.0.1 at 0 ms and 100 ms of injected latency per API call,
and prints, per method: API calls, records per call, wall time, records/s and the speed-up over the
one-PATCH-per-record baseline. At 100 ms the baseline runs on a sample and is extrapolated (said in the output).
The sandbox's Bulk jobs take its default processing time (printed), as real jobs take time on the server.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.salesforce.types import RecordResult
from unsubscribe_sync.sandbox import SandboxServer

RECORDS = 10_000
FIELD = "HasOptedOutOfEmail"
LATENCIES_MS = (0, 100)
BASELINE_SAMPLE = {0: 2_000, 100: 500}  # per-record PATCH runs on this many records, then extrapolates


@dataclass
class Run:
    method: str
    latency_ms: int
    records: int  # records written in this run
    calls: int  # API calls (token exchange excluded)
    seconds: float
    extrapolated_from: int | None = None

    @property
    def per_call(self) -> float:
        return self.records / self.calls if self.calls else 0.0

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def _measure(
    server: SandboxServer,
    creds: Path,
    method: str,
    latency_ms: int,
    count: int,
    write: Callable[[SalesforceClient, Sequence[str]], list[RecordResult]],
) -> Run:
    state = server.state
    state.reset()
    state.seed(contacts=count, opted_out_ratio=0.0, converted_ratio=0.0, deleted_ratio=0.0)
    ids = state.find_ids("Contact")
    calls: Counter[str] = Counter()
    cfg = SalesforceConfig(loginUrl=server.url, credentialsDir=creds, caFile=server.ca_file, bulkThreshold=RECORDS)
    client = SalesforceClient.from_config(cfg, on_request=lambda op, status: calls.update([op]))
    try:
        client.login()
        state.set_latency(latency_ms)
        start = time.perf_counter()
        results = write(client, ids)
        seconds = time.perf_counter() - start
    finally:
        state.set_latency(0)
        client.close()
    failed = [r for r in results if not r.success]
    if failed or state.count("Contact", HasOptedOutOfEmail=True) != count:
        raise RuntimeError(f"{method}: {len(failed)} records failed, e.g. {failed[:1]}")
    return Run(method, latency_ms, count, sum(n for op, n in calls.items() if op != "token"), seconds)


def _per_record(client: SalesforceClient, ids: Sequence[str]) -> list[RecordResult]:
    """The slow baseline: one write call per record."""
    return [result for record_id in ids for result in client.write_opt_outs("Contact", [record_id], FIELD)]


def _collections(client: SalesforceClient, ids: Sequence[str]) -> list[RecordResult]:
    return client.write_opt_outs("Contact", ids, FIELD)


def _bulk(client: SalesforceClient, ids: Sequence[str]) -> list[RecordResult]:
    return client.bulk_write_opt_outs("Contact", ids, FIELD)


def _extrapolate(run: Run, total: int) -> Run:
    factor = total / run.records
    return Run(run.method, run.latency_ms, total, round(run.calls * factor), run.seconds * factor, run.records)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(Path(tmp) / "tls") as server:
        creds = server.credentials.write(Path(tmp) / "creds")
        print(
            f"{RECORDS} opt-out updates per method, sandbox over HTTPS on 127.0.0.1 (in-process), "
            f"bulk job processing time {server.state.bulk_processing_s:.1f} s"
        )
        header = (
            f"{'latency':>8} {'method':<24} {'API calls':>9} {'rec/call':>9} {'seconds':>9} {'rec/s':>9} {'vs base':>8}"
        )
        print(header)
        for latency in LATENCIES_MS:
            sample = min(RECORDS, BASELINE_SAMPLE[latency])
            base = _measure(server, creds, "PATCH per record", latency, sample, _per_record)
            if sample < RECORDS:
                base = _extrapolate(base, RECORDS)
            runs = [
                base,
                _measure(server, creds, "sObject Collections", latency, RECORDS, _collections),
                _measure(server, creds, "Bulk API 2.0", latency, RECORDS, _bulk),
            ]
            for run in runs:
                name = run.method + (" *" if run.extrapolated_from else "")
                print(
                    f"{latency:>6}ms {name:<24} {run.calls:>9} {run.per_call:>9.1f} {run.seconds:>9.2f} "
                    f"{run.rate:>9.0f} {run.rate / base.rate:>7.1f}x"
                )
        print(
            "* extrapolated from a sample: "
            + ", ".join(
                f"{BASELINE_SAMPLE[lat]} records at {lat} ms" for lat in LATENCIES_MS if BASELINE_SAMPLE[lat] < RECORDS
            )
        )


if __name__ == "__main__":
    main()

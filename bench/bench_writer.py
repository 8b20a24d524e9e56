"""The one writer draining a backlog: API calls for 100,000 queued opt-outs (Bulk 2.0 above the threshold).

A SQLite ledger holds the backlog (ingested unsubscribes, one outbox row each); the writer part drains it as
the pusher does (fenced claims; above ``salesforce.bulkThreshold`` due rows a claim of up to 100,000 rows is
one Bulk 2.0 ingest job) against an in-process sandbox over HTTPS. Prints the claims, the API calls by
operation (token excluded; a Bulk job's create, upload, close, status polls and results are all
``bulk_ingest``) and seconds. Aim (issue 13): <= 10 write calls plus polls for 100,000.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.sandbox import SandboxServer
from unsubscribe_sync.writer import WriteSettings, write_claim

FIELD = "HasOptedOutOfEmail"
BACKLOG = 100_000


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


def main(scale: float | None = None) -> None:
    if scale is None:
        scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    count = int(BACKLOG * scale)
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(Path(tmp) / "tls") as server:
        creds = server.credentials.write(Path(tmp) / "creds")
        state = server.state
        state.seed(contacts=count, opted_out_ratio=0.0, converted_ratio=0.0, deleted_ratio=0.0)
        ids = state.find_ids("Contact")
        ledger = Ledger.open(f"sqlite:///{Path(tmp) / 'ledger.db'}")
        for start in range(0, count, 5_000):
            chunk = ids[start : start + 5_000]
            ledger.ingest([Unsubscribe(f"b{start + i}@example.com", sid, "Contact") for i, sid in enumerate(chunk)])
        calls: Counter[str] = Counter()
        cfg = SalesforceConfig(loginUrl=server.url, credentialsDir=creds, caFile=server.ca_file)
        client = SalesforceClient.from_config(
            cfg, on_request=lambda op, status: calls.update([op]), bulk_poll_interval=(0.25, 15.0)
        )
        settings = WriteSettings(lease_seconds=60, max_attempts=50, delay=lambda cls, n: 1.0)
        try:
            client.login()
            calls.clear()
            start_t = time.perf_counter()
            claims = 0
            while True:
                claim = ledger.claim("bench", 200, 60, bulk_threshold=cfg.bulkThreshold, bulk_limit=100_000)
                if not claim.rows:
                    break
                claims += 1
                asyncio.run(write_claim(ledger, client, claim, FIELD, settings, _in_thread))
            seconds = time.perf_counter() - start_t
        finally:
            client.close()
            ledger.close()
        written = state.count("Contact", HasOptedOutOfEmail=True)
        total = sum(n for op, n in calls.items() if op != "token")
        print(
            f"backlog {count:,} queued opt-outs, bulkThreshold {cfg.bulkThreshold:,}, sandbox bulk processing "
            f"{state.bulk_processing_s:.1f} s"
        )
        print(f"claims {claims}, API calls {total} ({dict(calls)}), written {written:,}, {seconds:.2f} s")


if __name__ == "__main__":
    main()

"""The Salesforce poll's API cost: the calls of one idle hour, counted by the sandbox org.

Setup: an in-process sandbox over HTTPS on 127.0.0.1 seeded with 10,000 Contacts + 10,000 Leads (10% opted out),
a fresh SQLite ledger, ``salesforcePoll.intervalSeconds`` 300 and the default lookback (300 s). The first poll
(from 24 h back: no nightly ran) reads every opt-out; then one hour of ticks (12 at 300 s, run back to back: the
figure is the call count, not the time) with no change in the org, and one with a single new opt-out.
Counted: the sandbox's own per-operation call counters, before/after.
"""

from __future__ import annotations

import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from unsubscribe_sync.api.config import Config, parse_config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.sandbox import SandboxServer
from unsubscribe_sync.worker.metrics import WorkerMetrics
from unsubscribe_sync.worker.poll import SalesforcePoller

CONTACTS = LEADS = 10_000
INTERVAL = 300
TICKS_PER_HOUR = 3600 // INTERVAL


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after) if after.get(k, 0) != before.get(k, 0)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, SandboxServer(Path(tmp) / "tls") as server:
        creds = server.credentials.write(Path(tmp) / "creds")
        server.state.seed(CONTACTS, LEADS, opted_out_ratio=0.1, rng_seed=7)
        data: dict[str, Any] = {
            "salesforce": {"loginUrl": server.url, "credentialsDir": str(creds), "caFile": str(server.ca_file)},
            "salesforcePoll": {"intervalSeconds": INTERVAL},
            "ledger": {"url": f"sqlite:///{tmp}/ledger.db"},
        }
        config: Config = parse_config(data)
        ledger = Ledger.open(str(config.ledger.url))
        pool = ThreadPoolExecutor(max_workers=1)
        try:
            poller = SalesforcePoller(
                config,
                ledger,
                lambda on_request: SalesforceClient.from_config(config.salesforce, on_request=on_request),
                WorkerMetrics(),
                pool,
                owner="bench",
            )
            before = server.state.call_counts()
            start = time.perf_counter()
            first = poller.tick(force=True)
            took = time.perf_counter() - start
            print(f"first poll (24 h back, {CONTACTS + LEADS:,} records): added {first.added}, "
                  f"{took:.2f} s, calls {_delta(before, server.state.call_counts())}")  # fmt: skip
            before = server.state.call_counts()
            for _ in range(TICKS_PER_HOUR):
                assert poller.tick(force=True).polled
            idle = _delta(before, server.state.call_counts())
            objects = len(config.salesforce.objects)
            ideal = TICKS_PER_HOUR * objects  # one query per object a tick
            print(f"idle hour ({TICKS_PER_HOUR} ticks at {INTERVAL} s, {objects} objects): calls {idle}; "
                  f"{sum(idle.values())} in all vs ideal {ideal}")  # fmt: skip
            contact = server.state.find_ids("Contact", HasOptedOutOfEmail=False)[0]
            server.state.set_fields(contact, {"HasOptedOutOfEmail": True})
            before = server.state.call_counts()
            one = poller.tick(force=True)
            print(f"tick after one new opt-out: added {one.added}, calls {_delta(before, server.state.call_counts())}")
        finally:
            pool.shutdown()
            ledger.close()


if __name__ == "__main__":
    main()

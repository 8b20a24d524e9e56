"""The nightly writes through the outbox: one writer, fenced claims, nothing lost when it is killed."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

from tests.fixtures.nightly import Env, Interrupt, build_world, opted_out
from unsubscribe_sync.api.config import Config
from unsubscribe_sync.ledger import Ledger, Resubscribe
from unsubscribe_sync.nightly.job import run_nightly
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.writer import WriteSettings, write_claim

FIELD = "HasOptedOutOfEmail"


class Racing:
    """The real Salesforce client, running ``hook`` once when the first write is in flight."""

    def __init__(self, inner: SalesforceClient, hook: Callable[[], None]) -> None:
        self.inner, self.hook, self.fired = inner, hook, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _fire(self) -> None:
        if not self.fired:
            self.fired = True
            self.hook()

    def write_opt_outs(self, *args: Any, **kwargs: Any) -> Any:
        self._fire()
        return self.inner.write_opt_outs(*args, **kwargs)

    def bulk_write_opt_outs(self, *args: Any, **kwargs: Any) -> Any:
        self._fire()
        return self.inner.bulk_write_opt_outs(*args, **kwargs)


def push_everything(env: Env, config: Config | None = None) -> None:
    """What the worker's pusher does: drain the outbox through the same writer step."""
    config = config or env.config()
    ledger = env.ledger()
    client = SalesforceClient.from_config(config.salesforce)
    settings = WriteSettings(lease_seconds=60, max_attempts=5, delay=lambda cls, n: 0.0)

    async def in_thread(fn: Callable[..., Any], *a: Any, **k: Any) -> Any:
        return await asyncio.to_thread(fn, *a, **k)

    try:
        for _ in range(20):
            claim = ledger.claim("pusher", 200, 60)
            if not claim.rows:
                return
            asyncio.run(write_claim(ledger, client, claim, FIELD, settings, in_thread))
    finally:
        client.close()
        ledger.close()


def test_a_resubscribe_committed_while_the_nightly_write_is_in_flight_ends_false(env: Env) -> None:
    w = build_world(env)
    config = env.config()
    ledger: Ledger = env.ledger()

    def resubscribe() -> None:
        ledger.resubscribe([Resubscribe(email="ledger.only@example.com", requested_by="ops", reason="asked")])

    summary = run_nightly(
        config,
        dry_run=False,
        client_factory=lambda on_request: Racing(  # type: ignore[arg-type,return-value]
            SalesforceClient.from_config(config.salesforce, on_request=on_request), resubscribe
        ),
    )
    assert summary["outcome"] == "Succeeded", summary.get("error")
    push_everything(env)  # the resubscribe's write of false follows the stale write of true
    assert not opted_out(env, w.c_ledger_only)
    found = ledger.lookup("ledger.only@example.com")
    assert found is not None and found["unsubscribed"] is False
    ledger.close()


def test_a_nightly_killed_after_queueing_loses_nothing(env: Env) -> None:
    w = build_world(env)
    config = env.config()
    with contextlib.suppress(KeyboardInterrupt):
        run_nightly(config, dry_run=False, progress=Interrupt("write to Salesforce"))  # type: ignore[arg-type]
    assert not opted_out(env, w.c_ledger_only)  # queued, not written
    push_everything(env)
    assert opted_out(env, w.c_ledger_only) and opted_out(env, w.l_ledger_only)
    again = run_nightly(config, dry_run=False)
    assert again["toSalesforce"] == 0


def test_a_pusher_and_a_nightly_racing_on_the_same_records_write_each_record_once(env: Env) -> None:
    w = build_world(env)
    config = env.config()
    done = threading.Event()

    def pusher() -> None:
        while not done.is_set():
            push_everything(env, config)

    racer = threading.Thread(target=pusher)
    racer.start()
    try:
        summary = run_nightly(config, dry_run=False)
    finally:
        done.set()
        racer.join()
    push_everything(env)
    assert summary["outcome"] == "Succeeded", summary.get("error")
    for rid in (w.c_ledger_only, w.l_ledger_only, w.l_ledger_15, w.c_both):
        assert env.state.write_count(rid) <= 1
    for rid in (w.c_ledger_only, w.l_ledger_only, w.l_ledger_15):
        assert opted_out(env, rid) and env.state.write_count(rid) == 1

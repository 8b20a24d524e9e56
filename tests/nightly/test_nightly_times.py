"""The nightly's times: RFC 3339 to the second in the summary, the same instants in the recorded run."""

from __future__ import annotations

import re
from datetime import datetime

from tests.fixtures.nightly import Env, build_world
from unsubscribe_sync.nightly.job import run_nightly

SECONDS_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_summary_times_are_rfc3339_seconds_and_the_recorded_run_holds_the_same(env: Env) -> None:
    build_world(env)

    summary = run_nightly(env.config(), dry_run=False)

    assert SECONDS_Z.match(summary["startTime"]) and SECONDS_Z.match(summary["completionTime"])
    assert instant(summary["completionTime"]) >= instant(summary["startTime"])
    ledger = env.ledger()
    try:
        last = ledger.last_sync_run()
    finally:
        ledger.close()
    assert last is not None and last["summary"] == summary
    assert last["startedAtEpoch"] == instant(summary["startTime"]).timestamp()
    assert last["endedAtEpoch"] == instant(summary["completionTime"]).timestamp()


def test_a_dry_run_and_a_failed_requirement_format_their_times_the_same(env: Env) -> None:
    build_world(env)

    dry = run_nightly(env.config(), dry_run=True)
    disabled = run_nightly(env.config(nightly__enabled=False), dry_run=False)

    for summary in (dry, disabled):
        assert SECONDS_Z.match(summary["startTime"]) and SECONDS_Z.match(summary["completionTime"])
    assert disabled["outcome"] == "Failed"

"""The last nightly run from Jobs and pods (pure)."""

from __future__ import annotations

import json
from typing import Any

from unsubscribe_sync.controller.nightly_status import (
    last_nightly_sync,
    latest_job,
    parse_error,
    parse_summary,
    termination_message,
)


def job(name: str, start: str, *, done: str | None = None, owner: str = "acme-nightly-sync") -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": start}
    if done == "Complete":
        status["completionTime"] = start.replace("T04", "T05")
        status["conditions"] = [{"type": "Complete", "status": "True"}]
    elif done == "Failed":
        status["conditions"] = [{"type": "Failed", "status": "True", "lastTransitionTime": "2026-11-28T05:00:00Z"}]
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "creationTimestamp": start,
            "ownerReferences": [{"kind": "CronJob", "name": owner}],
        },
        "status": status,
    }


def test_latest_finished_job_of_the_cronjob() -> None:
    jobs = [
        job("a", "2026-11-26T04:00:00Z", done="Complete"),
        job("b", "2026-11-27T04:00:00Z", done="Failed"),
        job("c", "2026-11-28T04:00:00Z"),  # still running
        job("z", "2026-11-29T04:00:00Z", done="Complete", owner="other-nightly-sync"),
    ]
    run = latest_job(jobs, "acme-nightly-sync")
    assert run is not None and (run.name, run.phase) == ("b", "Failed")
    running = latest_job(jobs, "acme-nightly-sync", finished=False)
    assert running is not None and (running.name, running.phase) == ("c", "Running")
    assert latest_job([], "acme-nightly-sync") is None


def test_summary_is_the_last_json_line() -> None:
    message = (
        "starting\n"
        + json.dumps({"toSalesforce": 1, "failed": 9})
        + "\n"
        + json.dumps({"toSalesforce": 5, "fromSalesforce": 4, "skippedNoSalesforceId": 3, "failed": 0, "extra": "x"})
    )
    counts = parse_summary(message)
    assert counts is not None
    assert counts.model_dump() == {"toSalesforce": 5, "fromSalesforce": 4, "skippedNoSalesforceId": 3, "failed": 0}
    assert parse_summary("Traceback ...\nboom") is None
    assert parse_summary(None) is None
    assert parse_summary("{not json") is None


def test_failed_run_reason_comes_from_its_summary() -> None:
    failed = json.dumps({"toSalesforce": 0, "failed": 0, "outcome": "Failed", "error": "change guard:\n  too many"})
    assert parse_error("log line\n" + failed) == "change guard: too many"
    assert parse_error(json.dumps({"toSalesforce": 1})) is None
    assert parse_error("Traceback ...") is None
    assert parse_error(json.dumps({"error": "x" * 1000}), limit=50) == "x" * 47 + "..."


def test_termination_message_of_the_latest_container() -> None:
    def pod(finished: str, message: str) -> dict[str, Any]:
        return {
            "status": {"containerStatuses": [{"state": {"terminated": {"finishedAt": finished, "message": message}}}]}
        }

    pods = [pod("2026-11-28T04:01:00Z", "first try"), pod("2026-11-28T04:09:00Z", "second try"), {"status": {}}]
    assert termination_message(pods) == "second try"
    assert termination_message([]) is None


def test_last_nightly_sync_from_a_failed_run_without_summary() -> None:
    run = latest_job([job("b", "2026-11-27T04:00:00Z", done="Failed")], "acme-nightly-sync")
    last = last_nightly_sync(run, "Traceback: boom")
    assert last is not None
    assert (last.outcome, last.jobName, last.startTime) == ("Failed", "b", "2026-11-27T04:00:00Z")
    assert last.completionTime == "2026-11-28T05:00:00Z"
    assert last.counts.model_dump() == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 0, "failed": 0}
    assert last_nightly_sync(None, None) is None

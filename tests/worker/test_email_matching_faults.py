"""Email mode when Salesforce's Email IN query fails: transient faults are retried with backoff until they clear,
a permanent refusal (Email hidden from the integration user) is recorded in the address's history and counted,
and retried only slowly. Faults come from the sandbox (sandbox/faults.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.worker import eventually, opted_out
from unsubscribe_sync.salesforce.types import ErrorClass
from unsubscribe_sync.worker.resolver import failure_class


def _failures(worker: Any, error_class: str) -> float:
    return float(worker.sample("unsubscribe_sync_resolve_failures_total", error_class=error_class))


@pytest.mark.parametrize("fault", ["unavailable", "request_limit"])
async def test_a_transient_query_fault_is_retried_until_it_clears(
    email_worker: Any,
    sandbox: SandboxHandle,
    fault: str,
) -> None:
    state = sandbox.state
    records = [state.add_record("Contact", "flo@example.com"), state.add_record("Lead", "FLO@example.com")]
    worker = await email_worker()
    if fault == "unavailable":
        state.set_unavailable(None)  # HTTP 503 on every call until cleared
        error_class = "transient"
    else:
        state.set_request_limit_exceeded(True)
        error_class = "rate_limited"
    await worker.post({"email": "flo@example.com"})
    await eventually(lambda: _failures(worker, error_class) >= 2, what="the resolution retried")
    assert worker.ledger.pending_resolutions() == 1  # never given up
    state.clear_faults()
    await eventually(worker.settled, what="resolved and pushed after the fault cleared")
    assert all(opted_out(sandbox, r) for r in records)
    history = (await worker.lookup("flo@example.com"))["history"]
    assert not [h for h in history if h["action"] == "resolve_failed"]  # transient: retried, not a finding


async def test_an_expired_session_is_renewed_and_the_resolution_written(
    email_worker: Any,
    sandbox: SandboxHandle,
) -> None:
    state = sandbox.state
    record = state.add_record("Contact", "gus@example.com")
    worker = await email_worker()
    await worker.post({"email": "warm@example.com"})  # the resolver logs in
    await eventually(worker.settled, what="first resolution")
    state.expire_sessions()
    await worker.post({"email": "gus@example.com"})
    await eventually(worker.settled, what="resolved with a new session")
    assert opted_out(sandbox, record)


async def test_email_hidden_from_the_integration_user_is_recorded_and_not_retried_hot(
    email_worker: Any,
    sandbox: SandboxHandle,
) -> None:
    state = sandbox.state
    record = state.add_record("Contact", "hid@example.com")
    state.hide_standard_field("Contact", "Email")
    worker = await email_worker()
    await worker.post({"email": "hid@example.com"})
    await eventually(lambda: _failures(worker, "configuration") >= 1, what="the refusal recorded")
    history = (await worker.lookup("hid@example.com"))["history"]
    failed = [h for h in history if h["action"] == "resolve_failed"]
    assert len(failed) == 1 and failed[0]["outcome"] == "failed"
    assert "INVALID_FIELD" in failed[0]["detail"]
    # not due again for a long while (not hot), but still queued (never given up)
    assert worker.ledger.claim_resolutions("probe", 10, 60, now=time.time() + 60).rows == []
    assert worker.ledger.pending_resolutions() == 1
    assert not opted_out(sandbox, record)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RuntimeError("connection reset"), ErrorClass.TRANSIENT),
        (type("E", (Exception,), {"error_class": ErrorClass.RATE_LIMITED})(), ErrorClass.RATE_LIMITED),
        (type("E", (Exception,), {"error_class": ErrorClass.CONFIGURATION})(), ErrorClass.CONFIGURATION),
        (type("E", (Exception,), {"error_class": ErrorClass.PERMANENT})(), ErrorClass.PERMANENT),
        (type("E", (Exception,), {"error_class": ErrorClass.REAUTH})(), ErrorClass.REAUTH),
    ],
)
def test_failure_class(error: Exception, expected: ErrorClass) -> None:
    assert failure_class(error) is expected

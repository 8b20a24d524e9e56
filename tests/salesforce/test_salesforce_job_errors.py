"""How a failed Bulk API 2.0 job's ``errorMessage`` is classified.

The first three rows are verbatim messages real orgs returned (a job's ``errorMessage`` and a batch state
message, quoted in public issue threads); the others use the codes of the Bulk API 2.0 guide's error list
("Errors") with shortened text, and the upper-case REST codes a job can carry. A job-level client or
configuration problem must not be retried as if it were a passing fault, and must never end every record
of the job for good.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.salesforce.errors import classify_job_failure
from unsubscribe_sync.salesforce.types import ErrorClass, SalesforceCallError

C, T, R = ErrorClass.CONFIGURATION, ErrorClass.TRANSIENT, ErrorClass.RATE_LIMITED


@pytest.mark.parametrize(
    ("message", "code", "error_class"),
    [
        pytest.param(
            "ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF",
            "ClientInputError",
            C,
            id="line ending does not match the job's lineEnding",
        ),
        pytest.param(
            "InvalidBatch : Field name not found : ContactId__c", "INVALID_FIELD", C, id="a field that does not exist"
        ),
        pytest.param(
            "null:InvalidBatch : InvalidBatch : Field name not found : Name. Batch will not be retried.",
            "INVALID_FIELD",
            C,
            id="null-prefixed batch message",
        ),
        pytest.param("InvalidBatch : No data uploaded for this job", "InvalidBatch", C, id="no data uploaded"),
        pytest.param("FeatureNotEnabled : Bulk API 2.0 is not enabled", "FeatureNotEnabled", C, id="feature off"),
        pytest.param("InvalidUser : insufficient access rights", "InvalidUser", C, id="user lacks permission"),
        pytest.param("ExceededQuota : too many jobs in 24 hours", "ExceededQuota", R, id="daily job quota"),
        pytest.param("TooManyLockFailure : Too many lock failures", "TooManyLockFailure", T, id="lock contention"),
        pytest.param("Timeout : the batch took too long", "Timeout", T, id="processing time-out"),
        pytest.param("Unknown : an unknown exception", "Unknown", T, id="unknown server fault"),
        pytest.param("InternalServerError : the job failed; retry it later", "InternalServerError", T, id="unlisted"),
        pytest.param("INVALID_FIELD: No such column 'Nope__c' on entity 'Contact'", "INVALID_FIELD", C, id="REST code"),
        pytest.param("UNABLE_TO_LOCK_ROW: unable to obtain exclusive access", "UNABLE_TO_LOCK_ROW", T, id="REST lock"),
        pytest.param(
            "INSUFFICIENT_ACCESS_OR_READONLY: insufficient access", "INSUFFICIENT_ACCESS_OR_READONLY", C, id="no access"
        ),
        pytest.param("SOMETHING_NEW: never seen", "SOMETHING_NEW", T, id="unknown REST code is not permanent"),
        pytest.param("the job failed", None, T, id="no code"),
        pytest.param("", None, T, id="empty"),
    ],
)
def test_job_failures_are_classified(message: str, code: str | None, error_class: ErrorClass) -> None:
    assert classify_job_failure(message) == (code, error_class)


def test_no_job_failure_is_permanent() -> None:
    samples = ["ClientInputError : x", "ENTITY_IS_DELETED: gone", "MALFORMED_ID: bad", "Whatever : y", "x"]
    assert all(classify_job_failure(m)[1] is not ErrorClass.PERMANENT for m in samples)


def test_a_failed_job_reaches_the_caller_classified(sandbox: SandboxHandle, tmp_path: Path) -> None:
    cfg = SalesforceConfig(
        loginUrl=sandbox.url,
        credentialsDir=sandbox.write_credentials(tmp_path / "creds"),
        caFile=sandbox.ca_file,
    )
    client = SalesforceClient.from_config(cfg, bulk_poll_interval=(0.02, 0.2))
    ids = [sandbox.state.add_record("Contact", f"job{i}@example.com") for i in range(2)]
    try:
        with pytest.raises(SalesforceCallError) as info:
            client.bulk_write_opt_outs("Contact", ids, "Nope__c")
    finally:
        client.close()
    assert info.value.error_class is ErrorClass.CONFIGURATION and info.value.error_code == "INVALID_FIELD"

"""The one classifier of Salesforce errors, and the retry pause that goes with each class.

The codes are those Salesforce documents for its REST, Collections and Bulk 2.0 APIs (the sets below).
Unknown codes: HTTP 5xx -> TRANSIENT, anything else -> PERMANENT for the record (never retried forever).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import NamedTuple

from unsubscribe_sync.salesforce.types import ErrorClass, RecordResult

TRANSIENT_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",
        "SERVER_UNAVAILABLE",
        "INSERT_UPDATE_DELETE_NOT_ALLOWED_DURING_MAINTENANCE",
        "REQUEST_RUNNING_TOO_LONG",
        "QUERY_TIMEOUT",
    }
)
RATE_LIMITED_CODES = frozenset({"REQUEST_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS"})
REAUTH_CODES = frozenset({"INVALID_SESSION_ID"})
PERMANENT_CODES = frozenset(
    {
        "ENTITY_IS_DELETED",
        "NOT_FOUND",
        "MALFORMED_ID",
        "INVALID_ID_FIELD",
        "INVALID_CROSS_REFERENCE_KEY",
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "ENTITY_IS_LOCKED",
        "FIELD_CUSTOM_VALIDATION_EXCEPTION",
        "FIELD_INTEGRITY_EXCEPTION",
        "INSUFFICIENT_ACCESS_OR_READONLY",
        "DUPLICATE_VALUE",
    }
)
CONFIGURATION_CODES = frozenset(
    {
        "INVALID_FIELD",
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        "INVALID_TYPE",
        "API_DISABLED_FOR_ORG",
        "API_CURRENTLY_DISABLED",
    }
)


def classify(error_code: str | None, http_status: int | None = None) -> ErrorClass:
    """What an error means: from the Salesforce error code first, then the HTTP status."""
    code = (error_code or "").strip().upper()
    if code in REAUTH_CODES:
        return ErrorClass.REAUTH
    if code in RATE_LIMITED_CODES:
        return ErrorClass.RATE_LIMITED
    if code in TRANSIENT_CODES:
        return ErrorClass.TRANSIENT
    if code in CONFIGURATION_CODES:
        return ErrorClass.CONFIGURATION
    if code in PERMANENT_CODES:
        return ErrorClass.PERMANENT
    if http_status is not None:
        if http_status >= 500 or http_status == 408:
            return ErrorClass.TRANSIENT
        if http_status == 429:
            return ErrorClass.RATE_LIMITED
        if http_status == 401 and not code:
            return ErrorClass.REAUTH
    return ErrorClass.PERMANENT


# Bulk API 2.0 fails a whole job with an ``errorMessage`` of the form ``ExceptionCode : message``, where the
# code is one of the Bulk API's own CamelCase exception codes (the "Errors" page of the Bulk API 2.0 guide),
# e.g. ``ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is LF`` or
# ``InvalidBatch : Field name not found : Foo__c``. Codes that say the request itself was wrong (the CSV, a
# field, the org's features, the user's permissions) are CONFIGURATION: sending the same job again fails the
# same way until someone fixes the connector or the org, but the records are still valid, so they must not
# be ended for good as PERMANENT would (an unsubscribe is never dropped); CONFIGURATION is retried slowly and
# reported on the resource. Lock contention, time-outs and unknown server faults are TRANSIENT.
JOB_ERROR_CLASSES: dict[str, ErrorClass] = {
    "ClientInputError": ErrorClass.CONFIGURATION,
    "FeatureNotEnabled": ErrorClass.CONFIGURATION,
    "InvalidBatch": ErrorClass.CONFIGURATION,
    "InvalidOperation": ErrorClass.CONFIGURATION,
    "InvalidUrl": ErrorClass.CONFIGURATION,
    "InvalidUser": ErrorClass.CONFIGURATION,
    "InvalidXML": ErrorClass.CONFIGURATION,
    "MethodNotAllowed": ErrorClass.CONFIGURATION,
    "ExceededQuota": ErrorClass.RATE_LIMITED,
    "InvalidJob": ErrorClass.TRANSIENT,  # the job is gone: a new job is the retry
    "InvalidJobState": ErrorClass.TRANSIENT,
    "InvalidSessionId": ErrorClass.TRANSIENT,  # the next attempt gets a new token
    "NotFound": ErrorClass.TRANSIENT,
    "Timeout": ErrorClass.TRANSIENT,
    "TooManyLockFailure": ErrorClass.TRANSIENT,
    "Unknown": ErrorClass.TRANSIENT,
}
_JOB_CODE_RE = re.compile(r"\s*(?:null\s*:\s*)?([A-Za-z][A-Za-z0-9_]*)\s*:")
_FIELD_NOT_FOUND = ("field name not found", "invalid field")


def classify_job_failure(message: str) -> tuple[str | None, ErrorClass]:
    """(error code, class) of a failed Bulk API 2.0 job from its ``errorMessage``.

    The code is the message's leading ``Code :`` (a ``null:`` prefix, seen in job and batch messages, is
    skipped). A field that does not exist is reported as INVALID_FIELD, like the REST API does. An upper-case
    REST code (``INVALID_FIELD: ...``) is classified by ``classify``, except that a job is never PERMANENT
    (that would end every record of the job for good). An unknown code, or none, is TRANSIENT: a job that
    failed for no stated reason is worth another try.
    """
    lowered = message.lower()
    if any(hint in lowered for hint in _FIELD_NOT_FOUND):
        return "INVALID_FIELD", ErrorClass.CONFIGURATION
    match = _JOB_CODE_RE.match(message)
    if match is None:
        return None, ErrorClass.TRANSIENT
    code = match[1]
    if code in JOB_ERROR_CLASSES:
        return code, JOB_ERROR_CLASSES[code]
    if re.fullmatch(r"[A-Z][A-Z0-9_]*", code):
        error_class = classify(code, None)
        if error_class is ErrorClass.REAUTH:
            error_class = ErrorClass.TRANSIENT  # the next job gets a new token
        elif error_class is ErrorClass.PERMANENT:
            # A whole job never fails because of one record: a known record-level code means the request is
            # wrong (permissions, data shape); an unknown one is worth another try.
            error_class = ErrorClass.CONFIGURATION if code in PERMANENT_CODES else ErrorClass.TRANSIENT
        return code, error_class
    return code, ErrorClass.TRANSIENT


# (first pause, cap) in seconds per retryable class.
_BACKOFF: dict[ErrorClass, tuple[float, float]] = {
    ErrorClass.TRANSIENT: (1.0, 300.0),
    ErrorClass.RATE_LIMITED: (60.0, 3600.0),
    ErrorClass.CONFIGURATION: (60.0, 900.0),  # retried only after an operator fixes the org
    ErrorClass.REAUTH: (0.0, 0.0),
}


def retry_delay(error_class: ErrorClass, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = first retry) of something that met ``error_class``.

    Exponential backoff with "equal jitter": the pause is between half and all of
    ``first * 2**(attempt-1)`` (capped), so retries of many records spread out but never
    come back sooner than half the nominal pause. REQUEST_LIMIT_EXCEEDED waits far longer
    than a transient error. PERMANENT errors are never retried: ValueError.
    """
    if error_class is ErrorClass.PERMANENT:
        raise ValueError("permanent errors are not retried")
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    first, cap = _BACKOFF[error_class]
    nominal = min(cap, first * 2 ** min(attempt - 1, 30))
    return nominal / 2 + rand() * nominal / 2


def _describe(result: RecordResult) -> str:
    return ": ".join(p for p in (result.error_code, result.message) if p) or "unknown error"


class WriteDecision(NamedTuple):
    """What one record's answer means for its queued write."""

    status: str  # pushed | failed | retry | held
    reason: str | None = None
    error_class: ErrorClass | None = None
    stuck: bool = False  # retried ``max_attempts`` times now: report it stuck (still retried)


PUSHED = WriteDecision("pushed")  # one shared decision for every success (a Bulk claim has 100,000)


def decide_write(result: RecordResult, attempts: int, max_attempts: int) -> WriteDecision:
    """The write-outcome rule of every writer (the push and the nightly): only a permanent error ends a record.

    ``attempts``: attempts made before this one. A configuration problem holds the row (no attempt
    counted); every other error is retried, and reported stuck once ``max_attempts`` is reached.
    """
    if result.success:
        return PUSHED
    error_class = result.error_class or classify(result.error_code)
    reason = _describe(result)
    if error_class is ErrorClass.CONFIGURATION:
        return WriteDecision("held", reason, error_class)
    if error_class is ErrorClass.PERMANENT:
        return WriteDecision("failed", reason, error_class)
    return WriteDecision("retry", reason, error_class, stuck=attempts + 1 >= max_attempts)

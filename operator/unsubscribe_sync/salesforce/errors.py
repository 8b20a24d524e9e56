"""The one classifier of Salesforce errors, and the retry pause that goes with each class.

Source: SALESFORCE.md, "Errors this integration meets". Unknown codes: HTTP 5xx -> TRANSIENT,
anything else -> PERMANENT for the record (never retried forever).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from unsubscribe_sync.salesforce.types import ErrorClass

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

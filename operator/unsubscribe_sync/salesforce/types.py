"""Values and exceptions shared by the Salesforce connector and its callers (worker, nightly, operator)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class ErrorClass(StrEnum):
    """What an error means for the record or the call that met it."""

    TRANSIENT = "transient"  # retry with backoff + jitter
    RATE_LIMITED = "rate_limited"  # retry after a longer pause
    REAUTH = "reauth"  # get a new token, then retry
    PERMANENT = "permanent"  # this record will never succeed: record it, move on
    CONFIGURATION = "configuration"  # affects every record: stop and report


class RecordResult(NamedTuple):
    """Outcome of one record in a write."""

    id: str
    success: bool
    error_code: str | None = None
    message: str | None = None
    error_class: ErrorClass | None = None


class OptedOutRecord(NamedTuple):
    """A Salesforce Contact/Lead whose opt-out field is true."""

    id: str  # 18 characters
    object: str  # "Contact" | "Lead"
    email: str | None


@dataclass(frozen=True, slots=True)
class ApiUsage:
    used: int
    max: int

    @property
    def ratio(self) -> float:
        return self.used / self.max if self.max else 0.0


class SalesforceError(Exception):
    """Base of the connector's errors. Messages never hold credentials or tokens."""

    error_class: ErrorClass = ErrorClass.TRANSIENT

    def __init__(
        self,
        message: str,
        *,
        error_class: ErrorClass | None = None,
        error_code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        if error_class is not None:
            self.error_class = error_class
        self.error_code = error_code
        self.status = status


class SalesforceCallError(SalesforceError):
    """A whole call failed (outage, 5xx, rate limit, bad field, ...); error_class says what to do."""


class AuthenticationError(SalesforceError):
    """The token exchange was refused (invalid_client / invalid_grant) or credentials are missing."""

    error_class = ErrorClass.CONFIGURATION


class FieldRequirementError(SalesforceError):
    """The opt-out field is missing, hidden by field-level security, or not updateable."""

    error_class = ErrorClass.CONFIGURATION

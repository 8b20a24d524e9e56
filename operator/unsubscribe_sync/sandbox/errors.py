"""Errors in Salesforce's shapes: top-level `[{"message", "errorCode", "fields"}]`, per-record `statusCode`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

NOT_FOUND_MESSAGE = "The requested resource does not exist"
SESSION_INVALID_MESSAGE = "Session expired or invalid"
LOCK_MESSAGE = "unable to obtain exclusive access to this record or 1 records: {id}"


class ApiError(Exception):
    """A whole request failed: HTTP `status` with a JSON list body of one error."""

    def __init__(self, status: int, error_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(f"{error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = fields

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


def invalid_session() -> ApiError:
    return ApiError(401, "INVALID_SESSION_ID", SESSION_INVALID_MESSAGE)


def no_such_column(field_name: str, sobject: str) -> str:
    return (
        f"No such column '{field_name}' on entity '{sobject}'. If you are attempting to use a custom field, be sure "
        "to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
        "appropriate names."
    )


@dataclass(frozen=True)
class RecordError:
    """One error of one record in a write (sObject Collections, single PATCH, Bulk ingest)."""

    status_code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def as_collections(self) -> dict[str, Any]:
        return {"statusCode": self.status_code, "message": self.message, "fields": list(self.fields)}

    def as_api_error(self) -> ApiError:
        status = 404 if self.status_code in ("NOT_FOUND", "ENTITY_IS_DELETED") else 400
        return ApiError(status, self.status_code, self.message, list(self.fields))

    def as_bulk(self) -> str:
        """Bulk API 2.0 `sf__Error` text: `CODE:message:Field1,Field2 --`, or `CODE:message:--` without fields."""
        if not self.fields:
            return f"{self.status_code}:{self.message}:--"
        return f"{self.status_code}:{self.message}:{','.join(self.fields)} --"

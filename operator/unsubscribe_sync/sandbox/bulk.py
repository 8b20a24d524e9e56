"""Bulk API 2.0 jobs: their records, JSON info documents, and CSV in and out."""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, RecordError
from .schema import FieldDef, ObjectSchema
from .store import Selection, Table

DELIMITERS = {"COMMA": ",", "TAB": "\t", "PIPE": "|", "SEMICOLON": ";", "CARET": "^", "BACKQUOTE": "`"}
LINE_ENDINGS = {"LF": "\n", "CRLF": "\r\n"}
TERMINAL_STATES = ("JobComplete", "Failed", "Aborted")
DEFAULT_MAX_RECORDS = 50_000
_BULK_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})\+0000")


def timestamp(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def encode_locator(offset: int) -> str:
    return base64.b64encode(str(offset).encode()).decode().rstrip("=")


def decode_locator(locator: str) -> int:
    try:
        padded = locator + "=" * (-len(locator) % 4)
        offset = int(base64.b64decode(padded, validate=True).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "INVALID_QUERY_LOCATOR", f"invalid locator: {locator}") from exc
    if offset < 0:
        raise ApiError(400, "INVALID_QUERY_LOCATOR", f"invalid locator: {locator}")
    return offset


@dataclass
class JobBase:
    id: str
    operation: str
    sobject: str
    api_version: str
    created_by: str
    created_at: float  # epoch seconds
    column_delimiter: str = "COMMA"
    line_ending: str = "LF"
    state: str = "Open"
    modified_at: float = 0.0
    ready_at: float | None = None  # when processing finishes
    error_message: str | None = None
    number_records_processed: int = 0

    def common_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.sobject,
            "createdById": self.created_by,
            "createdDate": timestamp(self.created_at),
            "systemModstamp": timestamp(self.modified_at or self.created_at),
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "lineEnding": self.line_ending,
            "columnDelimiter": self.column_delimiter,
        }
        if self.error_message:
            info["errorMessage"] = self.error_message
        return info

    def csv_writer(self, buffer: io.StringIO) -> Any:
        return csv.writer(
            buffer,
            delimiter=DELIMITERS[self.column_delimiter],
            lineterminator=LINE_ENDINGS[self.line_ending],
            quoting=csv.QUOTE_ALL,
        )


@dataclass
class QueryJob(JobBase):
    query: str = ""
    selection: Selection | None = None

    def info(self) -> dict[str, Any]:
        info = self.common_info()
        info.update(
            {
                "jobType": "V2Query",
                "numberRecordsProcessed": self.number_records_processed,
                "retries": 0,
                "totalProcessingTime": 0,
                "isPkChunkingSupported": True,
            }
        )
        return info


@dataclass
class IngestJob(JobBase):
    external_id_field: str | None = None
    uploads: list[str] = field(default_factory=list)
    successful: list[list[str]] = field(default_factory=list)  # sf__Id, sf__Created, original columns
    failed: list[list[str]] = field(default_factory=list)  # sf__Id, sf__Error, original columns
    header: list[str] = field(default_factory=list)
    number_records_failed: int = 0
    run: IngestRun | None = None  # while processing: the parsed rows and how many are applied
    failure: str | None = None  # the error the job ends with, decided when its processing starts

    def info(self, with_counts: bool = True) -> dict[str, Any]:
        info = self.common_info()
        info["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        if self.external_id_field:
            info["externalIdFieldName"] = self.external_id_field
        if with_counts:
            info.update(
                {
                    "jobType": "V2Ingest",
                    "numberRecordsProcessed": self.number_records_processed,
                    "numberRecordsFailed": self.number_records_failed,
                    "retries": 0,
                    "totalProcessingTime": 0,
                    "apiActiveProcessingTime": 0,
                    "apexProcessingTime": 0,
                }
            )
        return info

    def parse_uploads(self) -> tuple[list[str], list[list[str]]]:
        """Header and data rows of everything uploaded (every upload repeats the header)."""
        header: list[str] = []
        rows: list[list[str]] = []
        for text in self.uploads:
            reader = csv.reader(
                io.StringIO(text, newline=""),
                delimiter=DELIMITERS[self.column_delimiter],
            )
            upload_rows = [row for row in reader if row]
            if not upload_rows:
                continue
            if header and upload_rows[0] != header:
                raise ValueError("every upload of a job must have the same header")
            header = upload_rows[0]
            rows.extend(upload_rows[1:])
        return header, rows

    def results_csv(self, kind: str) -> str:
        buffer = io.StringIO()
        writer = self.csv_writer(buffer)
        second = "sf__Created" if kind == "successfulResults" else "sf__Error"
        if kind == "unprocessedrecords":
            writer.writerow(self.header)
            return buffer.getvalue()
        writer.writerow(["sf__Id", second, *self.header])
        writer.writerows(self.successful if kind == "successfulResults" else self.failed)
        return buffer.getvalue()


def job_options(body: dict[str, Any]) -> tuple[str, str]:
    """columnDelimiter and lineEnding of a job-creation body (defaults COMMA, LF)."""
    delimiter = body.get("columnDelimiter", "COMMA")
    line_ending = body.get("lineEnding", "LF")
    if delimiter not in DELIMITERS:
        raise ApiError(400, "INVALIDJOB", f"Invalid column delimiter: {delimiter}")
    if line_ending not in LINE_ENDINGS:
        raise ApiError(400, "INVALIDJOB", f"Invalid line ending: {line_ending}")
    return delimiter, line_ending


def _csv_value(value: Any) -> Any:
    return "true" if value is True else "false" if value is False else "" if value is None else value


def query_results_page(
    job: QueryJob, table: Table, locator: str | None, max_records: str | None
) -> tuple[str, str, int]:
    """One CSV page of a finished query job: (csv text, next locator or "null", records in the page)."""
    assert job.selection is not None
    if max_records is None:
        size = DEFAULT_MAX_RECORDS
    elif not max_records.isdigit() or int(max_records) <= 0:
        raise ApiError(400, "INVALIDREQUEST", f"maxRecords must be a positive integer: {max_records}")
    else:
        size = int(max_records)
    offset = 0 if not locator else decode_locator(locator)
    rows = job.selection.rows
    if offset > len(rows):
        raise ApiError(400, "INVALID_QUERY_LOCATOR", f"invalid locator: {locator}")
    page = rows[offset : offset + size]
    buffer = io.StringIO()
    writer = job.csv_writer(buffer)
    fields = job.selection.fields
    writer.writerow(fields)
    columns = [table.column(name) for name in fields]
    writer.writerows([_csv_value(column[row]) for column in columns] for row in page)
    text = buffer.getvalue()
    if any((d := table.schema.lookup(name)) is not None and d.type == "datetime" for name in fields):
        text = _BULK_DATETIME.sub(r"\1Z", text)  # Bulk CSV writes datetimes as 2026-12-03T10:00:00.000Z
    end = offset + len(page)
    return text, encode_locator(end) if end < len(rows) else "null", len(page)


def _row_values(row: list[str], columns: list[tuple[int, FieldDef]]) -> dict[str, Any] | RecordError:
    values: dict[str, Any] = {}
    for index, definition in columns:
        text = row[index] if index < len(row) else ""
        if text == "":
            continue  # an empty cell leaves the field unchanged
        if definition.type == "boolean":
            lowered = text.strip().lower()
            if lowered not in ("true", "1", "yes", "false", "0", "no"):
                return RecordError(
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    f"{definition.label}: value not of required type: {text}",
                    [definition.name],
                )
            values[definition.name] = lowered in ("true", "1", "yes")
        else:
            values[definition.name] = None if text == "#N/A" else text
    return values


_QUOTED = re.compile(r'"(?:[^"]|"")*"')
_BARE_LF = re.compile(r"(?<!\r)\n")


def line_ending_problem(text: str, line_ending: str) -> str | None:
    """The job's error when the data's line endings differ from the job's `lineEnding` (line breaks inside quoted
    values do not count); None when they match. The common cases are decided without scanning for quotes."""
    if line_ending == "LF":
        if "\r\n" not in text or "\r\n" not in _QUOTED.sub("", text):
            return None
    elif text.count("\n") == text.count("\r\n") or not _BARE_LF.search(_QUOTED.sub("", text)):
        return None
    return f"ClientInputError : LineEnding is invalid on user data. Current LineEnding setting is {line_ending}"


@dataclass
class IngestRun:
    """A running update job: its parsed rows and how far its processing has come."""

    rows: list[list[str]]
    id_column: int
    columns: list[tuple[int, FieldDef]]
    applied: int = 0

    @property
    def left(self) -> int:
        return len(self.rows) - self.applied


def start_ingest(job: IngestJob, schema: ObjectSchema) -> IngestRun | str:
    """Parse and check an uploaded update job's data: its run, or the error that fails the job (a bad line
    ending, CSV or header)."""
    for text in job.uploads:
        problem = line_ending_problem(text, job.line_ending)
        if problem is not None:
            return problem
    try:
        header, rows = job.parse_uploads()
    except (ValueError, csv.Error) as exc:
        return f"InvalidBatch : {exc}"
    job.header = header
    id_column = next((i for i, name in enumerate(header) if name.lower() == "id"), None)
    if id_column is None:
        return "InvalidBatch : Field name not found : Id"
    columns: list[tuple[int, FieldDef]] = []
    for index, name in enumerate(header):
        if index == id_column:
            continue
        definition = schema.lookup(name)
        if definition is None:
            return f"InvalidBatch : Field name not found : {name}"
        columns.append((index, definition))
    return IngestRun(rows, id_column, columns)


def apply_ingest_rows(
    job: IngestJob, run: IngestRun, update: Callable[[str, dict[str, Any]], str | RecordError], limit: int | None
) -> None:
    """Apply the run's next ``limit`` rows (every row left when None): each goes through `update` (which checks
    and applies one record, returning its 18-character ID or its error) into the successful or failed results."""
    stop = len(run.rows) if limit is None else min(len(run.rows), run.applied + limit)
    id_column, columns = run.id_column, run.columns
    for row in run.rows[run.applied : stop]:
        values = _row_values(row, columns)
        outcome = (
            values
            if isinstance(values, RecordError)
            else update(row[id_column] if id_column < len(row) else "", values)
        )
        if isinstance(outcome, RecordError):
            job.failed.append(["", outcome.as_bulk(), *row])
        else:
            job.successful.append([outcome, "false", *row])
    run.applied = stop
    job.number_records_processed = stop
    job.number_records_failed = len(job.failed)

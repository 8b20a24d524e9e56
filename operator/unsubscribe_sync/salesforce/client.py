"""The Salesforce connector: REST (describe, query, sObject Collections, limits) and Bulk API 2.0.

Calls go through simple-salesforce built with ``instance_url`` + ``session_id`` (no login of
its own, so its unbounded re-login recursion can never run); this module owns the token
(``auth.TokenProvider``) and re-authenticates on 401 ``INVALID_SESSION_ID`` at most
``MAX_REAUTH`` times per HTTP call. Every HTTP call is reported once to ``on_request(operation,
status)``; ``status`` is the HTTP status code, or ``error`` when no answer came back.

Errors: a whole call that fails raises ``SalesforceCallError`` whose ``error_class`` says what
to do (see ``errors.classify``); per-record outcomes come back as ``RecordResult`` in input order.
No message or log line carries a token or secret.
"""

from __future__ import annotations

import csv
import functools
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import requests
from simple_salesforce import Salesforce
from simple_salesforce import exceptions as ssf_exceptions
from simple_salesforce.bulk2 import Operation, _Bulk2Client

from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.api.constants import EMAIL_OPT_OUT_FIELD
from unsubscribe_sync.api.spec import OptOutTarget
from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.salesforce.auth import OnRequest, Token, TokenProvider, read_credentials
from unsubscribe_sync.salesforce.errors import classify, classify_job_failure
from unsubscribe_sync.salesforce.fields import FLS_NOTE, FieldReport, evaluate_fields
from unsubscribe_sync.salesforce.ids import normalize_id
from unsubscribe_sync.salesforce.transport import DeadlineExceeded, build_session, tls_context
from unsubscribe_sync.salesforce.types import (
    ApiUsage,
    ErrorClass,
    FieldRequirementError,
    OptedOutRecord,
    RecordResult,
    SalesforceCallError,
    SalesforceError,
)

log = get_logger(__name__)

T = TypeVar("T")

MAX_REAUTH = 2  # new tokens per HTTP call before giving up
# HTTP calls one connector call can make: a first token, the call, and per refused session a token + a repeat.
MAX_HTTP_CALLS_PER_CALL = 2 * MAX_REAUTH + 2
COLLECTIONS_LIMIT = 200  # records per sObject Collections call
BULK_INGEST_CHUNK = 100_000  # records per Bulk 2.0 ingest job (far below the 150 MB upload limit)
BULK_QUERY_PAGE = 50_000  # records per Bulk 2.0 query results page
QUERY_BATCH_SIZE = 2000  # REST query page size
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_LIMIT_INFO_RE = re.compile(r"api-usage=(\d+)/(\d+)")
_FINAL_JOB_STATES = ("JobComplete", "Failed", "Aborted")


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise ValueError(f"invalid Salesforce {kind} name: {value!r}")
    return value


def opted_out_soql(object_name: str, field: str, *, count: bool = False) -> str:
    """The SOQL that selects the records of ``object_name`` whose opt-out ``field`` is true."""
    _check_name("object", object_name)
    _check_name("field", field)
    what = "COUNT()" if count else "Id, Email"
    soql = f"SELECT {what} FROM {object_name} WHERE {field} = true"
    if object_name == "Lead":
        soql += " AND IsConverted = false"
    return soql


def _first_error(content: Any) -> tuple[str | None, str]:
    """(errorCode, message) of a Salesforce error body (a list of errors, one error, or text)."""
    if isinstance(content, list) and content:
        content = content[0]
    if isinstance(content, dict):
        code = content.get("errorCode") or content.get("statusCode") or content.get("error")
        message = content.get("message") or content.get("error_description") or ""
        return (str(code) if code else None), str(message)
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return None, str(content or "")[:300]


def _query_more(sf: Salesforce, *, url: str, headers: dict[str, str]) -> Any:
    return sf.query_more(url, identifier_is_url=True, headers=dict(headers))


def _parse_job_error(message: str) -> str | None:
    head = message.split(":", 1)[0].strip()
    return head if re.fullmatch(r"[A-Z_]+", head) else None


def _bulk_results(text: str, column: str | None = None) -> Iterator[tuple[str, str]]:
    """(record ID, the value of ``column`` or "") of each row of a Bulk ingest result CSV: the ID from its Id
    column, else from sf__Id. Read by position (a dict per row cost twice as much at Bulk volume)."""
    rows = csv.reader(_lines(text))
    header = next(rows, None)
    if header is None:
        return
    positions = [header.index(name) for name in ("Id", "sf__Id") if name in header]
    at = header.index(column) if column is not None and column in header else -1
    for row in rows:
        size = len(row)
        record_id = next((row[i] for i in positions if i < size and row[i]), "")
        yield record_id, row[at] if 0 <= at < size else ""


def every_record_succeeded(job: Mapping[str, Any], uploaded: int) -> bool:
    """A finished Bulk 2.0 ingest job's counts say each of the ``uploaded`` records was written.

    ``numberRecordsProcessed`` counts the failed records too, so every uploaded record processed and none
    failed means each succeeded, and the job's results (a success CSV as long as the upload: at Bulk volume
    the largest answer of a push) need not be downloaded. Counts missing or of another shape: not known.
    """
    processed, failed = job.get("numberRecordsProcessed"), job.get("numberRecordsFailed")
    counted = all(isinstance(n, int) and not isinstance(n, bool) for n in (processed, failed))
    return counted and failed == 0 and processed == uploaded


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, as slices (no copy of the whole text, unlike ``io.StringIO``)."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        end = size if end < 0 else end + 1
        yield text[start:end]
        start = end


def _bulk_error(text: str) -> tuple[str | None, str]:
    """(code, message) of a Bulk API 2.0 ``sf__Error`` value, ``CODE:message:fields --``."""
    code = _parse_job_error(text)
    if code is None:
        return None, text
    message = text.split(":", 1)[1].strip()
    message = message.removesuffix("--").strip().removesuffix(":").strip()
    return code, message


def bulk_poll_pause(polls_done: int, first: float, cap: float) -> float:
    """The pause before a Bulk 2.0 job's next status poll, after ``polls_done`` polls.

    The first poll comes after ``first`` (prompt: a small job is often done within a second), then each pause
    doubles up to ``cap``: a real job takes seconds to minutes, and polling it every ``first`` seconds would
    spend the org's API allowance on status calls.
    """
    return float(min(cap, first * 2 ** min(polls_done, 64)))


class SalesforceClient:
    """One org's connector. Thread-safe: the worker calls it from several threads.

    Every HTTP call it makes (token exchange, REST, Collections, Bulk 2.0) has a hard deadline of
    ``request_deadline_seconds`` (config ``salesforce.requestTimeoutSeconds``) for connect plus the whole
    answer; a call that runs out of time raises a TRANSIENT ``SalesforceCallError`` saying so (see
    ``transport``). How long a write can take at most, for a lease that must outlive it:

    - one connector call (``_call``) makes at most ``MAX_HTTP_CALLS_PER_CALL`` = 2 x MAX_REAUTH + 2 = 6 HTTP
      calls: a token exchange when no token is cached, the call itself, and per INVALID_SESSION_ID one new
      token and one repeat, at most MAX_REAUTH times;
    - ``write_opt_outs`` makes one connector call per 200 ids, so at most ``max_http_calls(len(ids))`` =
      1 + ceil(n / 200) x (2 x MAX_REAUTH + 1) HTTP calls: 6 for the pusher's batches of <= 200 records.
      A lease must be >= ``update_deadline_seconds(n)`` = that x the deadline (6 x 30 s = 180 s at the
      defaults). When several threads share the client, a thread that needs a token may also wait for
      the exchange another thread is making (one more deadline per exchange it waits for).

    Redirects: token requests never follow one (the form holds the secret or the assertion); data calls
    follow requests' rule, which drops the Authorization header when the host changes, so a bearer token
    only ever goes to the login URL's and the token's instance host. Bulk 2.0 job polling
    (``bulk_timeout_seconds``) is a sequence of such calls and is not bounded by one deadline.
    """

    def __init__(
        self,
        cfg: SalesforceConfig,
        tokens: TokenProvider,
        session: requests.Session,
        *,
        on_request: OnRequest | None = None,
        bulk_poll_interval: tuple[float, float] = (0.05, 5.0),
        bulk_timeout_seconds: float = 3600.0,
        query_batch_size: int = QUERY_BATCH_SIZE,
        bulk_query_page_size: int = BULK_QUERY_PAGE,
    ) -> None:
        self.cfg = cfg
        self.tokens = tokens
        self._session = session
        self._on_request = on_request
        self._local = threading.local()
        self._sf_lock = threading.Lock()
        self._sf: tuple[Token, Salesforce] | None = None
        self._usage: ApiUsage | None = None
        self._poll_first, self._poll_max = bulk_poll_interval
        self._bulk_timeout = bulk_timeout_seconds
        self.query_batch_size = query_batch_size
        self.bulk_query_page_size = bulk_query_page_size
        session.hooks["response"].append(self._on_response)

    @classmethod
    def from_config(
        cls, cfg: SalesforceConfig, *, on_request: OnRequest | None = None, **options: Any
    ) -> SalesforceClient:
        """A client for the config's org; raises AuthenticationError when credentials files are missing.

        ``options`` go to the constructor (bulk_poll_interval, bulk_timeout_seconds, query_batch_size,
        bulk_query_page_size).
        """
        credentials = read_credentials(cfg.credentialsDir)

        context = tls_context(ca_file=cfg.caFile, insecure_skip_tls_verify=cfg.insecureSkipTlsVerify)

        def session() -> requests.Session:
            return build_session(
                ca_file=cfg.caFile,
                insecure_skip_tls_verify=cfg.insecureSkipTlsVerify,
                timeout=cfg.requestTimeoutSeconds,
                context=context,
            )

        tokens = TokenProvider(
            cfg.loginUrl, credentials, session(), on_request=on_request, jwt_audience=cfg.jwtAudience
        )
        return cls(cfg, tokens, session(), on_request=on_request, **options)

    def close(self) -> None:
        self._session.close()

    @property
    def request_deadline_seconds(self) -> float:
        """The hard deadline of one HTTP call (connect + whole answer), ``salesforce.requestTimeoutSeconds``."""
        return float(self.cfg.requestTimeoutSeconds)

    @staticmethod
    def max_http_calls(records: int) -> int:
        """The most HTTP calls one ``write_opt_outs`` of ``records`` ids can make (re-authentication included)."""
        chunks = -(-max(records, 0) // COLLECTIONS_LIMIT)
        return 1 + chunks * (MAX_HTTP_CALLS_PER_CALL - 1) if chunks else 0

    def update_deadline_seconds(self, records: int) -> float:
        """The longest one ``write_opt_outs`` of ``records`` ids can take: a lease must be at least this long."""
        return self.max_http_calls(records) * self.request_deadline_seconds

    # ------------------------------------------------------------------ plumbing

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        operation = getattr(self._local, "operation", None) or "other"
        if self._on_request is not None:
            self._on_request(operation, str(response.status_code))
        match = _LIMIT_INFO_RE.search(response.headers.get("Sforce-Limit-Info", ""))
        if match:
            self._usage = ApiUsage(used=int(match[1]), max=int(match[2]))

    def _salesforce(self) -> tuple[Token, Salesforce]:
        token = self.tokens.token()
        with self._sf_lock:
            if self._sf is None or self._sf[0] is not token:
                sf = Salesforce(
                    instance_url=token.instance_url,
                    session_id=token.access_token,
                    version=self.cfg.apiVersion,
                    session=self._session,
                )
                self._sf = (token, sf)
            return self._sf

    def _call(self, operation: str, fn: Callable[[Salesforce], T]) -> T:
        """Run one HTTP call ``fn`` with a valid token; re-authenticate on 401 at most MAX_REAUTH times."""
        for attempt in range(MAX_REAUTH + 1):
            token, sf = self._salesforce()
            self._local.operation = operation
            try:
                return fn(sf)
            except ssf_exceptions.SalesforceExpiredSession:
                if attempt == MAX_REAUTH:
                    raise SalesforceCallError(
                        f"Salesforce {operation} call: session refused (INVALID_SESSION_ID) again after "
                        f"{MAX_REAUTH} new tokens",
                        error_class=ErrorClass.TRANSIENT,
                        error_code="INVALID_SESSION_ID",
                        status=401,
                    ) from None
                log.info("salesforce.reauthenticate", operation=operation, attempt=attempt + 1)
                self.tokens.renew(token)
            except ssf_exceptions.SalesforceError as exc:
                raise self._call_error(operation, exc) from None
            except ssf_exceptions.SalesforceOperationError as exc:
                raise SalesforceCallError(
                    f"Salesforce {operation} call failed: {type(exc).__name__}", error_class=ErrorClass.TRANSIENT
                ) from None
            except (requests.exceptions.JSONDecodeError, KeyError) as exc:  # an answer not of the expected shape
                raise SalesforceCallError(
                    f"Salesforce {operation} call: unexpected answer ({type(exc).__name__})",
                    error_class=ErrorClass.TRANSIENT,
                ) from None
            except DeadlineExceeded as exc:
                self._report_error(operation)
                raise SalesforceCallError(
                    f"Salesforce {operation} call failed: {exc}", error_class=ErrorClass.TRANSIENT
                ) from None
            except requests.exceptions.SSLError as exc:
                self._report_error(operation)
                raise SalesforceCallError(
                    f"Salesforce {operation} call: TLS verification failed ({type(exc).__name__}); "
                    "check salesforce.caFile",
                    error_class=ErrorClass.CONFIGURATION,
                ) from None
            except requests.RequestException as exc:
                self._report_error(operation)
                raise SalesforceCallError(
                    f"Salesforce {operation} call failed: {type(exc).__name__} (no answer)",
                    error_class=ErrorClass.TRANSIENT,
                ) from None
            finally:
                self._local.operation = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _report_error(self, operation: str) -> None:
        if self._on_request is not None:
            self._on_request(operation, "error")

    @staticmethod
    def _call_error(operation: str, exc: ssf_exceptions.SalesforceError) -> SalesforceCallError:
        code, message = _first_error(exc.content)
        error_class = classify(code, exc.status)
        text = f"Salesforce {operation} call failed: HTTP {exc.status} {code or ''}: {message}".replace("  ", " ")
        if code in ("INVALID_FIELD", "INVALID_FIELD_FOR_INSERT_UPDATE"):
            text += f" (the field is missing or not writable; {FLS_NOTE})"
        return SalesforceCallError(text, error_class=error_class, error_code=code, status=exc.status)

    def _bulk(self, sf: Salesforce, object_name: str) -> _Bulk2Client:
        headers = {"Content-Type": "application/json", "Authorization": "Bearer " + sf.session_id}
        return _Bulk2Client(object_name, sf.bulk2_url, headers, self._session)

    # ------------------------------------------------------------------ login, limits

    def login(self) -> str:
        """Get a token now (if none is cached); returns the instance URL."""
        return self.tokens.token().instance_url

    def limits(self) -> ApiUsage:
        """Daily API request usage from ``GET limits``."""
        body = self._call("limits", lambda sf: sf.limits())
        daily = body.get("DailyApiRequests") if isinstance(body, dict) else None
        if not isinstance(daily, dict) or "Max" not in daily or "Remaining" not in daily:
            raise SalesforceCallError(
                "Salesforce limits answer has no DailyApiRequests", error_class=ErrorClass.TRANSIENT
            )
        maximum, remaining = int(daily["Max"]), int(daily["Remaining"])
        usage = ApiUsage(used=maximum - remaining, max=maximum)
        self._usage = usage
        return usage

    def api_usage(self) -> ApiUsage | None:
        """The usage of the last ``Sforce-Limit-Info`` header seen (or of the last ``limits()``)."""
        return self._usage

    # ------------------------------------------------------------------ fields

    def describe(self, object_name: str) -> dict[str, Any] | None:
        """``GET sobjects/<object>/describe``; None when the object does not exist or is not visible."""
        _check_name("object", object_name)
        try:
            body = self._call("describe", lambda sf: sf.restful(f"sobjects/{object_name}/describe"))
        except SalesforceCallError as exc:
            if exc.status == 404 or exc.error_code in ("NOT_FOUND", "INVALID_TYPE"):
                return None
            raise
        if not isinstance(body, dict):
            raise SalesforceCallError(f"Salesforce describe of {object_name}: unexpected answer")
        return body

    def check_fields(
        self, target: OptOutTarget | str, marketo_field: str | None, objects: Sequence[str]
    ) -> FieldReport:
        """Whether the opt-out field of ``target`` exists, is boolean and updateable on every object."""
        describes = {name: self.describe(name) for name in objects}
        return evaluate_fields(target, marketo_field, describes, objects)

    def resolve_field(self, target: OptOutTarget | str, marketo_field: str | None, objects: Sequence[str]) -> str:
        """The API name of the opt-out field; FieldRequirementError naming the object and the problem."""
        report = self.check_fields(target, marketo_field, objects)
        if report.field is None:
            raise FieldRequirementError("; ".join(report.problems()) or "no usable opt-out field")
        if OptOutTarget(target) is OptOutTarget.EMAIL_OPT_OUT:
            assert report.field == EMAIL_OPT_OUT_FIELD
        return report.field

    # ------------------------------------------------------------------ writes

    def write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]:
        """Set ``field`` to ``value`` on ``ids`` with sObject Collections (allOrNone=false, <= 200 per call).

        ``value`` is true for an opt-out; false only for an explicit resubscribe.
        """
        _check_name("object", object_name)
        _check_name("field", field)
        results: list[RecordResult] = []
        for start in range(0, len(ids), COLLECTIONS_LIMIT):
            chunk = list(ids[start : start + COLLECTIONS_LIMIT])
            results.extend(self._collections_chunk(object_name, chunk, field, value))
        return results

    def _collections_chunk(self, object_name: str, ids: list[str], field: str, value: bool) -> list[RecordResult]:
        body = {
            "allOrNone": False,
            "records": [{"attributes": {"type": object_name}, "id": record_id, field: value} for record_id in ids],
        }
        answer = self._call(
            "collections_update", lambda sf: sf.restful("composite/sobjects", method="PATCH", json=body)
        )
        if not isinstance(answer, list) or len(answer) != len(ids):
            raise SalesforceCallError(
                f"Salesforce collections_update: expected {len(ids)} results, got "
                f"{len(answer) if isinstance(answer, list) else type(answer).__name__}",
                error_class=ErrorClass.TRANSIENT,
            )
        results = []
        for record_id, item in zip(ids, answer, strict=True):
            if isinstance(item, dict) and item.get("success"):
                results.append(RecordResult(record_id, True))
                continue
            code, message = _first_error(item.get("errors") if isinstance(item, dict) else None)
            results.append(RecordResult(record_id, False, code, message, classify(code)))
        configuration = [r for r in results if r.error_class is ErrorClass.CONFIGURATION]
        if configuration and len(configuration) == len(results):
            first = configuration[0]
            raise SalesforceCallError(
                f"Salesforce collections_update failed for every record: {first.error_code}: {first.message} "
                f"(the field {field} on {object_name} is missing or not writable; {FLS_NOTE})",
                error_class=ErrorClass.CONFIGURATION,
                error_code=first.error_code,
            )
        return results

    def bulk_write_opt_outs(
        self, object_name: str, ids: Sequence[str], field: str, value: bool = True
    ) -> list[RecordResult]:
        """Set ``field`` to ``value`` on ``ids`` with Bulk API 2.0 ingest jobs; results in input order."""
        _check_name("object", object_name)
        _check_name("field", field)
        results: list[RecordResult] = []
        for start in range(0, len(ids), BULK_INGEST_CHUNK):
            chunk = list(ids[start : start + BULK_INGEST_CHUNK])
            results.extend(self._bulk_ingest(object_name, chunk, field, value))
        return results

    def _wait_for_job(self, operation: str, object_name: str, job_id: str, is_query: bool) -> dict[str, Any]:
        deadline = time.monotonic() + self._bulk_timeout
        polls = 0
        while True:
            time.sleep(bulk_poll_pause(polls, self._poll_first, self._poll_max))
            polls += 1
            job = self._call(operation, lambda sf: self._bulk(sf, object_name).get_job(job_id, is_query))
            state = job.get("state")
            if state in _FINAL_JOB_STATES:
                return dict(job)
            if time.monotonic() > deadline:
                raise SalesforceCallError(
                    f"Salesforce {operation} job {job_id} still {state} after {self._bulk_timeout:.0f} s",
                    error_class=ErrorClass.TRANSIENT,
                )

    def _abort_quietly(self, operation: str, object_name: str, job_id: str, is_query: bool) -> None:
        try:
            self._call(operation, lambda sf: self._bulk(sf, object_name).abort_job(job_id, is_query))
        except SalesforceError:  # the original error matters more; the job expires on its own
            log.warning("salesforce.bulk_abort_failed", operation=operation, job_id=job_id)

    @staticmethod
    def _job_failure(operation: str, job: dict[str, Any]) -> SalesforceCallError:
        message = str(job.get("errorMessage") or "no error message")
        code, error_class = classify_job_failure(message)
        return SalesforceCallError(
            f"Salesforce {operation} job {job.get('id')} {job.get('state')}: {message[:300]}",
            error_class=error_class,
            error_code=code,
        )

    def _bulk_ingest(self, object_name: str, ids: list[str], field: str, value: bool = True) -> list[RecordResult]:
        op = "bulk_ingest"
        cell = "true" if value else "false"
        data = f"Id,{field}\n" + "".join(f"{record_id},{cell}\n" for record_id in ids)
        job = self._call(op, lambda sf: self._bulk(sf, object_name).create_job(Operation.update))
        job_id = str(job["id"])
        try:
            self._call(op, lambda sf: self._bulk(sf, object_name).upload_job_data(job_id, data))
            self._call(op, lambda sf: self._bulk(sf, object_name).close_job(job_id))
            final = self._wait_for_job(op, object_name, job_id, False)
        except BaseException:
            self._abort_quietly(op, object_name, job_id, False)
            raise
        if final.get("state") != "JobComplete":
            raise self._job_failure(op, final)
        if every_record_succeeded(final, len(ids)):  # nothing to read per record: no results downloaded
            return [RecordResult(record_id, True) for record_id in ids]
        # Results are keyed by the first 15 characters (Salesforce may echo the 18-character form of a
        # 15-character ID), successes as a set of keys: at Bulk volume no object per success is held
        # beside the result list, and the CSV text is read line by line in place.
        ok_csv = self._call(op, lambda sf: self._bulk(sf, object_name).get_ingest_results(job_id, "successfulResults"))
        succeeded = {record_id[:15] for record_id, _ in _bulk_results(ok_csv)}
        del ok_csv
        failed: dict[str, RecordResult] = {}
        failed_csv = self._call(op, lambda sf: self._bulk(sf, object_name).get_ingest_results(job_id, "failedResults"))
        for record_id, error in _bulk_results(failed_csv, "sf__Error"):
            code, message = _bulk_error(error)
            failed[record_id[:15]] = RecordResult("", False, code, message, classify(code))
        results = []
        for record_id in ids:
            key = record_id[:15]
            if key in succeeded:
                results.append(RecordResult(record_id, True))
                continue
            found = failed.get(key)
            if found is None:
                results.append(
                    RecordResult(record_id, False, None, "not processed by the Bulk API job", ErrorClass.TRANSIENT)
                )
            else:
                results.append(RecordResult(record_id, False, found.error_code, found.message, found.error_class))
        return results

    # ------------------------------------------------------------------ reads

    def count_opted_out(self, object_name: str, field: str) -> int:
        """How many records of ``object_name`` have ``field`` true (Leads: unconverted only)."""
        soql = opted_out_soql(object_name, field, count=True)
        body = self._call("query", lambda sf: sf.query(soql))
        return int(body["totalSize"])

    def iter_opted_out(self, object_name: str, field: str, *, use_bulk: bool | None = None) -> Iterator[OptedOutRecord]:
        """Every record whose ``field`` is true, streamed page by page (bounded memory).

        ``use_bulk=None`` decides with a ``SELECT COUNT()``: Bulk 2.0 query at or above
        ``cfg.bulkThreshold`` records, REST query paging below. Ids come in their 18-character form.
        """
        soql = opted_out_soql(object_name, field)
        if use_bulk is None:
            use_bulk = self.count_opted_out(object_name, field) >= self.cfg.bulkThreshold
        if use_bulk:
            for text in self._bulk_query_csv(object_name, soql):
                rows = csv.reader(_lines(text))
                header = next(rows, None)
                if header is None:
                    continue
                at_id, at_email = header.index("Id"), header.index("Email")
                for row in rows:
                    yield OptedOutRecord(id=normalize_id(row[at_id]), object=object_name, email=row[at_email] or None)
            return
        for page in self._rest_query_pages(soql):
            for record in page:
                email = record.get("Email") or None
                yield OptedOutRecord(id=normalize_id(str(record["Id"])), object=object_name, email=email)

    def count_query(self, soql: str) -> int:
        """``totalSize`` of a ``SELECT COUNT() ...`` query."""
        body = self._call("query", lambda sf: sf.query(soql))
        return int(body["totalSize"])

    def query_pages_at_volume(self, object_name: str, soql: str, *, use_bulk: bool) -> Iterator[list[dict[str, Any]]]:
        """Pages of a query's records: a Bulk 2.0 query job when ``use_bulk``, else REST paging."""
        return self._bulk_query_pages(object_name, soql) if use_bulk else self._rest_query_pages(soql)

    def query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        """Pages of the records of a REST query (``query`` then ``queryMore`` by ``nextRecordsUrl``)."""
        return self._rest_query_pages(soql)

    def _rest_query_pages(self, soql: str) -> Iterator[list[dict[str, Any]]]:
        headers = {"Sforce-Query-Options": f"batchSize={self.query_batch_size}"}
        body = self._call("query", lambda sf: sf.query(soql, headers=headers))
        while True:
            yield list(body.get("records") or [])
            next_url = body.get("nextRecordsUrl")
            if body.get("done", True) or not next_url:
                return
            body = self._call("query", functools.partial(_query_more, url=str(next_url), headers=headers))

    def _query_results_page(self, object_name: str, job_id: str, locator: str, sf: Salesforce) -> Any:
        return self._bulk(sf, object_name).get_query_results(job_id, locator, max_records=self.bulk_query_page_size)

    def _bulk_query_pages(self, object_name: str, soql: str) -> Iterator[list[dict[str, Any]]]:
        for text in self._bulk_query_csv(object_name, soql):
            yield list(csv.DictReader(_lines(text)))

    def _bulk_query_csv(self, object_name: str, soql: str) -> Iterator[str]:
        """The CSV text of each results page of a Bulk 2.0 query job (header line first on every page)."""
        op = "bulk_query"
        job = self._call(op, lambda sf: self._bulk(sf, object_name).create_job(Operation.query, query=soql))
        job_id = str(job["id"])
        try:
            final = self._wait_for_job(op, object_name, job_id, True)
        except BaseException:
            self._abort_quietly(op, object_name, job_id, True)
            raise
        if final.get("state") != "JobComplete":
            raise self._job_failure(op, final)
        locator = ""
        while True:
            page = self._call(op, functools.partial(self._query_results_page, object_name, job_id, locator))
            yield str(page["records"])
            locator = page["locator"]
            if not locator:
                return

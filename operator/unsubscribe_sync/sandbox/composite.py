"""Composite and composite/batch: subrequests run against the org in order, under one lock.

A subrequest is routed by a small table of the resources the sandbox serves (describe, record read and PATCH,
query and queryMore, limits, sObject Collections update and retrieve); anything else answers 404 like an unknown
resource. Composite resolves `@{referenceId.path}` references (`@{found.records[0].Id}`) against earlier answers and,
with allOrNone, undoes every write when a subrequest fails and answers the others PROCESSING_HALTED.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import ApiError, not_found
from .ids import normalize_id

if TYPE_CHECKING:
    from .api import Api

MAX_SUBREQUESTS = 25
HALTED = "The transaction was rolled back since another operation in the same transaction failed."
BATCH_HALTED = "Batch processing halted per request"
_REFERENCE = re.compile(r"@\{([A-Za-z0-9_]+)((?:\.[A-Za-z0-9_]+|\[\d+\])*)\}")
_PATH_PART = re.compile(r"\.([A-Za-z0-9_]+)|\[(\d+)\]")
_REFERENCE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Sub:
    """One subrequest as routed: the method, the path below /services/data/vNN.N/, its query, its body."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    version: str


Route = Callable[["Api", Sub, re.Match[str]], tuple[int, Any]]


def _record(api: Api, sub: Sub, m: re.Match[str]) -> tuple[int, Any]:
    fields = [f.strip() for f in sub.query.get("fields", "").split(",") if f.strip()] or None
    record = api.get_record_api(m["sobject"], m["id"], fields)
    record_id = normalize_id(m["id"]) or m["id"]
    record["attributes"]["url"] = f"/services/data/v{sub.version}/sobjects/{m['sobject']}/{record_id}"
    return 200, record


def _update(api: Api, sub: Sub, m: re.Match[str]) -> tuple[int, Any]:
    api.update_one(m["sobject"], m["id"], sub.body)
    return 204, None


def _query(api: Api, sub: Sub, m: re.Match[str]) -> tuple[int, Any]:
    soql = sub.query.get("q")
    if not soql:
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    return 200, api.query(soql, sub.version, include_deleted=m["kind"] == "queryAll")


ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("GET", re.compile(r"sobjects"), lambda api, sub, m: (200, api.describe_global(sub.version))),
    ("GET", re.compile(r"sobjects/(?P<sobject>\w+)/describe"),
     lambda api, sub, m: (200, api.describe(m["sobject"], sub.version))),
    ("GET", re.compile(r"sobjects/(?P<sobject>\w+)/(?P<id>\w+)"), _record),
    ("PATCH", re.compile(r"sobjects/(?P<sobject>\w+)/(?P<id>\w+)"), _update),
    ("GET", re.compile(r"(?P<kind>query|queryAll)"), _query),
    ("GET", re.compile(r"(?:query|queryAll)/(?P<locator>[\w-]+)"),
     lambda api, sub, m: (200, api.query_more(m["locator"], sub.version))),
    ("GET", re.compile(r"limits"), lambda api, sub, m: (200, api.limits())),
    ("PATCH", re.compile(r"composite/sobjects"), lambda api, sub, m: (200, api.update_collection(sub.body))),
    ("POST", re.compile(r"composite/sobjects/(?P<sobject>\w+)"),
     lambda api, sub, m: (200, api.retrieve_many(m["sobject"], sub.body, sub.version))),
]  # fmt: skip


def run(api: Api, sub: Sub) -> tuple[int, Any]:
    """(HTTP status, body) of one subrequest; errors become their Salesforce error bodies."""
    try:
        for method, pattern, route in ROUTES:
            match = pattern.fullmatch(sub.path.strip("/"))
            if match is not None and method == sub.method:
                return route(api, sub, match)
        raise not_found()
    except ApiError as error:
        return error.status, error.body()


def split_url(url: Any, method: Any, body: Any, *, relative: bool) -> Sub:
    """A subrequest's URL (`/services/data/v62.0/...`, or `v62.0/...` in a batch) as a Sub; ApiError if bad."""
    if not isinstance(url, str) or not isinstance(method, str):
        raise ApiError(400, "INVALID_INPUT", "Each subrequest needs a method and a url")
    parts = urlsplit(url)
    path = parts.path
    if relative and not path.startswith("/services/data/"):
        path = "/services/data/" + path.lstrip("/")
    match = re.fullmatch(r"/services/data/v(\d+\.\d)(/.*)?", path)
    if match is None:
        raise ApiError(400, "INVALID_INPUT", f"The url of a subrequest must start with /services/data/vXX.X: {url}")
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return Sub(method.upper(), unquote(match[2] or ""), query, body, match[1])


def _lookup(results: dict[str, Any], name: str, path: str) -> Any:
    if name not in results:
        raise ApiError(400, "INVALID_INPUT", f"Invalid reference specified. No value for {name} found.")
    value = results[name]
    for key, index in _PATH_PART.findall(path):
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError) as exc:
            message = f"Invalid reference specified. No value for {name}{path} found."
            raise ApiError(400, "INVALID_INPUT", message) from exc
    return value


def resolve(value: Any, results: dict[str, Any]) -> Any:
    """Replace `@{ref.path}` in strings (a whole-string reference keeps the referenced value's JSON type)."""
    if isinstance(value, str):
        whole = _REFERENCE.fullmatch(value)
        if whole is not None:
            return _lookup(results, whole[1], whole[2])
        return _REFERENCE.sub(lambda m: str(_lookup(results, m[1], m[2])), value)
    if isinstance(value, list):
        return [resolve(v, results) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    return value


def _subrequests(body: Any, key: str) -> list[Any]:
    items = body.get(key) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(400, "JSON_PARSER_ERROR", f"The request body must be an object with a non-empty {key} list")
    if len(items) > MAX_SUBREQUESTS:
        raise ApiError(400, "INVALID_INPUT", f"{key} can hold at most {MAX_SUBREQUESTS} subrequests")
    if not all(isinstance(item, dict) for item in items):
        raise ApiError(400, "JSON_PARSER_ERROR", "Each subrequest must be a JSON object")
    return items


def composite(api: Api, body: Any) -> dict[str, Any]:
    """POST composite: subrequests in order, later ones referring to earlier answers."""
    items = _subrequests(body, "compositeRequest")
    all_or_none = bool(body.get("allOrNone", False))
    names = [item.get("referenceId") for item in items]
    if not all(isinstance(n, str) and _REFERENCE_ID.fullmatch(n) for n in names) or len(set(names)) != len(names):
        raise ApiError(400, "INVALID_INPUT", "Each subrequest needs a unique referenceId (letters, digits, _)")
    answers: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    with api.lock:
        api.undo = [] if all_or_none else None
        try:
            failed = False
            for item, name in zip(items, names, strict=True):
                if failed:
                    answers.append({"body": [{"errorCode": "PROCESSING_HALTED", "message": HALTED}],
                                    "httpHeaders": {}, "httpStatusCode": 400, "referenceId": name})  # fmt: skip
                    continue
                try:
                    sub = split_url(resolve(item.get("url"), results), item.get("method"), None, relative=False)
                    sub = Sub(sub.method, sub.path, sub.query, resolve(item.get("body"), results), sub.version)
                    status, answer = run(api, sub)
                except ApiError as error:
                    status, answer = error.status, error.body()
                results[name] = answer
                answers.append({"body": answer, "httpHeaders": {}, "httpStatusCode": status, "referenceId": name})
                if status >= 400 and all_or_none:
                    failed = True
                    api._rollback(api.undo or [])
                    for earlier in answers[:-1]:
                        earlier.update(body=[{"errorCode": "PROCESSING_HALTED", "message": HALTED}],
                                       httpStatusCode=400)  # fmt: skip
        finally:
            api.undo = None
    return {"compositeResponse": answers}


def batch(api: Api, body: Any) -> dict[str, Any]:
    """POST composite/batch: independent subrequests (each one counts as an API call), optionally halting."""
    items = _subrequests(body, "batchRequests")
    halt = bool(body.get("haltOnError", False))
    results: list[dict[str, Any]] = []
    halted = False
    for item in items:
        if halted:
            results.append({"statusCode": 412, "result": [{"errorCode": "BATCH_PROCESSING_HALTED",
                                                           "message": BATCH_HALTED}]})  # fmt: skip
            continue
        try:
            api.admit("compositeBatchSubrequest")
            sub = split_url(item.get("url"), item.get("method"), item.get("richInput"), relative=True)
            status, answer = run(api, sub)
        except ApiError as error:
            status, answer = error.status, error.body()
        results.append({"statusCode": status, "result": answer})
        halted = halt and status >= 400
    return {"hasErrors": any(r["statusCode"] >= 400 for r in results), "results": results}

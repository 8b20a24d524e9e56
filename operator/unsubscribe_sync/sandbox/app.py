"""The aiohttp application: OAuth token endpoint, REST API, Bulk API 2.0, and the /__sandbox admin API."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from . import composite
from .admin import add_admin_routes
from .auth import ORG_ID
from .bulk import TERMINAL_STATES, IngestJob, QueryJob
from .errors import ApiError, not_found
from .schema import USER_ID
from .state import SandboxState, Session, TokenError

log = logging.getLogger(__name__)
STATE_KEY = web.AppKey("sandbox_state", SandboxState)
INGEST_RUNS = web.AppKey("sandbox_ingest_runs", set)  # the tasks applying closed ingest jobs' records
SESSION_KEY = web.RequestKey("sandbox_session", Session)  # the caller's session, for handlers that need it
OLDEST_VERSION = 20
NEWEST_VERSION = 68  # Winter '27
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JSON_TYPE = "application/json"
_VERSION = re.compile(r"^/services/data/v(\d+)\.(\d)(?:/|$)")
SLASH = ".slash"  # route-name suffix of the trailing-slash twin of a route
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, content_type=JSON_TYPE, dumps=json.dumps)


def _state(request: web.Request) -> SandboxState:
    return request.app[STATE_KEY]


def _version(request: web.Request) -> str:
    return request.match_info["version"][1:]


async def _json_body(request: web.Request) -> Any:
    if request.content_type != JSON_TYPE:
        given = request.headers.get("Content-Type", "")
        message = f"Content-Type header specified in HTTP request is not supported: {given}"
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", message)
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character in the request body: {exc}") from exc


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "oauth") and token.strip() else None


def _operation(request: web.Request) -> str:
    return (request.match_info.route.name or "unknown").removesuffix(SLASH)


def _supported(major: str, minor: str) -> bool:
    return minor == "0" and OLDEST_VERSION <= int(major) <= NEWEST_VERSION


@web.middleware
async def salesforce_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = _state(request)
    latency_ms = state.faults.latency_ms
    if latency_ms and not request.path.startswith("/__sandbox"):
        await asyncio.sleep(latency_ms / 1000)
    if not request.path.startswith("/services/data"):
        if isinstance(request.match_info.http_exception, web.HTTPNotFound) and not request.path.startswith("/__"):
            return _json(not_found().body(), status=404)
        return await handler(request)
    try:
        if state.unavailable():
            raise ApiError(503, "SERVER_UNAVAILABLE", "Server is temporarily unavailable. Please try again later.")
        if request.path.rstrip("/") == "/services/data":
            response: web.StreamResponse = await handler(request)
        else:
            session = state.authenticate(_bearer(request))
            version = _VERSION.match(request.path)
            if version is None or not _supported(version.group(1), version.group(2)):
                raise not_found()
            problem = request.match_info.http_exception
            if isinstance(problem, web.HTTPMethodNotAllowed):
                allowed = ",".join(sorted(problem.allowed_methods))
                raise ApiError(
                    405, "METHOD_NOT_ALLOWED", f"HTTP Method '{request.method}' not allowed. Allowed are {allowed}"
                )
            if problem is not None:
                raise not_found()
            state.admit(_operation(request))
            request[SESSION_KEY] = session
            response = await handler(request)
    except ApiError as error:
        response = _json(error.body(), status=error.status)
    except web.HTTPException:
        raise
    except Exception as exc:  # a sandbox bug: answer like Salesforce's own internal errors, and log it
        log.exception("sandbox error on %s %s", request.method, request.path)
        body = [{"message": f"An unexpected error occurred: {type(exc).__name__}", "errorCode": "UNKNOWN_EXCEPTION"}]
        response = _json(body, status=500)
    response.headers["Sforce-Limit-Info"] = state.limit_info()
    return response


# ---------------------------------------------------------------------- OAuth 2.0 token endpoint


def _token_error(error: str, description: str) -> web.Response:
    return _json({"error": error, "error_description": description}, status=400)


async def token(request: web.Request) -> web.Response:
    if request.content_type != "application/x-www-form-urlencoded":
        return _token_error("invalid_request", "the request body must be application/x-www-form-urlencoded")
    form = await request.post()
    instance_url = f"https://{request.host}"
    grant_type = str(form.get("grant_type", ""))
    try:
        if grant_type == "client_credentials":
            client_id = str(form.get("client_id", ""))
            client_secret = str(form.get("client_secret", ""))
            scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(encoded.strip(), validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    return _token_error("invalid_client", "invalid client credentials")
                user, _, password = decoded.partition(":")
                client_id, client_secret = unquote(user), unquote(password)
            if not client_id or not client_secret:
                return _token_error("invalid_client", "client_id and client_secret are required")
            return _json(_state(request).token_client_credentials(client_id, client_secret, instance_url))
        if grant_type == JWT_GRANT:
            assertion = str(form.get("assertion", ""))
            if not assertion:
                return _token_error("invalid_grant", "assertion is required")
            return _json(_state(request).token_jwt_bearer(assertion, instance_url))
    except TokenError as error:
        return _token_error(error.error, error.description)
    return _token_error("unsupported_grant_type", "grant type not supported")


# ---------------------------------------------------------------------- REST


async def versions(request: web.Request) -> web.Response:
    return _json(
        [
            {"label": f"v{n}.0", "url": f"/services/data/v{n}.0", "version": f"{n}.0"}
            for n in range(OLDEST_VERSION, NEWEST_VERSION + 1)
        ]
    )


RESOURCES = ("sobjects", "query", "queryAll", "limits", "jobs", "composite", "search", "recent", "tooling", "tabs")


async def resources(request: web.Request) -> web.Response:
    """The version's resources; `identity` is the full identity URL (jsforce's identity() reads it)."""
    base = f"/services/data/v{_version(request)}"
    listing = {name: f"{base}/{name}" for name in RESOURCES}
    listing["identity"] = f"https://{request.host}/id/{ORG_ID}/{USER_ID}"
    return _json(listing)


def _any_token(request: web.Request) -> str | None:
    """The access token of an identity or userinfo call: bearer header, or oauth_token / access_token parameter."""
    return _bearer(request) or request.query.get("oauth_token") or request.query.get("access_token")


async def identity(request: web.Request) -> web.Response:
    if (request.match_info["org"], request.match_info["user"]) not in ((ORG_ID, USER_ID), (ORG_ID[:15], USER_ID[:15])):
        return web.Response(status=404, text="Bad_Id", content_type="text/plain")
    answer = _state(request).identity(_any_token(request), f"https://{request.host}", request.query.get("version"))
    if answer is None:
        return web.Response(status=403, text="Bad_OAuth_Token", content_type="text/plain")
    return _json(answer)


async def userinfo(request: web.Request) -> web.Response:
    answer = _state(request).userinfo(_any_token(request), f"https://{request.host}")
    if answer is None:
        return web.Response(status=403, text="Bad_OAuth_Token", content_type="text/plain")
    return _json(answer)


async def limits(request: web.Request) -> web.Response:
    return _json(_state(request).limits())


async def describe_global(request: web.Request) -> web.Response:
    return _json(_state(request).describe_global(_version(request)))


async def describe(request: web.Request) -> web.Response:
    return _json(_state(request).describe(request.match_info["sobject"], _version(request)))


async def sobject_info(request: web.Request) -> web.Response:
    described = _state(request).describe_object(request.match_info["sobject"], _version(request))
    return _json({"objectDescribe": described, "recentItems": []})


async def get_record(request: web.Request) -> web.Response:
    fields = request.query.get("fields")
    wanted = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    record = _state(request).get_record_api(request.match_info["sobject"], request.match_info["id"], wanted)
    record["attributes"]["url"] = request.path
    return _json(record)


async def update_record(request: web.Request) -> web.Response:
    body = await _json_body(request)
    _state(request).update_one(request.match_info["sobject"], request.match_info["id"], body)
    return web.Response(status=204)


def _batch_size(request: web.Request) -> int | None:
    options = request.headers.get("Sforce-Query-Options", "")
    for option in options.split(","):
        name, _, value = option.strip().partition("=")
        if name.strip().lower() == "batchsize":
            if not value.strip().isdigit():
                raise ApiError(400, "INVALID_BATCH_SIZE", f"Invalid batch size: {value.strip()}")
            return int(value)
    return None


async def query(request: web.Request) -> web.Response:
    soql = request.query.get("q")
    if not soql:
        raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
    include_deleted = _operation(request) == "queryAll"
    if request.query.get("columns", "").lower() == "true":
        return _json(_state(request).query_columns(soql))
    return _json(_state(request).query(soql, _version(request), _batch_size(request), include_deleted))


async def query_more(request: web.Request) -> web.Response:
    include_deleted = _operation(request) == "queryAllMore"
    return _json(_state(request).query_more(request.match_info["locator"], _version(request), include_deleted))


async def collections_update(request: web.Request) -> web.Response:
    return _json(_state(request).update_collection(await _json_body(request)))


async def retrieve_many(request: web.Request) -> web.Response:
    if request.method == "GET":
        body: Any = {
            "ids": [i for i in request.query.get("ids", "").split(",") if i],
            "fields": [f for f in request.query.get("fields", "").split(",") if f],
        }
    else:
        body = await _json_body(request)
    return _json(_state(request).retrieve_many(request.match_info["sobject"], body, _version(request)))


async def composite_request(request: web.Request) -> web.Response:
    return _json(composite.composite(_state(request), await _json_body(request)))


async def composite_batch(request: web.Request) -> web.Response:
    return _json(composite.batch(_state(request), await _json_body(request)))


async def bulk_job_list(request: web.Request) -> web.Response:
    return _json(_state(request).list_jobs(QueryJob if request.path.rstrip("/").endswith("query") else IngestJob))


# ---------------------------------------------------------------------- Bulk API 2.0


async def bulk_query_create(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return _json(_state(request).create_query_job(body, _version(request)))


async def bulk_query_info(request: web.Request) -> web.Response:
    return _json(_state(request).query_job_info(request.match_info["job_id"]))


async def bulk_query_abort(request: web.Request) -> web.Response:
    return _json(_state(request).abort_query_job(request.match_info["job_id"], await _json_body(request)))


async def bulk_query_results(request: web.Request) -> web.Response:
    text, locator, count = _state(request).query_job_results(
        request.match_info["job_id"], request.query.get("locator"), request.query.get("maxRecords")
    )
    return web.Response(
        text=text,
        content_type="text/csv",
        charset="utf-8",
        headers={"Sforce-Locator": locator, "Sforce-NumberOfRecords": str(count)},
    )


async def bulk_job_delete(request: web.Request) -> web.Response:
    kind = QueryJob if "/jobs/query/" in request.path else IngestJob
    _state(request).delete_job(request.match_info["job_id"], kind)
    return web.Response(status=204)


async def bulk_ingest_create(request: web.Request) -> web.Response:
    body = await _json_body(request)
    return _json(_state(request).create_ingest_job(body, _version(request)))


async def bulk_ingest_upload(request: web.Request) -> web.Response:
    if request.content_type != "text/csv":
        raise ApiError(400, "INVALIDREQUEST", f"Content-Type must be text/csv, not {request.content_type}")
    raw = await request.read()
    try:
        text = raw.decode(request.charset or "utf-8")
    except (UnicodeDecodeError, LookupError) as exc:
        raise ApiError(400, "INVALIDREQUEST", "The CSV data is not valid UTF-8") from exc
    _state(request).upload_ingest_data(request.match_info["job_id"], text)
    return web.Response(status=201)


async def bulk_ingest_state(request: web.Request) -> web.Response:
    state = _state(request)
    info = state.set_ingest_state(request.match_info["job_id"], await _json_body(request))
    if info["state"] not in TERMINAL_STATES:
        asyncio.get_running_loop().call_later(state.bulk_processing_s + 0.005, state.advance_jobs)
        running = request.app[INGEST_RUNS]
        task = asyncio.get_running_loop().create_task(_process_ingest(state, info["id"]))
        running.add(task)
        task.add_done_callback(running.discard)
    return _json(info)


async def _process_ingest(state: SandboxState, job_id: str) -> None:
    """Apply a closed ingest job's records a step at a time, serving other requests between steps."""
    while state.process_ingest_step(job_id):
        await asyncio.sleep(0)


async def bulk_ingest_info(request: web.Request) -> web.Response:
    return _json(_state(request).ingest_job_info(request.match_info["job_id"]))


async def bulk_ingest_results(request: web.Request) -> web.Response:
    kind = {"successfulresults": "successfulResults", "failedresults": "failedResults"}.get(
        request.match_info["kind"].lower(), "unprocessedrecords"
    )
    text = _state(request).ingest_results(request.match_info["job_id"], kind)
    return web.Response(text=text, content_type="text/csv", charset="utf-8")


# ---------------------------------------------------------------------- wiring


def _add(app: web.Application, method: str, path: str, handler: Handler, name: str) -> None:
    """Register `path` with and without a trailing slash (clients differ); the name is the counted operation."""
    app.router.add_route(method, path, handler, name=name)
    app.router.add_route(method, path + "/", handler, name=name + SLASH)


async def _job_ticker(app: web.Application) -> AsyncIterator[None]:
    async def tick() -> None:
        while True:
            await asyncio.sleep(0.05)
            app[STATE_KEY].advance_jobs()

    task = asyncio.get_running_loop().create_task(tick())
    yield
    for running in (task, *app[INGEST_RUNS]):
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def build_app(state: SandboxState, admin_token: str | None = None) -> web.Application:
    """The sandbox as an aiohttp application (serve it over TLS: clients build https:// URLs)."""
    app = web.Application(middlewares=[salesforce_middleware], client_max_size=160 * 1024 * 1024)
    app[STATE_KEY] = state
    app[INGEST_RUNS] = set()
    app.cleanup_ctx.append(_job_ticker)
    app.router.add_post("/services/oauth2/token", token, name="token")
    app.router.add_route("GET", "/services/oauth2/userinfo", userinfo, name="userinfo")
    app.router.add_route("POST", "/services/oauth2/userinfo", userinfo, name="userinfoPost")
    app.router.add_get("/id/{org}/{user}", identity, name="identity")
    app.router.add_get("/services/data", versions, name="versions")
    app.router.add_get("/services/data/", versions, name="versions" + SLASH)
    v = "/services/data/{version}"
    _add(app, "GET", v, resources, "resources")
    _add(app, "GET", f"{v}/limits", limits, "limits")
    _add(app, "GET", f"{v}/sobjects", describe_global, "describeGlobal")
    _add(app, "GET", f"{v}/sobjects/{{sobject}}/describe", describe, "describe")
    _add(app, "GET", f"{v}/sobjects/{{sobject}}", sobject_info, "sobject")
    _add(app, "GET", f"{v}/sobjects/{{sobject}}/{{id}}", get_record, "retrieve")
    _add(app, "PATCH", f"{v}/sobjects/{{sobject}}/{{id}}", update_record, "update")
    _add(app, "GET", f"{v}/query", query, "query")
    _add(app, "GET", f"{v}/queryAll", query, "queryAll")
    _add(app, "GET", f"{v}/query/{{locator}}", query_more, "queryMore")
    _add(app, "GET", f"{v}/queryAll/{{locator}}", query_more, "queryAllMore")
    _add(app, "PATCH", f"{v}/composite/sobjects", collections_update, "collections")
    _add(app, "POST", f"{v}/composite/sobjects/{{sobject}}", retrieve_many, "retrieveMany")
    _add(app, "GET", f"{v}/composite/sobjects/{{sobject}}", retrieve_many, "retrieveManyGet")
    _add(app, "POST", f"{v}/composite", composite_request, "composite")
    _add(app, "POST", f"{v}/composite/batch", composite_batch, "compositeBatch")
    _add(app, "GET", f"{v}/jobs/query", bulk_job_list, "bulkQueryList")
    _add(app, "GET", f"{v}/jobs/ingest", bulk_job_list, "bulkIngestList")
    _add(app, "POST", f"{v}/jobs/query", bulk_query_create, "bulkQueryCreate")
    _add(app, "GET", f"{v}/jobs/query/{{job_id}}", bulk_query_info, "bulkQueryInfo")
    _add(app, "PATCH", f"{v}/jobs/query/{{job_id}}", bulk_query_abort, "bulkQueryAbort")
    _add(app, "DELETE", f"{v}/jobs/query/{{job_id}}", bulk_job_delete, "bulkQueryDelete")
    _add(app, "GET", f"{v}/jobs/query/{{job_id}}/results", bulk_query_results, "bulkQueryResults")
    _add(app, "POST", f"{v}/jobs/ingest", bulk_ingest_create, "bulkIngestCreate")
    _add(app, "GET", f"{v}/jobs/ingest/{{job_id}}", bulk_ingest_info, "bulkIngestInfo")
    _add(app, "PATCH", f"{v}/jobs/ingest/{{job_id}}", bulk_ingest_state, "bulkIngestState")
    _add(app, "DELETE", f"{v}/jobs/ingest/{{job_id}}", bulk_job_delete, "bulkIngestDelete")
    _add(app, "PUT", f"{v}/jobs/ingest/{{job_id}}/batches", bulk_ingest_upload, "bulkIngestUpload")
    _add(
        app,
        "GET",
        f"{v}/jobs/ingest/{{job_id}}/{{kind:(?i:successfulResults|failedResults|unprocessedrecords)}}",
        bulk_ingest_results,
        "bulkIngestResults",
    )
    add_admin_routes(app, state, admin_token)
    return app

"""Admin HTTP API under /__sandbox/ (JSON): drive and inspect a sandbox that runs in another process.

Every admin call needs the header `X-Sandbox-Admin-Token: <token>` when the server was given an admin token.

    GET   /__sandbox/state                       summary: records, API usage, calls, writes, faults
    POST  /__sandbox/reset                       empty org, default fields, no faults, zero counters
    POST  /__sandbox/seed        {"contacts", "leads", "optedOutRatio", "marketoOptedOutRatio",
                                  "convertedRatio", "deletedRatio", "emailDomain", "rngSeed"}
    POST  /__sandbox/records     {"object", "email", "optedOut", "converted", "deleted", "fields"} -> {"id"}
    GET   /__sandbox/records?object=Contact[&email=...][&FIELD=true|false|text]   -> {"ids": [...]}
    GET   /__sandbox/records/{id}                -> the record (every field), 404 when unknown
    PATCH /__sandbox/records/{id} {"fields": {...}}  change fields as a user would (not counted as a write)
    POST  /__sandbox/fields      {"object", "name", "label", "updateable", "hidden", "present"}
    GET   /__sandbox/faults
    POST  /__sandbox/faults      {"clear", "latencyMs", "lockIds", "unlockIds", "lockRatio", "lockNext",
                                  "unavailable", "unavailableSeconds", "requestLimitExceeded", "dailyApiLimit",
                                  "apiUsage", "sessionLifetimeSeconds", "expireSessions", "bulkProcessingSeconds",
                                  "bulkFailNext"}
    GET   /__sandbox/writes[?ids=ID,ID]          {"total", "records", "byId": {id: successful updates}}
    GET   /__sandbox/calls                       {operation: count}
    POST  /__sandbox/clock       {"advanceSeconds"}   move the org's clock ahead -> {"now": datetime, "offsetSeconds"}
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .schema import KEY_PREFIXES

if TYPE_CHECKING:
    from .state import SandboxState

ADMIN_HEADER = "X-Sandbox-Admin-Token"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SeedRequest(_Body):
    contacts: int = Field(0, ge=0)
    leads: int = Field(0, ge=0)
    opted_out_ratio: float = Field(0.1, ge=0, le=1, alias="optedOutRatio")
    marketo_opted_out_ratio: float = Field(0.0, ge=0, le=1, alias="marketoOptedOutRatio")
    converted_ratio: float = Field(0.05, ge=0, le=1, alias="convertedRatio")
    deleted_ratio: float = Field(0.01, ge=0, le=1, alias="deletedRatio")
    email_domain: str = Field("example.com", alias="emailDomain")
    rng_seed: int | None = Field(None, alias="rngSeed")


class RecordRequest(_Body):
    object: str
    email: str | None = None
    opted_out: bool = Field(False, alias="optedOut")
    converted: bool = False
    deleted: bool = False
    fields: dict[str, Any] = Field(default_factory=dict)


class FieldsRequest(_Body):
    fields: dict[str, Any]


class FieldRequest(_Body):
    object: str
    name: str
    label: str = "Marketo Sales Opt Out"
    updateable: bool = True
    hidden: bool = False
    present: bool = True


class FaultsRequest(_Body):
    clear: bool = False
    latency_ms: float | None = Field(None, ge=0, alias="latencyMs")
    lock_ids: list[str] | None = Field(None, alias="lockIds")
    unlock_ids: list[str] | None = Field(None, alias="unlockIds")
    lock_ratio: float | None = Field(None, ge=0, le=1, alias="lockRatio")
    lock_next: int | None = Field(None, ge=0, alias="lockNext")
    unavailable: bool | None = None
    unavailable_seconds: float | None = Field(None, gt=0, alias="unavailableSeconds")
    request_limit_exceeded: bool | None = Field(None, alias="requestLimitExceeded")
    daily_api_limit: int | None = Field(None, ge=0, alias="dailyApiLimit")
    api_usage: int | None = Field(None, ge=0, alias="apiUsage")
    session_lifetime_seconds: float | None = Field(None, gt=0, alias="sessionLifetimeSeconds")
    expire_sessions: bool = Field(False, alias="expireSessions")
    bulk_processing_seconds: float | None = Field(None, ge=0, alias="bulkProcessingSeconds")
    bulk_fail_next: int | None = Field(None, ge=0, alias="bulkFailNext")


class ClockRequest(_Body):
    advance_seconds: float = Field(0, ge=0, alias="advanceSeconds")


def _error(status: int, message: str, details: list[Any] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=status)


async def _parse(request: web.Request, model: type[_Body]) -> Any:
    try:
        raw = json.loads(await request.read() or b"{}")
        return model.model_validate(raw)
    except ValueError as exc:  # ValidationError is a ValueError
        details: list[Any] = [str(exc)]
        if isinstance(exc, ValidationError):
            details = [dict(e) for e in exc.errors(include_url=False, include_context=False)]
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"invalid {model.__name__} body", "details": details}, default=str),
            content_type="application/json",
        ) from exc


def _value(text: str) -> Any:
    lowered = text.lower()
    return True if lowered == "true" else False if lowered == "false" else text


def add_admin_routes(app: web.Application, state: SandboxState, admin_token: str | None) -> None:
    def guarded(
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapper(request: web.Request) -> web.StreamResponse:
            given = request.headers.get(ADMIN_HEADER, "")
            if admin_token and not hmac.compare_digest(given.encode(), admin_token.encode()):
                return _error(401, f"missing or wrong {ADMIN_HEADER} header")
            try:
                return await handler(request)
            except (ValueError, KeyError) as exc:
                return _error(400, str(exc).strip("'\""))

        return wrapper

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(state.snapshot())

    async def reset(request: web.Request) -> web.Response:
        state.reset()
        return web.json_response(state.snapshot())

    async def seed(request: web.Request) -> web.Response:
        body: SeedRequest = await _parse(request, SeedRequest)
        summary = state.seed(**body.model_dump())
        return web.json_response(summary)

    async def add_record(request: web.Request) -> web.Response:
        body: RecordRequest = await _parse(request, RecordRequest)
        record_id = state.add_record(
            body.object, body.email, opted_out=body.opted_out, converted=body.converted, deleted=body.deleted,
            fields=body.fields,
        )  # fmt: skip
        return web.json_response({"id": record_id}, status=201)

    async def find_records(request: web.Request) -> web.Response:
        sobject = request.query.get("object", "")
        email = request.query.get("email")
        if email is not None:
            ids = [i for i in state.ids_by_email(email) if not sobject or i.startswith(KEY_PREFIXES.get(sobject, "?"))]
            return web.json_response({"ids": ids})
        equals = {k: _value(v) for k, v in request.query.items() if k != "object"}
        return web.json_response({"ids": state.find_ids(sobject, **equals)})

    async def get_record(request: web.Request) -> web.Response:
        record = state.get_record(request.match_info["id"])
        if record is None:
            return _error(404, f"no record {request.match_info['id']}")
        return web.json_response(record)

    async def patch_record(request: web.Request) -> web.Response:
        body: FieldsRequest = await _parse(request, FieldsRequest)
        record_id = request.match_info["id"]
        if state.get_record(record_id) is None:
            return _error(404, f"no record {record_id}")
        state.set_fields(record_id, body.fields)
        return web.json_response(state.get_record(record_id))

    async def set_field(request: web.Request) -> web.Response:
        body: FieldRequest = await _parse(request, FieldRequest)
        if body.present:
            state.configure_field(body.object, body.name, label=body.label, updateable=body.updateable,
                                  hidden=body.hidden)  # fmt: skip
        else:
            state.remove_field(body.object, body.name)
        return web.json_response(state.snapshot()["objects"])

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(state.faults.as_dict())

    async def set_faults(request: web.Request) -> web.Response:
        body: FaultsRequest = await _parse(request, FaultsRequest)
        if body.clear:
            state.clear_faults()
        if body.latency_ms is not None:
            state.set_latency(body.latency_ms)
        if body.lock_ids is not None:
            state.lock_records(body.lock_ids)
        if body.unlock_ids is not None:
            state.unlock_records(body.unlock_ids)
        if body.lock_ratio is not None:
            state.set_lock_ratio(body.lock_ratio)
        if body.lock_next is not None:
            state.lock_next_writes(body.lock_next)
        if body.unavailable_seconds is not None:
            state.set_unavailable(body.unavailable_seconds)
        elif body.unavailable is True:
            state.set_unavailable(None)
        elif body.unavailable is False:
            state.clear_unavailable()
        if body.request_limit_exceeded is not None:
            state.set_request_limit_exceeded(body.request_limit_exceeded)
        if body.daily_api_limit is not None or body.api_usage is not None:
            state.set_daily_api_limit(
                body.daily_api_limit if body.daily_api_limit is not None else state.daily_api_limit, body.api_usage
            )
        if body.session_lifetime_seconds is not None:
            state.set_session_lifetime(body.session_lifetime_seconds)
        if body.bulk_processing_seconds is not None:
            state.set_bulk_processing_time(body.bulk_processing_seconds)
        if body.bulk_fail_next is not None:
            state.fail_next_bulk_jobs(body.bulk_fail_next)
        expired = state.expire_sessions() if body.expire_sessions else 0
        return web.json_response({**state.faults.as_dict(), "expiredSessions": expired})

    async def writes(request: web.Request) -> web.Response:
        ids_param = request.query.get("ids")
        with state.lock:
            total = sum(state.writes.values())
            records = len(state.writes)
            wanted = [i for i in (ids_param or "").split(",") if i]
            by_id = {i: state.write_count(i) for i in wanted} if wanted else dict(state.writes)
        return web.json_response({"total": total, "records": records, "byId": by_id})

    async def calls(request: web.Request) -> web.Response:
        return web.json_response(state.call_counts())

    async def clock(request: web.Request) -> web.Response:
        body: ClockRequest = await _parse(request, ClockRequest)
        state.advance_clock(body.advance_seconds)
        with state.lock:
            return web.json_response({"now": state.stamp(), "offsetSeconds": state.clock_offset_s})

    routes = [
        ("GET", "/__sandbox/state", get_state),
        ("POST", "/__sandbox/reset", reset),
        ("POST", "/__sandbox/seed", seed),
        ("POST", "/__sandbox/records", add_record),
        ("GET", "/__sandbox/records", find_records),
        ("GET", "/__sandbox/records/{id}", get_record),
        ("PATCH", "/__sandbox/records/{id}", patch_record),
        ("POST", "/__sandbox/fields", set_field),
        ("GET", "/__sandbox/faults", get_faults),
        ("POST", "/__sandbox/faults", set_faults),
        ("GET", "/__sandbox/writes", writes),
        ("GET", "/__sandbox/calls", calls),
        ("POST", "/__sandbox/clock", clock),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, guarded(handler))

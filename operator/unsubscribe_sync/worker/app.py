"""The push worker's HTTP API (contract in the README, "Push worker API") and the wiring of its background tasks."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import StreamReader, web
from aiohttp.typedefs import Middleware

from unsubscribe_sync.api.config import Config, ConfigError
from unsubscribe_sync.ledger import IngestResult, Ledger
from unsubscribe_sync.logs import get_logger, mask_email, redact_text
from unsubscribe_sync.worker.body_budget import BodyBudget, BudgetExhausted
from unsubscribe_sync.worker.ingest import RETRY_AFTER_SECONDS, GroupCommitter, IngestRefused, IngestUnavailable
from unsubscribe_sync.worker.metrics import WorkerMetrics
from unsubscribe_sync.worker.pusher import ClientFactory, OnRequest, PushClient, Pusher, PushPolicy
from unsubscribe_sync.worker.resolver import ResolvePolicy, Resolver
from unsubscribe_sync.worker.validation import InvalidRequest, parse_resubscribes, parse_unsubscribes

log = get_logger(__name__)
T = TypeVar("T")

MAX_BODY_BYTES = 1024 * 1024
BODY_READ_TIMEOUT_SECONDS = 10.0  # a client that stalls mid-body gets 408 (slow headers: see run.py)
BODY_BUDGET_WAIT_SECONDS = BODY_READ_TIMEOUT_SECONDS  # a body that finds no room in the budget this long: 503
BODY_BUDGET_RETRY_AFTER_SECONDS = 1
# aiohttp reads this much of a body ahead of the handler per connection (default 64 KiB, which buffered about
# 0.7 MiB of each body a request held back by the budget had not read yet); 16 KiB buffers about 0.12 MiB.
READ_BUFFER_BYTES = 16 * 1024
DEFAULT_PAGE = 100
MAX_PAGE = 1000
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
NightlyRunner = Callable[[bool], dict[str, Any]]

CONFIG: web.AppKey[Config] = web.AppKey("config", Config)
LEDGER: web.AppKey[Ledger] = web.AppKey("ledger", Ledger)
METRICS: web.AppKey[WorkerMetrics] = web.AppKey("metrics", WorkerMetrics)


class TokenSource:
    """The webhook bearer token, read from its file: a rotated Secret needs no restart, and a deleted, emptied or
    unreadable file refuses every request until a non-empty token is back (fail closed: a token someone removed
    must stop working).

    The file is re-read at most every ``recheck_seconds`` and its content compared, not its mtime: a Kubernetes
    Secret volume swaps a ``..data`` symlink (the new file may carry any mtime), and a rewrite within the clock's
    resolution keeps the old one.
    """

    RECHECK_SECONDS = 5.0

    def __init__(self, path: Path | None, fixed: str | None = None, *, recheck_seconds: float | None = None) -> None:
        self._path = path
        self._recheck_seconds = recheck_seconds
        self._value = fixed.strip().encode() if fixed else b""
        self._problem: str | None = None
        self._checked = time.monotonic()
        if fixed is None:
            self._reload()

    @property
    def recheck_seconds(self) -> float:
        return self.RECHECK_SECONDS if self._recheck_seconds is None else self._recheck_seconds

    def _reload(self) -> None:
        assert self._path is not None
        try:
            token = self._path.read_text(encoding="utf-8").strip().encode()
            problem = None if token else "empty"
        except (OSError, UnicodeDecodeError) as exc:
            token, problem = b"", f"unreadable ({type(exc).__name__})"
        if problem != self._problem:
            if problem is None:
                log.info("webhook_token_restored", file=str(self._path))
            else:
                log.warning("webhook_token_refusing_all", file=str(self._path), problem=problem)
        elif problem is None and token != self._value:
            log.info("webhook_token_rotated", file=str(self._path))
        self._value, self._problem = token, problem

    def matches(self, presented: str) -> bool:
        """Whether ``presented`` is the current token (constant time); always False while there is none."""
        if self._path is not None and time.monotonic() - self._checked >= self.recheck_seconds:
            self._checked = time.monotonic()
            self._reload()
        # surrogateescape: aiohttp hands over header bytes that are not UTF-8 that way; they never match
        return bool(self._value) and hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self._value)


PROBE_DEADLINE_SECONDS = 1.0  # /readyz fails, and /metrics serves stale ledger figures, past this


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # a probe nobody awaited any more: its outcome is not an unhandled error


class WorkerState:
    """Runtime parts of one app: thread pools, group committer, pusher, nightly-run flag.

    Probes (readiness, the metrics' ledger read) run on threads of their own: ledger threads blocked
    on a database that stopped answering cannot starve them, so /readyz can still say so.
    """

    def __init__(self) -> None:
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ledger")
        self.probe_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="probe")
        self._probes: dict[str, asyncio.Future[None]] = {}
        self.committer: GroupCommitter | None = None
        self.pusher: Pusher | None = None
        self.resolver: Resolver | None = None  # Email mode only
        self.pruner: asyncio.Task[None] | None = None
        self.poller: Any = None  # worker.poll.SalesforcePoller while the Salesforce poll runs
        self.nightly_runner: NightlyRunner | None = None
        self.nightly_running = False
        self.body_budget: BodyBudget | None = None  # shared with the public listener's app

    async def probe(self, name: str, check: Callable[[], None]) -> None:
        """Run ``check`` on a probe thread, waiting at most PROBE_DEADLINE_SECONDS (then TimeoutError).

        One check per name at a time: while one is still waiting on the database, later probes wait
        for that one instead of queueing more threads behind it.
        """
        running = self._probes.get(name)
        if running is None or running.done():
            running = asyncio.get_running_loop().run_in_executor(self.probe_executor, check)
            running.add_done_callback(_retrieve)
            self._probes[name] = running
        await asyncio.wait_for(asyncio.shield(running), PROBE_DEADLINE_SECONDS)


TOKEN: web.AppKey[TokenSource] = web.AppKey("token", TokenSource)
STATE: web.AppKey[WorkerState] = web.AppKey("state", WorkerState)


def _error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details is not None:
        body["details"] = details
    return web.json_response(body, status=status)


def _unavailable(message: str, retry_after: int = RETRY_AFTER_SECONDS) -> web.Response:
    response = _error(503, f"{message}; nothing was stored, retry later")
    response.headers["Retry-After"] = str(retry_after)
    return response


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


def _metered(*, check_token: bool) -> Middleware:
    """A middleware of request counts and durations, with the bearer check of ``/v1/...`` when ``check_token``.

    The route label is the route pattern (never a token or an address from the path), the method one of a
    fixed set (never client text). The check and the metrics are one middleware on the internal listener (each
    middleware is a coroutine and a wrapper more per request).
    """

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        metrics = request.app[METRICS]
        start = time.perf_counter()
        status = 500
        try:
            try:
                refused = _refused_token(request) if check_token else None
                response = refused if refused is not None else await handler(request)
            except web.HTTPException as exc:
                status = exc.status
                raise
            status = response.status
            return response
        finally:
            _record(metrics, request, status, start)

    return middleware


request_metrics = _metered(check_token=False)  # the public listener's
metered_bearer_auth = _metered(check_token=True)  # the internal listener's


def _record(metrics: WorkerMetrics, request: web.Request, status: int, start: float) -> None:
    method = request.method
    if method not in _KNOWN_METHODS:
        method = "other"  # labels never take client text
    metrics.record_request(method, _route_name(request), status, time.perf_counter() - start)


def _refused_token(request: web.Request) -> web.Response | None:
    """The 401 for a ``/v1/...`` request without the current bearer token (probes and /metrics take none);
    None when it may pass."""
    if request.path.startswith("/v1/"):
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not request.app[TOKEN].matches(presented.strip()):
            response = _error(401, "missing or invalid bearer token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="unsubscribe-sync"'
            return response
    return None


async def _read_body(request: web.Request) -> bytes | web.Response:
    """The body (at most MAX_BODY_BYTES), or the 413/408/503 answer.

    Its bytes are reserved in the worker's body budget before it is read (the declared length, or
    MAX_BODY_BYTES for a chunked body, the unused part given back once read) and held until the
    request is answered: the body, its parsed JSON and its items stay bounded across all requests.
    A request that finds no room within BODY_BUDGET_WAIT_SECONDS gets 503 with Retry-After.
    A body already all in memory (a small one mostly arrives with its headers) is taken at once; the
    others are read under BODY_READ_TIMEOUT_SECONDS.
    """
    at_once = _body_at_once(request)
    if at_once is not None:
        return at_once
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    budget = _body_budget(request)
    reservation = None
    if budget is not None:
        try:
            wanted = MAX_BODY_BYTES if declared is None else declared
            reservation = await budget.reserve_for_current_task(wanted, BODY_BUDGET_WAIT_SECONDS)
        except BudgetExhausted:
            response = _error(503, "too many request bodies in flight; nothing was stored, retry later")
            response.headers["Retry-After"] = str(BODY_BUDGET_RETRY_AFTER_SECONDS)
            return response
    content = request.content
    if content.is_eof():  # every byte of the body has arrived: nothing to wait for
        body = content.read_nowait()
        if len(body) > MAX_BODY_BYTES:
            return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    else:
        read = await _read_streamed(content)
        if isinstance(read, web.Response):
            return read
        body = read
    if reservation is not None:
        reservation.shrink(len(body))
    return body


def _body_budget(request: web.Request) -> BodyBudget | None:
    state = request.app.get(STATE)
    return state.body_budget if state is not None else None


def _body_at_once(request: web.Request) -> bytes | web.Response | None:
    """``_read_body`` without a wait: the body when all of it has arrived and the budget has room for it now (or
    the 413 for a declared length over the limit); None, with nothing reserved, when it takes waiting."""
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    content = request.content
    if not content.is_eof():
        return None
    budget = _body_budget(request)
    reservation = None
    if budget is not None:
        reservation = budget.try_reserve_for_current_task(MAX_BODY_BYTES if declared is None else declared)
        if reservation is None:
            return None
    body = content.read_nowait()
    if len(body) > MAX_BODY_BYTES:
        return _error(413, f"body over {MAX_BODY_BYTES} bytes")
    if reservation is not None:
        reservation.shrink(len(body))
    return body


async def _read_streamed(content: StreamReader) -> bytes | web.Response:
    """A body still arriving, read within BODY_READ_TIMEOUT_SECONDS (408 past it, 413 past MAX_BODY_BYTES)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_READ_TIMEOUT_SECONDS):
            async for chunk in content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    return _error(413, f"body over {MAX_BODY_BYTES} bytes")
                chunks.append(chunk)
    except TimeoutError:
        response = _error(408, f"the body did not arrive within {BODY_READ_TIMEOUT_SECONDS:.0f} s")
        response.force_close()
        return response
    return b"".join(chunks)


class _Refused:
    """A request body that was answered with an error before it could be parsed."""

    def __init__(self, response: web.Response) -> None:
        self.response = response


_NOT_YET = object()  # ``_json_at_once``: the body takes waiting for


def _json_at_once(request: web.Request) -> Any:
    """``_json_body`` without a wait, or ``_NOT_YET`` when the body (or room for it in the budget) takes one."""
    refused = _content_type_refused(request)
    if refused is not None:
        return refused
    body = _body_at_once(request)
    return _NOT_YET if body is None else _decoded(body)


async def _json_body(request: web.Request) -> Any:
    """The decoded JSON body, or ``_Refused`` holding the 415/413/408/400 answer."""
    refused = _content_type_refused(request)
    if refused is not None:
        return refused
    return _decoded(await _read_body(request))


def _content_type_refused(request: web.Request) -> _Refused | None:
    if request.headers.get("Content-Type") == "application/json":  # that exact header needs no parsing
        return None
    content_type = request.content_type.lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        return _Refused(_error(415, "Content-Type must be application/json"))
    return None


def _decoded(body: bytes | web.Response) -> Any:
    if isinstance(body, web.Response):
        return _Refused(body)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _Refused(_error(400, "body is not valid JSON", [{"field": "", "message": str(exc)}]))
    except RecursionError:
        return _Refused(_error(400, "body is not valid JSON", [{"field": "", "message": "nested too deeply"}]))


async def _validated_items(
    request: web.Request, parse: Callable[[Any, Sequence[str]], list[T]]
) -> list[T] | web.Response:
    """The request's items, parsed and validated by ``parse``; or the 4xx answer that refuses them."""
    data = _json_at_once(request)
    if data is _NOT_YET:
        data = await _json_body(request)
    return _validated(request, data, parse)


def _validated(
    request: web.Request, data: Any, parse: Callable[[Any, Sequence[str]], list[T]]
) -> list[T] | web.Response:
    """The items of the decoded body ``data`` (or the answer that refused it), or the 400 naming its problems."""
    if isinstance(data, _Refused):
        return data.response
    try:
        return parse(data, request.app[CONFIG].salesforce.objects)
    except InvalidRequest as exc:
        return _error(400, exc.message, [p.as_json() for p in exc.details])


async def post_unsubscribes(request: web.Request) -> web.Response:
    data = _json_at_once(request)  # a coroutine fewer per request than _validated_items
    if data is _NOT_YET:
        data = await _json_body(request)
    items = _validated(request, data, parse_unsubscribes)
    if isinstance(items, web.Response):
        return items
    state = request.app[STATE]
    assert state.committer is not None
    try:
        await state.committer.submit(items)
    except IngestRefused as exc:
        log.warning("unsubscribes_refused_by_ledger", records=len(items), problem=redact_text(exc.problem))
        return _error(
            400, "the ledger refused this request's data; nothing was stored", [{"field": "", "message": exc.problem}]
        )
    except IngestUnavailable as exc:
        cause = exc.__cause__ or exc
        log.error("unsubscribes_not_stored", records=len(items), error=redact_text(f"{type(cause).__name__}: {cause}"))
        return _unavailable(exc.message, exc.retry_after)
    except Exception as exc:
        log.error("unsubscribes_not_stored", records=len(items), error=redact_text(f"{type(exc).__name__}: {exc}"))
        return _unavailable("the ledger is unavailable")
    # logged once per group commit (``unsubscribes_committed``), not per request: at thousands of requests a
    # second a line each would cost more than the commit; the ledger's history is the per-address record
    return web.Response(body=_accepted_body(len(items)), status=202, content_type="application/json", charset="utf-8")


@functools.lru_cache(maxsize=1024)
def _accepted_body(count: int) -> bytes:
    """The 202 body for ``count`` items, encoded once per count (at thousands of posts a second, each a
    ``json.dumps`` and a text encode was a measurable share of the handler)."""
    return json.dumps({"accepted": count}).encode()


async def post_resubscribes(request: web.Request) -> web.Response:
    """Explicit resubscribes: stored in one transaction, then the field is cleared in Salesforce by the push."""
    items = await _validated_items(request, parse_resubscribes)
    if isinstance(items, web.Response):
        return items
    state = request.app[STATE]
    loop = asyncio.get_running_loop()
    try:
        result = await loop.run_in_executor(state.executor, request.app[LEDGER].resubscribe, items)
    except Exception as exc:
        log.error("resubscribes_not_stored", records=len(items), error=redact_text(f"{type(exc).__name__}: {exc}"))
        return _error(503, "the ledger is unavailable; nothing was stored, retry later")
    metrics = request.app[METRICS]
    metrics.resubscribes_received.inc(result.stored)
    metrics.replayed.inc(result.replayed)
    if result.enqueued and state.pusher is not None:
        state.pusher.wake()
    log.info(
        "resubscribes_accepted",
        records=len(items),
        resubscribed=result.resubscribed,
        not_unsubscribed=result.not_unsubscribed,
        **({"email": mask_email(items[0].email)} if len(items) == 1 else {}),
    )
    return web.json_response({"accepted": len(items)}, status=202)


async def get_unsubscribe(request: web.Request) -> web.Response:
    """The suppression check and the address's history, paged newest first (``historyLimit``, ``historyCursor``)."""
    email = request.match_info["email"]
    raw_limit = request.query.get("historyLimit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        return _error(
            400,
            f"historyLimit must be an integer from 1 to {MAX_PAGE}",
            [{"field": "historyLimit", "message": "invalid"}],
        )
    before: int | None = None
    if request.query.get("historyCursor"):
        try:
            before = _decode_cursor(request.query["historyCursor"], prefix="h")
        except ValueError as exc:
            return _error(400, str(exc), [{"field": "historyCursor", "message": "invalid"}])
    state = request.app[STATE]
    loop = asyncio.get_running_loop()
    ledger = request.app[LEDGER]
    found = await loop.run_in_executor(
        state.executor, lambda: ledger.lookup(email, history_limit=int(raw_limit), history_before=before)
    )
    if found is None:
        return _error(404, "no unsubscribe for this address")
    following = found.pop("historyNext")
    found["historyNextCursor"] = _encode_cursor(following, prefix="h") if following is not None else None
    return web.json_response(found)


def _encode_cursor(after: int, *, prefix: str = "u") -> str:
    return base64.urlsafe_b64encode(f"{prefix}:{after}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, *, prefix: str = "u") -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        found, _, value = raw.partition(":")
        if found != prefix or not value.isdigit():
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError("cursor is not one this API returned") from None


async def list_unsubscribes(request: web.Request) -> web.Response:
    raw_limit = request.query.get("limit", str(DEFAULT_PAGE))
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        return _error(400, f"limit must be an integer from 1 to {MAX_PAGE}", [{"field": "limit", "message": "invalid"}])
    after = 0
    if request.query.get("cursor"):
        try:
            after = _decode_cursor(request.query["cursor"])
        except ValueError as exc:
            return _error(400, str(exc), [{"field": "cursor", "message": "invalid"}])
    state = request.app[STATE]
    loop = asyncio.get_running_loop()
    items, next_after = await loop.run_in_executor(
        state.executor, lambda: request.app[LEDGER].list_unsubscribes(limit=int(raw_limit), after=after)
    )
    return web.json_response(
        {"items": items, "nextCursor": _encode_cursor(next_after) if next_after is not None else None}
    )


async def post_nightly_run(request: web.Request) -> web.Response:
    state = request.app[STATE]
    raw = request.query.get("dryRun", "false").lower()
    if raw not in ("true", "false", "1", "0"):
        return _error(400, "dryRun must be true or false", [{"field": "dryRun", "message": "invalid"}])
    dry_run = raw in ("true", "1")
    if state.nightly_runner is None:
        return _error(501, "this worker cannot run the nightly sync")
    if state.nightly_running:
        return _error(409, "a nightly sync is already running")
    state.nightly_running = True
    runner = state.nightly_runner
    try:
        summary = await asyncio.to_thread(runner, dry_run)
    except Exception as exc:
        log.error("nightly_run_failed", error=redact_text(f"{type(exc).__name__}: {exc}"))
        return _error(500, redact_text(str(exc)) or type(exc).__name__)
    finally:
        state.nightly_running = False
    return web.json_response(summary)


async def post_unsubscribe_links(request: web.Request) -> web.Response:
    """One-click links for recipients (see worker/links.py); 501 while ``oneClick.keyFile`` is not set."""
    from unsubscribe_sync.worker.links import make_links, parse_recipients
    from unsubscribe_sync.worker.oneclick import ONE_CLICK

    links = request.app.get(ONE_CLICK)
    if links is None:
        return _error(501, "one-click links are off: set oneClick.keyFile and oneClick.baseUrl")
    data = await _json_body(request)
    if isinstance(data, _Refused):
        return data.response
    try:
        recipients = parse_recipients(data, request.app[CONFIG].salesforce.objects)
        return web.json_response(make_links(links, recipients))
    except InvalidRequest as exc:
        return _error(400, exc.message, [p.as_json() for p in exc.details])
    except ConfigError as exc:
        return _error(501, str(exc))


async def livez(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready while the ledger answers within PROBE_DEADLINE_SECONDS (then the Service stops sending here)."""
    state = request.app[STATE]
    try:
        await state.probe("readyz", request.app[LEDGER].ping)
    except TimeoutError:
        problem = f"no answer within {PROBE_DEADLINE_SECONDS:g} s"
        return web.json_response({"status": "unavailable", "ledger": problem}, status=503)
    except Exception as exc:
        return web.json_response({"status": "unavailable", "ledger": type(exc).__name__}, status=503)
    pusher = state.pusher
    return web.json_response(
        {
            "status": "ok",
            "push": {"healthy": pusher.healthy, "problem": pusher.last_problem} if pusher else None,
        }
    )


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Always answers: ledger figures read within PROBE_DEADLINE_SECONDS, else the last ones, ledger_up 0."""
    metrics = request.app[METRICS]
    if metrics.ledger is not None:
        try:
            await request.app[STATE].probe("metrics", metrics.ledger.refresh)
        except Exception:
            metrics.ledger.mark_stale()
    body = metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


PRUNE_INTERVAL_SECONDS = 3600.0


async def _prune_processed_events(ledger: Ledger, state: WorkerState, config: Config) -> None:
    """Forget event ids past ``worker.processedEventsRetentionDays``, at start and then hourly."""
    retention = config.worker.processedEventsRetentionDays * 86400
    loop = asyncio.get_running_loop()
    while True:
        try:
            pruned = await loop.run_in_executor(state.executor, ledger.prune_processed_events, retention)
            if pruned:
                log.info("processed_events_pruned", events=pruned)
        except Exception as exc:  # the ledger is away: try again next time
            log.warning("processed_events_prune_failed", error=redact_text(f"{type(exc).__name__}: {exc}"))
        await asyncio.sleep(PRUNE_INTERVAL_SECONDS)


def default_client_factory(config: Config) -> ClientFactory:
    def factory(on_request: OnRequest) -> PushClient:
        from unsubscribe_sync.salesforce.client import SalesforceClient

        return SalesforceClient.from_config(config.salesforce, on_request=on_request)

    return factory


def create_app(
    config: Config,
    *,
    ledger: Ledger,
    salesforce_client_factory: ClientFactory | None = None,
    nightly_runner: NightlyRunner | None = None,
    push_policy: PushPolicy | None = None,
    token: str | None = None,
    push: bool = True,
    one_click: Any = None,
    token_recheck_seconds: float | None = None,
) -> web.Application:
    """The worker app: webhook API, health, metrics, and (unless ``push`` is False) the pusher.

    ``salesforce_client_factory(on_request)`` builds the Salesforce client (default: from
    ``config.salesforce``); ``nightly_runner(dry_run)`` serves ``POST /v1/nightly-runs``;
    ``token`` replaces ``worker.tokenFile`` (re-read every ``token_recheck_seconds``, default 5);
    ``one_click`` (a ``OneClickLinks``) replaces ``oneClick.keyFile``.
    The caller owns ``ledger`` (and closes it). The public listener's app is ``worker.public.create_public_app``.
    """
    app = web.Application(
        middlewares=[metered_bearer_auth],
        client_max_size=MAX_BODY_BYTES + 1,
        handler_args={"read_bufsize": READ_BUFFER_BYTES},
    )
    metrics = WorkerMetrics(ledger)
    state = WorkerState()
    state.nightly_runner = nightly_runner
    app[CONFIG] = config
    app[LEDGER] = ledger
    app[METRICS] = metrics
    app[TOKEN] = TokenSource(None if token else config.worker.tokenFile, token, recheck_seconds=token_recheck_seconds)
    app[STATE] = state
    metrics.body_bytes_limit.set(config.worker.maxBodyBytesInFlight)
    budget = state.body_budget = BodyBudget(config.worker.maxBodyBytesInFlight)
    metrics.body_bytes_in_flight.set_function(lambda: budget.in_flight)  # read at each scrape, not set per request
    factory = salesforce_client_factory or default_client_factory(config)
    policy = push_policy or PushPolicy.from_config(config.worker)
    ledger.match_by_email = config.matching.by_email  # intake queues resolutions in Email mode

    async def on_startup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        if ledger.dialect == "sqlite":  # one worker per SQLite ledger: leases of a dead predecessor are void
            released = await loop.run_in_executor(state.executor, ledger.release_all_leases)
            if released:
                log.info("leases_released", records=released)
        if push:
            state.pusher = Pusher(config, ledger, factory, metrics, state.executor, policy)
            if config.matching.by_email:
                resolve_policy = ResolvePolicy(
                    batch_size=policy.batch_size,
                    lease_seconds=policy.lease_seconds,
                    poll_interval_seconds=policy.poll_interval_seconds,
                    base_backoff_seconds=2.0 * policy.backoff_scale,
                )
                state.resolver = Resolver(
                    config, ledger, factory, metrics, state.executor, resolve_policy, on_queued=state.pusher.wake
                )

        def committed(result: IngestResult) -> None:
            log.info(
                "unsubscribes_committed",
                records=result.stored,
                replayed=result.replayed,
                queued_writes=result.enqueued,
                skipped_no_salesforce_id=result.skipped_no_salesforce_id,
            )
            metrics.received.inc(result.stored)
            metrics.replayed.inc(result.replayed)
            if result.skipped_no_salesforce_id:
                metrics.push_records.labels(object="unknown", outcome="skipped").inc(result.skipped_no_salesforce_id)
            if result.enqueued and state.pusher is not None:
                state.pusher.wake()
            if result.stored and state.resolver is not None:
                state.resolver.wake()

        state.committer = GroupCommitter(
            ledger,
            state.executor,
            max_queued_items=config.worker.maxQueuedItems,
            max_queue_wait=config.worker.maxQueueWaitSeconds,
            on_commit=committed,
        )
        state.committer.start()
        if state.pusher is not None:
            state.pusher.start()
        if state.resolver is not None:
            state.resolver.start()
        state.pruner = loop.create_task(_prune_processed_events(ledger, state, config), name="prune-events")
        if push:
            from unsubscribe_sync.worker.poll import SalesforcePoller, poll_enabled

            if poll_enabled(config):
                state.poller = SalesforcePoller(config, ledger, factory, metrics, state.executor)
                state.poller.start()

    async def on_shutdown(app: web.Application) -> None:
        if state.pruner is not None:
            state.pruner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.pruner
        if state.poller is not None:
            await state.poller.stop()
        if state.committer is not None:
            await state.committer.stop()
        if state.resolver is not None:
            await state.resolver.stop()
        if state.pusher is not None:
            await state.pusher.stop()
        state.executor.shutdown(wait=True)
        state.probe_executor.shutdown(wait=False, cancel_futures=True)  # a probe still waiting holds nothing

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_shutdown)
    app.router.add_post("/v1/unsubscribes", post_unsubscribes)
    app.router.add_get("/v1/unsubscribes", list_unsubscribes)
    app.router.add_post("/v1/resubscribes", post_resubscribes)
    app.router.add_get("/v1/unsubscribes/{email:[^/]+}", get_unsubscribe)  # any character but "/" (braces too)
    app.router.add_post("/v1/nightly-runs", post_nightly_run)
    _add_public_parts(app, config, metrics, one_click)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app


def _add_public_parts(app: web.Application, config: Config, metrics: WorkerMetrics, one_click: Any) -> None:
    """What the internal app holds for the public listener: the sender counter, the one-click links and the
    ``POST /v1/unsubscribe-links`` route that makes them."""
    from unsubscribe_sync.worker.oneclick import ONE_CLICK, OneClickLinks
    from unsubscribe_sync.worker.public import SENDER_EVENTS, sender_events_counter

    app[SENDER_EVENTS] = sender_events_counter(metrics.registry)
    links = one_click if one_click is not None else OneClickLinks.from_config(config.oneClick)
    if links is not None:
        app[ONE_CLICK] = links
    app.router.add_post("/v1/unsubscribe-links", post_unsubscribe_links)


def pusher_of(app: web.Application) -> Pusher | None:
    """The app's pusher (None before startup or when push is off)."""
    return app[STATE].pusher


def metrics_of(app: web.Application) -> WorkerMetrics:
    return app[METRICS]


def body_budget_of(app: web.Application) -> BodyBudget | None:
    """The budget on request-body bytes in flight (shared by the internal and the public listener)."""
    return app[STATE].body_budget

"""The public listener (``worker.publicListen``): one-click links and sender webhooks, nothing else.

It runs beside the internal app (``worker.listen``: ``/v1/...`` with the bearer token, probes, metrics) in the
same process and shares its group committer, so a 200 here means what a 202 there means: durably stored. No route
here takes the bearer token; each authenticates its own way (signature, basic auth, HMAC-signed link), and
everything else, ``/v1/unsubscribes``, ``/metrics`` and the probes included, is a 404.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import Counter

from unsubscribe_sync.api.config import Config
from unsubscribe_sync.ledger import Unsubscribe
from unsubscribe_sync.logs import get_logger, mask_email, redact_text
from unsubscribe_sync.worker.app import (
    CONFIG,
    MAX_BODY_BYTES,
    METRICS,
    READ_BUFFER_BYTES,
    STATE,
    _error,
    _read_body,
    request_metrics,
)
from unsubscribe_sync.worker.oneclick import ONE_CLICK, confirm_page, done_page, not_found_page
from unsubscribe_sync.worker.secret_files import SecretFile
from unsubscribe_sync.worker.senders import Malformed, Sender, Unauthorized, Unavailable, to_unsubscribes
from unsubscribe_sync.worker.senders.mailgun import Mailgun
from unsubscribe_sync.worker.senders.mandrill import Mandrill
from unsubscribe_sync.worker.senders.postmark import Postmark
from unsubscribe_sync.worker.senders.sendgrid import SendGrid
from unsubscribe_sync.worker.senders.ses import Ses

log = get_logger(__name__)

SENDER_EVENTS: web.AppKey[Counter] = web.AppKey("sender_events", Counter)
ONE_CLICK_SENDER = "oneclick"  # the sender label of one-click links in unsubscribe_sync_sender_events_total


def sender_events_counter(registry: object) -> Counter:
    """``unsubscribe_sync_sender_events_total{sender,outcome}``: accepted and ignored events, rejected requests."""
    return Counter(
        "unsubscribe_sync_sender_events",
        "Events from email services and one-click links by outcome: accepted (stored), ignored (not an "
        "unsubscribe, or an address the API refuses), rejected (a request refused: bad signature or body)",
        ["sender", "outcome"],
        registry=registry,  # type: ignore[arg-type]
    )


async def store(request: web.Request, items: list[Unsubscribe]) -> bool:
    """Commit ``items`` through the internal app's group committer; False when the ledger refused."""
    if not items:
        return True
    committer = request.app[STATE].committer
    assert committer is not None
    try:
        await committer.submit(items)
    except Exception as exc:
        log.error("unsubscribes_not_stored", records=len(items), error=redact_text(f"{type(exc).__name__}: {exc}"))
        return False
    return True


def sender_handler(sender: Sender) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        counter = request.app[SENDER_EVENTS]
        body = await _read_body(request)
        if isinstance(body, web.Response):
            counter.labels(sender=sender.name, outcome="rejected").inc()
            return body
        try:
            batch = await sender.parse(request.headers, body, time.time())
        except Unauthorized as exc:
            counter.labels(sender=sender.name, outcome="rejected").inc()
            log.warning("sender_request_refused", sender=sender.name, reason=str(exc))
            return _error(401, "missing or invalid signature")
        except Malformed as exc:
            counter.labels(sender=sender.name, outcome="rejected").inc()
            return _error(400, str(exc))
        except Unavailable as exc:
            log.warning("sender_check_unavailable", sender=sender.name, reason=str(exc))
            return _error(503, "could not check the request now; nothing was stored, retry later")
        items, refused = to_unsubscribes(batch.events, request.app[CONFIG].salesforce.objects)
        ignored = batch.ignored + refused
        if not await store(request, items):
            return _error(503, "the ledger is unavailable; nothing was stored, retry later")
        if items:
            counter.labels(sender=sender.name, outcome="accepted").inc(len(items))
        if ignored:
            counter.labels(sender=sender.name, outcome="ignored").inc(ignored)
        if refused:
            log.info("sender_events_refused", sender=sender.name, events=refused)
        if len(items) == 1:
            log.info("sender_unsubscribe_accepted", sender=sender.name, email=mask_email(items[0].email))
        elif items:
            log.info("sender_unsubscribes_accepted", sender=sender.name, records=len(items))
        if batch.note:
            log.info("sender_handshake", sender=sender.name, note=batch.note)
        return web.json_response({"accepted": len(items), "ignored": ignored})

    return handle


async def head_ok(_: web.Request) -> web.Response:
    """Mandrill checks a webhook URL with HEAD before it saves it."""
    return web.Response(status=200)


def _page(status: int, html: str) -> web.Response:
    """An HTML answer of the one-click routes: not cached, not framed, no referrer, no scripts, no cookies."""
    return web.Response(
        status=status,
        text=html,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
            "frame-ancestors 'none'",
        },
    )


async def get_one_click(request: web.Request) -> web.Response:
    """The confirm page: a GET never unsubscribes (mail scanners and link previews fetch links)."""
    link = request.app[ONE_CLICK].verify(request.match_info["token"], time.time())
    if link is None:
        return _page(404, not_found_page())
    return _page(200, confirm_page(link.email))


async def post_one_click(request: web.Request) -> web.Response:
    """RFC 8058 one-click: whatever the body (``List-Unsubscribe=One-Click`` form or multipart, the confirm form)."""
    counter = request.app[SENDER_EVENTS]
    link = request.app[ONE_CLICK].verify(request.match_info["token"], time.time())
    if link is None:
        counter.labels(sender=ONE_CLICK_SENDER, outcome="rejected").inc()
        return _page(404, not_found_page())
    items, refused = to_unsubscribes([link.event()], request.app[CONFIG].salesforce.objects)
    if refused:  # signed by us, so only an address rule changed since: nothing to store, still not the user's fault
        counter.labels(sender=ONE_CLICK_SENDER, outcome="ignored").inc()
        return _page(200, done_page())
    if not await store(request, items):
        return _page(503, "<!doctype html><title>Try again</title><p>Please try again in a few minutes.</p>")
    counter.labels(sender=ONE_CLICK_SENDER, outcome="accepted").inc()
    log.info("one_click_unsubscribe", email=mask_email(items[0].email))
    return _page(200, done_page())


def senders_from_config(config: Config) -> list[Sender]:
    """The configured senders (each off until its section is given); ConfigError when a secret file is unusable."""
    given = config.senders
    senders: list[Sender] = []
    if given.sendgrid is not None:
        senders.append(SendGrid(SecretFile("senders.sendgrid.publicKeyFile", given.sendgrid.publicKeyFile)))
    if given.mailgun is not None:
        senders.append(Mailgun(SecretFile("senders.mailgun.signingKeyFile", given.mailgun.signingKeyFile)))
    if given.postmark is not None:
        senders.append(Postmark(SecretFile("senders.postmark.basicAuthFile", given.postmark.basicAuthFile)))
    if given.mandrill is not None:
        key = SecretFile("senders.mandrill.webhookKeyFile", given.mandrill.webhookKeyFile)
        senders.append(Mandrill(key, given.mandrill.url))
    if given.ses is not None:
        senders.append(Ses(given.ses))
    return senders


def create_public_app(internal: web.Application, *, senders: list[Sender] | None = None) -> web.Application:
    """The public app over ``internal``'s config, metrics, one-click keys and group committer (start ``internal``
    first). ``senders`` default to the configured ones."""
    config: Config = internal[CONFIG]
    if senders is None:
        senders = senders_from_config(config)
    one_click = internal.get(ONE_CLICK)
    # The internal listener's read-ahead bound: an internet client's body waits in the kernel, not in the worker.
    app = web.Application(
        middlewares=[request_metrics],
        client_max_size=MAX_BODY_BYTES + 1,
        handler_args={"read_bufsize": READ_BUFFER_BYTES},
    )
    app[CONFIG] = config
    app[METRICS] = internal[METRICS]
    app[STATE] = internal[STATE]
    app[SENDER_EVENTS] = internal[SENDER_EVENTS]
    for sender in senders:
        path = f"/v1/webhooks/{sender.name}"
        app.router.add_post(path, sender_handler(sender))
        if isinstance(sender, Mandrill):
            app.router.add_route("HEAD", path, head_ok)
    if one_click is not None:
        app[ONE_CLICK] = one_click
        app.router.add_get("/u/{token}", get_one_click, allow_head=False)
        app.router.add_post("/u/{token}", post_one_click)

    async def close_senders(_: web.Application) -> None:
        for sender in senders:
            close = getattr(sender, "close", None)
            if close is not None:
                await close()

    app.on_cleanup.append(close_senders)
    return app

"""Run the push worker: open the ledger, serve the internal app on ``worker.listen`` and the public app on
``worker.publicListen`` (when set) until SIGTERM/SIGINT."""

from __future__ import annotations

from aiohttp import web

from unsubscribe_sync.api.config import Config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.ledger.connect import open_ledger
from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.worker.app import NightlyRunner, create_app
from unsubscribe_sync.worker.public import create_public_app
from unsubscribe_sync.worker.pusher import ClientFactory

log = get_logger(__name__)

KEEPALIVE_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 10.0


def add_public_listener(app: web.Application, public: web.Application, host: str, port: int) -> None:
    """Serve ``public`` on host:port for as long as ``app`` runs.

    It opens after ``app``'s own start-up (the group committer exists by then) and closes at shutdown before
    ``app``'s clean-up commits what is queued, so a public request is never accepted after the committer stopped.
    """
    runner = web.AppRunner(public, access_log=None, keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS)

    async def start(_: web.Application) -> None:
        await runner.setup()
        await web.TCPSite(runner, host, port, shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS).start()
        log.info("public_listener_started", listen=f"{host}:{port}")

    async def stop(_: web.Application) -> None:
        await runner.cleanup()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)


def run_worker(
    config: Config,
    nightly_runner: NightlyRunner | None = None,
    *,
    salesforce_client_factory: ClientFactory | None = None,
    ledger: Ledger | None = None,
) -> int:
    """Serve until a signal asks to stop; on SIGTERM the listeners close first, queued
    unsubscribes are committed and the in-flight push batch finishes (or is handed back)."""
    own_ledger = ledger is None
    if ledger is None:
        ledger = open_ledger(config.ledger)
    config.worker.read_token()  # fail at start, with a clear message, when the token file is unusable
    try:
        app = create_app(
            config, ledger=ledger, salesforce_client_factory=salesforce_client_factory, nightly_runner=nightly_runner
        )
        host, port = config.worker.public_host, config.worker.public_port
        if host is not None and port is not None:
            add_public_listener(app, create_public_app(app), host, port)
        log.info(
            "worker_starting", listen=config.worker.listen, public=config.worker.publicListen, ledger=ledger.dialect
        )
        web.run_app(
            app,
            host=config.worker.host,
            port=config.worker.port,
            print=None,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS,
            # Also the limit for a connection that never completes its request headers.
            keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS,
            handle_signals=True,
        )
    finally:
        if own_ledger:
            ledger.close()
    log.info("worker_stopped")
    return 0

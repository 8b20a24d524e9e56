"""Run the push worker: open the ledger, serve the app on ``worker.listen`` until SIGTERM/SIGINT."""

from __future__ import annotations

from aiohttp import web

from unsubscribe_sync.api.config import Config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.worker.app import NightlyRunner, create_app
from unsubscribe_sync.worker.pusher import ClientFactory

log = get_logger(__name__)

KEEPALIVE_TIMEOUT_SECONDS = 10.0


def run_worker(
    config: Config,
    nightly_runner: NightlyRunner | None = None,
    *,
    salesforce_client_factory: ClientFactory | None = None,
    ledger: Ledger | None = None,
) -> int:
    """Serve until a signal asks to stop; on SIGTERM the listener closes first, queued
    unsubscribes are committed and the in-flight push batch finishes (or is handed back)."""
    own_ledger = ledger is None
    if ledger is None:
        ledger = Ledger.open(config.ledger.resolve_url())
    config.worker.read_token()  # fail at start, with a clear message, when the token file is unusable
    try:
        app = create_app(
            config, ledger=ledger, salesforce_client_factory=salesforce_client_factory, nightly_runner=nightly_runner
        )
        log.info("worker_starting", listen=config.worker.listen, ledger=ledger.dialect)
        web.run_app(
            app,
            host=config.worker.host,
            port=config.worker.port,
            print=None,
            access_log=None,
            shutdown_timeout=10,
            # Also the limit for a connection that never completes its request headers.
            keepalive_timeout=KEEPALIVE_TIMEOUT_SECONDS,
            handle_signals=True,
        )
    finally:
        if own_ledger:
            ledger.close()
    log.info("worker_stopped")
    return 0

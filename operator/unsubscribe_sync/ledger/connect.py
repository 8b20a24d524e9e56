"""Open the ledger a config file describes, with its timeouts (the ``ledger.*`` extras)."""

from __future__ import annotations

from unsubscribe_sync.api.config import LedgerConfig
from unsubscribe_sync.ledger.engine import create_ledger_engine
from unsubscribe_sync.ledger.store import Ledger


def open_ledger(config: LedgerConfig, *, migrate_schema: bool = True, pool_size: int = 5) -> Ledger:
    """The ledger at ``config``'s URL, its engine carrying ``config``'s timeouts; schema created/migrated.

    ``Ledger.open(url)`` takes only a URL (and applies the default timeouts); commands that read a
    config file open the ledger here so the file's timeouts apply. Never log the URL.
    """
    ledger = Ledger(create_ledger_engine(config.resolve_url(), pool_size=pool_size, settings=config))
    if migrate_schema:
        ledger.migrate()
    return ledger

"""What every command that reads a config file does first."""

from __future__ import annotations

import gc
import sys

from unsubscribe_sync.api.config import Config, ConfigError, load_config
from unsubscribe_sync.logs import configure_logging

BAD_CONFIG_EXIT = 2
# the cyclic collector's generation thresholds in the worker (Python's default: 700, 10, 10)
COLLECTOR_THRESHOLDS = (10_000, 10, 10)


def load_config_for(command: str, path: str, *, log_level: str | None = None) -> Config | None:
    """Load the config file and set up logging; on a bad file print why (naming the key) and return None."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"unsubscribe-sync {command}: {exc}", file=sys.stderr)
        return None
    configure_logging(config.logging.format, log_level or config.logging.level)
    return config


def settle_collector() -> None:
    """Tune Python's cyclic garbage collector once the worker has imported what it runs.

    A Bulk-sized push, and a nightly run in the worker, handle tens of thousands of short-lived rows at a time
    (claimed outbox rows, Bulk results, staged records); at the default thresholds the collector runs every
    700 allocations and, now and then, walks every object of the process, the imported modules included.
    Those are frozen (never walked again) and the young generation collected every 10,000 allocations: about
    15% less CPU for a Bulk-sized push beside a nightly (bench/README.md). Reference counting still frees
    every row at once; only objects in reference cycles wait for a collection, and the older generations keep
    Python's ratios (a full collection is considered every ~1M allocations). The nightly job's own process
    keeps the defaults: its peak memory (the 1M-record run) is the figure that matters there.
    """
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)

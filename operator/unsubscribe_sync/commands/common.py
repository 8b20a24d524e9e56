"""What every command that reads a config file does first."""

from __future__ import annotations

import ctypes
import gc
import os
import sys

from unsubscribe_sync.api.config import Config, ConfigError, load_config
from unsubscribe_sync.logs import configure_logging

BAD_CONFIG_EXIT = 2
# the cyclic collector's generation thresholds in the worker (Python's default: 700, 10, 10)
COLLECTOR_THRESHOLDS = (10_000, 10, 10)
MALLOC_ARENAS = 2  # glibc malloc arenas of the worker's and the nightly's processes (glibc's default: 8 per core)
_M_ARENA_MAX = -8  # mallopt's parameter number for the arena limit (glibc's malloc.h)


def load_config_for(command: str, path: str, *, log_level: str | None = None) -> Config | None:
    """Load the config file and set up logging; on a bad file print why (naming the key) and return None."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"unsubscribe-sync {command}: {exc}", file=sys.stderr)
        return None
    configure_logging(config.logging.format, log_level or config.logging.level)
    return config


def limit_malloc_arenas() -> bool:
    """Hold the process to ``MALLOC_ARENAS`` glibc malloc arenas, before its threads start; True when set.

    glibc gives each thread that allocates an arena of its own, up to 8 per core, and an arena keeps what its
    thread freed. SQLite builds a select's rows as one JSON array and parses a batch of rows sent as one
    (``ledger.sqlite_steps``) in the thread that runs the statement, so each of a process's ledger threads held
    a few MB it had freed. In the 1M-record nightly the peak RSS was 200.9 MB with the default arenas and 193.9 MB
    with two (bench/README.md). Python's own allocator serves small objects under the GIL, so two arenas
    cost no measurable contention. An explicit ``MALLOC_ARENA_MAX`` in the environment wins; elsewhere than
    glibc nothing happens.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, MALLOC_ARENAS))


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

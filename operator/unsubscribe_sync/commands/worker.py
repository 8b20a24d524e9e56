"""`unsubscribe-sync worker --config FILE`: the push worker and ledger API.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 2 when the config (file, token file,
ledger URL) is unusable.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from unsubscribe_sync.api.config import Config, ConfigError
from unsubscribe_sync.commands.common import BAD_CONFIG_EXIT, limit_malloc_arenas, load_config_for, settle_collector
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.ledger.connect import open_ledger
from unsubscribe_sync.logs import get_logger, redact_text

log = get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file (see the README, 'Config file')")


def nightly_runner_for(config: Config, ledger: Ledger) -> Callable[[bool], dict[str, Any]]:
    """The nightly sync as runner(dry_run) -> summary, run inside the worker by POST /v1/nightly-runs."""
    from unsubscribe_sync.nightly.job import make_runner

    return make_runner(config, ledger)


def run(args: argparse.Namespace) -> int:
    limit_malloc_arenas()  # before the worker's threads start
    config = load_config_for("worker", args.config)
    if config is None:
        return BAD_CONFIG_EXIT
    from unsubscribe_sync.worker.run import run_worker

    try:
        config.worker.read_token()
        ledger = open_ledger(config.ledger)
    except ConfigError as exc:
        print(f"unsubscribe-sync worker: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the database refused: say so without echoing the URL
        print(f"unsubscribe-sync worker: cannot open the ledger: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    try:
        runner = nightly_runner_for(config, ledger)
        settle_collector()
        return run_worker(config, runner, ledger=ledger)
    except ConfigError as exc:  # a sender or one-click secret file that cannot be used
        print(f"unsubscribe-sync worker: {exc}", file=sys.stderr)
        return 2
    finally:
        ledger.close()

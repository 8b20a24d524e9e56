"""What every command that reads a config file does first."""

from __future__ import annotations

import sys

from unsubscribe_sync.api.config import Config, ConfigError, load_config
from unsubscribe_sync.logs import configure_logging

BAD_CONFIG_EXIT = 2


def load_config_for(command: str, path: str, *, log_level: str | None = None) -> Config | None:
    """Load the config file and set up logging; on a bad file print why (naming the key) and return None."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"unsubscribe-sync {command}: {exc}", file=sys.stderr)
        return None
    configure_logging(config.logging.format, log_level or config.logging.level)
    return config

"""Secrets the public listener checks requests with (sender keys, one-click keys), read from mounted files.

Each file is read at start (an unusable file stops the worker with a message naming the config key) and re-read
when it changes, so a rotated Kubernetes Secret reaches the running pod without a restart. A file that becomes
empty refuses every request (as the bearer token file does); one that becomes unreadable keeps the last value.
"""

from __future__ import annotations

import time
from pathlib import Path

from unsubscribe_sync.api.config import ConfigError, read_secret_file
from unsubscribe_sync.logs import get_logger

log = get_logger(__name__)


class SecretFile:
    """The stripped text of one secret file, re-read at most every ``RECHECK_SECONDS`` when its mtime changes."""

    RECHECK_SECONDS = 5.0

    def __init__(self, key: str, path: Path) -> None:
        self.key = key
        self._path = path
        self._value = read_secret_file(key, path)
        self._mtime: float | None = path.stat().st_mtime
        self._checked = time.monotonic()

    @classmethod
    def fixed(cls, key: str, value: str) -> SecretFile:
        """A secret given in memory (tests, the demo); never re-read."""
        instance = cls.__new__(cls)
        instance.key, instance._path, instance._value = key, None, value.strip()  # type: ignore[assignment]
        instance._mtime, instance._checked = None, 0.0
        return instance

    def _refresh(self) -> None:
        if self._path is None or time.monotonic() - self._checked < self.RECHECK_SECONDS:
            return
        self._checked = time.monotonic()
        try:
            mtime = self._path.stat().st_mtime
            if mtime == self._mtime:
                return
            text = self._path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("secret_file_unreadable", key=self.key, error=type(exc).__name__)
            return
        if not text:
            log.warning("secret_file_emptied", key=self.key)
        self._value, self._mtime = text, mtime

    @property
    def value(self) -> str:
        """The current text ("" when the file was emptied: callers refuse every request then)."""
        self._refresh()
        return self._value

    def lines(self) -> list[str]:
        """The non-blank lines of the current text, in order."""
        return [line.strip() for line in self.value.splitlines() if line.strip()]


def require_lines(secret: SecretFile, *, min_length: int) -> SecretFile:
    """``secret`` when every line has at least ``min_length`` characters; ConfigError naming the key otherwise."""
    for number, line in enumerate(secret.lines(), start=1):
        if len(line) < min_length:
            raise ConfigError(f"{secret.key}: line {number} is shorter than {min_length} characters")
    return secret

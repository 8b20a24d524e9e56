"""Secrets the public listener checks requests with (sender keys, one-click keys), read from mounted files.

Each file is read at start (an unusable file stops the worker with a message naming the config key) and re-read
when it changes, so a rotated Kubernetes Secret reaches the running pod without a restart. A file that becomes
empty refuses every request (as the bearer token file does); one that becomes unreadable keeps the last value.

A change is found by comparing the content, not the mtime (as the bearer token file): a Secret volume swaps a
``..data`` symlink and the new file may carry any mtime, and a rewrite within the clock's resolution keeps the
old one. The files are a few hundred bytes, read at most every ``RECHECK_SECONDS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from unsubscribe_sync.api.config import ConfigError, read_secret_file
from unsubscribe_sync.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class SecretFile:
    """The stripped text of one secret file, re-read at most every ``RECHECK_SECONDS`` and compared by content."""

    RECHECK_SECONDS = 5.0

    def __init__(self, key: str, path: Path) -> None:
        self.key = key
        self._path: Path | None = path
        self._value = read_secret_file(key, path)
        self._checked = time.monotonic()

    @classmethod
    def fixed(cls, key: str, value: str) -> SecretFile:
        """A secret given in memory (tests, the demo); never re-read."""
        instance = cls.__new__(cls)
        instance.key, instance._path, instance._value = key, None, value.strip()
        instance._checked = 0.0
        return instance

    def _refresh(self) -> None:
        if self._path is None or time.monotonic() - self._checked < self.RECHECK_SECONDS:
            return
        self._checked = time.monotonic()
        try:
            text = self._path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("secret_file_unreadable", key=self.key, error=type(exc).__name__)
            return
        if text == self._value:
            return
        if not text:
            log.warning("secret_file_emptied", key=self.key)
        else:
            log.info("secret_file_changed", key=self.key)
        self._value = text

    @property
    def value(self) -> str:
        """The current text ("" when the file was emptied: callers refuse every request then)."""
        self._refresh()
        return self._value

    def lines(self) -> list[str]:
        """The non-blank lines of the current text, in order."""
        return [line.strip() for line in self.value.splitlines() if line.strip()]


class ParsedSecret(Generic[T]):
    """A key parsed from a :class:`SecretFile` (a public key, HMAC key bytes), parsed again only when the text
    changes. ``current()`` is None while the file is empty or its text does not parse: the sender then refuses
    every request rather than keep a key someone replaced. The senders share it so each reads its key one way."""

    def __init__(self, file: SecretFile, parse: Callable[[str], T], *, unusable: str) -> None:
        """ConfigError ``<key>: <unusable>`` when the file's text does not parse at start."""
        self.file = file
        self._parse = parse
        self._text: str | None = None
        self._parsed: T | None = None
        if self.current() is None:
            raise ConfigError(f"{file.key}: {unusable}")

    def current(self) -> T | None:
        text = self.file.value
        if text != self._text:
            self._text = text
            try:
                self._parsed = self._parse(text) if text else None
            except ValueError:
                self._parsed = None
        return self._parsed


def require_lines(secret: SecretFile, *, min_length: int) -> SecretFile:
    """``secret`` when every line has at least ``min_length`` characters; ConfigError naming the key otherwise."""
    for number, line in enumerate(secret.lines(), start=1):
        if len(line) < min_length:
            raise ConfigError(f"{secret.key}: line {number} is shorter than {min_length} characters")
    return secret

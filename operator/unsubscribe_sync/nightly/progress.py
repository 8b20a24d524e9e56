"""Progress reporting for the nightly job: a rich progress bar in a terminal, JSON log lines in a pod."""

from __future__ import annotations

import time
from typing import Any, Protocol

from unsubscribe_sync.logs import get_logger


class Progress(Protocol):
    """What the job tells about its progress: phases, each with an optional total, advanced by counts."""

    def start(self, phase: str, total: int | None = None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Reports nothing (the worker's runs, tests)."""

    def start(self, phase: str, total: int | None = None) -> None:
        return None

    def advance(self, n: int = 1) -> None:
        return None

    def finish(self) -> None:
        return None


class LogProgress:
    """One log line when a phase starts, at most one every `interval` seconds while it runs, one at its end."""

    def __init__(self, interval: float = 10.0, logger: Any = None) -> None:
        self.interval = interval
        self.log = logger or get_logger("unsubscribe_sync.nightly")
        self._phase: str | None = None
        self._total: int | None = None
        self._done = 0
        self._started = 0.0
        self._last = 0.0

    def start(self, phase: str, total: int | None = None) -> None:
        self.finish()
        self._phase, self._total, self._done = phase, total, 0
        self._started = self._last = time.monotonic()
        self.log.info("nightly phase started", phase=phase, total=total)

    def advance(self, n: int = 1) -> None:
        self._done += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.log.info("nightly progress", phase=self._phase, done=self._done, total=self._total)

    def finish(self) -> None:
        if self._phase is not None:
            self.log.info(
                "nightly phase finished",
                phase=self._phase,
                done=self._done,
                seconds=round(time.monotonic() - self._started, 3),
            )
            self._phase = None


class RichProgress:
    """A rich progress bar per phase (on stderr, so stdout keeps the summary)."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import (
            Progress as _RichProgress,
        )

        self._bar = _RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: Any = None
        self._bar.start()

    def start(self, phase: str, total: int | None = None) -> None:
        self.finish()
        self._task = self._bar.add_task(phase, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)

    def finish(self) -> None:
        if self._task is not None:
            task = self._bar.tasks[-1]
            self._bar.update(self._task, total=task.completed)
            self._task = None

    def close(self) -> None:
        self.finish()
        self._bar.stop()

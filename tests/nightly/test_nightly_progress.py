"""Progress reporting of the nightly job: log lines in a pod, a rich bar in a terminal."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from unsubscribe_sync.nightly.progress import LogProgress, NullProgress, RichProgress


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))


def test_log_progress_reports_phases_and_counts() -> None:
    log = _Log()
    progress = LogProgress(interval=0.0, logger=log)
    progress.start("Contact: read", 10)
    progress.advance(4)
    progress.advance(6)
    progress.start("Lead: read")  # finishes the previous phase
    progress.finish()
    progress.finish()  # idempotent
    events = [(e, f.get("phase"), f.get("done")) for e, f in log.lines]
    assert events[0] == ("nightly phase started", "Contact: read", None)
    assert ("nightly progress", "Contact: read", 10) in events
    assert ("nightly phase finished", "Contact: read", 10) in events
    assert events[-1] == ("nightly phase finished", "Lead: read", 0)
    assert sum(1 for e in events if e[0] == "nightly phase finished") == 2


def test_log_progress_rate_limits_progress_lines() -> None:
    log = _Log()
    progress = LogProgress(interval=3600.0, logger=log)
    progress.start("plan", None)
    progress.advance(1_000)
    assert [e for e, _ in log.lines] == ["nightly phase started"]


def test_rich_progress_renders_each_phase() -> None:
    out = io.StringIO()
    progress = RichProgress(Console(file=out, force_terminal=False, width=100))
    progress.start("Contact: read opted-out records from Salesforce", None)
    progress.advance(7)
    progress.start("Contact: plan and apply", 3)
    progress.advance(3)
    progress.close()
    text = out.getvalue()
    assert "Contact: read opted-out records from Salesforce" in text and "7/7" in text
    assert "Contact: plan and apply" in text and "3/3" in text


def test_null_progress_accepts_everything() -> None:
    progress = NullProgress()
    progress.start("x", 1)
    progress.advance(5)
    progress.finish()

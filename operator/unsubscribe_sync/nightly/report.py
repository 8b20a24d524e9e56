"""The nightly run's summary: the contract JSON line and the termination message the operator reads."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

COUNT_KEYS = ("toSalesforce", "fromSalesforce", "skippedNoSalesforceId", "failed")
TERMINATION_LOG_ENV = "UNSUBSCRIBE_SYNC_TERMINATION_LOG"
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
_TERMINATION_LIMIT = 4096  # Kubernetes keeps at most 4096 bytes of a termination message


def contract_line(summary: Mapping[str, Any]) -> str:
    """`{"toSalesforce":N,"fromSalesforce":N,"skippedNoSalesforceId":N,"failed":N}`: the last stdout line."""
    return json.dumps({key: int(summary.get(key, 0)) for key in COUNT_KEYS}, separators=(",", ":"))


def termination_message(summary: Mapping[str, Any]) -> str:
    """The counts plus startTime, completionTime, outcome (and error on failure), as compact JSON <= 4 KiB."""
    message: dict[str, Any] = {key: int(summary.get(key, 0)) for key in COUNT_KEYS}
    for key in ("startTime", "completionTime", "outcome", "dryRun"):
        if summary.get(key) is not None:
            message[key] = summary[key]
    error = summary.get("error")
    if error:
        message["error"] = str(error)[:2000]
    text = json.dumps(message, separators=(",", ":"))
    if len(text.encode()) > _TERMINATION_LIMIT:  # pragma: no cover - error is capped above
        message.pop("error", None)
        text = json.dumps(message, separators=(",", ":"))
    return text


def termination_log_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """$UNSUBSCRIBE_SYNC_TERMINATION_LOG when set, else /dev/termination-log when it exists and is writable."""
    env = os.environ if environ is None else environ
    override = env.get(TERMINATION_LOG_ENV)
    if override:
        return Path(override)
    if DEFAULT_TERMINATION_LOG.exists() and os.access(DEFAULT_TERMINATION_LOG, os.W_OK):
        return DEFAULT_TERMINATION_LOG
    return None


def write_termination_log(summary: Mapping[str, Any], path: Path | None) -> bool:
    """Write the termination message; False (never an exception) when it cannot be written."""
    if path is None:
        return False
    try:
        path.write_text(termination_message(summary))
    except OSError:
        return False
    return True

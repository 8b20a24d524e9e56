"""The Salesforce poll's pure rules: the incremental query, the watermark arithmetic, the pause rule.

The poll reads records whose opt-out field is true and whose ``SystemModstamp`` is at or after a watermark.
``SystemModstamp`` is set when a change is made, not when it commits, so a change can become visible with a
stamp before the latest one already read: each poll reads back ``lookback`` seconds before the stored
watermark, and re-seen rows are harmless (the ledger's add is idempotent).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from unsubscribe_sync.salesforce.client import opted_out_soql
from unsubscribe_sync.salesforce.types import ApiUsage

FIRST_START_LOOKBACK_SECONDS = 24 * 3600.0  # no nightly ran yet: start a day back
STAMP_FIELD = "SystemModstamp"


def soql_datetime(epoch: float) -> str:
    """A SOQL datetime literal (UTC, milliseconds) for ``epoch``; rounded down so no change is skipped."""
    moment = dt.datetime.fromtimestamp(int(epoch * 1000) / 1000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_stamp(value: Any) -> float | None:
    """A Salesforce datetime (``2026-12-03T19:00:00.000+0000`` or ``...Z``) as epoch seconds; None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":  # +0000 -> +00:00
        text = text[:-2] + ":" + text[-2:]
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def poll_soql(object_name: str, field: str, since: float) -> str:
    """The records of ``object_name`` opted out by ``field`` and changed at or after ``since``, oldest first."""
    base = opted_out_soql(object_name, field).replace("SELECT Id, Email ", f"SELECT Id, Email, {field}, {STAMP_FIELD} ")
    return f"{base} AND {STAMP_FIELD} >= {soql_datetime(since)} ORDER BY {STAMP_FIELD}"


def read_from(watermark: float, lookback_seconds: float) -> float:
    """Where a poll starts reading: the stored watermark less the lookback margin."""
    return watermark - max(0.0, lookback_seconds)


def first_watermark(last_nightly_started_at: float | None, now: float) -> float:
    """The watermark of an object never polled: the start of the last successful nightly (which read every
    opt-out then), else a day back."""
    if last_nightly_started_at is not None:
        return min(last_nightly_started_at, now)
    return now - FIRST_START_LOOKBACK_SECONDS


def next_watermark(current: float, rows: Iterable[Mapping[str, Any]]) -> float:
    """The watermark after committing ``rows``: the latest ``SystemModstamp`` read, never moving back."""
    latest = current
    for row in rows:
        stamp = parse_stamp(row.get(STAMP_FIELD))
        if stamp is not None and stamp > latest:
            latest = stamp
    return latest


def completed_watermark(current: float, read_started_at: float) -> float:
    """The watermark after a complete read that began at ``read_started_at``: every change stamped before then
    and committed within the lookback is seen by the next read (which starts ``lookback`` earlier). Without this,
    an idle org would re-read the last lookback window before its latest change on every poll."""
    return max(current, read_started_at)


def reserve_reached(usage: ApiUsage | None, reserve_ratio: float) -> bool:
    """True when the daily API requests left are at or below ``salesforce.apiReserveRatio`` of the maximum
    (the rule ``check`` applies): the poll is optional work and leaves the reserve to the push and the nightly."""
    if usage is None or usage.max <= 0:
        return False
    return usage.max - usage.used <= int(usage.max * reserve_ratio)

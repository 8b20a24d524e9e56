"""Injected faults: latency, row locks, outage windows, the API request limit."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Faults:
    latency_ms: float = 0.0
    lock_ids: set[str] = field(default_factory=set)  # UNABLE_TO_LOCK_ROW for every write to these
    lock_ratio: float = 0.0  # ... for this share of writes
    lock_next: int = 0  # ... for the next N writes
    unavailable_until: float | None = None  # time.monotonic() deadline; math.inf while on until turned off
    request_limit_exceeded: bool = False
    bulk_fail_next: int = 0  # the next N Bulk API 2.0 jobs end in state Failed

    def draw_lock(self, id18: str, rng: random.Random) -> bool:
        """Whether this record write meets UNABLE_TO_LOCK_ROW (consumes one of `lock_next`)."""
        if id18 in self.lock_ids:
            return True
        if self.lock_next > 0:
            self.lock_next -= 1
            return True
        return self.lock_ratio > 0 and rng.random() < self.lock_ratio

    def unavailable(self) -> bool:
        if self.unavailable_until is None:
            return False
        if time.monotonic() >= self.unavailable_until:
            self.unavailable_until = None
            return False
        return True

    def as_dict(self) -> dict[str, Any]:
        remaining: float | None = None
        if self.unavailable_until is not None:
            left = self.unavailable_until - time.monotonic()
            remaining = None if math.isinf(left) else max(0.0, left)
        return {
            "latencyMs": self.latency_ms,
            "lockIds": sorted(self.lock_ids),
            "lockRatio": self.lock_ratio,
            "lockNext": self.lock_next,
            "unavailable": self.unavailable_until is not None and time.monotonic() < self.unavailable_until,
            "unavailableSecondsLeft": remaining,
            "requestLimitExceeded": self.request_limit_exceeded,
            "bulkFailNext": self.bulk_fail_next,
        }

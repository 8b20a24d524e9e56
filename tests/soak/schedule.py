"""Soak profiles and the fault schedule they expand to (pure: no I/O, unit-tested).

A profile says how much traffic to send and which faults to inject when; ``build_schedule``
turns it into a time-ordered list of fault windows that the runner replays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class FaultKind(StrEnum):
    SANDBOX_OUTAGE = "sandbox 503 window"
    LOCK_ROW = "per-record UNABLE_TO_LOCK_ROW"
    SESSION_EXPIRY = "session expiry (tokens revoked)"
    RATE_LIMIT = "REQUEST_LIMIT_EXCEEDED window"
    WORKER_KILL = "worker SIGKILL + restart"
    POSTGRES_RESTART = "PostgreSQL crash restart"
    LONG_LOCK = "records locked past worker.maxAttempts"
    OUT_OF_ORDER = "out-of-order acts (occurredAt older than the stored act)"
    REPLICA_RACE = "resubscribes and unsubscribes of the same addresses on both replicas at once"
    HOSTILE = "hostile requests (lone surrogate, NUL) beside valid ones"


# Acts on addresses the steady traffic never touches (tests/soak/contention.py sends them).
CONTENTION_KINDS = frozenset({FaultKind.LONG_LOCK, FaultKind.OUT_OF_ORDER, FaultKind.REPLICA_RACE, FaultKind.HOSTILE})


# Faults during which Salesforce cannot take writes: lag is measured against their end (recovery time).
OUTAGE_KINDS = frozenset({FaultKind.SANDBOX_OUTAGE, FaultKind.RATE_LIMIT})


@dataclass(frozen=True, slots=True)
class FaultWindow:
    kind: FaultKind
    start: float  # seconds after the traffic starts
    duration: float = 0.0  # 0: an instant fault
    target: int | None = None  # worker index for WORKER_KILL

    @property
    def end(self) -> float:
        return self.start + self.duration


@dataclass(frozen=True, slots=True)
class SoakProfile:
    name: str
    events: int  # unsubscribes sent at most
    traffic_seconds: float  # the traffic phase lasts at most this long
    rate_per_second: float  # requests per second (each holds 1..batch_max unsubscribes)
    batch_max: int
    outages: tuple[tuple[float, float], ...]  # (start, duration) of sandbox 503 windows
    rate_limits: tuple[tuple[float, float], ...]  # (start, duration) of REQUEST_LIMIT_EXCEEDED windows
    lock_rows: tuple[tuple[float, float], ...]  # (start, duration) of per-record UNABLE_TO_LOCK_ROW windows
    lock_row_ratio: float  # share of records that meet the lock during a lock window
    session_expiries: tuple[float, ...]
    kill_every: float  # seconds between worker kills (0: none)
    kill_first_at: float
    restart_after: float  # seconds a killed worker stays down
    postgres_restarts: tuple[float, ...]
    drain_seconds: float  # after traffic: how long everything may take to land in Salesforce
    workers: int = 2
    max_writes_per_record: int = 3
    no_id_share: float = 0.1  # share of unsubscribes sent without a Salesforce ID
    replay_share: float = 0.05  # share of requests replayed with the same event ids
    long_locks: tuple[tuple[float, float], ...] = ()  # (start, duration): records locked past maxAttempts
    out_of_order: tuple[float, ...] = ()
    replica_races: tuple[float, ...] = ()
    hostile_bursts: tuple[float, ...] = ()  # keep them away from PostgreSQL restarts (valid ones must get 202)
    max_attempts: int = 3  # worker.maxAttempts: small, so the long lock outlasts it
    extra: dict[str, str] = field(default_factory=dict)


SHORT = SoakProfile(
    name="short",
    events=1200,
    traffic_seconds=24.0,
    rate_per_second=25.0,
    batch_max=4,
    outages=((3.0, 3.0),),
    rate_limits=((12.0, 4.0),),
    lock_rows=((6.0, 8.0),),
    lock_row_ratio=0.3,
    session_expiries=(8.0, 17.0),
    kill_every=4.0,
    kill_first_at=2.0,
    restart_after=1.0,
    postgres_restarts=(19.0,),
    drain_seconds=45.0,
    long_locks=((5.0, 10.0),),
    out_of_order=(3.5, 13.0),
    replica_races=(7.5, 16.5),
    hostile_bursts=(4.5, 8.5, 12.5),
)

LONG = SoakProfile(
    name="long",
    events=16000,
    traffic_seconds=180.0,
    rate_per_second=30.0,
    batch_max=5,
    outages=((10.0, 8.0), (120.0, 15.0)),
    rate_limits=((40.0, 60.0),),
    lock_rows=((20.0, 30.0), (140.0, 20.0)),
    lock_row_ratio=0.25,
    session_expiries=(15.0, 55.0, 105.0, 150.0),
    kill_every=5.0,
    kill_first_at=3.0,
    restart_after=1.5,
    postgres_restarts=(70.0, 160.0),
    drain_seconds=120.0,
    long_locks=((25.0, 20.0), (100.0, 30.0)),
    out_of_order=(12.0, 48.0, 110.0, 150.0),
    replica_races=(22.0, 58.0, 92.0, 130.0, 168.0),
    hostile_bursts=(30.0, 64.0, 88.0, 125.0, 145.0),
)

PROFILES = {p.name: p for p in (SHORT, LONG)}


def build_schedule(profile: SoakProfile) -> list[FaultWindow]:
    """Every fault of the profile inside the traffic phase, ordered by start time.

    Worker kills alternate between the workers so that one always serves; a kill is not
    scheduled when its restart would fall after the traffic phase (the end state must have
    every worker running).
    """
    windows: list[FaultWindow] = []
    windows += [FaultWindow(FaultKind.SANDBOX_OUTAGE, s, d) for s, d in profile.outages]
    windows += [FaultWindow(FaultKind.RATE_LIMIT, s, d) for s, d in profile.rate_limits]
    windows += [FaultWindow(FaultKind.LOCK_ROW, s, d) for s, d in profile.lock_rows]
    windows += [FaultWindow(FaultKind.SESSION_EXPIRY, s) for s in profile.session_expiries]
    windows += [FaultWindow(FaultKind.POSTGRES_RESTART, s) for s in profile.postgres_restarts]
    windows += [FaultWindow(FaultKind.LONG_LOCK, s, d) for s, d in profile.long_locks]
    windows += [FaultWindow(FaultKind.OUT_OF_ORDER, s) for s in profile.out_of_order]
    windows += [FaultWindow(FaultKind.REPLICA_RACE, s) for s in profile.replica_races]
    windows += [FaultWindow(FaultKind.HOSTILE, s) for s in profile.hostile_bursts]
    if profile.kill_every > 0 and profile.workers > 0:
        at, n = profile.kill_first_at, 0
        while at + profile.restart_after < profile.traffic_seconds:
            windows.append(FaultWindow(FaultKind.WORKER_KILL, at, profile.restart_after, target=n % profile.workers))
            at += profile.kill_every
            n += 1
    windows = [w for w in windows if w.start < profile.traffic_seconds]
    return sorted(windows, key=lambda w: (w.start, w.kind.value))


def outage_end(schedule: list[FaultWindow]) -> float | None:
    """When the last window in which Salesforce refuses writes ends (None: there was none)."""
    ends = [w.end for w in schedule if w.kind in OUTAGE_KINDS]
    return max(ends) if ends else None


def faults_by_kind(schedule: list[FaultWindow]) -> dict[str, int]:
    counts: dict[str, int] = {k.value: 0 for k in FaultKind}
    for w in schedule:
        counts[w.kind.value] += 1
    return counts

"""Acts on addresses the steady traffic never touches, fired at the fault schedule's contention windows.

* a long lock: records locked (UNABLE_TO_LOCK_ROW on every write) for longer than ``worker.maxAttempts``
  attempts, unsubscribed as the lock starts: they must end written, never failed;
* out-of-order acts: a resubscribe stamped before the unsubscribe already stored (changes nothing), an
  unsubscribe stamped before a resubscribe already stored (changes nothing), an unsubscribe stamped before a
  resubscribe that arrived first;
* a replica race: resubscribes to one worker and unsubscribes to the other of the SAME addresses at once
  (one batch each, in opposite address order);
* hostile requests: a lone surrogate in an email, a NUL in a source, a hostile item next to a valid one in a
  batch; each must get 400 while valid requests sent to the same worker at the same moment get 202.

The expected end state of every address is computed from the acts this module sent (latest ``occurredAt``
wins; no two acts of an address share a stamp), never read from the ledger. ``problems`` compares it with
the ledger and with Salesforce.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.soak.traffic import Target

# Where the acts' occurredAt stamps start: an hour ago, so every stamp is in the past.
_BASE = time.time() - 3600.0

LOCKED_PER_WINDOW = 4
OUT_OF_ORDER_EACH = 5  # addresses per out-of-order shape, per window
RACE_ADDRESSES = 8  # per window
RACE_ROUNDS = 3
VALID_PER_BURST = 10


def stamp(offset: float) -> str:
    return dt.datetime.fromtimestamp(_BASE + offset, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Act:
    kind: str  # "unsubscribe" | "resubscribe"
    target: Target
    occurred: float  # offset from _BASE (ordering key)
    event_id: str

    def item(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "email": self.target.email,
            "salesforceId": self.target.salesforce_id,
            "occurredAt": stamp(self.occurred),
            "eventId": self.event_id,
        }
        if self.kind == "unsubscribe":
            body["source"] = "soak-contention"
        else:
            body["requestedBy"] = "soak"
            body["reason"] = "soak: resubscribe"
        return body


@dataclass
class ContentionReport:
    acts: list[Act] = field(default_factory=list)  # every act whose request got 202
    unaccepted: list[str] = field(default_factory=list)  # acts/bodies never accepted
    locked: list[Target] = field(default_factory=list)
    hostile_statuses: Counter[str] = field(default_factory=Counter)
    hostile_wrong: list[str] = field(default_factory=list)  # hostile requests not answered 400
    valid_statuses: Counter[str] = field(default_factory=Counter)  # every answer to a burst's valid requests
    valid_emails: list[str] = field(default_factory=list)  # burst unsubscribes accepted
    canaries: list[str] = field(default_factory=list)  # valid items sent inside a hostile batch (must not be stored)
    shapes: Counter[str] = field(default_factory=Counter)

    def expected(self) -> dict[str, tuple[Target, bool]]:
        """Final state per address from the accepted acts: the latest occurredAt wins."""
        latest: dict[str, Act] = {}
        for act in self.acts:
            best = latest.get(act.target.email)
            if best is None or act.occurred > best.occurred:
                latest[act.target.email] = act
        return {e: (a.target, a.kind == "unsubscribe") for e, a in latest.items()}


class Contention:
    def __init__(self, worker_urls: Sequence[str], token: str, targets: Sequence[Target], seed: int = 7) -> None:
        self.urls = list(worker_urls)
        self.token = token
        self.pool = iter(targets)
        self.random = random.Random(seed)
        self.serial = itertools.count()
        self.clock = itertools.count(1)  # occurredAt offsets: strictly increasing, distinct per act
        self.report = ContentionReport()
        self.session: aiohttp.ClientSession | None = None

    def take(self, n: int) -> list[Target]:
        out = list(itertools.islice(self.pool, n))
        if len(out) < n:
            raise RuntimeError("the soak reserved too few records for the contention acts")
        return out

    def act(self, kind: str, target: Target, occurred: float | None = None) -> Act:
        at = float(next(self.clock) * 10) if occurred is None else occurred
        return Act(kind, target, at, f"contention-{next(self.serial)}")

    async def __aenter__(self) -> Contention:
        connector = aiohttp.TCPConnector(force_close=True, limit=64)
        timeout = aiohttp.ClientTimeout(total=20, sock_connect=2)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()

    async def post(self, path: str, body: Any, worker: int, statuses: Counter[str] | None = None) -> int | None:
        """POST with retries on connection errors and 5xx (on the other worker), like a sender that retries until
        accepted (the same event ids: a retry of a request that was stored is a replay); the final status or None
        after a minute (a PostgreSQL restart takes seconds)."""
        assert self.session is not None
        headers = {"Authorization": f"Bearer {self.token}"}
        index = worker
        deadline = time.monotonic() + 60.0
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            try:
                async with self.session.post(self.urls[index] + path, json=body, headers=headers) as resp:
                    await resp.read()
                    if statuses is not None:
                        statuses[str(resp.status)] += 1
                    if resp.status < 500:
                        return resp.status
            except (TimeoutError, aiohttp.ClientError):
                if statuses is not None:
                    statuses["connection error"] += 1
            index = (index + 1) % len(self.urls)
            await asyncio.sleep(0.1 if attempt % 2 == 0 else 0.5)
        return None

    async def send(self, acts: Sequence[Act], worker: int) -> bool:
        """One request holding acts of one kind; recorded as accepted on 202."""
        kind = acts[0].kind
        key = "unsubscribes" if kind == "unsubscribe" else "resubscribes"
        status = await self.post(f"/v1/{key}", {key: [a.item() for a in acts]}, worker)
        if status == 202:
            self.report.acts.extend(acts)
            return True
        self.report.unaccepted.append(f"{kind} of {[a.target.email for a in acts][:3]}: {status}")
        return False

    # ---- the scenarios -------------------------------------------------------------------------------

    async def long_lock_start(self, targets: list[Target]) -> None:
        self.report.locked.extend(targets)
        self.report.shapes["locked past maxAttempts"] += len(targets)
        await self.send([self.act("unsubscribe", t) for t in targets], 0)

    async def out_of_order(self) -> None:
        older_resub, older_unsub, unsub_after_resub = (self.take(OUT_OF_ORDER_EACH) for _ in range(3))

        async def one(shape: str, target: Target, worker: int) -> None:
            self.report.shapes[shape] += 1
            t1, t2, t3 = (float(next(self.clock) * 10) for _ in range(3))
            if shape == "resubscribe older than the stored unsubscribe":
                sequence = [self.act("unsubscribe", target, t2), self.act("resubscribe", target, t1)]
            elif shape == "unsubscribe older than the stored resubscribe":
                sequence = [self.act("unsubscribe", target, t1), self.act("resubscribe", target, t3),
                            self.act("unsubscribe", target, t2)]  # fmt: skip
            else:  # the resubscribe arrives first, the older unsubscribe after it
                sequence = [self.act("resubscribe", target, t2), self.act("unsubscribe", target, t1)]
            for a in sequence:
                if not await self.send([a], worker):
                    return
                worker = 1 - worker

        shapes = (
            ("resubscribe older than the stored unsubscribe", older_resub),
            ("unsubscribe older than the stored resubscribe", older_unsub),
            ("older unsubscribe after a resubscribe that arrived first", unsub_after_resub),
        )
        await asyncio.gather(*(one(name, t, n % len(self.urls)) for name, group in shapes for n, t in enumerate(group)))

    async def race(self) -> None:
        targets = self.take(RACE_ADDRESSES)
        self.report.shapes["raced on two replicas"] += len(targets)
        if not await self.send([self.act("unsubscribe", t) for t in targets], 0):
            return
        for _ in range(RACE_ROUNDS):
            resubs, unsubs = [], []
            for t in targets:
                a, b = float(next(self.clock) * 10), float(next(self.clock) * 10)
                if self.random.random() < 0.5:
                    a, b = b, a
                resubs.append(self.act("resubscribe", t, a))
                unsubs.append(self.act("unsubscribe", t, b))
            unsubs.reverse()  # the other replica takes the same addresses in the opposite order
            await asyncio.gather(self.send(resubs, 0), self.send(unsubs, 1 % len(self.urls)))

    async def hostile(self) -> None:
        n = next(self.serial)
        worker = n % len(self.urls)
        canary = f"hostile-canary-{n}@soak.example.com"
        self.report.canaries.append(canary)
        bad = [
            ("lone surrogate in email", {"email": f"jane\ud800-{n}@soak.example.com", "source": "soak"}),
            ("NUL in source", {"email": f"nul-{n}@soak.example.com", "source": "so\x00ak"}),
            ("hostile item next to a valid one",
             {"unsubscribes": [{"email": canary, "source": "soak"},
                               {"email": f"bad-{n}@soak.example.com", "source": "x\x00"}]}),
        ]  # fmt: skip
        valid = [f"burst-{n}-{k}@soak.example.com" for k in range(VALID_PER_BURST)]

        async def hostile_one(name: str, body: Any) -> None:
            status = await self.post("/v1/unsubscribes", body, worker, self.report.hostile_statuses)
            if status != 400:
                self.report.hostile_wrong.append(f"{name}: {status}")

        async def valid_one(email: str) -> None:
            body = {"email": email, "source": "soak", "eventId": f"burst-{email}"}
            status = await self.post("/v1/unsubscribes", body, worker, self.report.valid_statuses)
            if status == 202:
                self.report.valid_emails.append(email)
            else:
                self.report.unaccepted.append(f"burst unsubscribe {email}: {status}")

        await asyncio.gather(*(hostile_one(k, b) for k, b in bad), *(valid_one(e) for e in valid))


def problems(
    report: ContentionReport,
    ledger: dict[str, bool],
    opted: set[str],
    targets: Sequence[Target],
    histories: dict[str, dict[str, Any] | None],
    failed_targets: set[str],
) -> list[str]:
    """Broken invariants of the contention acts and of the whole run's end state.

    ``ledger``: email -> unsubscribed for every ledger row; ``opted``: ids true in Salesforce; ``histories``:
    GET answers for the locked addresses; ``failed_targets``: ids whose ledger target status is failed.
    """
    out: list[str] = []
    if report.unaccepted:
        out.append(f"{len(report.unaccepted)} contention requests never accepted: {report.unaccepted[:5]}")
    if report.hostile_wrong:
        out.append(f"hostile requests not answered 400: {report.hostile_wrong[:5]}")
    if report.valid_statuses.get("503"):
        out.append(f"valid requests sent with hostile ones got 503: {dict(report.valid_statuses)}")
    stored = [e for e in [*report.canaries] if e in ledger]
    if stored:
        out.append(f"valid items of a refused (400) batch were stored: {stored[:5]}")
    missing = [e for e in report.valid_emails if ledger.get(e) is not True]
    if missing:
        out.append(f"{len(missing)} accepted burst unsubscribes are not unsubscribed in the ledger: {missing[:5]}")
    # The acts' own expectation, against the ledger and against Salesforce.
    for email, (target, want) in sorted(report.expected().items()):
        in_ledger = ledger.get(email)
        in_sf = target.salesforce_id in opted
        if in_ledger is not want or in_sf is not want:
            out.append(f"{email}: the acts say unsubscribed={want}, the ledger {in_ledger}, Salesforce {in_sf}")
    # Salesforce agrees with the ledger for every record; a record of no ledger address stays opted in.
    disagree = []
    for t in targets:
        state = ledger.get(t.email)
        if (state is True) is not (t.salesforce_id in opted):
            disagree.append(f"{t.email} ({t.salesforce_id}): ledger {state}, Salesforce {t.salesforce_id in opted}")
    if disagree:
        out.append(f"{len(disagree)} records where Salesforce and the ledger disagree, e.g. {disagree[:5]}")
    for t in report.locked:
        if t.salesforce_id in failed_targets:
            out.append(f"{t.salesforce_id}: locked past maxAttempts and marked failed")
    stuck = 0
    for t in report.locked:
        answer = histories.get(t.email) or {}
        actions = {h.get("action") for h in answer.get("history") or []}
        stuck += "push_stuck" in actions
        if "push_failed" in actions:
            out.append(f"{t.email}: locked past maxAttempts and its history says push_failed")
    if report.locked and not stuck:
        out.append("no locked record was reported stuck: the lock did not outlast maxAttempts")
    return out


def figures(report: ContentionReport, histories: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    stuck = sum(
        1
        for t in report.locked
        if "push_stuck" in {h.get("action") for h in (histories.get(t.email) or {}).get("history") or []}
    )
    return {
        "addresses_by_shape": dict(report.shapes),
        "acts_accepted": len(report.acts),
        "acts_or_bodies_not_accepted": len(report.unaccepted),
        "locked_records": len(report.locked),
        "locked_records_reported_stuck": stuck,
        "hostile_answers": dict(sorted(report.hostile_statuses.items())),
        "valid_answers_beside_hostile": dict(sorted(report.valid_statuses.items())),
        "expected_unsubscribed": sum(1 for _, w in report.expected().values() if w),
        "expected_resubscribed": sum(1 for _, w in report.expected().values() if not w),
    }

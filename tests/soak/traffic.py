"""A bounded webhook traffic generator (loopback only): steady batches of unsubscribes into the workers.

It behaves like a sender behind a load balancer: requests go round-robin to the workers; a request
that meets a dead worker (connection refused/reset, timeout, 5xx) is retried with the SAME body
and event ids on the next worker, a few rounds at most. Only a 202 counts as accepted: the
invariant under test is "every accepted unsubscribe lands in Salesforce".
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


@dataclass(frozen=True, slots=True)
class Target:
    """A record the traffic may unsubscribe: its 18-character id, object and email."""

    salesforce_id: str
    object: str
    email: str


@dataclass(slots=True)
class SentItem:
    email: str
    salesforce_id: str | None
    event_id: str
    accepted_at: float | None = None  # wall-clock time of the first 202 (comparable with other processes)


@dataclass
class TrafficReport:
    requests: int = 0  # HTTP requests made, retries included
    batches: int = 0  # distinct request bodies (first sends and replays)
    replays: int = 0  # bodies re-sent on purpose with the same event ids
    retries: int = 0  # re-sends after a failed attempt
    statuses: Counter[str] = field(default_factory=Counter)  # "202", "503", "connection error", ...
    items: dict[str, SentItem] = field(default_factory=dict)  # by email
    given_up: int = 0  # bodies never accepted after every retry
    started: float = 0.0  # wall-clock
    finished: float = 0.0  # wall-clock, when the last answer came

    @property
    def unsubscribes_sent(self) -> int:
        return len(self.items)

    @property
    def accepted(self) -> list[SentItem]:
        return [i for i in self.items.values() if i.accepted_at is not None]


def rfc3339_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


class TrafficGenerator:
    def __init__(
        self,
        worker_urls: Sequence[str],
        token: str,
        targets: Sequence[Target],
        *,
        events: int,
        seconds: float,
        rate_per_second: float,
        batch_max: int,
        no_id_share: float,
        replay_share: float,
        seed: int = 1,
        retry_rounds: int = 6,
    ) -> None:
        self.urls = list(worker_urls)
        self.token = token
        self.targets = list(targets)
        self.events = events
        self.seconds = seconds
        self.interval = 1.0 / rate_per_second
        self.batch_max = batch_max
        self.no_id_share = no_id_share
        self.replay_share = replay_share
        self.random = random.Random(seed)
        self.retry_rounds = retry_rounds
        self.report = TrafficReport()
        self._rr = itertools.cycle(range(len(self.urls)))
        self._down_until = [0.0] * len(self.urls)
        self._bodies: list[list[dict[str, Any]]] = []

    def _next_batch(self, serial: itertools.count[int], target_iter: Any) -> list[dict[str, Any]]:
        size = self.random.randint(1, self.batch_max)
        batch: list[dict[str, Any]] = []
        for _ in range(size):
            if len(self.report.items) + len(batch) >= self.events:
                break
            without_id = self.random.random() < self.no_id_share
            target = None if without_id else next(target_iter, None)
            if target is None and not without_id:  # every record has been used once: stop
                break
            n = next(serial)
            item: dict[str, Any] = {"eventId": f"soak-{n}", "source": "soak", "occurredAt": rfc3339_now()}
            if target is None:
                item["email"] = f"no-id-{n}@soak.example.com"
            else:
                item["email"] = target.email
                item["salesforceId"] = target.salesforce_id
            batch.append(item)
        return batch

    def _pick(self, avoid: int | None) -> int:
        """The next worker in turn that is not known to be down (like a load balancer's health checks)."""
        now = time.monotonic()
        for _ in range(len(self.urls)):
            index = next(self._rr)
            if index != avoid and self._down_until[index] <= now:
                return index
        return next(self._rr) if avoid is None else (avoid + 1) % len(self.urls)

    async def _send(self, session: aiohttp.ClientSession, body: list[dict[str, Any]]) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        last: int | None = None
        for attempt in range(self.retry_rounds * len(self.urls)):
            last = self._pick(last)
            url = self.urls[last] + "/v1/unsubscribes"
            self.report.requests += 1
            if attempt:
                self.report.retries += 1
            try:
                async with session.post(url, json={"unsubscribes": body}, headers=headers) as resp:
                    await resp.read()
                    self.report.statuses[str(resp.status)] += 1
                    if resp.status == 202:
                        now = time.time()
                        for item in body:
                            sent = self.report.items[item["email"]]
                            if sent.accepted_at is None:
                                sent.accepted_at = now
                        return
                    if resp.status < 500:  # a 4xx will not get better by retrying: a bug, counted
                        return
            except TimeoutError:
                self.report.statuses["timeout"] += 1
            except aiohttp.ClientConnectorError:
                self.report.statuses["connection refused"] += 1
                self._down_until[last] = time.monotonic() + 0.5
            except aiohttp.ClientError:
                self.report.statuses["connection lost"] += 1
            await asyncio.sleep(0.05 if (attempt + 1) % len(self.urls) else 0.5)
        self.report.given_up += 1

    async def run(self) -> TrafficReport:
        """Send until ``events`` unsubscribes have gone out or ``seconds`` have passed; wait for the last ones."""
        serial = itertools.count()
        target_iter = iter(self.targets)
        timeout = aiohttp.ClientTimeout(total=10, sock_connect=2)
        pending: set[asyncio.Task[None]] = set()
        self.report.started = time.time()
        next_at = time.monotonic()
        deadline = next_at + self.seconds
        # A new connection per request, like a sender behind a load balancer: no pooled connection to a dead worker.
        connector = aiohttp.TCPConnector(force_close=True, limit=64)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            while time.monotonic() < deadline:
                if self._bodies and self.random.random() < self.replay_share:
                    body = self.random.choice(self._bodies)
                    self.report.replays += 1
                else:
                    body = self._next_batch(serial, target_iter)
                    if not body:
                        break
                    for item in body:
                        self.report.items[item["email"]] = SentItem(
                            item["email"], item.get("salesforceId"), item["eventId"]
                        )
                    self._bodies.append(body)
                self.report.batches += 1
                task = asyncio.create_task(self._send(session, body))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            if pending:
                await asyncio.gather(*pending)
        self.report.finished = time.time()
        return self.report

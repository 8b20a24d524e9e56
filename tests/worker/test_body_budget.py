"""Bounded body memory: a budget on request-body bytes in flight across the worker.

The budget alone (pure asyncio), then a running worker app: a request that finds no room within the wait gets
503 with Retry-After and nothing is stored; many concurrent large bodies all end 202 (stored) or 503 (nothing
stored), and the bytes in flight never exceed the budget.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.fixtures.worker import AUTH, make_config
from unsubscribe_sync.api.config import parse_config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.worker import app as worker_app
from unsubscribe_sync.worker.app import body_budget_of, create_app
from unsubscribe_sync.worker.body_budget import BodyBudget, BudgetExhausted

MiB = 1024 * 1024

# ---- the budget ----------------------------------------------------------------------------------------


async def test_a_reservation_that_fits_is_granted_at_once_and_counted() -> None:
    seen: list[int] = []
    budget = BodyBudget(100, on_change=seen.append)
    first = await budget.reserve(60, timeout=0)
    second = await budget.reserve(40, timeout=0)
    assert budget.in_flight == 100 and budget.high_water == 100
    first.release()
    first.release()  # idempotent
    second.release()
    assert budget.in_flight == 0 and budget.high_water == 100
    assert seen == [0, 60, 100, 40, 0]


async def test_a_reservation_that_does_not_fit_waits_for_a_release() -> None:
    budget = BodyBudget(100)
    held = await budget.reserve(80, timeout=0)
    waiting = asyncio.ensure_future(budget.reserve(50, timeout=10))
    await asyncio.sleep(0)
    assert not waiting.done() and budget.waiting == 1
    held.release()
    granted = await waiting
    assert granted.size == 50 and budget.in_flight == 50


async def test_waiters_are_served_in_arrival_order_so_a_large_body_is_not_starved() -> None:
    budget = BodyBudget(100)
    held = await budget.reserve(60, timeout=0)
    order: list[str] = []

    async def want(name: str, size: int) -> None:
        reservation = await budget.reserve(size, timeout=10)
        order.append(name)
        await asyncio.sleep(0)
        reservation.release()

    large = asyncio.ensure_future(want("large", 90))
    await asyncio.sleep(0)
    small = asyncio.ensure_future(want("small", 10))  # would fit now, but arrived after the large one
    await asyncio.sleep(0)
    assert order == []
    held.release()
    await asyncio.gather(large, small)
    assert order == ["large", "small"]


async def test_a_wait_that_times_out_is_refused_and_holds_nothing() -> None:
    budget = BodyBudget(100)
    held = await budget.reserve(100, timeout=0)
    with pytest.raises(BudgetExhausted):
        await budget.reserve(1, timeout=0.01)
    assert budget.waiting == 0 and budget.in_flight == 100
    held.release()
    assert budget.in_flight == 0


async def test_a_cancelled_waiter_at_the_head_lets_the_next_one_in() -> None:
    budget = BodyBudget(100)
    held = await budget.reserve(50, timeout=0)
    large = asyncio.ensure_future(budget.reserve(100, timeout=10))
    await asyncio.sleep(0)
    small = asyncio.ensure_future(budget.reserve(50, timeout=10))
    await asyncio.sleep(0)
    large.cancel()
    assert (await small).size == 50
    with pytest.raises(asyncio.CancelledError):
        await large
    assert budget.in_flight == 100 and budget.waiting == 0
    held.release()


async def test_more_than_the_whole_budget_waits_for_the_whole_budget() -> None:
    budget = BodyBudget(100)
    reservation = await budget.reserve(500, timeout=0)
    assert reservation.size == 100 and budget.in_flight == 100


async def test_a_task_bound_reservation_is_released_when_the_task_ends_however_it_ends() -> None:
    budget = BodyBudget(100)
    release = asyncio.Event()

    async def handler(fail: bool) -> None:
        reservation = await budget.reserve_for_current_task(40, timeout=1)
        reservation.shrink(30)
        await release.wait()
        if fail:
            raise RuntimeError("handler failed")

    answered, failed, cancelled = (asyncio.ensure_future(handler(f)) for f in (False, True, False))
    await asyncio.sleep(0.01)
    assert budget.in_flight == 90
    cancelled.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert budget.in_flight == 60
    release.set()
    await answered
    with pytest.raises(RuntimeError):
        await failed
    await asyncio.sleep(0)  # done callbacks run on the loop's next turn
    assert budget.in_flight == 0 and budget.high_water == 100


# ---- a running worker ---------------------------------------------------------------------------------


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.close()


async def _client(tmp_path: Path, ledger: Ledger, budget: int) -> TestClient[Any, Any]:
    raw = make_config(tmp_path).model_dump(mode="json", exclude_none=True)
    raw["worker"]["maxBodyBytesInFlight"] = budget
    app = create_app(parse_config(raw), ledger=ledger, push=False)
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


def _large_body(prefix: str, items: int = 20, size: int = MiB - 1024) -> bytes:
    """``items`` unsubscribes padded with JSON whitespace to about ``size`` bytes."""
    body = json.dumps({"unsubscribes": [{"email": f"{prefix}-{i}@example.com"} for i in range(items)]}).encode()
    return body + b" " * (size - len(body))


def _gauge(exposition: str, name: str) -> float:
    return next(float(line.split()[1]) for line in exposition.splitlines() if line.split(" ")[0] == name)


def _stored(ledger: Ledger, email: str) -> bool:
    found = ledger.lookup(email)
    return found is not None and found["unsubscribed"] is True


async def test_a_request_that_finds_no_budget_in_time_gets_503_with_retry_after(
    tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_app, "BODY_BUDGET_WAIT_SECONDS", 0.2)
    client = await _client(tmp_path, ledger, budget=MiB)
    budget = body_budget_of(client.app)
    assert budget is not None and budget.limit == MiB
    try:
        stalled_body = _large_body("stalled", size=MiB)  # the whole budget
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(
            b"POST /v1/unsubscribes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: {AUTH['Authorization']}\r\nContent-Length: {len(stalled_body)}\r\n\r\n".encode()
            + stalled_body[:1000]
        )
        await writer.drain()
        while budget.in_flight == 0:  # the stalled upload holds the whole budget
            await asyncio.sleep(0.01)
        refused = await client.post(
            "/v1/unsubscribes", data=_large_body("refused"), headers={**AUTH, "Content-Type": "application/json"}
        )
        assert refused.status == 503, await refused.text()
        assert refused.headers["Retry-After"].isdigit()
        assert "retry" in (await refused.json())["error"]
        small = await client.post("/v1/unsubscribes", json={"email": "small@example.com"}, headers=AUTH)
        assert small.status == 503, "a small body waits behind the budget too (it has to be read to be judged)"
        writer.write(stalled_body[1000:])
        await writer.drain()
        answer = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        assert answer.startswith(b"HTTP/1.1 202"), answer
        assert _stored(ledger, "stalled-0@example.com") and not _stored(ledger, "refused-0@example.com")
        while budget.in_flight:
            await asyncio.sleep(0.01)
        metrics = await (await client.get("/metrics")).text()
        assert _gauge(metrics, "unsubscribe_sync_http_body_bytes_in_flight") == 0
        assert _gauge(metrics, "unsubscribe_sync_http_body_bytes_limit") == MiB
    finally:
        await client.close()


async def test_many_concurrent_large_bodies_end_stored_or_refused_and_stay_within_budget(
    tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_app, "BODY_BUDGET_WAIT_SECONDS", 0.5)  # some wait long enough, some may not
    limit = 3 * MiB
    client = await _client(tmp_path, ledger, budget=limit)
    budget = body_budget_of(client.app)
    assert budget is not None
    samples: list[int] = []
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            samples.append(budget.in_flight)
            text = await (await client.get("/metrics")).text()
            samples.append(int(_gauge(text, "unsubscribe_sync_http_body_bytes_in_flight")))
            await asyncio.sleep(0.005)

    async def send(n: int) -> tuple[int, str | None]:
        resp = await client.post(
            "/v1/unsubscribes", data=_large_body(f"r{n}"), headers={**AUTH, "Content-Type": "application/json"}
        )
        return resp.status, resp.headers.get("Retry-After")

    try:
        sampler = asyncio.ensure_future(sample())
        results = await asyncio.gather(*(send(n) for n in range(40)))
        done.set()
        await sampler
        statuses = [status for status, _ in results]
        assert set(statuses) <= {202, 503}, statuses
        assert all(retry is not None and retry.isdigit() for status, retry in results if status == 503)
        for n, (status, _) in enumerate(results):
            stored = [_stored(ledger, f"r{n}-{i}@example.com") for i in range(20)]
            assert stored == [status == 202] * 20, f"request {n} ({status}) is stored whole or not at all"
        assert statuses.count(202) >= 1
        assert ledger.table_counts()["unsubscribes"] == 20 * statuses.count(202)
        assert max(samples) <= limit and budget.high_water <= limit
        assert budget.high_water > MiB, "bodies were held in parallel (the budget did not serialise everything)"
        assert budget.in_flight == 0 or await _drained(budget)
    finally:
        await client.close()


async def _drained(budget: BodyBudget) -> bool:
    for _ in range(500):
        if budget.in_flight == 0:
            return True
        await asyncio.sleep(0.01)
    return False


async def test_try_reserve_grants_only_without_waiting_and_never_ahead_of_a_waiter() -> None:
    seen: list[int] = []
    budget = BodyBudget(100, on_change=seen.append)
    held = budget.try_reserve(70)
    assert held is not None and held.size == 70
    assert budget.try_reserve(40) is None  # would have to wait: nothing taken
    waiting = asyncio.ensure_future(budget.reserve(40, timeout=10))
    await asyncio.sleep(0)
    assert budget.try_reserve(10) is None  # fits, but a waiter came first
    held.release()
    assert (await waiting).size == 40
    assert seen == [0, 70, 0, 40]


async def test_a_reservation_for_the_current_task_is_released_when_the_task_ends() -> None:
    budget = BodyBudget(100)

    async def request(wait: bool) -> int:
        if wait:
            reservation = await budget.reserve_for_current_task(30, timeout=1)
        else:
            found = budget.try_reserve_for_current_task(30)
            assert found is not None
            reservation = found
        return reservation.size

    assert await asyncio.gather(asyncio.ensure_future(request(True)), asyncio.ensure_future(request(False))) == [30, 30]
    await asyncio.sleep(0)
    assert budget.in_flight == 0 and budget.high_water == 60

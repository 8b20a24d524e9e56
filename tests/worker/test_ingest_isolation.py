"""Group commit isolation and the bounded ingest queue (issue 11, items 6 and 10).

The group committer stores many requests' items in one transaction; one request whose data the
database refuses must not fail the others, and a full queue refuses new requests at once (503,
nothing stored) instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy.exc
from aiohttp.test_utils import TestClient, TestServer

from unsubscribe_sync.api.config import ConfigError, parse_config
from unsubscribe_sync.ledger import Ledger, Unsubscribe
from unsubscribe_sync.ledger.engine import refused_data as refusal
from unsubscribe_sync.worker.app import create_app
from unsubscribe_sync.worker.ingest import GroupCommitter, IngestRefused, IngestUnavailable, QueueFull

TOKEN = "isolation-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=True)


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.close()


@pytest.fixture
def postgres_ledger(postgres_url: str) -> Iterator[Ledger]:
    led = Ledger.open(postgres_url)
    yield led
    led.close()


class _DriverDataError(Exception):
    """Stands in for a driver's DataError (what SQLAlchemy wraps as sqlalchemy.exc.DataError)."""


@pytest.mark.parametrize(
    ("case", "exc", "expected"),
    [
        (
            "a value the database cannot hold is refused, first line of the driver's message",
            sqlalchemy.exc.DataError("INSERT ...", None, _DriverDataError("value too long for type varchar(200)\nX")),
            "value too long for type varchar(200)",
        ),
        (
            "a character no encoding can carry (lone surrogate) is refused",
            UnicodeEncodeError("utf-8", "a\ud800", 1, 2, "surrogates not allowed"),
            "'utf-8' codec can't encode character '\\ud800' in position 1: surrogates not allowed",
        ),
        (
            "the database being away is not the request's fault",
            sqlalchemy.exc.OperationalError("SELECT 1", None, Exception("server closed the connection")),
            None,
        ),
        (
            "a constraint race is retried by the sender, never refused",
            sqlalchemy.exc.IntegrityError("INSERT ...", None, Exception("duplicate key")),
            None,
        ),
        ("an unknown failure is not blamed on the data", RuntimeError("boom"), None),
        ("a timeout is not blamed on the data", TimeoutError(), None),
    ],
)
def test_refusal_names_only_data_the_database_refused(case: str, exc: BaseException, expected: str | None) -> None:
    assert refusal(exc) == expected, case


def test_refusal_never_echoes_the_statement_or_parameters() -> None:
    params = {"x": "jane@example.com"}
    exc = sqlalchemy.exc.DataError("INSERT INTO history VALUES (%(x)s)", params, _DriverDataError("bad"))
    problem = refusal(exc)
    assert problem == "bad" and "INSERT" not in problem and "jane" not in problem


async def _submit_together(committer: GroupCommitter, requests: list[list[Unsubscribe]]) -> list[Any]:
    """Submit every request before the committer runs, so they all go in one group commit."""
    tasks = [asyncio.create_task(committer.submit(items)) for items in requests]
    await asyncio.sleep(0)  # each task has queued its items
    committer.start()
    try:
        return await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await committer.stop()


def _requests(bad: Unsubscribe) -> list[list[Unsubscribe]]:
    good = [[Unsubscribe(email=f"good{i}-{j}@example.com") for j in range(3)] for i in range(4)]
    return [good[0], good[1], [Unsubscribe(email="neighbour@example.com"), bad], good[2], good[3]]


async def _assert_only_the_bad_request_failed(ledger: Ledger, executor: ThreadPoolExecutor, bad: Unsubscribe) -> None:
    requests = _requests(bad)
    results = await _submit_together(GroupCommitter(ledger, executor), requests)
    assert isinstance(results[2], IngestRefused) and results[2].problem
    assert [r for i, r in enumerate(results) if i != 2] == [None] * 4
    for i, items in enumerate(requests):
        for item in items:
            found = ledger.lookup(item.email)
            if i == 2:
                assert found is None  # the refused request's items all stay out, its good one included
            else:
                assert found is not None and found["unsubscribed"] is True


async def test_sqlite_group_commit_with_one_refused_request_stores_the_others(
    sqlite_ledger: Ledger, executor: ThreadPoolExecutor
) -> None:
    bad = Unsubscribe(email="bad@example.com", source="sequence\ud800")
    await _assert_only_the_bad_request_failed(sqlite_ledger, executor, bad)


@pytest.mark.postgres
@pytest.mark.parametrize(
    "bad",
    [
        Unsubscribe(email="bad@example.com", source="seq\x00uence"),
        Unsubscribe(email="bad@example.com", source="s" * 300),
    ],
    ids=["nul", "over-long"],
)
async def test_postgres_group_commit_with_one_refused_request_stores_the_others(
    postgres_ledger: Ledger, executor: ThreadPoolExecutor, bad: Unsubscribe
) -> None:
    await _assert_only_the_bad_request_failed(postgres_ledger, executor, bad)


async def test_a_full_queue_refuses_at_once_and_stores_nothing(
    sqlite_ledger: Ledger, executor: ThreadPoolExecutor
) -> None:
    committer = GroupCommitter(sqlite_ledger, executor, max_queued_items=1000)
    first = asyncio.create_task(committer.submit([Unsubscribe(email=f"q{i}@example.com") for i in range(1000)]))
    await asyncio.sleep(0)  # queued; the committer is not running yet, so the queue is full
    with pytest.raises(QueueFull) as refused:
        await committer.submit([Unsubscribe(email="late@example.com")])
    assert refused.value.retry_after >= 1 and isinstance(refused.value, IngestUnavailable)
    committer.start()
    await first
    await committer.stop()
    assert sqlite_ledger.lookup("q999@example.com") is not None
    assert sqlite_ledger.lookup("late@example.com") is None


class _WriteLock:
    """Another process holding the SQLite write lock: the ledger's commits wait (busy_timeout) until released."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        self._conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self._conn.execute("ROLLBACK")
        self._conn.close()


async def _until(condition: Any) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_a_request_still_queued_past_its_wait_gets_unavailable_and_is_not_stored(
    tmp_path: Path, sqlite_ledger: Ledger, executor: ThreadPoolExecutor
) -> None:
    committer = GroupCommitter(sqlite_ledger, executor, max_queue_wait=0.2)
    committer.start()
    lock = _WriteLock(tmp_path / "ledger.db")
    try:
        in_flight = asyncio.create_task(committer.submit([Unsubscribe(email="first@example.com")]))
        await _until(lambda: committer.in_flight_items == 1)
        with pytest.raises(IngestUnavailable):
            await committer.submit([Unsubscribe(email="waited@example.com")])
        assert committer.queued_items == 0
    finally:
        lock.release()
    await in_flight  # the commit in flight is waited for, never abandoned: its answer is the truth
    await committer.stop()
    assert sqlite_ledger.lookup("first@example.com") is not None
    assert sqlite_ledger.lookup("waited@example.com") is None


def test_queue_keys_are_validated_naming_the_key() -> None:
    config = parse_config({"worker": {"maxQueuedItems": 5000, "maxQueueWaitSeconds": 3}})
    assert config.worker.maxQueuedItems == 5000 and config.worker.maxQueueWaitSeconds == 3
    assert parse_config({}).worker.maxQueuedItems >= 1000
    with pytest.raises(ConfigError, match=r"worker\.maxQueuedItems"):
        parse_config({"worker": {"maxQueuedItems": 999}})  # one full request (1000 items) must always fit
    with pytest.raises(ConfigError, match=r"worker\.maxQueueWaitSeconds"):
        parse_config({"worker": {"maxQueueWaitSeconds": 0}})


# -- through the app ---------------------------------------------------------------------------------------------


def _config(tmp_path: Path, ledger_url: str, **worker: Any) -> Any:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    return parse_config(
        {
            "ledger": {"url": ledger_url},
            "worker": {"tokenFile": str(token_file), "listen": "127.0.0.1:0", **worker},
            "salesforce": {"credentialsDir": str(tmp_path / "none")},
        }
    )


@pytest.fixture
async def app_client(tmp_path: Path) -> AsyncIterator[Any]:
    clients: list[TestClient[Any, Any]] = []

    async def make(ledger: Ledger, url: str, **worker: Any) -> TestClient[Any, Any]:
        app = create_app(_config(tmp_path, url, **worker), ledger=ledger, push=False)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


async def test_app_answers_503_with_retry_after_when_the_queue_is_full(
    tmp_path: Path, sqlite_ledger: Ledger, app_client: Any
) -> None:
    client = await app_client(sqlite_ledger, f"sqlite:///{tmp_path}/ledger.db", maxQueuedItems=1000)
    lock = _WriteLock(tmp_path / "ledger.db")
    try:
        bodies = [{"unsubscribes": [{"email": f"r{r}-{i}@example.com"} for i in range(1000)]} for r in range(4)]
        posts = [asyncio.create_task(client.post("/v1/unsubscribes", json=b, headers=AUTH)) for b in bodies]
        # While the ledger is locked nothing can be accepted: whatever answers now was refused by the full queue.
        done, _ = await asyncio.wait(posts, return_when=asyncio.FIRST_COMPLETED)
        refused = done.pop().result()
        assert refused.status == 503 and int(refused.headers["Retry-After"]) >= 1
        assert "queue" in (await refused.json())["error"]
    finally:
        lock.release()
    answers = [await p for p in posts]
    accepted = [r for r, a in enumerate(answers) if a.status == 202]
    assert 1 <= len(accepted) <= 2 and all(a.status in (202, 503) for a in answers)
    for r, _ in enumerate(bodies):
        stored = sqlite_ledger.lookup(f"r{r}-999@example.com") is not None
        assert stored == (r in accepted)


@pytest.mark.postgres
async def test_app_one_request_the_database_refuses_fails_alone(
    postgres_url: str, postgres_ledger: Ledger, app_client: Any
) -> None:
    client = await app_client(postgres_ledger, postgres_url)
    bodies: list[Any] = [{"email": f"ok{i}@example.com", "source": "sequence"} for i in range(20)]
    bodies.insert(7, {"email": "nul@example.com", "source": "seq\x00uence"})
    answers = await asyncio.gather(*(client.post("/v1/unsubscribes", json=b, headers=AUTH) for b in bodies))
    statuses = [a.status for a in answers]
    assert statuses[7] == 400 and (await answers[7].json())["error"]
    assert statuses[:7] + statuses[8:] == [202] * 20
    assert all(postgres_ledger.lookup(f"ok{i}@example.com") is not None for i in range(20))
    assert postgres_ledger.lookup("nul@example.com") is None

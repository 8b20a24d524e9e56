"""The request metrics of the internal listener: counts by method, route pattern and status (an unmatched
path, a method outside the fixed set and a refused token included) and durations by route, as one request
at a time would count them, whatever the label children cached between requests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.fixtures.worker import AUTH, make_config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.worker.app import create_app, metrics_of

COUNT = "unsubscribe_sync_http_requests_total"
DURATIONS = "unsubscribe_sync_http_request_duration_seconds_count"


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(make_config(tmp_path), ledger=ledger, push=False)))
    await client.start_server()
    yield client
    await client.close()
    ledger.close()


async def test_requests_are_counted_by_method_route_and_status(client: TestClient[Any, Any]) -> None:
    for n in range(3):
        assert (await client.post("/v1/unsubscribes", json={"email": f"m{n}@example.com"}, headers=AUTH)).status == 202
    assert (await client.post("/v1/unsubscribes", json={"email": "nope"}, headers=AUTH)).status == 400
    assert (await client.post("/v1/unsubscribes", json={"email": "a@example.com"})).status == 401
    assert (await client.get("/v1/unsubscribes/m0@example.com", headers=AUTH)).status == 200
    assert (await client.get("/no/such/path")).status == 404
    assert (await client.request("PURGE", "/livez")).status == 405
    assert (await client.request("PURGE", "/v1/unsubscribes", headers=AUTH)).status == 405
    registry = metrics_of(client.app).registry

    def count(method: str, route: str, status: str) -> float | None:
        return registry.get_sample_value(COUNT, {"method": method, "route": route, "status": status})

    assert count("POST", "/v1/unsubscribes", "202") == 3
    assert count("POST", "/v1/unsubscribes", "400") == 1
    assert count("POST", "/v1/unsubscribes", "401") == 1
    assert count("GET", "/v1/unsubscribes/{email}", "200") == 1
    assert count("GET", "unmatched", "404") == 1
    assert count("other", "unmatched", "405") == 2
    assert registry.get_sample_value(DURATIONS, {"route": "/v1/unsubscribes"}) == 5
    assert registry.get_sample_value(DURATIONS, {"route": "/v1/unsubscribes/{email}"}) == 1
    assert registry.get_sample_value(DURATIONS, {"route": "unmatched"}) == 3

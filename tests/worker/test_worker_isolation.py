"""One hostile request never fails another: text no ledger can store is refused at the worker's door (400 naming
the field), so the group commit it would have shared with concurrent valid requests goes through."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.fixtures.worker import AUTH, make_config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.worker.app import create_app

HOSTILE_UNSUBSCRIBES = {
    "lone surrogate in the email": ({"email": "eve\ud800@example.com"}, "email"),
    "NUL in the email": ({"email": "eve\x00@example.com"}, "email"),
    "lone surrogate in the source": ({"email": "eve@example.com", "source": "x\udc00y"}, "source"),
    "NUL in the source": ({"email": "eve@example.com", "source": "x\x00y"}, "source"),
    "NUL in the eventId": ({"email": "eve@example.com", "eventId": "e\x00"}, "eventId"),
    "escape sequence in the eventId": ({"email": "eve@example.com", "eventId": "e\x1b[31m"}, "eventId"),
}
HOSTILE_RESUBSCRIBES = {
    "lone surrogate in requestedBy": ({"requestedBy": "adm\ud83din"}, "requestedBy"),
    "NUL in the reason": ({"reason": "because\x00"}, "reason"),
    "NUL in the email": ({"email": "eve\x00@example.com"}, "email"),
}


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.close()


@pytest.fixture
async def client(tmp_path: Path, ledger: Ledger) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(make_config(tmp_path), ledger=ledger, push=False)
    async with TestClient(TestServer(app)) as c:
        yield c


async def _post(client: TestClient[Any, Any], path: str, body: Any) -> tuple[int, Any]:
    # json.dumps writes a lone surrogate as the escape "\ud800", exactly what a hostile client sends
    resp = await client.post(path, data=json.dumps(body), headers={**AUTH, "Content-Type": "application/json"})
    return resp.status, await resp.json()


def _stored(ledger: Ledger, email: str) -> bool:
    found = ledger.lookup(email)
    return found is not None and found["unsubscribed"] is True


@pytest.mark.parametrize(("hostile", "field"), HOSTILE_UNSUBSCRIBES.values(), ids=HOSTILE_UNSUBSCRIBES.keys())
async def test_one_hostile_unsubscribe_among_50_concurrent_valid_ones_fails_only_itself(
    client: TestClient[Any, Any], ledger: Ledger, hostile: dict[str, Any], field: str
) -> None:
    valid = [{"email": f"valid{i}@example.com", "source": "crowd", "eventId": f"crowd-{i}"} for i in range(50)]
    bodies = [*valid[:25], {"unsubscribes": [{"email": "first@example.com"}, hostile]}, *valid[25:]]
    answers = await asyncio.gather(*(_post(client, "/v1/unsubscribes", body) for body in bodies))
    refused = answers.pop(25)
    assert [status for status, _ in answers] == [202] * 50, answers
    assert refused[0] == 400, refused
    assert refused[1]["details"] == [{"index": 1, "field": field, "message": refused[1]["details"][0]["message"]}]
    assert "U+" in refused[1]["details"][0]["message"], "the message names the character"
    assert all(_stored(ledger, f"valid{i}@example.com") for i in range(50))
    assert not _stored(ledger, "first@example.com"), "nothing of the refused request is stored"
    assert ledger.table_counts()["unsubscribes"] == 50


@pytest.mark.parametrize(("change", "field"), HOSTILE_RESUBSCRIBES.values(), ids=HOSTILE_RESUBSCRIBES.keys())
async def test_one_hostile_resubscribe_among_concurrent_requests_fails_only_itself(
    client: TestClient[Any, Any], ledger: Ledger, change: dict[str, Any], field: str
) -> None:
    first = {"unsubscribes": [{"email": f"r{i}@example.com"} for i in range(10)]}
    status, _ = await _post(client, "/v1/unsubscribes", first)
    assert status == 202
    resubscribe = {"requestedBy": "jane.admin", "reason": "re-consented"}
    hostile = {"email": "r0@example.com", **resubscribe, **change}
    bodies: list[tuple[str, Any]] = [("/v1/unsubscribes", {"email": f"valid{i}@example.com"}) for i in range(40)]
    bodies += [("/v1/resubscribes", {"email": f"r{i}@example.com", **resubscribe}) for i in range(1, 10)]
    bodies.insert(20, ("/v1/resubscribes", hostile))
    answers = await asyncio.gather(*(_post(client, path, body) for path, body in bodies))
    refused = answers.pop(20)
    assert [status for status, _ in answers] == [202] * 49, answers
    assert refused[0] == 400 and [d["field"] for d in refused[1]["details"]] == [field], refused
    assert all(_stored(ledger, f"valid{i}@example.com") for i in range(40))
    assert _stored(ledger, "r0@example.com"), "the refused resubscribe changed nothing"
    assert not any(_stored(ledger, f"r{i}@example.com") for i in range(1, 10))

"""The worker's HTTP API over real HTTP (aiohttp test server), ledger on SQLite; push off here."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.fixtures.worker import AUTH, TOKEN, make_config
from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.worker.app import TokenSource, create_app


@pytest.fixture
async def ledger(tmp_path: Path) -> AsyncIterator[Ledger]:
    led = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.close()


ClientMaker = Callable[..., Any]


@pytest.fixture
async def make_client(tmp_path: Path, ledger: Ledger) -> AsyncIterator[ClientMaker]:
    clients: list[TestClient[Any, Any]] = []

    async def make(nightly_runner: Any = None) -> TestClient[Any, Any]:
        app = create_app(make_config(tmp_path), ledger=ledger, nightly_runner=nightly_runner, push=False)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


@pytest.fixture
async def client(make_client: ClientMaker) -> TestClient[Any, Any]:
    return await make_client()  # type: ignore[no-any-return]


async def post(client: TestClient[Any, Any], body: Any, headers: dict[str, str] | None = None) -> Any:
    return await client.post("/v1/unsubscribes", json=body, headers=AUTH if headers is None else headers)


async def test_accepts_one_and_many_then_answers_lookups(client: TestClient[Any, Any]) -> None:
    resp = await post(client, {"email": "Ann@Example.com", "salesforceId": "003000000000001", "source": "sequence"})
    assert resp.status == 202 and await resp.json() == {"accepted": 1}
    resp = await post(client, {"unsubscribes": [{"email": f"u{i}@example.com"} for i in range(5)]})
    assert resp.status == 202 and await resp.json() == {"accepted": 5}
    got = await client.get("/v1/unsubscribes/ann@example.com", headers=AUTH)
    body = await got.json()
    assert got.status == 200 and body["email"] == "ann@example.com" and body["unsubscribed"] is True
    assert body["history"][-1]["source"] == "sequence" and body["history"][-1]["action"] == "unsubscribed"
    assert set(body["history"][-1]) >= {"at", "source", "action"}
    missing = await client.get("/v1/unsubscribes/nobody@example.com", headers=AUTH)
    assert missing.status == 404


async def test_list_pages_with_an_opaque_cursor(client: TestClient[Any, Any]) -> None:
    await post(client, {"unsubscribes": [{"email": f"u{i}@example.com"} for i in range(5)]})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/v1/unsubscribes", params=params, headers=AUTH)).json()
        seen += [i["email"] for i in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(f"u{i}@example.com" for i in range(5)) and len(seen) == 5
    assert (await client.get("/v1/unsubscribes", params={"cursor": "bogus!"}, headers=AUTH)).status == 400
    assert (await client.get("/v1/unsubscribes", params={"limit": "0"}, headers=AUTH)).status == 400
    assert (await client.get("/v1/unsubscribes", params={"limit": "abc"}, headers=AUTH)).status == 400


async def test_replayed_event_is_accepted_once_stored(client: TestClient[Any, Any], ledger: Ledger) -> None:
    item = {"email": "a@example.com", "salesforceId": "003000000000001", "eventId": "evt-42"}
    assert (await post(client, item)).status == 202
    counts = ledger.table_counts()
    again = await post(client, item)
    assert again.status == 202 and await again.json() == {"accepted": 1}
    assert ledger.table_counts() == counts


def _bad_requests() -> list[tuple[str, dict[str, Any], int]]:
    good = json.dumps({"email": "a@example.com"})
    return [
        ("no token", {"data": good, "headers": {"Content-Type": "application/json"}}, 401),
        (
            "wrong token",
            {"data": good, "headers": {"Content-Type": "application/json", "Authorization": "Bearer x"}},
            401,
        ),
        (
            "basic auth",
            {"data": good, "headers": {"Content-Type": "application/json", "Authorization": f"Basic {TOKEN}"}},
            401,
        ),
        ("not json type", {"data": good, "headers": {**AUTH, "Content-Type": "text/plain"}}, 415),
        ("no type", {"data": good.encode(), "headers": {**AUTH}}, 415),
        ("broken json", {"data": "{not json", "headers": {**AUTH, "Content-Type": "application/json"}}, 400),
        ("bad email", {"json": {"email": "nope"}, "headers": AUTH}, 400),
        (
            "one bad of many",
            {"json": {"unsubscribes": [{"email": "ok@example.com"}, {"email": "x"}]}, "headers": AUTH},
            400,
        ),
        ("account id", {"json": {"email": "a@example.com", "salesforceId": "001000000000001"}, "headers": AUTH}, 400),
        ("bad date", {"json": {"email": "a@example.com", "occurredAt": "May 1st"}, "headers": AUTH}, 400),
        ("too many", {"json": {"unsubscribes": [{"email": f"u{i}@e.io"} for i in range(1001)]}, "headers": AUTH}, 400),
        (
            "over 1 MiB",
            {
                "data": b'{"email": "' + b"a" * (1024 * 1024) + b'"}',
                "headers": {**AUTH, "Content-Type": "application/json"},
            },
            413,
        ),
    ]


@pytest.mark.parametrize(("name", "kwargs", "status"), _bad_requests(), ids=[b[0] for b in _bad_requests()])
async def test_bad_requests_change_nothing(
    client: TestClient[Any, Any], ledger: Ledger, name: str, kwargs: dict[str, Any], status: int
) -> None:
    await post(client, {"email": "existing@example.com", "salesforceId": "003000000000009"})
    before = ledger.table_counts()
    resp = await client.post("/v1/unsubscribes", **kwargs)
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert "error" in body and TOKEN not in json.dumps(body)
    if status == 400 and name not in ("broken json",):
        assert body["details"] and all("field" in d for d in body["details"])
    assert ledger.table_counts() == before


async def test_validation_details_name_index_and_field(client: TestClient[Any, Any]) -> None:
    resp = await post(
        client, {"unsubscribes": [{"email": "ok@example.com"}, {"email": "ok2@example.com", "occurredAt": 5}]}
    )
    body = await resp.json()
    assert resp.status == 400 and body["details"][0]["index"] == 1 and body["details"][0]["field"] == "occurredAt"


async def test_oversized_chunked_body_is_refused_while_reading(client: TestClient[Any, Any], ledger: Ledger) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"email": "'
        for _ in range(40):
            yield b"a" * 65536
        yield b'"}'

    before = ledger.table_counts()
    resp = await client.post("/v1/unsubscribes", data=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 413
    assert ledger.table_counts() == before


async def test_health_and_metrics_need_no_token(client: TestClient[Any, Any], ledger: Ledger) -> None:
    assert (await client.get("/livez")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ok"
    await post(
        client,
        {
            "unsubscribes": [
                {"email": "noid@example.com"},
                {"email": "id@example.com", "salesforceId": "003000000000001"},
            ]
        },
    )
    ledger.record_sync_run(
        {"toSalesforce": 4, "fromSalesforce": 6}, started_at=1000.0, ended_at=2000.0, outcome="Succeeded", dry_run=False
    )
    text = await (await client.get("/metrics")).text()
    assert "unsubscribe_sync_unsubscribes_received_total 2.0" in text
    assert 'unsubscribe_sync_push_records_total{object="unknown",outcome="skipped"} 1.0' in text
    assert "unsubscribe_sync_push_backlog 1.0" in text
    assert "unsubscribe_sync_nightly_last_success_timestamp_seconds 2000.0" in text
    assert 'unsubscribe_sync_nightly_records_total{direction="to_salesforce"} 4.0' in text
    assert 'unsubscribe_sync_nightly_records_total{direction="from_salesforce"} 6.0' in text
    assert "unsubscribe_sync_http_requests_total" in text
    assert TOKEN not in text


async def test_many_concurrent_single_posts_are_all_stored(client: TestClient[Any, Any], ledger: Ledger) -> None:
    results = await asyncio.gather(*(post(client, {"email": f"c{i}@example.com"}) for i in range(60)))
    assert all(r.status == 202 for r in results)
    assert ledger.table_counts()["unsubscribes"] == 60


async def test_nightly_runs_endpoint(make_client: ClientMaker) -> None:
    none = await make_client()
    assert (await none.post("/v1/nightly-runs", headers=AUTH)).status == 501
    assert (await none.post("/v1/nightly-runs")).status == 401

    calls: list[bool] = []
    release = threading.Event()

    def runner(dry_run: bool) -> dict[str, Any]:
        calls.append(dry_run)
        if not dry_run:
            release.wait(10)
        if len(calls) > 2:
            raise RuntimeError("Salesforce said no")
        return {"toSalesforce": 1, "fromSalesforce": 0, "skippedNoSalesforceId": 0, "failed": 0}

    client = await make_client(nightly_runner=runner)
    dry = await client.post("/v1/nightly-runs", params={"dryRun": "true"}, headers=AUTH)
    assert dry.status == 200 and (await dry.json())["toSalesforce"] == 1 and calls == [True]
    running = asyncio.ensure_future(client.post("/v1/nightly-runs", headers=AUTH))
    while len(calls) < 2:
        await asyncio.sleep(0.01)
    assert (await client.post("/v1/nightly-runs", headers=AUTH)).status == 409
    release.set()
    assert (await running).status == 200
    failed = await client.post("/v1/nightly-runs", headers=AUTH)
    assert failed.status == 500 and "Salesforce said no" in (await failed.json())["error"]
    assert (await client.post("/v1/nightly-runs", params={"dryRun": "maybe"}, headers=AUTH)).status == 400


async def test_token_rotation_is_picked_up(tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TokenSource, "RECHECK_SECONDS", 0.0)
    config = make_config(tmp_path)
    app = create_app(config, ledger=ledger, push=False)
    async with TestClient(TestServer(app)) as client:
        assert (await post(client, {"email": "a@example.com"})).status == 202
        config.worker.tokenFile.write_text("rotated-token")
        os.utime(config.worker.tokenFile, (1, 1))  # a new mtime, whatever the clock's resolution
        assert (await post(client, {"email": "b@example.com"})).status == 401
        assert (await post(client, {"email": "b@example.com"}, {"Authorization": "Bearer rotated-token"})).status == 202


async def test_lookup_matches_any_case_form_and_odd_characters(client: TestClient[Any, Any]) -> None:
    import unicodedata
    from urllib.parse import quote

    decomposed = unicodedata.normalize("NFD", "Renée@Example.com")
    assert (
        await post(client, {"unsubscribes": [{"email": decomposed}, {"email": "{{7*7}}@example.com"}]})
    ).status == 202
    for email in (unicodedata.normalize("NFC", "renée@example.com"), "{{7*7}}@EXAMPLE.com"):
        resp = await client.get("/v1/unsubscribes/" + quote(email, safe="@"), headers=AUTH)
        assert resp.status == 200 and (await resp.json())["unsubscribed"] is True


async def test_a_stalled_body_gets_408_and_nothing_is_stored(
    client: TestClient[Any, Any], ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unsubscribe_sync.worker import app as worker_app

    monkeypatch.setattr(worker_app, "BODY_READ_TIMEOUT_SECONDS", 0.3)

    async def stalled() -> AsyncIterator[bytes]:
        yield b'{"email": "slow'
        await asyncio.sleep(3)
        yield b'@example.com"}'

    before = ledger.table_counts()
    resp = await client.post("/v1/unsubscribes", data=stalled(), headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status == 408
    assert ledger.table_counts() == before


# -- POST /v1/resubscribes ---------------------------------------------------------------------------

RESUB = {"email": "a@example.com", "requestedBy": "jane.admin", "reason": "re-consented by email"}


def _bad_resubscribes() -> list[tuple[str, dict[str, Any], int]]:
    good = json.dumps(RESUB)
    return [
        ("no token", {"data": good, "headers": {"Content-Type": "application/json"}}, 401),
        ("not json type", {"data": good, "headers": {**AUTH, "Content-Type": "text/plain"}}, 415),
        ("broken json", {"data": "{not json", "headers": {**AUTH, "Content-Type": "application/json"}}, 400),
        ("no requestedBy", {"json": {"email": "a@example.com", "reason": "r"}, "headers": AUTH}, 400),
        ("no reason", {"json": {"email": "a@example.com", "requestedBy": "x"}, "headers": AUTH}, 400),
        ("blank reason", {"json": {**RESUB, "reason": "  "}, "headers": AUTH}, 400),
        ("no email", {"json": {"requestedBy": "x", "reason": "r"}, "headers": AUTH}, 400),
        ("bad email", {"json": {**RESUB, "email": "nope"}, "headers": AUTH}, 400),
        ("account id", {"json": {**RESUB, "salesforceId": "001000000000001"}, "headers": AUTH}, 400),
        ("bad date", {"json": {**RESUB, "occurredAt": "May 1st"}, "headers": AUTH}, 400),
        ("source is not a field", {"json": {**RESUB, "source": "crm"}, "headers": AUTH}, 400),
        ("unsubscribes key", {"json": {"unsubscribes": [RESUB]}, "headers": AUTH}, 400),
        ("one bad of many", {"json": {"resubscribes": [RESUB, {**RESUB, "email": "x"}]}, "headers": AUTH}, 400),
        ("too many", {"json": {"resubscribes": [RESUB] * 1001}, "headers": AUTH}, 400),
        (
            "over 1 MiB",
            {
                "data": b'{"email": "' + b"a" * (1024 * 1024) + b'"}',
                "headers": {**AUTH, "Content-Type": "application/json"},
            },
            413,
        ),
    ]


@pytest.mark.parametrize(("name", "kwargs", "status"), _bad_resubscribes(), ids=[b[0] for b in _bad_resubscribes()])
async def test_bad_resubscribes_change_nothing(
    client: TestClient[Any, Any], ledger: Ledger, name: str, kwargs: dict[str, Any], status: int
) -> None:
    await post(client, {"email": "a@example.com", "salesforceId": "003000000000009"})
    before = ledger.table_counts()
    resp = await client.post("/v1/resubscribes", **kwargs)
    assert resp.status == status, await resp.text()
    body = await resp.json()
    assert "error" in body and TOKEN not in json.dumps(body)
    if status == 400 and name != "broken json":
        assert body["details"] and all("field" in d for d in body["details"])
    assert ledger.table_counts() == before
    found = ledger.lookup("a@example.com")
    assert found is not None and found["unsubscribed"] is True


async def test_resubscribe_details_name_index_and_field(client: TestClient[Any, Any]) -> None:
    resp = await client.post(
        "/v1/resubscribes", json={"resubscribes": [RESUB, {"email": "b@example.com", "reason": "r"}]}, headers=AUTH
    )
    body = await resp.json()
    assert resp.status == 400 and body["details"] == [{"index": 1, "field": "requestedBy", "message": "is required"}]
    assert "1 of 2 resubscribes are invalid" in body["error"]


async def test_resubscribe_batch_is_stored_and_counted(client: TestClient[Any, Any], ledger: Ledger) -> None:
    earlier = {"occurredAt": "2026-01-01T00:00:00Z"}  # the resubscribe below is later (acts in occurredAt order)
    await post(client, {"email": "a@example.com", "salesforceId": "003000000000009", **earlier})
    items = [
        {**RESUB, "salesforceId": "003000000000009", "occurredAt": "2026-01-02T03:04:05Z", "eventId": "rs-1"},
        {**RESUB, "email": "unknown@example.com"},
    ]
    resp = await client.post("/v1/resubscribes", json={"resubscribes": items}, headers=AUTH)
    assert resp.status == 202 and await resp.json() == {"accepted": 2}
    got = await (await client.get("/v1/unsubscribes/a@example.com", headers=AUTH)).json()
    assert got["unsubscribed"] is False
    entry = got["history"][0]
    assert entry["action"] == "resubscribed" and entry["at"] == "2026-01-02T03:04:05.000Z"
    assert entry["requestedBy"] == "jane.admin" and entry["reason"] == "re-consented by email"
    assert entry["salesforceId"] == "003000000000009AAA"
    unknown = await (await client.get("/v1/unsubscribes/unknown@example.com", headers=AUTH)).json()
    assert unknown["unsubscribed"] is False and unknown["history"][-1]["outcome"] == "not_unsubscribed"
    assert ledger.backlog() == 1  # the record's opt-out write was replaced by one write of false
    text = await (await client.get("/metrics")).text()
    assert "unsubscribe_sync_resubscribes_received_total 2.0" in text
    assert "unsubscribe_sync_unsubscribes_received_total 1.0" in text


async def test_the_history_is_paged_newest_first_and_repeats_are_counted(client: TestClient[Any, Any]) -> None:
    for _ in range(3):
        await post(client, {"unsubscribes": [{"email": "pages@example.com"} for _ in range(50)]})
    await post(client, {"email": "pages@example.com", "salesforceId": "003000000000011"})
    first = await (await client.get("/v1/unsubscribes/pages@example.com?historyLimit=1", headers=AUTH)).json()
    assert first["repeats"] == 150 and len(first["history"]) == 1  # acts that left the state as it was
    assert first["history"][0]["salesforceId"] == "003000000000011AAA"  # the newest row first
    cursor = first["historyNextCursor"]
    rest = await (await client.get(f"/v1/unsubscribes/pages@example.com?historyCursor={cursor}", headers=AUTH)).json()
    assert [h["action"] for h in rest["history"]] == ["push_skipped", "unsubscribed"]
    assert rest["historyNextCursor"] is None


@pytest.mark.parametrize("query", ["historyLimit=0", "historyLimit=abc", "historyCursor=bm9wZQ"])
async def test_a_bad_history_page_request_is_a_400_naming_the_parameter(
    client: TestClient[Any, Any], query: str
) -> None:
    await post(client, {"email": "bad-page@example.com"})
    resp = await client.get(f"/v1/unsubscribes/bad-page@example.com?{query}", headers=AUTH)
    assert resp.status == 400
    assert (await resp.json())["details"][0]["field"] == query.split("=")[0]

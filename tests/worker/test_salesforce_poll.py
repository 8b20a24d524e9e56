"""The Salesforce poll (worker/poll.py) against the sandbox org and a real ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.api.config import Config, load_config
from unsubscribe_sync.ledger import Ledger, PushOutcome, Resubscribe, Unsubscribe
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.salesforce.ids import normalize_id
from unsubscribe_sync.salesforce.poll import parse_stamp
from unsubscribe_sync.worker.metrics import WorkerMetrics
from unsubscribe_sync.worker.poll import SalesforcePoller, poll_enabled

WAIT_SECONDS = 30.0  # an upper bound on waiting for a condition (never a timing assertion)


def make_config(tmp: Path, server: SandboxHandle, ledger_url: str, **poll: Any) -> Config:
    creds = server.write_credentials(tmp / "creds")
    token_file = tmp / "token"
    token_file.write_text("test-token-123")
    data: dict[str, Any] = {
        "salesforce": {
            "loginUrl": server.url,
            "credentialsDir": str(creds),
            "caFile": str(server.ca_file),
            "objects": ["Contact", "Lead"],
        },
        "optOut": {"target": "EmailOptOut"},
        "nightly": {"enabled": True},
        "salesforcePoll": {"intervalSeconds": 1, "lookbackSeconds": 300, **poll},
        "ledger": {"url": ledger_url},
        "worker": {"listen": "127.0.0.1:0", "tokenFile": str(token_file), "url": "http://127.0.0.1:9"},
        "logging": {"format": "json", "level": "warning"},
    }
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def factory_for(config: Config) -> Callable[[Callable[[str, str], None]], SalesforceClient]:
    def factory(on_request: Callable[[str, str], None]) -> SalesforceClient:
        return SalesforceClient.from_config(config.salesforce, on_request=on_request)

    return factory


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2)
    yield pool
    pool.shutdown(wait=True)


def poller(config: Config, ledger: Ledger, executor: ThreadPoolExecutor, owner: str) -> SalesforcePoller:
    return SalesforcePoller(config, ledger, factory_for(config), WorkerMetrics(), executor, owner=owner)


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


def unsubscribed(ledger: Ledger, email: str) -> bool:
    found = ledger.lookup(email)
    return bool(found and found["unsubscribed"])


def poll_history(ledger: Ledger, email: str) -> list[dict[str, Any]]:
    found = ledger.lookup(email)
    return [h for h in (found or {}).get("history", []) if h["source"] == "salesforce-poll"]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def test_poll_runs_only_with_nightly_and_a_positive_interval(tmp_path: Path, sandbox: SandboxHandle) -> None:
    url = f"sqlite:///{tmp_path / 'l.db'}"
    assert poll_enabled(make_config(tmp_path, sandbox, url))
    assert not poll_enabled(make_config(tmp_path, sandbox, url, intervalSeconds=0))
    cfg = make_config(tmp_path, sandbox, url)
    assert not poll_enabled(cfg.model_copy(update={"nightly": cfg.nightly.model_copy(update={"enabled": False})}))


async def test_an_opt_out_set_in_salesforce_reaches_the_ledger_within_an_interval(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor
) -> None:
    config = make_config(tmp_path, sandbox, sqlite_url)
    ledger = Ledger.open(sqlite_url)
    task = poller(config, ledger, executor, "a")
    try:
        task.start()
        await wait_for(lambda: ledger.poll_last_success() is not None)  # the first poll went through
        contact = sandbox.admin.add_record("Contact", "rep.ticked@example.com")
        sandbox.admin.set_fields(contact, {"HasOptedOutOfEmail": True})
        lead = sandbox.admin.add_record("Lead", "lead.ticked@example.com", opted_out=True)
        await wait_for(lambda: unsubscribed(ledger, "rep.ticked@example.com"))
        await wait_for(lambda: unsubscribed(ledger, "lead.ticked@example.com"))
        found = ledger.lookup("rep.ticked@example.com")
        assert found is not None
        assert [t["id"] for t in found["salesforce"]] == [normalize_id(contact)]
        assert len(poll_history(ledger, "lead.ticked@example.com")) == 1
        assert lead
    finally:
        await task.stop()
        ledger.close()


@pytest.mark.parametrize(("lookback", "caught"), [(300, True), (0, False)])
def test_the_lookback_catches_a_change_stamped_before_the_watermark(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor, lookback: int, caught: bool
) -> None:
    config = make_config(tmp_path, sandbox, sqlite_url, lookbackSeconds=lookback)
    ledger = Ledger.open(sqlite_url)
    try:
        p = poller(config, ledger, executor, "a")
        recent = sandbox.admin.add_record("Contact", "recent@example.com", opted_out=True)
        assert p.tick(force=True).polled
        assert unsubscribed(ledger, "recent@example.com")
        watermark = ledger.poll_watermark("Contact")
        assert watermark is not None
        stamp = parse_stamp(sandbox.admin.get_record(recent)["SystemModstamp"])  # type: ignore[index]
        assert stamp is not None and watermark >= stamp  # the read's start: all changes before it were seen
        # A change committed late: visible only now, stamped a minute before the watermark.
        late = sandbox.admin.add_record("Contact", "late@example.com")
        earlier = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(watermark - 60))
        sandbox.admin.set_fields(late, {"HasOptedOutOfEmail": True, "SystemModstamp": earlier})
        assert p.tick(force=True).polled
        assert unsubscribed(ledger, "late@example.com") is caught
        assert (ledger.poll_watermark("Contact") or 0) >= watermark  # never moves back
    finally:
        ledger.close()


def test_a_queued_resubscribe_is_left_alone(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor
) -> None:
    config = make_config(tmp_path, sandbox, sqlite_url)
    ledger = Ledger.open(sqlite_url)
    try:
        sid = normalize_id(sandbox.admin.add_record("Contact", "resub@example.com", opted_out=True))
        p = poller(config, ledger, executor, "a")
        assert p.tick(force=True).polled
        assert unsubscribed(ledger, "resub@example.com")
        result = ledger.resubscribe([Resubscribe("resub@example.com", "ops", "re-consented")])
        assert result.enqueued == 1  # the write of false to the record is queued, not yet in Salesforce
        assert p.tick(force=True).polled  # Salesforce still says true: the read predates the resubscribe
        assert not unsubscribed(ledger, "resub@example.com")
        assert len(poll_history(ledger, "resub@example.com")) == 1
        assert sid
    finally:
        ledger.close()


def test_a_poll_reading_back_the_pushed_true_does_not_outrank_a_delayed_resubscribe(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor
) -> None:
    """Unsubscribed ten minutes ago and pushed; the poll then reads the record's true (the value the push
    wrote); the person's resubscribe of five minutes ago arrives only now (a sender's delayed webhook). The
    resubscribe is the latest act: it wins and its write of false is queued."""
    config = make_config(tmp_path, sandbox, sqlite_url)
    ledger = Ledger.open(sqlite_url)
    client = SalesforceClient.from_config(config.salesforce)
    try:
        sid = normalize_id(sandbox.admin.add_record("Contact", "delayed@example.com", opted_out=False))
        now = time.time()
        ledger.ingest([Unsubscribe("delayed@example.com", sid, "Contact", occurred_at=now - 600)])
        claim = ledger.claim("push", 10, 60)
        (result,) = client.write_opt_outs("Contact", [r.salesforce_id for r in claim], "HasOptedOutOfEmail")
        assert result.success
        ledger.complete(claim, [PushOutcome(claim[0], "pushed")], field="HasOptedOutOfEmail")
        p = poller(config, ledger, executor, "a")
        assert p.tick(force=True).polled  # reads the pushed true back
        assert poll_history(ledger, "delayed@example.com") == []  # nothing new happened in Salesforce
        late = ledger.resubscribe([Resubscribe("delayed@example.com", "ops", "re-consented", occurred_at=now - 300)])
        assert (late.resubscribed, late.superseded, late.enqueued) == (1, 0, 1)
        assert not unsubscribed(ledger, "delayed@example.com")
        assert p.tick(force=True).polled  # Salesforce still says true until the write of false lands
        assert not unsubscribed(ledger, "delayed@example.com")
    finally:
        client.close()
        ledger.close()


def test_no_opt_out_missed_or_duplicated_across_a_restart(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor
) -> None:
    config = make_config(tmp_path, sandbox, sqlite_url)
    emails = [f"restart{i}@example.com" for i in range(6)]
    ledger = Ledger.open(sqlite_url)
    try:
        for email in emails[:3]:
            sandbox.admin.add_record("Contact", email, opted_out=True)
        first = poller(config, ledger, executor, "before")
        assert first.tick(force=True).polled
        ledger.release_poll_lease("before")  # the worker stops
    finally:
        ledger.close()
    for email in emails[3:]:  # set while no worker runs
        sandbox.admin.add_record("Lead", email, opted_out=True)
    ledger = Ledger.open(sqlite_url)
    try:
        second = poller(config, ledger, executor, "after")
        assert second.tick(force=True).polled
        assert second.tick(force=True).polled  # re-reads the lookback window: nothing added twice
        for email in emails:
            assert unsubscribed(ledger, email), email
            assert len(poll_history(ledger, email)) == 1, email
    finally:
        ledger.close()


def test_request_limit_exceeded_pauses_the_poll(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor
) -> None:
    config = make_config(tmp_path, sandbox, sqlite_url)
    ledger = Ledger.open(sqlite_url)
    try:
        p = poller(config, ledger, executor, "a")
        sandbox.admin.set_faults(requestLimitExceeded=True)
        result = p.tick(force=True)
        assert result.paused == "REQUEST_LIMIT_EXCEEDED" and not result.polled
        assert p._metrics.poll_paused._value.get() == 1
        sandbox.admin.set_faults(requestLimitExceeded=False)
        assert p.tick(force=True).paused == "paused"  # stays paused: the nightly is the safety net meanwhile
    finally:
        sandbox.admin.set_faults(requestLimitExceeded=False)
        ledger.close()


def test_an_idle_tick_costs_one_query_per_object(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor
) -> None:
    config = make_config(tmp_path, sandbox, sqlite_url)
    ledger = Ledger.open(sqlite_url)
    try:
        p = poller(config, ledger, executor, "a")
        assert p.tick(force=True).polled  # the first tick resolves the field (describe) once
        before = sandbox.admin.calls()
        for _ in range(5):
            assert p.tick(force=True).polled
        after = sandbox.admin.calls()
        spent = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        assert spent == {"query": 5 * len(config.salesforce.objects)}
    finally:
        ledger.close()


@pytest.mark.postgres
async def test_one_poller_across_replicas_and_a_killed_one_is_taken_over(
    tmp_path: Path, sandbox: SandboxHandle, postgres_url: str, executor: ThreadPoolExecutor
) -> None:
    config = make_config(tmp_path, sandbox, postgres_url)
    one, two = Ledger.open(postgres_url), Ledger.open(postgres_url)
    a, b = poller(config, one, executor, "a"), poller(config, two, executor, "b")
    try:
        assert a.tick().holder
        assert not b.tick().holder  # exactly one polls
        a.start()  # a polls; b waits
        b.start()
        await wait_for(lambda: one.poll_last_success() is not None)
        a._task.cancel()  # type: ignore[union-attr]  # "a" is killed: it stops renewing, never releases
        sandbox.admin.add_record("Contact", "after.kill@example.com", opted_out=True)
        await wait_for(lambda: unsubscribed(two, "after.kill@example.com"))
        assert len(poll_history(two, "after.kill@example.com")) == 1
    finally:
        await b.stop()
        one.close()
        two.close()


def test_the_api_reserve_pauses_the_poll_without_a_limits_call(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, executor: ThreadPoolExecutor
) -> None:
    config = make_config(tmp_path, sandbox, sqlite_url)  # apiReserveRatio 0.1 (the default)
    ledger = Ledger.open(sqlite_url)
    try:
        p = poller(config, ledger, executor, "a")
        assert p.tick(force=True).paused is None
        sandbox.state.set_daily_api_limit(1000, used=950)  # 50 left: below the reserve of 100
        before = sandbox.admin.calls()
        result = p.tick(force=True)
        assert result.paused == "reserve"
        assert p._metrics.poll_paused._value.get() == 1
        assert "limits" not in {k for k, v in sandbox.admin.calls().items() if v != before.get(k, 0)}
        assert p.tick(force=True).paused == "paused"
    finally:
        ledger.close()


@pytest.mark.parametrize("nightly", [True, False])
async def test_the_worker_app_runs_the_poll_only_with_nightly_enabled(
    tmp_path: Path, sandbox: SandboxHandle, sqlite_url: str, nightly: bool
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from unsubscribe_sync.worker.app import STATE, create_app

    config = make_config(tmp_path, sandbox, sqlite_url)
    config = config.model_copy(update={"nightly": config.nightly.model_copy(update={"enabled": nightly})})
    ledger = Ledger.open(sqlite_url)
    sandbox.admin.add_record("Contact", "via.app@example.com", opted_out=True)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(config, ledger=ledger, token="t")))
    await client.start_server()
    try:
        if nightly:
            await wait_for(lambda: unsubscribed(ledger, "via.app@example.com"))
            metrics = await (await client.get("/metrics", headers={"Authorization": "Bearer t"})).text()
            assert "unsubscribe_sync_salesforce_poll_interval_seconds 1.0" in metrics
        else:
            assert client.server.app[STATE].poller is None
            assert ledger.poll_last_success() is None and not unsubscribed(ledger, "via.app@example.com")
    finally:
        await client.close()
        ledger.close()

"""Webhook -> ledger -> Salesforce (the project's sandbox over HTTPS), in-process workers over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sandbox import SandboxHandle
from tests.fixtures.worker import (
    AUTH,
    FAST,
    MARKETO,
    TOKEN,
    MakeWorker,
    Worker,
    eventually,
    opted_out,
    start_worker,
    stop_workers,
)
from unsubscribe_sync.api.config import parse_config
from unsubscribe_sync.worker.app import pusher_of
from unsubscribe_sync.worker.pusher import PushPolicy


@pytest.fixture
async def make_worker(tmp_path: Path, sandbox: SandboxHandle) -> AsyncIterator[MakeWorker]:
    started: list[Worker] = []
    creds = sandbox.write_credentials(tmp_path / "creds")
    (tmp_path / "token").write_text(TOKEN)

    async def make(
        *,
        target: str = "EmailOptOut",
        nightly: bool = True,
        ledger_url: str | None = None,
        policy: PushPolicy = FAST,
        objects: tuple[str, ...] = ("Contact", "Lead"),
    ) -> Worker:
        config = parse_config(
            {
                "salesforce": {
                    "loginUrl": sandbox.url,
                    "credentialsDir": str(creds),
                    "caFile": str(sandbox.ca_file),
                    "objects": list(objects),
                },
                "optOut": {"target": target},
                "nightly": {"enabled": nightly},
                "ledger": {"url": ledger_url or f"sqlite:///{tmp_path}/ledger.db"},
                "worker": {"tokenFile": str(tmp_path / "token")},
            }
        )
        return await start_worker(Worker, config, policy, started)

    yield make
    await stop_workers(started)


async def test_contacts_and_leads_reach_salesforce_with_15_char_ids(
    make_worker: MakeWorker, sandbox: SandboxHandle
) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "ada@example.com")
    lead = state.add_record("Lead", "grace@example.com")
    worker = await make_worker()
    await worker.post({"email": "ada@example.com", "salesforceId": contact[:15]})
    await worker.post({"unsubscribes": [{"email": "Grace@Example.com", "salesforceId": lead, "eventId": "g1"}]})
    await eventually(worker.drained, what="backlog drained")
    assert opted_out(sandbox, contact) and opted_out(sandbox, lead)
    assert state.write_count(contact) == 1 and state.write_count(lead) == 1
    history = list(reversed((await worker.lookup("ada@example.com"))["history"]))
    assert [h["action"] for h in history] == ["unsubscribed", "pushed"]
    assert worker.sample("unsubscribe_sync_push_records_total", object="Contact", outcome="pushed") == 1
    assert worker.sample("unsubscribe_sync_push_records_total", object="Lead", outcome="pushed") == 1
    assert worker.sample("unsubscribe_sync_push_lag_seconds_count") == 2
    text = await worker.metrics()
    assert 'unsubscribe_sync_salesforce_requests_total{operation="collections_update",status="200"}' in text
    assert "unsubscribe_sync_salesforce_api_usage_ratio" in text
    assert "unsubscribe_sync_push_backlog 0.0" in text


async def test_duplicates_and_replays_write_once(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    contact = sandbox.state.add_record("Contact", "dup@example.com")
    worker = await make_worker()
    item = {"email": "dup@example.com", "salesforceId": contact, "eventId": "e-1"}
    await worker.post({"unsubscribes": [item, item, {"email": "dup@example.com", "salesforceId": contact[:15]}]})
    await worker.post(item)
    await eventually(worker.drained)
    await worker.post({"email": "DUP@example.com", "salesforceId": contact, "eventId": "e-2"})
    await asyncio.sleep(0.3)  # give a wrongly queued second push the chance to happen
    assert sandbox.state.write_count(contact) == 1
    assert worker.sample("unsubscribe_sync_unsubscribes_replayed_total") == 2


async def test_missing_ids_are_stored_counted_and_not_sent(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    worker = await make_worker()
    await worker.post({"unsubscribes": [{"email": "noid@example.com"}, {"email": "noid2@example.com"}]})
    found = await worker.lookup("noid@example.com")
    assert found["unsubscribed"] is True
    assert worker.sample("unsubscribe_sync_push_records_total", object="unknown", outcome="skipped") == 2
    assert worker.ledger.count_without_salesforce_id() == 2
    assert sum(sandbox.state.writes.values()) == 0


@pytest.mark.parametrize(("nightly", "expected_field"), [(True, MARKETO), (False, "HasOptedOutOfEmail")])
async def test_push_field_rule(
    make_worker: MakeWorker, sandbox: SandboxHandle, nightly: bool, expected_field: str
) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "field@example.com")
    worker = await make_worker(target="MarketoSalesOptOut", nightly=nightly)
    await worker.post({"email": "field@example.com", "salesforceId": contact})
    await eventually(worker.drained)
    other = MARKETO if expected_field == "HasOptedOutOfEmail" else "HasOptedOutOfEmail"
    assert opted_out(sandbox, contact, expected_field)
    assert not opted_out(sandbox, contact, other)
    found = await worker.lookup("field@example.com")
    assert found["salesforce"][0]["field"] == expected_field


async def test_permanent_errors_do_not_block_the_rest(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    good = [state.add_record("Contact", f"ok{i}@example.com") for i in range(5)]
    deleted = state.add_record("Contact", "gone@example.com")
    state.delete_record(deleted)
    worker = await make_worker()
    items = [{"email": f"ok{i}@example.com", "salesforceId": sid} for i, sid in enumerate(good)]
    items.insert(2, {"email": "gone@example.com", "salesforceId": deleted})
    await worker.post({"unsubscribes": items})
    await eventually(worker.drained)
    assert all(opted_out(sandbox, sid) for sid in good)
    gone = await worker.lookup("gone@example.com")
    assert gone["salesforce"][0]["status"] == "failed"
    assert gone["history"][0]["action"] == "push_failed" and "ENTITY_IS_DELETED" in gone["history"][0]["detail"]
    assert worker.sample("unsubscribe_sync_push_records_total", object="Contact", outcome="failed") == 1
    assert worker.sample("unsubscribe_sync_push_records_total", object="Contact", outcome="pushed") == 5


async def test_locked_rows_are_retried(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    ids = [state.add_record("Contact", f"lock{i}@example.com") for i in range(3)]
    state.lock_next_writes(2)
    worker = await make_worker()
    items = [{"email": f"lock{i}@example.com", "salesforceId": s} for i, s in enumerate(ids)]
    await worker.post({"unsubscribes": items})
    await eventually(worker.drained)
    assert all(opted_out(sandbox, sid) for sid in ids)
    assert worker.sample("unsubscribe_sync_push_retries_total", object="Contact", error_class="transient") == 2


@pytest.mark.slow
async def test_outage_loses_nothing_and_backlog_drains_after(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    ids = [state.add_record("Contact", f"out{i}@example.com") for i in range(40)]
    worker = await make_worker()
    await worker.post({"email": "out0@example.com", "salesforceId": ids[0]})
    await eventually(lambda: opted_out(sandbox, ids[0]))
    state.set_unavailable(None)  # HTTP 503 for every call until cleared, ~8 s below
    for i in range(1, 40):
        await worker.post({"email": f"out{i}@example.com", "salesforceId": ids[i]})
        await asyncio.sleep(0.2)
    assert worker.ledger.backlog() == 39  # all held back, none lost
    assert 'unsubscribe_sync_salesforce_requests_total{operation="collections_update",status="503"}' in (
        await worker.metrics()
    )
    ready = await worker.client.get("/readyz")
    assert ready.status == 200  # readiness is not tied to Salesforce
    state.clear_unavailable()
    await eventually(lambda: worker.ledger.backlog() == 0, timeout=40, what="drain after the outage")
    assert all(opted_out(sandbox, sid) for sid in ids)
    assert all(state.write_count(sid) == 1 for sid in ids)


async def test_expired_session_mid_run(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    ids = [state.add_record("Contact", f"s{i}@example.com") for i in range(4)]
    worker = await make_worker()
    await worker.post({"email": "s0@example.com", "salesforceId": ids[0]})
    await eventually(lambda: opted_out(sandbox, ids[0]))
    assert state.expire_sessions() >= 1
    await worker.post({"unsubscribes": [{"email": f"s{i}@example.com", "salesforceId": ids[i]} for i in range(1, 4)]})
    await eventually(worker.drained)
    assert all(opted_out(sandbox, sid) for sid in ids)
    text = await worker.metrics()
    assert 'operation="collections_update",status="401"' in text


async def test_missing_field_pauses_push_until_installed(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    for obj in ("Contact", "Lead"):
        state.remove_field(obj, MARKETO)
    contact = state.add_record("Contact", "cfg@example.com")
    worker = await make_worker(target="MarketoSalesOptOut", nightly=True)
    await worker.post({"email": "cfg@example.com", "salesforceId": contact})
    await eventually(lambda: worker.sample("unsubscribe_sync_push_healthy") == 0, what="unhealthy push")
    pusher = pusher_of(worker.app)
    assert pusher is not None and pusher.last_problem and "Contact" in pusher.last_problem
    assert worker.ledger.backlog() == 1  # kept pending, not failed
    for obj in ("Contact", "Lead"):
        state.configure_field(obj, MARKETO, label="MSE - Opt Out")
    await eventually(lambda: worker.ledger.backlog() == 0, what="push after the field is installed")
    assert opted_out(sandbox, contact, MARKETO) and worker.sample("unsubscribe_sync_push_healthy") == 1


async def test_rate_limit_pauses_then_resumes(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "rl@example.com")
    worker = await make_worker()
    await eventually(lambda: pusher_of(worker.app) is not None and pusher_of(worker.app).field is not None)  # type: ignore[union-attr]
    state.set_request_limit_exceeded(True)
    await worker.post({"email": "rl@example.com", "salesforceId": contact})
    await eventually(lambda: worker.sample("unsubscribe_sync_push_paused_until_timestamp_seconds") > 0)
    assert worker.ledger.backlog() == 1
    state.set_request_limit_exceeded(False)
    await eventually(worker.drained)
    assert opted_out(sandbox, contact)


@pytest.mark.postgres
async def test_two_workers_on_one_postgres_ledger_write_each_record_once(
    make_worker: MakeWorker, sandbox: SandboxHandle, postgres_url: str
) -> None:
    state = sandbox.state
    state.seed(contacts=600, opted_out_ratio=0, deleted_ratio=0)
    ids = state.find_ids("Contact")
    state.set_latency(30)
    policy = replace(FAST, batch_size=50)
    first = await make_worker(ledger_url=postgres_url, policy=policy)
    second = await make_worker(ledger_url=postgres_url, policy=policy)
    items = [{"email": f"pg{i}@example.com", "salesforceId": sid} for i, sid in enumerate(ids)]
    for start in range(0, len(items), 50):
        target = first if (start // 50) % 2 == 0 else second
        await target.post({"unsubscribes": items[start : start + 50]})

    def pushed() -> list[float]:
        return [
            w.sample("unsubscribe_sync_push_records_total", object="Contact", outcome="pushed") for w in (first, second)
        ]

    await eventually(lambda: first.ledger.backlog() == 0, timeout=60, what="both workers drain")
    await eventually(lambda: sum(pushed()) >= 600, what="outcomes counted")
    assert all(state.write_count(sid) == 1 for sid in ids)
    assert sum(pushed()) == 600 and all(p > 0 for p in pushed())  # both shared the work


@pytest.mark.postgres
async def test_worker_rides_out_a_postgres_restart(
    make_worker: MakeWorker, sandbox: SandboxHandle, postgres_url: str, postgres_server: Any
) -> None:
    if isinstance(postgres_server, str):
        pytest.skip("external PostgreSQL: cannot restart it")
    state = sandbox.state
    ids = [state.add_record("Contact", f"pgr{i}@example.com") for i in range(2)]
    worker = await make_worker(ledger_url=postgres_url)
    await worker.post({"email": "pgr0@example.com", "salesforceId": ids[0]})
    await eventually(lambda: opted_out(sandbox, ids[0]))
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        # The test server runs with synchronous_commit=off: flush what is committed before the crash-restart,
        # which is about the worker's connections, not the test server's durability settings.
        conn.execute("CHECKPOINT")
    await asyncio.to_thread(postgres_server.restart)
    body = {"email": "pgr1@example.com", "salesforceId": ids[1]}
    for _ in range(100):  # a sender retries a 503 ("nothing was stored, retry later") until the database is back
        resp = await worker.client.post("/v1/unsubscribes", json=body, headers=AUTH)
        if resp.status == 202:
            break
        assert resp.status == 503, await resp.text()
        await asyncio.sleep(0.1)
    assert resp.status == 202
    await eventually(lambda: opted_out(sandbox, ids[1]), what="push after the restart")
    assert (await worker.client.get("/readyz")).status == 200


# -- explicit resubscribes -------------------------------------------------------------------


async def resubscribe(worker: Worker, body: Any) -> Any:
    resp = await worker.client.post("/v1/resubscribes", json=body, headers=AUTH)
    assert resp.status == 202, await resp.text()
    return await resp.json()


async def test_resubscribe_clears_the_field_and_records_who_and_why(
    make_worker: MakeWorker, sandbox: SandboxHandle
) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "back@example.com")
    worker = await make_worker()
    await worker.post({"email": "back@example.com", "salesforceId": contact})
    await eventually(worker.drained)
    assert opted_out(sandbox, contact)

    answer = await resubscribe(
        worker, {"email": "Back@Example.com", "requestedBy": "jane.admin", "reason": "asked by phone", "eventId": "r1"}
    )
    assert answer == {"accepted": 1}
    await eventually(worker.drained, what="the resubscribe pushed")
    assert not opted_out(sandbox, contact)
    assert state.write_count(contact) == 2
    found = await worker.lookup("back@example.com")
    assert found["unsubscribed"] is False
    resub = [h for h in reversed(found["history"]) if h["action"] == "resubscribed"]
    assert len(resub) == 1
    assert resub[0]["requestedBy"] == "jane.admin" and resub[0]["reason"] == "asked by phone"
    assert resub[0]["detail"] == "by jane.admin: asked by phone" and resub[0]["outcome"] == "resubscribed"
    assert {"at", "source", "action"} <= set(resub[0])
    assert found["history"][0]["action"] == "pushed" and found["history"][0]["detail"] == "HasOptedOutOfEmail = false"
    assert worker.sample("unsubscribe_sync_resubscribes_received_total") == 1
    assert worker.sample("unsubscribe_sync_resubscribe_push_records_total", object="Contact", outcome="pushed") == 1
    # opt-out series unchanged by the resubscribe's write
    assert worker.sample("unsubscribe_sync_push_records_total", object="Contact", outcome="pushed") == 1
    assert worker.sample("unsubscribe_sync_push_lag_seconds_count") == 1

    # replaying the same eventId stores and writes nothing more
    counts = worker.ledger.table_counts()
    replay = {"email": "back@example.com", "requestedBy": "jane.admin", "reason": "x", "eventId": "r1"}
    await resubscribe(worker, replay)
    assert worker.ledger.table_counts() == counts and worker.ledger.backlog() == 0
    assert worker.sample("unsubscribe_sync_resubscribes_received_total") == 1
    assert worker.sample("unsubscribe_sync_unsubscribes_replayed_total") == 1


async def test_unsubscribe_resubscribe_unsubscribe_ends_opted_out(
    make_worker: MakeWorker, sandbox: SandboxHandle
) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "cycle@example.com")
    lead = state.add_record("Lead", "cycle@example.com")
    worker = await make_worker()
    await worker.post({"unsubscribes": [{"email": "cycle@example.com", "salesforceId": s} for s in (contact, lead)]})
    await eventually(worker.drained)
    await resubscribe(worker, {"email": "cycle@example.com", "requestedBy": "crm", "reason": "re-consented"})
    await eventually(worker.drained)
    assert not opted_out(sandbox, contact) and not opted_out(sandbox, lead)
    # unsubscribing again (no id given) sets the field again on every record of the address
    await worker.post({"email": "cycle@example.com"})
    await eventually(worker.drained)
    assert opted_out(sandbox, contact) and opted_out(sandbox, lead)
    found = await worker.lookup("cycle@example.com")
    assert found["unsubscribed"] is True
    actions = [h["action"] for h in reversed(found["history"]) if h["action"] in ("unsubscribed", "resubscribed")]
    assert actions == ["unsubscribed", "unsubscribed", "resubscribed", "unsubscribed"]
    assert {t["status"] for t in found["salesforce"]} == {"pushed"}


async def test_resubscribe_of_an_unknown_address_is_recorded_as_not_unsubscribed(
    make_worker: MakeWorker, sandbox: SandboxHandle
) -> None:
    worker = await make_worker()
    await resubscribe(worker, {"email": "never@example.com", "requestedBy": "support", "reason": "ticket 42"})
    found = await worker.lookup("never@example.com")
    assert found["unsubscribed"] is False and found["salesforce"] == []
    assert [(h["action"], h["outcome"]) for h in reversed(found["history"])] == [("resubscribed", "not_unsubscribed")]
    assert worker.ledger.backlog() == 0 and sum(sandbox.state.writes.values()) == 0


async def test_latest_act_wins_while_both_are_queued(make_worker: MakeWorker, sandbox: SandboxHandle) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "race@example.com")
    state.set_unavailable(None)  # nothing reaches Salesforce: both acts stay queued
    worker = await make_worker()
    await worker.post({"email": "race@example.com", "salesforceId": contact})
    await resubscribe(worker, {"email": "race@example.com", "requestedBy": "ops", "reason": "mistake"})
    assert worker.ledger.backlog() == 1  # one row per record: the resubscribe replaced the opt-out
    state.clear_unavailable()
    await eventually(worker.drained, timeout=40)
    assert not opted_out(sandbox, contact)
    assert state.write_count(contact) == 1  # the older opt-out was never written


@pytest.mark.parametrize(("nightly", "expected_field"), [(True, MARKETO), (False, "HasOptedOutOfEmail")])
async def test_resubscribe_clears_the_effective_push_field(
    make_worker: MakeWorker, sandbox: SandboxHandle, nightly: bool, expected_field: str
) -> None:
    state = sandbox.state
    contact = state.add_record("Contact", "rfield@example.com")
    worker = await make_worker(target="MarketoSalesOptOut", nightly=nightly)
    await worker.post({"email": "rfield@example.com", "salesforceId": contact})
    await eventually(worker.drained)
    state.set_fields(contact, {"HasOptedOutOfEmail": True, MARKETO: True})
    await resubscribe(worker, {"email": "rfield@example.com", "requestedBy": "ops", "reason": "test"})
    await eventually(worker.drained)
    other = MARKETO if expected_field == "HasOptedOutOfEmail" else "HasOptedOutOfEmail"
    assert not opted_out(sandbox, contact, expected_field)
    assert opted_out(sandbox, contact, other)  # the push writes its field only


@pytest.mark.postgres
async def test_resubscribe_on_postgres(make_worker: MakeWorker, sandbox: SandboxHandle, postgres_url: str) -> None:
    contact = sandbox.state.add_record("Contact", "pgback@example.com")
    worker = await make_worker(ledger_url=postgres_url)
    await worker.post({"email": "pgback@example.com", "salesforceId": contact})
    await eventually(worker.drained)
    await resubscribe(worker, {"email": "pgback@example.com", "requestedBy": "ops", "reason": "pg"})
    await eventually(worker.drained)
    assert not opted_out(sandbox, contact)
    found = await worker.lookup("pgback@example.com")
    assert found["unsubscribed"] is False and found["history"][1]["requestedBy"] == "ops"


async def test_nightly_after_a_resubscribe_leaves_it_alone_until_salesforce_opts_out_again(
    make_worker: MakeWorker, sandbox: SandboxHandle
) -> None:
    from unsubscribe_sync.nightly.job import run_nightly

    state = sandbox.state
    contact = state.add_record("Contact", "nightly.back@example.com")
    worker = await make_worker()
    await worker.post({"email": "nightly.back@example.com", "salesforceId": contact})
    await eventually(worker.drained)
    await resubscribe(worker, {"email": "nightly.back@example.com", "requestedBy": "ops", "reason": "re-consented"})
    await eventually(worker.drained)
    assert not opted_out(sandbox, contact)
    writes = state.write_count(contact)

    summary = await asyncio.to_thread(run_nightly, worker.config, dry_run=False, ledger=worker.ledger)
    assert summary["outcome"] == "Succeeded", summary.get("error")
    assert (summary["toSalesforce"], summary["fromSalesforce"]) == (0, 0)
    assert not opted_out(sandbox, contact) and state.write_count(contact) == writes
    assert (await worker.lookup("nightly.back@example.com"))["unsubscribed"] is False

    # someone opts the record out in Salesforce again: a new opt-out, and opt-out wins
    state.set_fields(contact, {"HasOptedOutOfEmail": True})
    summary = await asyncio.to_thread(run_nightly, worker.config, dry_run=False, ledger=worker.ledger)
    assert summary["outcome"] == "Succeeded" and summary["fromSalesforce"] == 1
    found = await worker.lookup("nightly.back@example.com")
    assert found["unsubscribed"] is True
    assert found["history"][0]["action"] == "unsubscribed" and found["history"][0]["source"] == "salesforce-sync"

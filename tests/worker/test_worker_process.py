"""The `unsubscribe-sync worker` process: SIGKILL mid-batch loses nothing, SIGTERM stops cleanly, bad config exits 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.fixtures.common import free_port
from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.ledger import Ledger

TOKEN = "process-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class WorkerProcess:
    def __init__(self, config_path: Path, url: str, log_path: Path) -> None:
        self.config_path = config_path
        self.url = url
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker did not start:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)

    def post(self, body: Any) -> None:
        resp = requests.post(f"{self.url}/v1/unsubscribes", json=body, headers=AUTH, timeout=30)
        assert resp.status_code == 202, resp.text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def worker_process(tmp_path: Path, sandbox: SandboxHandle) -> Iterator[Callable[[], WorkerProcess]]:
    made: list[WorkerProcess] = []
    creds = sandbox.write_credentials(tmp_path / "creds")
    (tmp_path / "token").write_text(TOKEN)
    port = free_port()
    config = {
        "salesforce": {"loginUrl": sandbox.url, "credentialsDir": str(creds), "caFile": str(sandbox.ca_file)},
        "ledger": {"url": f"sqlite:///{tmp_path}/ledger.db"},
        "salesforcePoll": {"intervalSeconds": 0},  # the nightly's reads are counted here, not the poll's
        "worker": {
            "listen": f"127.0.0.1:{port}",
            "publicListen": None,  # parallel tests would share 8081
            "tokenFile": str(tmp_path / "token"),
            "batchSize": 50,
            "batchWindowSeconds": 0.01,
        },
        "logging": {"format": "json"},
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))

    def make() -> WorkerProcess:
        worker = WorkerProcess(config_path, f"http://127.0.0.1:{port}", tmp_path / "worker.log")
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_mid_batch_then_restart_loses_nothing(
    worker_process: Callable[[], WorkerProcess], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    state = sandbox.state
    state.seed(contacts=500, opted_out_ratio=0, deleted_ratio=0)
    ids = state.find_ids("Contact")
    state.set_latency(300)
    first = worker_process()
    first.start()
    for start in range(0, 500, 100):
        batch = [{"email": f"k{i}@example.com", "salesforceId": ids[i]} for i in range(start, start + 100)]
        first.post({"unsubscribes": batch})
    wait_for(lambda: sum(state.writes.values()) >= 50, 30, "a first batch written")
    time.sleep(0.1)  # inside the next call's 300 ms latency
    assert first.proc is not None
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert state.count("Contact", HasOptedOutOfEmail=True) < 500  # killed with work left

    second = worker_process()
    second.start()
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")  # a reader beside the running worker (WAL)
    try:
        wait_for(lambda: ledger.backlog() == 0, 60, "outbox empty")
        assert ledger.stats().by_status == {"pushed": 500}
    finally:
        ledger.close()
    second.stop()
    assert state.count("Contact", HasOptedOutOfEmail=True) == 500
    assert sum(state.writes.values()) <= 500 + 2 * 50  # at most the killed batches (2 lanes) written twice


def test_sigterm_finishes_the_batch_and_exits_cleanly(
    worker_process: Callable[[], WorkerProcess], sandbox: SandboxHandle, tmp_path: Path
) -> None:
    state = sandbox.state
    state.seed(contacts=150, opted_out_ratio=0, deleted_ratio=0)
    ids = state.find_ids("Contact")
    state.set_latency(300)
    worker = worker_process()
    worker.start()
    worker.post({"unsubscribes": [{"email": f"t{i}@example.com", "salesforceId": sid} for i, sid in enumerate(ids)]})
    wait_for(lambda: sum(state.writes.values()) >= 1, 30, "a first write")
    assert worker.proc is not None
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(30) == 0
    ledger = Ledger.open(f"sqlite:///{tmp_path}/ledger.db")
    try:
        pushed = ledger.stats().by_status.get("pushed", 0)
        assert pushed == len(state.writes) and pushed + ledger.backlog() == 150
        assert len(ledger.claim("next-worker", 200, 60)) == ledger.backlog()  # no lease left behind
    finally:
        ledger.close()
    log = (tmp_path / "worker.log").read_text()
    assert TOKEN not in log and sandbox.client_secret not in log and "pusher_stopped" in log
    assert "t0@example.com" not in log  # addresses never appear in clear at info level


def test_unusable_config_exits_2(tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(tmp_path / "nope.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"worker": {"tokenFile": str(tmp_path / "absent-token")}}))
    no_token = subprocess.run(
        [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert no_token.returncode == 2 and "worker.tokenFile" in no_token.stderr


def test_nightly_run_inside_the_worker(worker_process: Callable[[], WorkerProcess], sandbox: SandboxHandle) -> None:
    state = sandbox.state
    opted = state.add_record("Contact", "already@example.com", opted_out=True)
    pending = state.add_record("Lead", "lead@example.com")
    worker = worker_process()
    worker.start()
    worker.post({"email": "lead@example.com", "salesforceId": pending})
    dry = requests.post(f"{worker.url}/v1/nightly-runs", params={"dryRun": "true"}, headers=AUTH, timeout=120)
    assert dry.status_code == 200, dry.text
    assert dry.json()["fromSalesforce"] == 1
    lookup = f"{worker.url}/v1/unsubscribes/already@example.com"
    assert requests.get(lookup, headers=AUTH, timeout=10).status_code == 404
    real = requests.post(f"{worker.url}/v1/nightly-runs", headers=AUTH, timeout=120)
    assert real.status_code == 200, real.text
    found = requests.get(lookup, headers=AUTH, timeout=10).json()
    assert found["unsubscribed"] is True and found["salesforce"][0]["id"] == opted
    wait_for(lambda: bool(state.get_record(pending)["HasOptedOutOfEmail"]), 30, "the lead pushed")  # type: ignore[index]
    text = requests.get(f"{worker.url}/metrics", timeout=10).text
    assert 'unsubscribe_sync_nightly_records_total{direction="from_salesforce"} 1.0' in text
    assert "unsubscribe_sync_nightly_last_success_timestamp_seconds 0.0" not in text

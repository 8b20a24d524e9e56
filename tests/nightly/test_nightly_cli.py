"""`unsubscribe-sync nightly` as a process: the contract's last stdout line, exit codes, the termination
message, and SQLite mode next to a running worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures.common import free_port
from tests.fixtures.nightly import Env, build_world, opted_out
from tests.fixtures.sandbox import SandboxHandle

CONTRACT_KEYS = ["toSalesforce", "fromSalesforce", "skippedNoSalesforceId", "failed"]


@pytest.fixture
def env(tmp_path: Path, sandbox: SandboxHandle) -> Env:
    sandbox.state.set_bulk_processing_time(0.0)
    return Env(tmp_path, sandbox, f"sqlite:///{tmp_path / 'ledger.db'}")


def nightly(config: Path, *args: str, termination: Path | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "UNSUBSCRIBE_SYNC_TERMINATION_LOG": str(termination or "/nonexistent/dir/t")}
    return subprocess.run(
        [sys.executable, "-m", "unsubscribe_sync", "nightly", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environ,
    )


def last_line(out: str) -> dict[str, int]:
    line = out.rstrip("\n").splitlines()[-1]
    data = json.loads(line)
    assert list(data) == CONTRACT_KEYS
    assert line == json.dumps(data, separators=(",", ":"))
    return dict(data)


def test_cli_last_line_and_termination_log(env: Env, tmp_path: Path) -> None:
    w = build_world(env)
    config = env.write_config()
    termination = tmp_path / "termination-log"

    proc = nightly(config, "--local", termination=termination)

    assert proc.returncode == 0, proc.stderr
    assert last_line(proc.stdout) == {"toSalesforce": 3, "fromSalesforce": 2, "skippedNoSalesforceId": 2, "failed": 2}
    message = json.loads(termination.read_text())
    assert message["outcome"] == "Succeeded"
    assert {k: message[k] for k in CONTRACT_KEYS} == last_line(proc.stdout)
    assert message["startTime"].endswith("Z") and message["completionTime"] >= message["startTime"]
    assert opted_out(env, w.c_ledger_only)


def test_cli_dry_run_prints_plan_and_writes_nothing(env: Env, tmp_path: Path) -> None:
    build_world(env)
    config = env.write_config()
    termination = tmp_path / "termination-log"

    proc = nightly(config, "--local", "--dry-run", termination=termination)

    assert proc.returncode == 0, proc.stderr
    assert last_line(proc.stdout)["toSalesforce"] == 5
    assert "Contact: 2 to Salesforce, 1 from Salesforce" in proc.stdout
    assert "sha256:" in proc.stdout and "ledger.only@example.com" not in proc.stdout
    assert not termination.exists()
    assert sum(env.state.writes.values()) == 0


def test_cli_failed_requirement_exits_nonzero_naming_the_object(env: Env, tmp_path: Path) -> None:
    build_world(env)
    field = "ToutApp__Marketo_Sales_Opt_Out__c"
    env.state.configure_field("Contact", field, label="Marketo Sales Opt Out")
    env.state.remove_field("Lead", field)
    config = env.write_config(optOut__target="MarketoSalesOptOut")
    termination = tmp_path / "termination-log"

    proc = nightly(config, "--local", termination=termination)

    assert proc.returncode == 1
    assert "Lead" in proc.stderr
    assert last_line(proc.stdout) == dict.fromkeys(CONTRACT_KEYS, 0)
    assert json.loads(termination.read_text())["outcome"] == "Failed"
    assert sum(env.state.writes.values()) == 0
    assert env.server.client_secret not in proc.stderr + proc.stdout


def test_cli_change_guard_trip_exits_nonzero_and_writes_nothing(env: Env, tmp_path: Path) -> None:
    w = build_world(env)
    config = env.write_config(nightly__maxChangeRatio=0.5)
    termination = tmp_path / "termination-log"

    proc = nightly(config, "--local", termination=termination)

    assert proc.returncode == 1
    assert "change guard: toSalesforce: the run would make 5 changes" in proc.stderr
    assert "over the limit maxChangeRatio 0.5" in proc.stderr and "--dry-run" in proc.stderr
    # the contract line reports what was written: nothing
    assert last_line(proc.stdout) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 2, "failed": 0}
    message = json.loads(termination.read_text())
    assert message["outcome"] == "Failed" and "maxChangeRatio 0.5" in message["error"]
    assert sum(env.state.writes.values()) == 0
    assert not opted_out(env, w.c_ledger_only)


def test_cli_dry_run_shows_the_guard(env: Env) -> None:
    build_world(env)

    would = nightly(env.write_config(nightly__maxChanges=3), "--local", "--dry-run")
    assert would.returncode == 0, would.stderr
    assert "change guard (maxChanges 3): WOULD STOP a real run: change guard: toSalesforce" in would.stdout

    within = nightly(env.write_config(nightly__maxChanges=5), "--local", "--dry-run")
    assert within.returncode == 0, within.stderr
    assert "change guard (maxChanges 5): within the limits" in within.stdout
    assert sum(env.state.writes.values()) == 0


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "config.yaml"
    bad.write_text("nightly: {enabled: maybe}\n")
    proc = nightly(bad)
    assert proc.returncode == 2
    assert "nightly.enabled" in proc.stderr


@pytest.fixture
def worker(env: Env) -> Iterator[tuple[Path, str]]:
    port = free_port()
    config = env.write_config(
        worker__listen=f"127.0.0.1:{port}",
        worker__url=f"http://127.0.0.1:{port}",
        salesforcePoll__intervalSeconds=0,  # these tests count what the nightly brings in, not the poll
    )
    log = (env.tmp / "worker.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(config)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None, (env.tmp / "worker.log").read_text()
            assert time.monotonic() < deadline, "worker did not become ready"
            time.sleep(0.1)
        yield config, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_sqlite_mode_runs_in_the_worker(env: Env, worker: tuple[Path, str]) -> None:
    config, url = worker
    w = build_world(env)

    proc = nightly(config)

    assert proc.returncode == 0, proc.stderr
    assert "asking the worker" in proc.stderr and "running here" not in proc.stderr
    counts = last_line(proc.stdout)
    assert counts["fromSalesforce"] == 2 and counts["skippedNoSalesforceId"] == 2
    assert opted_out(env, w.l_ledger_only)
    metrics = requests.get(f"{url}/metrics", timeout=5).text
    line = next(x for x in metrics.splitlines() if x.startswith("unsubscribe_sync_nightly_last_success_timestamp"))
    assert float(line.split()[-1]) > 0
    # a dry run through the worker too
    dry = nightly(config, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert last_line(dry.stdout) == {"toSalesforce": 0, "fromSalesforce": 0, "skippedNoSalesforceId": 2, "failed": 0}


def test_sqlite_mode_without_worker_opens_the_local_file(env: Env) -> None:
    w = build_world(env)
    config = env.write_config(worker__url=f"http://127.0.0.1:{free_port()}")

    proc = nightly(config)

    assert proc.returncode == 0, proc.stderr
    assert "running here on the local SQLite ledger" in proc.stderr
    assert last_line(proc.stdout)["toSalesforce"] == 3
    assert opted_out(env, w.c_ledger_only)


def test_sqlite_mode_without_worker_or_file_fails_clearly(env: Env) -> None:
    env.ledger_url = f"sqlite:///{env.tmp / 'elsewhere' / 'ledger.db'}"
    config = env.write_config(worker__url=f"http://127.0.0.1:{free_port()}")
    proc = nightly(config)
    assert proc.returncode == 1
    assert "not on this machine" in proc.stderr
    assert last_line(proc.stdout) == dict.fromkeys(CONTRACT_KEYS, 0)

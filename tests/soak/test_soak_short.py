"""The short soak (part of `make test`): the full harness, seconds of traffic and faults instead of minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.postgres import PostgresServer
from tests.soak.runner import SoakRun
from tests.soak.schedule import SHORT
from tests.soak.verdict import (
    PAUSED_RATE_LIMITED,
    PAUSED_TRANSIENT,
    REAUTHENTICATIONS,
    RECORDS_RETRIED,
    figures,
    violations,
)


@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_short_soak_loses_nothing(tmp_path: Path, postgres_url: str, postgres_server: PostgresServer | str) -> None:
    server = postgres_server if isinstance(postgres_server, PostgresServer) else None
    run = SoakRun(SHORT, tmp_path, postgres_url, server)
    try:
        obs = run.run()
    finally:
        run.stop_all()
    numbers = figures(obs)
    problems = violations(obs)
    (tmp_path / "figures.json").write_text(json.dumps({"figures": numbers, "problems": problems}, indent=2))
    logs = "\n".join(f"===== {name}\n{text[-4000:]}" for name, text in run.all_logs().items())
    assert not problems, f"{problems}\nfigures: {numbers}\nnotes: {obs.notes}\n{logs}"
    # The run really was under fire and really carried traffic.
    assert numbers["unsubscribes_accepted"] >= SHORT.events // 2, numbers
    assert obs.faults_injected["worker SIGKILL + restart"] >= 3
    met = obs.worker_evidence
    assert met[RECORDS_RETRIED] and met[PAUSED_TRANSIENT] and met[PAUSED_RATE_LIMITED] and met[REAUTHENTICATIONS], met
    # The contention acts really ran: records locked past maxAttempts, hostile requests refused.
    acts = numbers["contention"]
    assert acts["locked_records_reported_stuck"] >= 1 and acts["acts_accepted"] > 0, acts
    assert acts["hostile_answers"].get("400", 0) >= 3 * len(SHORT.hostile_bursts), acts
    expected = [k for k in obs.faults_injected if server is not None or k != "PostgreSQL crash restart"]
    assert all(obs.faults_injected[k] >= 1 for k in expected), obs.faults_injected

"""The long soak (`make soak`): minutes of traffic under the full fault schedule; writes docs/RELIABILITY.md."""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.fixtures.common import REPO_ROOT
from tests.fixtures.postgres import PostgresServer
from tests.soak.report import render_reliability
from tests.soak.runner import SoakRun
from tests.soak.schedule import LONG
from tests.soak.verdict import figures, violations

REPORT = REPO_ROOT / "docs" / "RELIABILITY.md"


@pytest.mark.soak
@pytest.mark.postgres
@pytest.mark.timeout(900)
def test_long_soak_loses_nothing_and_writes_the_report(
    tmp_path: Path, postgres_url: str, postgres_server: PostgresServer | str
) -> None:
    server = postgres_server if isinstance(postgres_server, PostgresServer) else None
    run = SoakRun(LONG, tmp_path, postgres_url, server)
    started = datetime.now(UTC)
    try:
        obs = run.run()
    finally:
        run.stop_all()
    numbers = figures(obs)
    problems = violations(obs)
    environment = {
        "run": started.strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "Python": sys.version.split()[0],
        "PostgreSQL": "throwaway local server (synchronous_commit on for the ledger database)"
        if server is not None
        else "given by UNSUBSCRIBE_SYNC_TEST_POSTGRES_DSN (not restarted)",
        "notes": "; ".join(obs.notes) or "none",
    }
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(render_reliability(LONG, obs.schedule, numbers, problems, environment))
    (tmp_path / "figures.json").write_text(json.dumps(numbers, indent=2))
    logs = "\n".join(f"===== {name}\n{text[-3000:]}" for name, text in run.all_logs().items())
    assert not problems, f"{problems}\nfigures: {numbers}\n{logs}"
    assert numbers["unsubscribes_accepted"] >= LONG.events // 2, numbers

"""The soak run: a sandbox subprocess, two worker subprocesses on one PostgreSQL ledger, traffic, faults.

``SoakRun(profile, workdir, postgres_url, postgres_server).run()`` returns the Observations that
``verdict.figures`` / ``verdict.violations`` turn into numbers and broken invariants. Everything talks
over loopback; every child's stdout/stderr lands in ``workdir/*.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any, Protocol

import psycopg
import requests
import yaml

from tests.fixtures.common import free_port
from tests.soak import contention
from tests.soak.contention import Contention
from tests.soak.processes import ManagedProcess, cli, wait_http
from tests.soak.schedule import CONTENTION_KINDS, FaultKind, FaultWindow, SoakProfile, build_schedule
from tests.soak.traffic import Target, TrafficGenerator, TrafficReport
from tests.soak.verdict import Observations, worker_evidence
from unsubscribe_sync.sandbox import SandboxAdmin

OBJECTS = ("Contact", "Lead")
POLL_SECONDS = 0.5


class Restartable(Protocol):
    def restart(self) -> None: ...


class SoakRun:
    def __init__(
        self,
        profile: SoakProfile,
        workdir: Path,
        postgres_url: str,
        postgres_server: Restartable | None,
        *,
        worker_env: dict[str, str] | None = None,
    ) -> None:
        self.profile = profile
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.postgres_server = postgres_server
        self.worker_env = worker_env or {}
        self.schedule = build_schedule(profile)
        self.token = secrets.token_hex(16)
        self.admin_token = secrets.token_hex(16)
        self.sandbox: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.worker_ports: list[int] = []
        self.configs: list[Path] = []
        self.admin: SandboxAdmin | None = None
        self.info: dict[str, Any] = {}
        self.injected: dict[str, int] = {k.value: 0 for k in FaultKind}
        self.first_true_at: dict[str, float] = {}
        self.notes: list[str] = []
        self._observing = threading.Event()
        self.contention: Contention | None = None
        self.reserved: list[Target] = []
        self._locked: dict[FaultWindow, list[Target]] = {}

    @property
    def reserve(self) -> int:
        """Records kept away from the steady traffic for the contention acts."""
        p = self.profile
        return (
            contention.LOCKED_PER_WINDOW * len(p.long_locks)
            + 3 * contention.OUT_OF_ORDER_EACH * len(p.out_of_order)
            + contention.RACE_ADDRESSES * len(p.replica_races)
        )

    # ---- processes ---------------------------------------------------------------------------------

    def prepare_database(self) -> None:
        """The test server runs with synchronous_commit=off (speed); a crash would then lose commits that
        were already acknowledged, which no deployment accepts. Durable commits for this database."""
        name = psycopg.conninfo.conninfo_to_dict(self.postgres_url)["dbname"]
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit TO on')

    def start_sandbox(self) -> None:
        state_dir = self.workdir / "sandbox"
        per_object = int(self.profile.events * (1 - self.profile.no_id_share) / len(OBJECTS)) + 50
        per_object += self.reserve // len(OBJECTS) + 1
        argv = cli(
            "sandbox", "--port", str(free_port()), "--state-dir", str(state_dir),
            "--write-credentials", str(self.workdir / "credentials"),
            "--seed-contacts", str(per_object), "--seed-leads", str(per_object),
            "--opted-out-ratio", "0", "--converted-ratio", "0", "--deleted-ratio", "0",
            "--admin-token", self.admin_token,
        )  # fmt: skip
        self.sandbox = ManagedProcess("sandbox", argv, self.workdir)
        self.sandbox.start()
        info_file = state_dir / "sandbox.json"
        deadline = time.monotonic() + 60
        while not info_file.exists() or not info_file.read_text().strip().endswith("}"):
            if not self.sandbox.alive or time.monotonic() > deadline:
                raise RuntimeError(f"the sandbox did not start:\n{self.sandbox.logs()[-3000:]}")
            time.sleep(0.1)
        self.info = json.loads(info_file.read_text())
        context = ssl.create_default_context(cafile=self.info["caFile"])
        wait_http(self.info["url"] + "/services/data", context=context, process=self.sandbox)
        self.admin = SandboxAdmin(self.info["adminUrl"], self.admin_token, self.info["caFile"])

    def _write_config(self, index: int, port: int) -> Path:
        token_file = self.workdir / "webhook-token"
        token_file.write_text(self.token)
        config = {
            "salesforce": {
                "loginUrl": self.info["url"],
                "credentialsDir": self.info["credentialsDir"],
                "caFile": self.info["caFile"],
                "objects": list(OBJECTS),
            },
            "ledger": {"url": self.postgres_url},
            "worker": {
                "listen": f"127.0.0.1:{port}",
                "publicListen": None,
                "tokenFile": str(token_file),
                "url": f"http://127.0.0.1:{port}",
                # A killed worker's claimed rows wait for their lease to run out: keep it short here.
                "leaseSeconds": 8,
                # Small, so that the soak's long lock outlasts it: past it a record is reported stuck, still retried.
                "maxAttempts": self.profile.max_attempts,
            },
            "logging": {"format": "json"},
        }
        path = self.workdir / f"worker-{index}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start_workers(self) -> None:
        for index in range(self.profile.workers):
            port = free_port()
            config = self._write_config(index, port)
            proc = ManagedProcess(f"worker-{index}", cli("worker", "--config", str(config)), self.workdir,
                                  env=self.worker_env)  # fmt: skip
            proc.start()
            self.workers.append(proc)
            self.worker_ports.append(port)
            self.configs.append(config)
        for proc, port in zip(self.workers, self.worker_ports, strict=True):
            wait_http(f"http://127.0.0.1:{port}/readyz", process=proc, timeout=60)

    def stop_all(self) -> None:
        for proc in self.workers:
            proc.stop()
        if self.sandbox is not None:
            self.sandbox.stop()

    def all_logs(self) -> dict[str, str]:
        procs = [*self.workers, *([self.sandbox] if self.sandbox else [])]
        return {p.name: p.logs() for p in procs}

    # ---- what to unsubscribe -------------------------------------------------------------------------

    def targets(self) -> list[Target]:
        assert self.admin is not None
        per_object: list[list[Target]] = []
        for sobject in OBJECTS:
            ids = self.admin.find_ids(sobject)
            # Seeded in ID order with e-mails <object><n>@example.com (n from 1): spot-check that.
            for position in (0, len(ids) - 1):
                record = self.admin.get_record(ids[position])
                assert record is not None and record.get("Email") == f"{sobject.lower()}{position + 1}@example.com"
            per_object.append([Target(i, sobject, f"{sobject.lower()}{n + 1}@example.com") for n, i in enumerate(ids)])
        # Interleave the objects so both get traffic all along.
        mixed = [t for pair in zip(*per_object, strict=False) for t in pair]
        return mixed

    # ---- faults --------------------------------------------------------------------------------------

    def _apply(self, window: FaultWindow, starting: bool) -> None:
        admin = self.admin
        assert admin is not None
        kind = window.kind
        if kind is FaultKind.LONG_LOCK:
            ids = [t.salesforce_id for t in self._locked[window]]
            admin.set_faults(**({"lockIds": ids} if starting else {"unlockIds": ids}))
        elif kind in CONTENTION_KINDS:
            pass  # sent by _contend
        elif kind is FaultKind.SANDBOX_OUTAGE:
            admin.set_faults(unavailable=starting)
        elif kind is FaultKind.RATE_LIMIT:
            admin.set_faults(requestLimitExceeded=starting)
        elif kind is FaultKind.LOCK_ROW:
            admin.set_faults(lockRatio=self.profile.lock_row_ratio if starting else 0.0)
        elif kind is FaultKind.SESSION_EXPIRY:
            admin.set_faults(expireSessions=True)
        elif kind is FaultKind.WORKER_KILL:
            assert window.target is not None
            proc = self.workers[window.target]
            if starting:
                proc.kill()
            else:
                proc.start()
        elif kind is FaultKind.POSTGRES_RESTART:
            if self.postgres_server is None:
                self.notes.append("PostgreSQL restart skipped: the server is not one the test started")
                return
            self.postgres_server.restart()
        if starting:
            self.injected[kind.value] += 1

    async def _run_faults(self, t0: float) -> None:
        steps: list[tuple[float, FaultWindow, bool]] = []
        for w in self.schedule:
            steps.append((w.start, w, True))
            if w.duration and w.kind is not FaultKind.SESSION_EXPIRY:
                steps.append((w.end, w, False))
        steps.sort(key=lambda s: (s[0], not s[2]))
        acts: list[asyncio.Task[None]] = []
        for at, window, starting in steps:
            await asyncio.sleep(max(0.0, t0 + at - time.time()))
            await asyncio.to_thread(self._apply, window, starting)
            if starting and window.kind in CONTENTION_KINDS:
                acts.append(asyncio.create_task(self._contend(window)))
        await asyncio.gather(*acts)

    async def _contend(self, window: FaultWindow) -> None:
        c = self.contention
        assert c is not None
        if window.kind is FaultKind.LONG_LOCK:
            await c.long_lock_start(self._locked[window])
        elif window.kind is FaultKind.OUT_OF_ORDER:
            await c.out_of_order()
        elif window.kind is FaultKind.REPLICA_RACE:
            await c.race()
        elif window.kind is FaultKind.HOSTILE:
            await c.hostile()

    # ---- observation ---------------------------------------------------------------------------------

    def opted_out_ids(self) -> set[str]:
        assert self.admin is not None
        found: set[str] = set()
        for sobject in OBJECTS:
            found.update(self.admin.find_ids(sobject, HasOptedOutOfEmail=True))
        return found

    def _observe(self) -> None:
        while not self._observing.wait(POLL_SECONDS):
            now = time.time()
            with contextlib.suppress(Exception):
                for record_id in self.opted_out_ids():
                    self.first_true_at.setdefault(record_id, now)

    def outbox_left(self) -> int:
        with psycopg.connect(self.postgres_url, connect_timeout=10) as conn:
            row = conn.execute("SELECT count(*) FROM outbox").fetchone()
            return int(row[0]) if row else 0

    def ledger_states(self) -> dict[str, bool]:
        with psycopg.connect(self.postgres_url, connect_timeout=10) as conn:
            return {r[0]: bool(r[1]) for r in conn.execute("SELECT email, unsubscribed FROM unsubscribes")}

    def failed_targets(self) -> set[str]:
        with psycopg.connect(self.postgres_url, connect_timeout=10) as conn:
            rows = conn.execute("SELECT salesforce_id FROM salesforce_targets WHERE status = 'failed'")
            return {r[0] for r in rows}

    def ledger_emails(self) -> list[str]:
        with psycopg.connect(self.postgres_url, connect_timeout=10) as conn:
            return [r[0] for r in conn.execute("SELECT email FROM unsubscribes")]

    def drain(self, traffic: TrafficReport) -> None:
        """Wait until every accepted unsubscribe with an ID is true in Salesforce and nothing is owed."""
        wanted = {i.salesforce_id for i in traffic.accepted if i.salesforce_id}
        expected = self.contention.report.expected() if self.contention else {}
        wanted |= {t.salesforce_id for t, want in expected.values() if want}
        unwanted = {t.salesforce_id for t, want in expected.values() if not want}
        deadline = time.monotonic() + self.profile.drain_seconds
        while time.monotonic() < deadline:
            done = self.opted_out_ids()
            now = time.time()
            for record_id in done:
                self.first_true_at.setdefault(record_id, now)
            if wanted <= done and not unwanted & done:
                with contextlib.suppress(psycopg.Error):
                    if self.outbox_left() == 0:
                        return
            time.sleep(POLL_SECONDS)
        self.notes.append(f"the drain period of {self.profile.drain_seconds:.0f} s ended with work left")

    def history(self, email: str) -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{self.worker_ports[0]}/v1/unsubscribes/" + urllib.parse.quote(email, safe="@")
        resp = requests.get(url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return dict(resp.json())

    def nightly(self) -> tuple[int, dict[str, int] | None, str]:
        done = subprocess.run(
            cli("nightly", "--config", str(self.configs[0])), capture_output=True, text=True, timeout=300, check=False
        )
        (self.workdir / "nightly.log").write_text(done.stdout + "\n----- stderr\n" + done.stderr)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        summary = None
        if lines:
            with contextlib.suppress(ValueError):
                summary = json.loads(lines[-1])
        return done.returncode, summary, done.stdout + done.stderr

    # ---- the whole run -------------------------------------------------------------------------------

    async def _traffic_and_faults(self, generator: TrafficGenerator) -> TrafficReport:
        t0 = time.time()
        async with Contention([f"http://127.0.0.1:{p}" for p in self.worker_ports], self.token,
                              self.reserved) as self.contention:  # fmt: skip
            faults = asyncio.create_task(self._run_faults(t0))
            report = await generator.run()
            await faults  # every restart done: all workers run again; every contention act answered
        return report

    def run(self) -> Observations:
        self.prepare_database()
        self.start_sandbox()
        self.start_workers()
        every = self.targets()
        targets, self.reserved = every[: len(every) - self.reserve], every[len(every) - self.reserve :]
        locks = [w for w in self.schedule if w.kind is FaultKind.LONG_LOCK]
        self._locked = {
            w: self.reserved[n * contention.LOCKED_PER_WINDOW : (n + 1) * contention.LOCKED_PER_WINDOW]
            for n, w in enumerate(locks)
        }
        self.reserved = self.reserved[len(locks) * contention.LOCKED_PER_WINDOW :]
        generator = TrafficGenerator(
            [f"http://127.0.0.1:{p}" for p in self.worker_ports],
            self.token,
            targets,
            events=self.profile.events,
            seconds=self.profile.traffic_seconds,
            rate_per_second=self.profile.rate_per_second,
            batch_max=self.profile.batch_max,
            no_id_share=self.profile.no_id_share,
            replay_share=self.profile.replay_share,
        )
        observer = threading.Thread(target=self._observe, name="soak-observer", daemon=True)
        observer.start()
        try:
            traffic = asyncio.run(self._traffic_and_faults(generator))
            for proc, port in zip(self.workers, self.worker_ports, strict=True):
                if not proc.alive:
                    proc.start()
                wait_http(f"http://127.0.0.1:{port}/readyz", process=proc, timeout=60)
            self.drain(traffic)
        finally:
            self._observing.set()
            observer.join()
        assert self.admin is not None
        accepted = [i for i in traffic.accepted if i.salesforce_id]
        opted = self.opted_out_ids()
        writes = self.admin.writes()["byId"]
        sample = [i.email for i in traffic.accepted][:: max(1, len(traffic.accepted) // 25)]
        histories = {email: self.history(email) for email in sample}
        report = self.contention.report if self.contention else contention.ContentionReport()
        locked_histories = {t.email: self.history(t.email) for t in report.locked}
        ledger = self.ledger_states()
        contention_problems = contention.problems(report, ledger, opted, every, locked_histories,
                                                  self.failed_targets())  # fmt: skip
        contention_figures = contention.figures(report, locked_histories)
        nightly_exit, nightly_summary, _ = self.nightly()
        return Observations(
            profile=self.profile.name,
            schedule=self.schedule,
            traffic=traffic,
            faults_injected=dict(self.injected),
            opted_out={i.salesforce_id: i.salesforce_id in opted for i in accepted if i.salesforce_id},
            write_counts={k: int(v) for k, v in writes.items()},
            first_true_at=dict(self.first_true_at),
            ledger_emails=self.ledger_emails(),
            outbox_left=self.outbox_left(),
            histories=histories,
            nightly_summary=nightly_summary,
            nightly_exit=nightly_exit,
            max_writes_per_record=self.profile.max_writes_per_record,
            worker_restarts=sum(p.starts for p in self.workers),
            worker_evidence=worker_evidence(p.logs() for p in self.workers),
            notes=self.notes,
            contention=contention_figures,
            contention_problems=contention_problems,
        )

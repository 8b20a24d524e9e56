"""Push worker benchmarks: webhook ingest rate, outbox drain into Salesforce, push lag.

`python -m bench worker` runs:
1. ingest: accepted unsubscribes/s, single-item and batched (100 a post), on SQLite and on a
   throwaway PostgreSQL (skipped with a message when its binaries are missing). The worker
   runs in a subprocess (push off); the load comes from 32 concurrent aiohttp connections.
2. drain: 10,000 queued unsubscribes into the sandbox with 100 ms latency, against the ideal
   ceil(10000/200) x latency, and the Salesforce calls used against the ideal 50.
3. lag: p50/p99 from receipt to Salesforce confirmation at a steady 200 unsubscribes/s.
Aims: ingest >= 2,000/s batched on SQLite; drain within 2x ideal; calls within 1.1x ideal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
CONCURRENCY = 32
INGEST_SECONDS = 4.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(ledger_url: str, port: int, token_file: str) -> None:
    """Subprocess entry: the worker app with push off (ingest only)."""
    from aiohttp import web

    from unsubscribe_sync.api.config import parse_config
    from unsubscribe_sync.ledger import Ledger
    from unsubscribe_sync.logs import configure_logging
    from unsubscribe_sync.worker.app import create_app

    configure_logging("json", "info", stream=open(os.devnull, "w"))  # noqa: SIM115  # realistic log cost, quiet bench output
    config = parse_config({"ledger": {"url": ledger_url}, "worker": {"tokenFile": token_file}})
    ledger = Ledger.open(ledger_url, pool_size=10)
    web.run_app(create_app(config, ledger=ledger, push=False), host="127.0.0.1", port=port, print=None, access_log=None)


@contextlib.contextmanager
def server_process(code: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``code`` (``{port}`` filled in) in a subprocess serving on loopback; yields its URL once /readyz answers."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'operator'}"}
    command = [sys.executable, "-c", code.format(port=port)]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/readyz", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.1)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(15)


@contextlib.contextmanager
def _server(ledger_url: str, tmp: Path) -> Iterator[str]:
    token_file = tmp / "token"
    token_file.write_text(TOKEN)
    with server_process(
        f"from bench.bench_worker import serve; serve({ledger_url!r}, {{port}}, {str(token_file)!r})"
    ) as (url, _):
        yield url


async def _load(url: str, per_post: int, seconds: float) -> float:
    """Accepted unsubscribes per second over ``seconds`` with CONCURRENCY connections."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    accepted = 0
    counter = 0
    stop_at = time.perf_counter() + seconds

    async def one(session: aiohttp.ClientSession, worker: int) -> None:
        nonlocal accepted, counter
        while time.perf_counter() < stop_at:
            counter += 1
            base = f"w{worker}-{counter}"
            if per_post == 1:
                body = json.dumps({"email": f"{base}@bench.example", "salesforceId": "003000000000001"})
            else:
                body = json.dumps({"unsubscribes": [{"email": f"{base}-{i}@bench.example"} for i in range(per_post)]})
            async with session.post(f"{url}/v1/unsubscribes", data=body, headers=headers) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
                accepted += (await resp.json())["accepted"]

    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        await asyncio.gather(*(one(session, w) for w in range(CONCURRENCY)))
        return accepted / (time.perf_counter() - start)


def _postgres() -> tuple[Any, str] | None:
    sys.path.insert(0, str(REPO))
    from tests.fixtures.postgres import PostgresServer, _create_database, _pg_bindir

    bindir = _pg_bindir()
    if bindir is None:
        return None
    server = PostgresServer(bindir)
    server.start()
    _create_database(server.admin_dsn, "bench")
    return server, server.admin_dsn.rsplit("/", 1)[0] + "/bench"


def bench_ingest() -> dict[str, float]:
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="usync-bench-") as tmp_name:
        tmp = Path(tmp_name)
        targets = [("sqlite", f"sqlite:///{tmp}/ledger.db")]
        pg = _postgres()
        if pg is None:
            print("ingest: PostgreSQL binaries not found, PostgreSQL skipped")
        else:
            targets.append(("postgresql", pg[1]))
        try:
            for name, url in targets:
                with _server(url, tmp):
                    pass  # create the schema once, outside the measurement
                with _server(url, tmp) as base:
                    for label, per_post in (("single", 1), ("batched100", 100)):
                        rate = asyncio.run(_load(base, per_post, INGEST_SECONDS))
                        figures[f"{name}_{label}"] = rate
                        print(f"ingest {name:10s} {label:11s} {rate:9.0f} accepted/s")
        finally:
            if pg is not None:
                pg[0].stop()
    if "sqlite_batched100" in figures:
        ratio = figures["sqlite_batched100"] / 2000
        print(f"ingest sqlite batched vs aim 2,000/s: {ratio:.1f}x {'(meets aim)' if ratio >= 1 else '(BELOW aim)'}")
    return figures


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def main() -> None:
    bench_ingest()
    bench_drain()
    bench_lag()


@contextlib.contextmanager
def _sandbox_and_config(tmp: Path, latency_ms: float) -> Iterator[tuple[Any, Any]]:
    from unsubscribe_sync.api.config import parse_config
    from unsubscribe_sync.sandbox import SandboxServer

    with SandboxServer(tmp / "tls") as server:
        creds = server.credentials.write(tmp / "creds")
        (tmp / "token").write_text(TOKEN)
        config = parse_config(
            {
                "salesforce": {"loginUrl": server.url, "credentialsDir": str(creds), "caFile": str(server.ca_file)},
                "ledger": {"url": f"sqlite:///{tmp}/ledger.db"},
                "worker": {
                    "tokenFile": str(tmp / "token"),
                    "listen": f"127.0.0.1:{_free_port()}",
                    "publicListen": None,
                },
            }
        )
        server.state.set_latency(latency_ms)
        yield server, config


async def _run_app(config: Any, ledger: Any, *, wait_ready: bool = False) -> Any:
    from aiohttp import web

    from unsubscribe_sync.worker.app import create_app, pusher_of

    app = create_app(config, ledger=ledger)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, config.worker.host, config.worker.port).start()
    if wait_ready:  # measure steady state: token and field resolution done
        while (pusher := pusher_of(app)) is None or pusher.field is None:
            await asyncio.sleep(0.01)
    return runner


def bench_drain(records: int = 10_000, latency_ms: float = 100.0) -> dict[str, float]:
    from unsubscribe_sync.ledger import Ledger, Unsubscribe
    from unsubscribe_sync.logs import configure_logging

    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    with (
        tempfile.TemporaryDirectory(prefix="usync-bench-") as tmp_name,
        _sandbox_and_config(Path(tmp_name), latency_ms) as (server, config),
    ):
        state = server.state
        state.seed(contacts=records, opted_out_ratio=0, deleted_ratio=0)
        ids = state.find_ids("Contact")
        ledger = Ledger.open(config.ledger.url)
        for start in range(0, records, 1000):
            ledger.ingest(
                [
                    Unsubscribe(f"d{i}@bench.example", sid, "Contact")
                    for i, sid in enumerate(ids[start : start + 1000], start)
                ]
            )
        before = state.call_counts().get("collections", 0)

        async def drain() -> float:
            started = time.perf_counter()
            runner = await _run_app(config, ledger)
            try:
                while await asyncio.to_thread(ledger.backlog) > 0:
                    await asyncio.sleep(0.02)
                return time.perf_counter() - started
            finally:
                await runner.cleanup()

        elapsed = asyncio.run(drain())
        calls = state.call_counts().get("collections", 0) - before
        opted = state.count("Contact", HasOptedOutOfEmail=True)
        ledger.close()
    ideal_calls = math.ceil(records / 200)
    ideal = ideal_calls * latency_ms / 1000
    print(
        f"drain {records} records, {latency_ms:.0f} ms latency: {elapsed:.2f}s "
        f"(ideal {ideal:.2f}s, {elapsed / ideal:.2f}x; aim <= 2x)"
    )
    print(f"drain Salesforce collections calls: {calls} (ideal {ideal_calls}, {calls / ideal_calls:.2f}x; aim <= 1.1x)")
    print(f"drain records opted out in Salesforce: {opted}/{records}")
    return {"seconds": elapsed, "ideal_seconds": ideal, "calls": calls, "ideal_calls": ideal_calls}


def bench_lag(rate: float = 200.0, seconds: float = 10.0, latency_ms: float = 100.0) -> dict[str, float]:
    from unsubscribe_sync.ledger import Ledger
    from unsubscribe_sync.logs import configure_logging

    configure_logging("json", "warning", stream=open(os.devnull, "w"))  # noqa: SIM115
    total = int(rate * seconds)
    with (
        tempfile.TemporaryDirectory(prefix="usync-bench-") as tmp_name,
        _sandbox_and_config(Path(tmp_name), latency_ms) as (server, config),
    ):
        state = server.state
        state.seed(contacts=total, opted_out_ratio=0, deleted_ratio=0)
        ids = state.find_ids("Contact")
        ledger = Ledger.open(config.ledger.url)

        async def steady() -> None:
            runner = await _run_app(config, ledger, wait_ready=True)
            url = f"http://{config.worker.host}:{config.worker.port}/v1/unsubscribes"
            headers = {"Authorization": f"Bearer {TOKEN}"}
            try:
                async with aiohttp.ClientSession() as session:

                    async def one(i: int) -> None:
                        body = {"email": f"lag{i}@bench.example", "salesforceId": ids[i]}
                        async with session.post(url, json=body, headers=headers) as resp:
                            assert resp.status == 202

                    started = time.perf_counter()
                    tasks = []
                    for i in range(total):
                        delay = started + i / rate - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                        tasks.append(asyncio.create_task(one(i)))
                    await asyncio.gather(*tasks)
                while await asyncio.to_thread(ledger.backlog) > 0:
                    await asyncio.sleep(0.05)
            finally:
                await runner.cleanup()

        asyncio.run(steady())
        lags = []
        for i in range(total):
            found = ledger.lookup(f"lag{i}@bench.example")
            assert found is not None
            at = {h["action"]: h["at"] for h in found["history"]}
            from datetime import datetime

            lags.append(
                (datetime.fromisoformat(at["pushed"]) - datetime.fromisoformat(at["unsubscribed"])).total_seconds()
            )
        ledger.close()
    p50, p99 = _percentile(lags, 0.5), _percentile(lags, 0.99)
    print(
        f"lag at {rate:.0f}/s for {seconds:.0f}s ({latency_ms:.0f} ms Salesforce latency): "
        f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, mean {statistics.mean(lags) * 1000:.0f} ms "
        f"(floor: one call, {latency_ms:.0f} ms)"
    )
    return {"p50": p50, "p99": p99}


if __name__ == "__main__":
    main()

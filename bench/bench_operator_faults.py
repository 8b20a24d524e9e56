"""Operator under API faults: repair time after a watch gap, and writes per object.

`python -m bench operator_faults` runs the operator in-process against the fault-injecting Kubernetes
emulator (tests/fixtures/kube.py, FaultyClusterEmulator), with the resync timer at 300 s so it cannot be
what repairs anything, and reports:
1. writes per object (creates, patches and deletes of children and status; kopf's own annotation and
   finalizer patches included; Events excluded) until the first status is written;
2. repair time after a watch gap: a Deployment deleted with no watch event, then an API server restart
   with compacted history (every watch ends, resuming gets 410 Gone, kopf re-lists); time from the
   restart until the Deployment exists again (median and worst of RUNS).
3. take-over time after the peering leader is killed: two replicas (separate processes, peering priorities 2 and
   1) against the same emulator; the leader gets SIGKILL at a random point of its keepalive cycle, and a new
   UnsubscribeSync is created at once; time from the kill until its Deployment exists (the standby took over
   and reconciled it). Measured with kopf's default peering lifetime (60 s, the baseline) and with the
   operator's default (controller/runtime.py OperatorOptions.peering_lifetime), TAKEOVER_RUNS each.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.controller import CR_PATH, NS, Client, children_present, condition, cr, usync  # noqa: E402
from tests.fixtures.kube import FaultyClusterEmulator, running_faulty_cluster, start_operator  # noqa: E402

RUNS = 5
TAKEOVER_RUNS = int(os.environ.get("BENCH_TAKEOVER_RUNS", "3"))
PEERING = "usync-bench"
PEERING_PATH = "/apis/kopf.dev/v1/clusterkopfpeerings"


async def _until(predicate: object, timeout: float = 60.0) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():  # type: ignore[operator]
        if loop.time() - start > timeout:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.01)
    return loop.time() - start


async def _run() -> None:
    repairs: list[float] = []
    writes = 0
    async with running_faulty_cluster() as kube, aiohttp.ClientSession() as session:
        emulator = kube.emulator
        assert isinstance(emulator, FaultyClusterEmulator)
        client = Client(kube, session)
        running = await start_operator(kube, resync_interval=300.0)
        try:
            await client.secrets()
            mark = len(emulator.writes)
            await client.post(CR_PATH, cr())
            await _until(lambda: children_present(kube) and condition(usync(kube), "Ready"))
            await asyncio.sleep(1.0)  # let the echo of the status write settle
            writes = len([w for w in emulator.writes_since(mark) if w.path != CR_PATH])
            for _ in range(RUNS):
                emulator.delete_silently("apps/v1/deployments", NS, "acme-push-worker")
                started = time.perf_counter()
                emulator.restart()
                await _until(lambda: emulator.get("apps/v1/deployments", NS, "acme-push-worker") is not None)
                repairs.append(time.perf_counter() - started)
                await asyncio.sleep(1.0)
        finally:
            await running.stopped()
    print(f"writes per object until the first status: {writes}")
    print(
        f"repair after a watch gap (410 + re-list), {RUNS} runs: median {statistics.median(repairs):.2f} s, "
        f"worst {max(repairs):.2f} s (resync timer 300 s)"
    )


def _replica(url: str, priority: int, lifetime: int) -> None:
    """One replica process (``--replica``): the operator with peering, as the chart runs it."""
    import logging

    import kopf

    from unsubscribe_sync.controller.runtime import OperatorOptions, OperatorRuntime

    logging.basicConfig(level=logging.INFO)  # kopf's peering messages ("Pausing operations ...") tell the bench
    options = OperatorOptions(
        connection=kopf.ConnectionInfo(server=url),
        standalone=False,
        peering_name=PEERING,
        priority=priority,
        peering_lifetime=lifetime,
        metrics_port=None,
        liveness_port=None,
        preflight_interval=0.0,
        resync_interval=300.0,
        allowed_login_hosts=("127.0.0.1",),
        image="example.test/unsubscribe-sync:test",
    )
    asyncio.run(OperatorRuntime(options).run())


async def _spawn(url: str, priority: int, lifetime: int, log: Path) -> asyncio.subprocess.Process:
    out = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--replica", url, str(priority), str(lifetime), stdout=out, stderr=out,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )  # fmt: skip
    finally:
        out.close()


def _peers(emulator: Any) -> dict[str, Any]:
    obj = emulator.get("kopf.dev/v1/clusterkopfpeerings", None, PEERING) or {}
    return dict(obj.get("status") or {})


def _paused(log: Path) -> bool:
    """Whether a replica is standing by, from kopf's peering log lines (kopf starts paused, and silently stays
    paused when a peer of higher priority is already there)."""
    text = log.read_bytes() if log.exists() else b""
    return 1 + text.count(b"Pausing operations") > text.count(b"Resuming operations")


async def _takeover(lifetime: int, log_dir: Path) -> list[float]:
    """Take-over times (s) after SIGKILL of the leader, TAKEOVER_RUNS runs with one peering lifetime."""
    rng = random.Random(lifetime)
    times: list[float] = []
    async with running_faulty_cluster() as kube, aiohttp.ClientSession() as session:
        emulator = kube.emulator
        emulator.declare("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", namespaced=False)
        client = Client(kube, session)
        await client.post(PEERING_PATH, {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                          "metadata": {"name": PEERING}})  # fmt: skip
        standby_log = log_dir / f"standby-{lifetime}.log"
        standby = await _spawn(kube.url, 1, lifetime, standby_log)
        leader: asyncio.subprocess.Process | None = None
        try:
            for run in range(TAKEOVER_RUNS):
                leader = await _spawn(kube.url, 2, lifetime, log_dir / f"leader-{lifetime}-{run}.log")
                await _until(lambda: len(_peers(emulator)) >= 2, timeout=60)
                await _until(lambda: _paused(standby_log), timeout=60)
                await client.secrets(f"lead{run}")
                await client.secrets(f"take{run}")  # ready beforehand: the take-over waits for nothing else
                await client.post(CR_PATH, cr(f"lead{run}"))  # the leader serves
                lead = f"lead{run}-push-worker"
                await _until(lambda n=lead: emulator.get("apps/v1/deployments", NS, n), timeout=60)
                # a random point of the leader's keepalive cycle (every lifetime minus 5-10 s)
                await asyncio.sleep(rng.uniform(0, max(1, lifetime - 5)))
                leader.send_signal(signal.SIGKILL)
                started = time.perf_counter()
                await leader.wait()
                await client.post(CR_PATH, cr(f"take{run}"))
                take = f"take{run}-push-worker"
                await _until(lambda: not _paused(standby_log), timeout=3 * lifetime)
                resumed = time.perf_counter() - started
                await _until(lambda n=take: emulator.get("apps/v1/deployments", NS, n), timeout=3 * lifetime)
                times.append(time.perf_counter() - started)
                print(
                    f"  lifetime {lifetime} s, run {run + 1}: take-over {times[-1]:.1f} s "
                    f"(standby resumed after {resumed:.1f} s)",
                    flush=True,
                )
        finally:
            for proc in (leader, standby):
                if proc is not None and proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
    return times


async def _run_takeover() -> None:
    from unsubscribe_sync.controller.runtime import OperatorOptions

    log_dir = Path(os.environ.get("BENCH_LOG_DIR", "/tmp/bench-operator-faults"))
    log_dir.mkdir(parents=True, exist_ok=True)
    for lifetime in sorted({60, OperatorOptions().peering_lifetime}, reverse=True):
        times = await _takeover(lifetime, log_dir)
        label = "kopf default" if lifetime == 60 else "operator default"
        print(
            f"take-over after SIGKILL of the leader (2 replicas, peering lifetime {lifetime} s, {label}), "
            f"{len(times)} runs: median {statistics.median(times):.1f} s, max {max(times):.1f} s"
        )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--replica":
        _replica(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    if os.environ.get("BENCH_TAKEOVER_ONLY") != "1":
        asyncio.run(_run())
    asyncio.run(_run_takeover())


if __name__ == "__main__":
    main()

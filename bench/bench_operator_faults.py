"""Operator under API faults: repair time after a watch gap, and writes per object.

`python -m bench operator_faults` runs the operator in-process against the fault-injecting Kubernetes
emulator (tests/fixtures/kube.py, FaultyClusterEmulator), with the resync timer at 300 s so it cannot be
what repairs anything, and reports:
1. writes per object (creates, patches and deletes of children and status; kopf's own annotation and
   finalizer patches included; Events excluded) until the first status is written;
2. repair time after a watch gap: a Deployment deleted with no watch event, then an API server restart
   with compacted history (every watch ends, resuming gets 410 Gone, kopf re-lists); time from the
   restart until the Deployment exists again (median and worst of RUNS).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.controller.test_operator import CR_PATH, NS, Client, children_present, condition, cr, usync  # noqa: E402
from tests.fixtures.kube import FaultyClusterEmulator, running_faulty_cluster, start_operator  # noqa: E402

RUNS = 5


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


def main() -> None:
    asyncio.run(_run())


if __name__ == "__main__":
    main()

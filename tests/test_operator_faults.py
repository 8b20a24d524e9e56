"""The operator under Kubernetes API faults (issue 19): the real operator (kopf) against the emulator with
faults injected by ``FaultyClusterEmulator`` (tests/fixtures/kube.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio

from tests.fixtures.kube import FaultyClusterEmulator, RunningCluster, running_faulty_cluster, start_operator, wait_for
from tests.test_operator import CR_PATH, NS, Client, children_present, cr


@pytest_asyncio.fixture
async def faulty() -> AsyncIterator[RunningCluster]:
    async with running_faulty_cluster() as cluster:
        yield cluster


@pytest_asyncio.fixture
async def client(faulty: RunningCluster) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession() as session:
        yield Client(faulty, session)


def emulator(cluster: RunningCluster) -> FaultyClusterEmulator:
    assert isinstance(cluster.emulator, FaultyClusterEmulator)
    return cluster.emulator


# ---- 1: a child deleted while the watch was interrupted ------------------------------------------------
async def test_a_child_deleted_during_a_watch_gap_is_repaired_after_the_relist(
    faulty: RunningCluster, client: Client
) -> None:
    """API server restart with compacted history: open watches end, resuming gets 410 Gone, kopf re-lists.

    The Deployment deleted meanwhile is in no event; kopf keeps it in its cache. The periodic resync (300 s
    here) must not be what brings it back: the re-list does, within seconds."""
    running = await start_operator(faulty, resync_interval=300.0)
    try:
        await client.secrets()
        await client.post(CR_PATH, cr())
        await wait_for(lambda: children_present(faulty), what="children")
        before = faulty.emulator.get("apps/v1/deployments", NS, "acme-push-worker")
        assert before is not None

        emulator(faulty).delete_silently("apps/v1/deployments", NS, "acme-push-worker")
        emulator(faulty).restart()
        restored = await wait_for(
            lambda: faulty.emulator.get("apps/v1/deployments", NS, "acme-push-worker"),
            timeout=15,
            what="the Deployment restored after the re-list",
        )
        assert restored["metadata"]["uid"] != before["metadata"]["uid"]
        assert restored["spec"] == before["spec"]
    finally:
        await running.stopped()

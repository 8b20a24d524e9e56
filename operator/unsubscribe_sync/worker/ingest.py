"""Group commit: the unsubscribes of many concurrent webhook requests stored in one ledger transaction.

Each request waits until the transaction holding its items has committed, so a 202
still means "durably stored"; while one commit is in flight the next requests gather
and go together in the following one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from unsubscribe_sync.ledger import IngestResult, Ledger, Unsubscribe


class GroupCommitter:
    def __init__(
        self,
        ledger: Ledger,
        executor: Executor,
        *,
        max_items: int = 5000,
        on_commit: Callable[[IngestResult], None] | None = None,
    ) -> None:
        self._ledger = ledger
        self._executor = executor
        self._max_items = max_items
        self._on_commit = on_commit
        self._pending: deque[tuple[list[Unsubscribe], asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    async def submit(self, items: list[Unsubscribe]) -> None:
        """Store ``items``; returns once they are committed (raises what the ledger raised)."""
        if self._stopping:
            raise RuntimeError("the worker is shutting down")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        self._wake.set()
        await future

    def _take(self) -> list[tuple[list[Unsubscribe], asyncio.Future[None]]]:
        taken: list[tuple[list[Unsubscribe], asyncio.Future[None]]] = []
        count = 0
        while self._pending and (not taken or count + len(self._pending[0][0]) <= self._max_items):
            entry = self._pending.popleft()
            taken.append(entry)
            count += len(entry[0])
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if self._stopping:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch = self._take()
            items = [item for entry_items, _ in batch for item in entry_items]
            try:
                result = await loop.run_in_executor(self._executor, self._ledger.ingest, items)
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            if self._on_commit is not None:
                self._on_commit(result)
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

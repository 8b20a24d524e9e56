"""A budget on request-body bytes held in memory across the worker: a semaphore counted in bytes.

Each body may be 1 MiB, and a body becomes several times that once parsed and validated; without a
bound, 150 parallel 1 MiB requests took the worker from 91 to 237 MiB (its pod limit is 256 Mi).
A request reserves its body's size before reading it and keeps the bytes until it is answered;
when the budget is spent it waits, in arrival order (a large body is not starved by small ones), for
a bounded time, and is then refused (the caller answers 503 with Retry-After: nothing is lost, the
client retries). A request waiting for budget holds no body: aiohttp stops reading its socket once a
small buffer is full.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable


class BudgetExhausted(Exception):
    """No room in the budget within the wait."""


class Reservation:
    """Bytes held for one request; ``release`` (idempotent) gives them back."""

    def __init__(self, budget: BodyBudget, size: int) -> None:
        self._budget = budget
        self.size = size

    def shrink(self, size: int) -> None:
        """Keep only ``size`` bytes (a chunked body reserved the maximum and turned out smaller)."""
        if 0 <= size < self.size:
            self._budget._give(self.size - size)
            self.size = size

    def release(self) -> None:
        self._budget._give(self.size)
        self.size = 0

    def _release_when_done(self, _: object) -> None:
        self.release()


class BodyBudget:
    """At most ``limit`` bytes reserved at once; ``on_change(in_flight)`` is told every change (a gauge)."""

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        if limit < 1:
            raise ValueError("the body budget must be at least one byte")
        self.limit = limit
        self._in_flight = 0
        self._high_water = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._on_change = on_change
        if on_change is not None:
            on_change(0)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def high_water(self) -> int:
        """The most bytes ever reserved at once (never above ``limit``)."""
        return self._high_water

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def reserve(self, size: int, timeout: float) -> Reservation:
        """``size`` bytes (at most the whole budget), waiting at most ``timeout`` s; BudgetExhausted otherwise."""
        reservation = self.try_reserve(size)
        if reservation is not None:
            return reservation
        size = min(max(size, 0), self.limit)
        entry = (size, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                await entry[1]
        except BaseException as exc:
            granted = entry[1].done() and not entry[1].cancelled()
            if granted:  # granted in the same moment the wait ended: give it back
                self._give(size)
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(entry)
                self._wake()  # a large waiter at the head may have held smaller ones back
            if isinstance(exc, TimeoutError):
                raise BudgetExhausted(f"no room for {size} bytes within {timeout:g} s") from None
            raise
        return Reservation(self, size)

    def try_reserve(self, size: int) -> Reservation | None:
        """``size`` bytes (at most the whole budget) at once, or None when they would have to wait."""
        size = min(max(size, 0), self.limit)
        if not self._waiters and self._in_flight + size <= self.limit:
            self._take(size)
            return Reservation(self, size)
        return None

    async def reserve_for_current_task(self, size: int, timeout: float) -> Reservation:
        """Like ``reserve``, released when the current task ends, however it ends (answered, failed, cancelled).

        aiohttp runs each request in a task of its own that ends once the response is written, so the
        bytes are held exactly until the request is answered, whatever the handler does.
        """
        reservation = self.try_reserve_for_current_task(size)
        if reservation is None:
            reservation = await self.reserve(size, timeout)
            _release_with_current_task(reservation)
        return reservation

    def try_reserve_for_current_task(self, size: int) -> Reservation | None:
        """``try_reserve``, released when the current task ends (see ``reserve_for_current_task``); no coroutine
        to await when there is room, which is nearly always."""
        reservation = self.try_reserve(size)
        if reservation is not None:
            _release_with_current_task(reservation)
        return reservation

    def _take(self, size: int) -> None:
        self._in_flight += size
        self._high_water = max(self._high_water, self._in_flight)
        if self._on_change is not None:
            self._on_change(self._in_flight)

    def _give(self, size: int) -> None:
        if size <= 0:
            return
        self._in_flight -= size
        if self._on_change is not None:
            self._on_change(self._in_flight)
        self._wake()

    def _wake(self) -> None:
        """Grant waiting reservations in arrival order while the one at the head fits."""
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():  # its wait ended; ``reserve`` removes it
                self._waiters.popleft()
                continue
            if self._in_flight + size > self.limit:
                return
            self._waiters.popleft()
            self._take(size)
            future.set_result(None)


def _release_with_current_task(reservation: Reservation) -> None:
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - a coroutine always runs in a task under asyncio
        reservation.release()
        raise RuntimeError("reserve_for_current_task needs a running task")
    task.add_done_callback(reservation._release_when_done)

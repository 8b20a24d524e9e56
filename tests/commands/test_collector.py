"""The worker's collector settings (``settle_collector``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from unsubscribe_sync.commands.common import COLLECTOR_THRESHOLDS, settle_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.usefixtures("restored_collector")
def test_what_is_loaded_is_frozen_and_the_young_generation_collected_less_often() -> None:
    settle_collector()
    assert gc.get_freeze_count() > 1_000  # the imported modules
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert COLLECTOR_THRESHOLDS[0] > 700  # less often than Python's default


@pytest.mark.usefixtures("restored_collector")
def test_a_cycle_made_after_the_freeze_is_still_collected() -> None:
    settle_collector()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None

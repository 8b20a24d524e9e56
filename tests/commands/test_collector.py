"""The worker's collector settings (``settle_collector``)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import unsubscribe_sync.worker.run as worker_run
from unsubscribe_sync.cli import main
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


@pytest.mark.usefixtures("restored_collector")
def test_the_worker_command_settles_the_collector_before_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("a-token\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "ledger": {"url": f"sqlite:///{tmp_path}/ledger.db"},
                "worker": {"tokenFile": str(tmp_path / "token"), "listen": "127.0.0.1:0"},
                "salesforce": {"credentialsDir": str(tmp_path / "none")},
            }
        )
    )
    seen: dict[str, Any] = {}

    def serve(*args: Any, **kwargs: Any) -> int:  # where the worker would serve until stopped
        seen["threshold"], seen["frozen"] = gc.get_threshold(), gc.get_freeze_count()
        return 0

    monkeypatch.setattr(worker_run, "run_worker", serve)
    assert main(["worker", "--config", str(config)]) == 0
    assert seen["threshold"] == COLLECTOR_THRESHOLDS and seen["frozen"] > 1_000

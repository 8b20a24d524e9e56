"""The worker's and the nightly's processes hold glibc to a few malloc arenas (``limit_malloc_arenas``)."""

from __future__ import annotations

import ctypes
import platform

import pytest

from unsubscribe_sync.commands.common import limit_malloc_arenas


def test_an_explicit_malloc_arena_max_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_on_glibc_the_arena_limit_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert hasattr(ctypes.CDLL(None), "mallopt")
    assert limit_malloc_arenas() is True

"""Child processes of a soak or end-to-end test: start, SIGKILL, restart, wait until ready, keep every log line."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO


def cli(*args: str) -> list[str]:
    """The argv that runs ``unsubscribe-sync ARGS`` with this interpreter (no reliance on PATH)."""
    return [sys.executable, "-m", "unsubscribe_sync", *args]


class ManagedProcess:
    """One long-running child; every incarnation appends its stdout+stderr to the same log file."""

    def __init__(self, name: str, argv: Sequence[str], log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        if self.alive:
            raise RuntimeError(f"{self.name} is already running")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap
        stamp = time.strftime("%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        self._log.write(f"----- start #{self.starts + 1} at {stamp}: {' '.join(self.argv[2:])}\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT, env=self.env)
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to flush, commit or say goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        self._reap()

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()
        return self.proc.returncode

    def _reap(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_http(
    url: str,
    *,
    timeout: float = 30.0,
    context: ssl.SSLContext | None = None,
    process: ManagedProcess | None = None,
    expect: int = 200,
) -> None:
    """Poll ``url`` until it answers ``expect``; fail early (with the log tail) when ``process`` dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.proc is not None and process.proc.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.proc.returncode}:\n{process.logs()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as resp:
                if resp.status == expect:
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code == expect:
                return
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    tail = process.logs()[-3000:] if process is not None else ""
    raise TimeoutError(f"{url} not ready after {timeout:.0f}s ({last})\n{tail}")

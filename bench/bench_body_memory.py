"""Worker memory under many parallel large bodies, with and without the body budget.

`python -m bench body_memory` starts `unsubscribe-sync worker` (SQLite ledger, Salesforce unreachable: the
push only backs off) once per budget, sends 150 parallel ~1 MiB bodies of 1000 unsubscribes each, and reads the
process's resident memory from /proc: before the load (VmRSS) and its peak (VmHWM). "no budget" is
worker.maxBodyBytesInFlight = 1 GiB (never reached). The pod limit the default must stay under is 256 Mi.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

TOKEN = "bench-body-memory-token"
REQUESTS = 150
ITEMS = 1000
BODY_BYTES = 1024 * 1024 - 64
MiB = 1024 * 1024
BUDGETS = {"no budget": 1024 * MiB, "32 MiB (default)": 32 * MiB, "16 MiB": 16 * MiB}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _body(n: int, items_per_body: int = ITEMS) -> bytes:
    items = [
        {"email": f"m{n}-{i}@example.com", "source": f"bench-{'s' * 180}", "eventId": f"e-{n}-{i}-{'e' * 170}"}
        for i in range(items_per_body)
    ]
    raw = json.dumps({"unsubscribes": items}).encode()
    return raw + b" " * max(0, BODY_BYTES - len(raw))


async def _load(url: str, bodies: list[bytes]) -> Counter[str]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(body: bytes) -> str:
            async with session.post(f"{url}/v1/unsubscribes", data=body, headers=headers) as resp:
                answer = await resp.read()
                if resp.status != 503:
                    return str(resp.status)
                reason = "body budget" if b"request bodies" in answer else "ingest queue"
                return f"503 ({reason})"

        return Counter(await asyncio.gather(*(one(b) for b in bodies)))


def run(budget: int, bodies: list[bytes]) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "creds").mkdir()
        (base / "creds" / "client_id").write_text("bench")
        (base / "creds" / "client_secret").write_text("bench")
        (base / "token").write_text(TOKEN)
        port = _free_port()
        config = {
            "salesforce": {"loginUrl": f"https://127.0.0.1:{_free_port()}", "credentialsDir": str(base / "creds")},
            "ledger": {"url": f"sqlite:///{base}/ledger.db"},
            "worker": {
                "listen": f"127.0.0.1:{port}",
                "tokenFile": str(base / "token"),
                "maxBodyBytesInFlight": budget,
                "publicListen": None,
            },
            "logging": {"format": "json", "level": "warning"},
        }
        (base / "config.yaml").write_text(json.dumps(config))
        log = (base / "worker.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(base / "config.yaml")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    import urllib.request

                    with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit((base / "worker.log").read_text()[-3000:]) from None
                    time.sleep(0.1)
            time.sleep(0.5)
            before = _status_kib(proc.pid, "VmRSS")
            start = time.perf_counter()
            statuses = asyncio.run(_load(url, bodies))
            took = time.perf_counter() - start
            peak = _status_kib(proc.pid, "VmHWM")
            after = _status_kib(proc.pid, "VmRSS")
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    return {"before": before / 1024, "peak": peak / 1024, "after": after / 1024, "statuses": statuses, "took": took}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    shapes = {"1000 items": ITEMS, "20 items + padding": 20}
    for shape, per_body in shapes.items():
        if args and not any(a in shape for a in args):
            continue
        bodies = [_body(n, per_body) for n in range(REQUESTS)]
        print(f"\n{REQUESTS} parallel bodies of {len(bodies[0]) / MiB:.2f} MiB, {shape}")
        _table(bodies)


def _table(bodies: list[bytes]) -> None:
    print(f"{'budget':<18} {'RSS before':>10} {'peak RSS':>9} {'RSS after':>9} {'time':>7}  answers")
    for name, budget in BUDGETS.items():
        r = run(budget, bodies)
        answers = ", ".join(f"{n} x {s}" for s, n in sorted(r["statuses"].items()))  # type: ignore[attr-defined]
        figures = f"{r['before']:>7.0f} MiB {r['peak']:>5.0f} MiB {r['after']:>5.0f} MiB {r['took']:>6.1f}s"
        print(f"{name:<18} {figures}  {answers}", flush=True)


if __name__ == "__main__":
    main()

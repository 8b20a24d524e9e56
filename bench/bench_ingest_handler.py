"""Single-item ingest against a bare aiohttp handler, side by side in one run (a ratio, not a time).

`python -m bench ingest_handler` starts, one after the other on the same machine:
1. a bare aiohttp handler that parses the JSON body and answers 202 (the ceiling of the stack);
2. the push worker (push off, SQLite ledger in WAL with ``synchronous=FULL``: a 202 is sent only after the
   commit), fed the same single-item webhook posts.
The load comes from wrk (one unique address per request, written by a small Lua script) when it is on
the PATH (the bench set-up installs it: ``apt-get install wrk``), else from an aiohttp client, and the
report says which. Aim: the worker >= 0.5x the bare handler.

``--profile`` (env ``BENCH_PROFILE=1``) also records a py-spy profile of the worker under load and
prints its top frames, when py-spy is installed. ``BENCH_ROUNDS=N`` runs the pair N times, one after the
other, and reports the medians (a shared machine's load swings between runs).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_worker import CONCURRENCY, TOKEN, _load
from bench.bench_worker import server_process as _process

SECONDS = 6.0
THREADS = 2
AIM = 0.5

WRK_SCRIPT = r"""
local counter = 0
local thread_id = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  thread_id = tid
end
request = function()
  counter = counter + 1
  local body = string.format('{"email":"w%d-%d@bench.example","salesforceId":"003000000000001"}', thread_id, counter)
  return wrk.format("POST", "/v1/unsubscribes", {
    ["Authorization"] = "Bearer TOKEN",
    ["Content-Type"] = "application/json",
  }, body)
end
response = function(status, headers, body)
  if status ~= 202 then
    error("HTTP " .. status .. ": " .. body)
  end
end
""".replace("TOKEN", TOKEN)


def serve_bare(port: int) -> None:
    """Subprocess entry: the ceiling, a handler that parses the JSON and answers 202."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"accepted": 1, "duplicates": 0}, status=202)

    app = web.Application()
    app.router.add_post("/v1/unsubscribes", handler)
    app.router.add_get("/readyz", lambda _: web.Response(text="ok"))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _wrk(url: str, script: Path) -> float:
    out = subprocess.run(
        ["wrk", "-t", str(THREADS), "-c", str(CONCURRENCY), "-d", f"{SECONDS:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        print(out)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"wrk printed no rate:\n{out}")
    return float(match.group(1))


def _rate(url: str, script: Path | None) -> float:
    if script is not None:
        return _wrk(url, script)
    return asyncio.run(_load(url, 1, SECONDS))


def _profile(pid: int, seconds: float, out: Path) -> str | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return None
    subprocess.run(
        [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw", "--output", str(out)],
        capture_output=True,
        check=False,
    )
    if not out.exists():
        return None
    totals: dict[str, int] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        seen = set()
        for frame in frames:
            name = frame.split(" (")[0]
            module = frame.rsplit("(", 1)[-1].split(":")[0].rsplit("/", 1)[-1] if "(" in frame else ""
            key = f"{name} ({module})"
            if key in seen:
                continue
            seen.add(key)
            totals[key] = totals.get(key, 0) + int(count or 0)
    grand = max(sum(int(line.rpartition(" ")[2] or 0) for line in out.read_text().splitlines()), 1)
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:25]
    keep = os.environ.get("BENCH_PROFILE_OUT")
    if keep:
        shutil.copy(out, keep)  # the raw stacks, for a closer look
    return "\n".join(f"  {100 * n / grand:5.1f}%  {key}" for key, n in top)


def main() -> None:
    profile = "--profile" in sys.argv or os.environ.get("BENCH_PROFILE") == "1"
    with tempfile.TemporaryDirectory(prefix="usync-bench-") as tmp_name:
        tmp = Path(tmp_name)
        script: Path | None = None
        if shutil.which("wrk"):
            script = tmp / "ingest.lua"
            script.write_text(WRK_SCRIPT)
            client = f"wrk ({THREADS} threads, {CONCURRENCY} connections)"
        else:
            client = f"aiohttp client ({CONCURRENCY} connections; wrk not found, install it for a faster load)"
        (tmp / "token").write_text(TOKEN)
        ledger_url = f"sqlite:///{tmp}/ledger.db"
        switch = os.environ.get("BENCH_SWITCH_INTERVAL")  # an experiment: the GIL's switch interval in the worker
        worker_code = (
            f"import sys; sys.setswitchinterval({float(switch)!r}); " if switch else ""
        ) + f"from bench.bench_worker import serve; serve({ledger_url!r}, {{port}}, {str(tmp / 'token')!r})"
        with _process(worker_code):
            pass  # the schema, created once outside the measurement
        rounds = max(1, int(os.environ.get("BENCH_ROUNDS", "1")))  # on a shared machine: the median of several
        ratios: list[float] = []
        bares: list[float] = []
        workers: list[float] = []
        report: dict[str, str | None] = {}
        for number in range(1, rounds + 1):
            with _process("from bench.bench_ingest_handler import serve_bare; serve_bare({port})") as (url, _):
                bare = _rate(url, script)
            with _process(worker_code) as (url, proc):
                if profile and number == rounds:

                    def record(pid: int = proc.pid) -> None:
                        report["top"] = _profile(pid, SECONDS - 1, tmp / "profile.txt")

                    import threading

                    thread = threading.Thread(target=record)
                    thread.start()
                    worker = _rate(url, script)
                    thread.join()
                else:
                    worker = _rate(url, script)
            bares.append(bare)
            workers.append(worker)
            ratios.append(worker / bare)
            if rounds > 1:
                print(f"round {number}: bare {bare:.0f} req/s, worker {worker:.0f} accepted/s, {worker / bare:.2f}x")
        bare, worker, ratio = statistics.median(bares), statistics.median(workers), statistics.median(ratios)
        if rounds > 1:
            print(f"medians of {rounds} rounds (the ratio: the median of the rounds' ratios)")
        print(f"load: {client}, {SECONDS:g} s each, single-item posts")
        print(f"ingest bare aiohttp handler {bare:9.0f} req/s")
        print(f"ingest push worker (SQLite) {worker:9.0f} accepted/s")
        verdict = "(meets aim 0.5x)" if ratio >= AIM else "(BELOW aim 0.5x)"
        print(f"ingest ratio worker/bare     {ratio:9.2f}x {verdict}")
        if profile:
            print("worker profile under load (share of samples per frame, py-spy):")
            print(report.get("top") or "  py-spy not available")


if __name__ == "__main__":
    main()

"""Run ``unsubscribe_sync nightly`` under tracemalloc and print the allocations alive at the traced peak.

A sampling thread snapshots every two seconds and keeps the largest; at exit the top 15 sites (by line, with a
five-frame traceback) go to stderr. Used by bench_email_matching.py with BENCH_EMAIL_TRACE=1.
"""

from __future__ import annotations

import sys
import threading
import time
import tracemalloc


def main() -> None:
    tracemalloc.start(4)
    best: list[tuple[int, tracemalloc.Snapshot | None]] = [(0, None)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            current, _ = tracemalloc.get_traced_memory()
            if current > best[0][0]:
                best[0] = (current, tracemalloc.take_snapshot())
            time.sleep(2.0)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    from unsubscribe_sync.cli import main as cli

    sys.argv = ["unsubscribe_sync", *sys.argv[1:]]
    try:
        cli()
    except SystemExit:
        pass
    finally:
        stop.set()
        thread.join()
        size, snap = best[0]
        print(f"traced peak (sampled): {size / 2**20:.1f} MB", file=sys.stderr)
        if snap is not None:
            for stat in snap.statistics("traceback")[:15]:
                print(f"{stat.size / 2**20:8.1f} MB {stat.count:9d} blocks", file=sys.stderr)
                for line in stat.traceback.format()[-10:]:
                    print("    " + line, file=sys.stderr)


if __name__ == "__main__":
    main()

"""Operator benchmark: 500 UnsubscribeSync objects created at once against the Kubernetes API emulator.

`python -m bench operator` runs the real `unsubscribe-sync operator` command in a subprocess (kubeconfig
pointing at the emulator, preflight off) and reports:
1. time until every child of all 500 objects exists and every status is written, against a baseline:
   the same number of object creations made directly by one client (the emulator's own speed);
2. API requests per reconcile (the operator's own client, and all requests incl. kopf's watches/patches),
   against the ideal of 5 child creates + 2 Secret reads + 1 status patch;
3. the operator process's peak RSS;
4. writes during a no-op resync of the 500 (operator restarted: every object resumed). Aim: zero.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import kmock
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.common import free_port  # noqa: E402
from tests.fixtures.kube import USYNC_RESOURCE, ClusterEmulator  # noqa: E402

COUNT = int(os.environ.get("BENCH_OPERATOR_COUNT", "500"))
NS = "bench"
CHILDREN_PER_OBJECT = 5  # ConfigMap, PVC, Service, Deployment, CronJob
IDEAL_REQUESTS = CHILDREN_PER_OBJECT + 2 + 1


def _cr(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "optout.dev/v1alpha1",
        "kind": "UnsubscribeSync",
        "metadata": {"name": f"org-{i:04d}", "namespace": NS},
        "spec": {
            "salesforce": {"credentialsSecretRef": {"name": "shared-salesforce"}},
            "pushWorker": {"webhookSecretRef": {"name": "shared-webhook"}},
        },
    }


def _secret(name: str, **data: str) -> dict[str, Any]:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS}, "data": encoded}


def _kubeconfig(url: str, directory: Path) -> Path:
    path = directory / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": url}}],
                "users": [{"name": "bench", "user": {"token": "bench-token"}}],
                "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "bench"}}],
                "current-context": "emulator",
            }
        )
    )
    return path


def _log_file() -> Any:
    path = os.environ.get("BENCH_LOG")
    return open(path, "a") if path else subprocess.DEVNULL  # the child process writes to it


class OperatorProcess:
    def __init__(self, kubeconfig: Path, metrics_port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(kubeconfig)
        self.metrics_port = metrics_port
        python = [sys.executable, *os.environ.get("BENCH_PYTHON_ARGS", "").split()]
        args = [
            *("operator", "--all-namespaces", "--standalone", "--preflight-interval", "0"),
            *("--metrics-port", str(metrics_port), "--liveness-port", str(free_port())),
            *("--log-level", os.environ.get("BENCH_LOG_LEVEL", "warning")),
        ]
        self.proc = subprocess.Popen(
            [*python, "-m", "unsubscribe_sync", *args], env=env, stdout=subprocess.DEVNULL, stderr=_log_file()
        )
        self.peak_rss_kib = 0

    def sample_rss(self) -> None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match:
            self.peak_rss_kib = max(self.peak_rss_kib, int(match.group(1)))

    async def metric(self, session: aiohttp.ClientSession, name: str) -> float:
        try:
            async with session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as response:
                text = await response.text()
        except aiohttp.ClientError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        self.sample_rss()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


async def _wait(predicate: Any, operator: OperatorProcess, timeout: float = 600) -> float:
    start = time.perf_counter()
    while not await predicate():
        operator.sample_rss()
        if operator.proc.poll() is not None:
            raise RuntimeError(f"the operator exited with {operator.proc.returncode}")
        if time.perf_counter() - start > timeout:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(0.25)
    return time.perf_counter() - start


def _children(emulator: ClusterEmulator) -> int:
    return sum(
        emulator.count(resource, NS)
        for resource in ("v1/configmaps", "v1/persistentvolumeclaims", "v1/services", "apps/v1/deployments",
                         "batch/v1/cronjobs")
    )  # fmt: skip


def _statuses(emulator: ClusterEmulator) -> int:
    return emulator.count(USYNC_RESOURCE, NS, where=lambda obj: (obj.get("status") or {}).get("observedGeneration"))


async def _post_all(session: aiohttp.ClientSession, url: str, bodies: list[tuple[str, dict[str, Any]]]) -> None:
    limit = asyncio.Semaphore(32)

    async def post(path: str, body: dict[str, Any]) -> None:
        async with limit, session.post(url + path, json=body) as response:
            if response.status >= 300:
                raise RuntimeError(f"POST {path}: {response.status} {await response.text()}")

    await asyncio.gather(*(post(path, body) for path, body in bodies))


async def _baseline(count: int) -> float:
    """The emulator's own speed: the same number of child creations, straight from one client."""
    emulator = ClusterEmulator()
    emulator.declare_defaults()
    async with emulator, kmock.Server(emulator) as server, aiohttp.ClientSession() as session:
        url = str(server.url).rstrip("/")
        bodies = [
            (f"/api/v1/namespaces/{NS}/configmaps", {"metadata": {"name": f"cm-{i}"}, "data": {"k": "v" * 200}})
            for i in range(count * CHILDREN_PER_OBJECT)
        ]
        start = time.perf_counter()
        await _post_all(session, url, bodies)
        return time.perf_counter() - start


async def run(count: int = COUNT) -> dict[str, float]:
    emulator = ClusterEmulator()
    emulator.declare_defaults()
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        async with emulator, kmock.Server(emulator) as server, aiohttp.ClientSession() as session:
            url = str(server.url).rstrip("/")
            kubeconfig = _kubeconfig(url, Path(tmp))
            await _post_all(session, url, [
                (f"/api/v1/namespaces/{NS}/secrets", _secret("shared-salesforce", client_id="id", client_secret="x")),
                (f"/api/v1/namespaces/{NS}/secrets", _secret("shared-webhook", token="t")),
            ])  # fmt: skip
            operator = OperatorProcess(kubeconfig, free_port())
            try:
                await _wait(lambda: _metrics_up(session, operator), operator, timeout=60)
                requests_before = emulator.request_count
                start = time.perf_counter()
                await _post_all(session, url, [(f"/apis/optout.dev/v1alpha1/namespaces/{NS}/unsubscribesyncs", _cr(i))
                                               for i in range(count)])  # fmt: skip

                async def all_children() -> bool:
                    return _children(emulator) >= count * CHILDREN_PER_OBJECT

                async def all_statuses() -> bool:
                    return _statuses(emulator) >= count

                await _wait(all_children, operator)
                results["children_seconds"] = time.perf_counter() - start
                await _wait(all_statuses, operator)
                results["status_seconds"] = time.perf_counter() - start
                await asyncio.sleep(2.0)  # let trailing drift events settle
                reconciles = await operator.metric(session, "unsubscribe_sync_operator_reconcile_total")
                results["reconciles"] = reconciles
                results["requests_all_per_object"] = (emulator.request_count - requests_before) / count
                results["writes_per_object"] = len(emulator.writes_since(0, include_events=True)) / count
            finally:
                operator.stop()
            results["rss_mib"] = operator.peak_rss_kib / 1024

            # A no-op resync: restart the operator; every object is resumed and must need no write.
            mark = len(emulator.writes)
            requests_before = emulator.request_count
            restarted = OperatorProcess(kubeconfig, free_port())
            try:
                start = time.perf_counter()

                async def all_resumed() -> bool:
                    return await restarted.metric(session, "unsubscribe_sync_operator_reconcile_total") >= count

                await _wait(all_resumed, restarted)
                results["resync_seconds"] = time.perf_counter() - start
                await asyncio.sleep(2.0)
                results["resync_writes"] = len(emulator.writes_since(mark, include_events=True))
                if os.environ.get("BENCH_DEBUG"):
                    print([(w.method, w.path) for w in emulator.writes_since(mark, include_events=True)])
                results["resync_requests_per_object"] = (emulator.request_count - requests_before) / count
            finally:
                restarted.stop()
            results["rss_resync_mib"] = restarted.peak_rss_kib / 1024
    results["baseline_seconds"] = await _baseline(count)
    return results


async def _metrics_up(session: aiohttp.ClientSession, operator: OperatorProcess) -> bool:
    try:
        async with session.get(f"http://127.0.0.1:{operator.metrics_port}/metrics") as response:
            return response.status == 200
    except aiohttp.ClientError:
        return False


def main() -> None:
    figures = asyncio.run(run())
    count = COUNT
    print(f"objects: {count} UnsubscribeSync, {count * CHILDREN_PER_OBJECT} children")
    print(f"all children present:   {figures['children_seconds']:.1f} s "
          f"({count / figures['children_seconds']:.0f} objects/s)")  # fmt: skip
    print(f"all statuses written:   {figures['status_seconds']:.1f} s")
    print(f"baseline (same creates by one client): {figures['baseline_seconds']:.1f} s "
          f"-> ratio {figures['children_seconds'] / figures['baseline_seconds']:.1f}x")  # fmt: skip
    print(f"reconciles: {figures['reconciles']:.0f} ({figures['reconciles'] / count:.2f} per object)")
    per_object = figures["requests_all_per_object"]
    print(f"API requests per object (all, incl. kopf watches/patches/events): {per_object:.1f} "
          f"-> ratio {per_object / IDEAL_REQUESTS:.2f}x the ideal {IDEAL_REQUESTS}")  # fmt: skip
    print(f"writes per object: {figures['writes_per_object']:.1f}")
    print(f"operator peak RSS: {figures['rss_mib']:.0f} MiB")
    print(f"no-op resync of {count}: {figures['resync_seconds']:.1f} s, "
          f"{figures['resync_requests_per_object']:.2f} requests/object, writes: {figures['resync_writes']:.0f} "
          f"(aim: 0), peak RSS {figures['rss_resync_mib']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()

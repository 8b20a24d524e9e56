"""A real Prometheus (Debian's `prometheus`) on loopback scrapes a running push worker and a running
operator; every dashboard panel query and every alert expression is then evaluated through
Prometheus's HTTP API: each parses, each panel query returns data, and the alert rules load healthy."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import yaml

from tests.fixtures.api import minimal_with_token_key
from tests.fixtures.common import free_port
from tests.fixtures.deploy import ALERTS_FILE, DASHBOARD_FILE, metric_names
from tests.fixtures.kube import RunningCluster, start_operator
from unsubscribe_sync.commands.demo import write_local_config
from unsubscribe_sync.sandbox import SandboxServer

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="prometheus not installed (apt-get install prometheus; scripts/test-services.sh)",
)

WORKER_JOB = "acme-push-worker"
OPERATOR_JOB = "unsubscribe-sync-operator-metrics"
TOKEN = "scrape-test-token"
NS = "sales"
# Dashboard variables as Grafana substitutes them with "All" selected and a 1 s scrape interval.
VARIABLES = {"$namespace": ".*", "$instance": ".*", "$__rate_interval": "1m"}


def panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in VARIABLES.items():
                expr = expr.replace(variable, value)
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


def alert_expressions() -> list[tuple[str, str]]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def wait_until(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except requests.RequestException:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Process:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)

    def check_alive(self) -> None:
        assert self.proc.poll() is None, self.log_path.read_text()[-4000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


@pytest.fixture
def salesforce(tmp_path: Path) -> Iterator[SandboxServer]:
    with SandboxServer(tmp_path / "tls") as server:
        server.state.set_bulk_processing_time(0.0)
        yield server


def write_worker_config(tmp_path: Path, server: SandboxServer, port: int) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    return write_local_config(tmp_path, server, server.credentials.write(tmp_path / "creds"), token_file, port)


def write_prometheus_config(tmp_path: Path, worker_port: int, operator_port: int) -> Path:
    rules = tmp_path / "alerts.yaml"
    rules.write_text(ALERTS_FILE.read_text())
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": WORKER_JOB, "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
            {"job_name": OPERATOR_JOB, "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


class PrometheusApi:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> dict[str, Any]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        return dict(response.json())

    def has_data(self, expr: str) -> bool:
        body = self.query(expr)
        return body["status"] == "success" and bool(body["data"]["result"])


def drive_worker(url: str, contact: str, deleted: str) -> None:
    """Webhook traffic that produces every push outcome: pushed, failed (deleted record), skipped (no ID)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = {
        "unsubscribes": [
            {"email": "pushed@example.com", "salesforceId": contact, "source": "scrape-test"},
            {"email": "gone@example.com", "salesforceId": deleted},
            {"email": "no.id@example.com"},
        ]
    }
    response = requests.post(f"{url}/v1/unsubscribes", json=body, headers=headers, timeout=10)
    assert response.status_code == 202, response.text


def run_nightly(config: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unsubscribe_sync", "nightly", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def secret(name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


async def create_unsubscribe_sync(cluster: RunningCluster) -> None:
    objects = [
        ("/api/v1/namespaces/sales/secrets", secret("acme-salesforce", client_id="id", client_secret="not-real")),
        ("/api/v1/namespaces/sales/secrets", secret("acme-webhook", token="hook")),
        (
            "/apis/optout.dev/v1alpha1/namespaces/sales/unsubscribesyncs",
            minimal_with_token_key(),
        ),
    ]
    async with aiohttp.ClientSession() as session:
        for path, body in objects:
            async with session.post(cluster.url + path, json=body) as response:
                assert response.status < 300, await response.text()


async def test_dashboard_and_alert_queries_against_a_real_prometheus(
    tmp_path: Path, kube: RunningCluster, salesforce: SandboxServer
) -> None:
    contact = salesforce.state.add_record("Contact", "pushed@example.com")
    deleted = salesforce.state.add_record("Contact", "gone@example.com", deleted=True)
    salesforce.state.add_record("Lead", "sf.only@example.com", opted_out=True)  # nightly: fromSalesforce

    worker_port, operator_port, prometheus_port = free_port(), free_port(), free_port()
    worker_config = write_worker_config(tmp_path, salesforce, worker_port)
    worker_url = f"http://127.0.0.1:{worker_port}"
    worker = Process(
        [sys.executable, "-m", "unsubscribe_sync", "worker", "--config", str(worker_config)], tmp_path / "worker.log"
    )
    operator = await start_operator(kube, metrics_port=operator_port)
    prometheus = Process(
        [
            "prometheus",
            f"--config.file={write_prometheus_config(tmp_path, worker_port, operator_port)}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prometheus_port}",
            "--log.level=warn",
        ],
        tmp_path / "prometheus.log",
    )
    api = PrometheusApi(f"http://127.0.0.1:{prometheus_port}")
    try:
        await asyncio.to_thread(
            wait_until, lambda: requests.get(f"{worker_url}/readyz", timeout=1).status_code == 200, "worker ready"
        )
        await asyncio.to_thread(
            wait_until, lambda: requests.get(f"{api.url}/-/ready", timeout=1).status_code == 200, "prometheus ready"
        )
        await asyncio.to_thread(
            wait_until,
            lambda: api.has_data(f'up{{job="{WORKER_JOB}"}} == 1') and api.has_data(f'up{{job="{OPERATOR_JOB}"}} == 1'),
            "both targets up",
        )
        # traffic after the first scrapes, so rates and histogram quantiles see increases
        await asyncio.to_thread(drive_worker, worker_url, contact, deleted)
        await create_unsubscribe_sync(kube)
        await asyncio.to_thread(run_nightly, worker_config)

        missing: list[str] = []
        for title, expr in panel_queries():
            try:
                await asyncio.to_thread(wait_until, lambda e=expr: api.has_data(e), title, 20.0)
            except AssertionError:
                missing.append(f"{title}: {expr}")
        worker.check_alive()
        assert not missing, "panel queries without data:\n" + "\n".join(missing)

        for name, expr in alert_expressions():
            body = await asyncio.to_thread(api.query, expr)
            assert body["status"] == "success", f"{name}: {body}"
            # the project's own metrics an alert reads are really exposed under those names
            for metric in sorted(m for m in metric_names(expr) if m.startswith("unsubscribe_sync_")):
                assert await asyncio.to_thread(api.has_data, metric), f"{name} reads {metric}, which nothing exposes"

        def rules_healthy() -> bool:
            body = requests.get(f"{api.url}/api/v1/rules", timeout=5).json()
            rules = [r for g in body["data"]["groups"] for r in g["rules"]]
            return len(rules) == len(alert_expressions()) and all(
                r["health"] == "ok" and r.get("lastEvaluation", "").startswith("2") for r in rules
            )

        await asyncio.to_thread(wait_until, rules_healthy, "every alert rule evaluated healthy", 15.0)
        # the outbox drained: a healthy system fires none of the push alerts
        firing = await asyncio.to_thread(api.query, 'ALERTS{alertstate="firing"}')
        assert not [
            a["metric"]["alertname"] for a in firing["data"]["result"] if a["metric"]["alertname"].startswith("Push")
        ]
    finally:
        prometheus.stop()
        worker.stop()
        await operator.stopped()

"""Operator metrics (prometheus_client), served on their own port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

RESULTS: Final = ("success", "temporary_error", "invalid_spec", "stalled", "error")


class ReadyCollector(Collector):
    """Managed UnsubscribeSyncs by their Ready condition.

    ``unsubscribe_sync_operator_resources{ready}`` counts them; ``unsubscribe_sync_operator_resource_ready
    {resource_namespace,resource_name}`` is 1/0 per object, so an alert can name the one that is not Ready.
    """

    def __init__(self) -> None:
        self.ready: dict[tuple[str, str], bool] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "unsubscribe_sync_operator_resources",
            "UnsubscribeSync objects managed by this operator, by Ready status",
            labels=["ready"],
        )
        ready = sum(1 for value in self.ready.values() if value)
        family.add_metric(["true"], ready)
        family.add_metric(["false"], len(self.ready) - ready)
        yield family
        per_object = GaugeMetricFamily(
            "unsubscribe_sync_operator_resource_ready",
            "1 when the UnsubscribeSync's Ready condition is True, else 0",
            labels=["resource_namespace", "resource_name"],
        )
        for (namespace, name), value in sorted(self.ready.items()):
            per_object.add_metric([namespace, name], 1.0 if value else 0.0)
        yield per_object


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconcile_total = Counter(
            "unsubscribe_sync_operator_reconcile",
            "Reconciles of UnsubscribeSync objects, by result",
            ["result"],
            registry=self.registry,
        )
        for result in RESULTS:
            self.reconcile_total.labels(result)
        self.reconcile_duration = Histogram(
            "unsubscribe_sync_operator_reconcile_duration_seconds",
            "Time one reconcile of an UnsubscribeSync took",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.child_writes = Counter(
            "unsubscribe_sync_operator_child_writes",
            "Writes to child objects, by kind and reason (missing, changed, drifted)",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.status_writes = Counter(
            "unsubscribe_sync_operator_status_writes",
            "Status patches of UnsubscribeSync objects",
            registry=self.registry,
        )
        self.preflights = Counter(
            "unsubscribe_sync_operator_preflight",
            "Salesforce preflight checks (login + describe), by outcome (the FieldInstalled reason)",
            ["outcome"],
            registry=self.registry,
        )
        self.resources = ReadyCollector()
        self.registry.register(self.resources)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, host: str, port: int) -> web.AppRunner:
        """Serve ``/metrics`` on ``host:port``; the caller cleans the returned runner up."""

        async def handle(_: web.Request) -> web.Response:
            return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        app = web.Application()
        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

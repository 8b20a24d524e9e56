"""The optional ServiceMonitor (Prometheus Operator) for the worker's /metrics."""

from __future__ import annotations

from typing import Any, Final

from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.resources.labels import ChildNames, child_labels, selector_labels
from unsubscribe_sync.resources.workloads import PORT_NAME

SERVICE_MONITOR_API_VERSION: Final = "monitoring.coreos.com/v1"


def service_monitor(name: str, namespace: str, spec: UnsubscribeSyncSpec) -> dict[str, Any]:
    settings = spec.monitoring.serviceMonitor
    # Our own labels win over user labels of the same key (the operator finds its children by them).
    labels = {**settings.labels, **child_labels(name, "metrics")}
    return {
        "apiVersion": SERVICE_MONITOR_API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": {"name": ChildNames(name).push_worker, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector_labels(name, "push-worker")},
            "namespaceSelector": {"matchNames": [namespace]},
            "endpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": settings.interval, "scheme": "http"}],
        },
    }

"""Every child object of one UnsubscribeSync: a spec goes in, the desired manifests come out."""

from __future__ import annotations

from typing import Any

from unsubscribe_sync.api.constants import DEFAULT_IMAGE
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.resources.config_file import config_checksum, config_for, config_map, config_yaml
from unsubscribe_sync.resources.monitoring import service_monitor
from unsubscribe_sync.resources.public import ingress, network_policy
from unsubscribe_sync.resources.storage import ledger_pvc
from unsubscribe_sync.resources.workloads import (
    nightly_sync_cronjob,
    push_worker_deployment,
    push_worker_pdb,
    push_worker_service,
)


def desired_children(
    name: str, namespace: str, spec: UnsubscribeSyncSpec, *, image: str = DEFAULT_IMAGE
) -> list[dict[str, Any]]:
    """The manifests the operator applies for this UnsubscribeSync, in apply order.

    ConfigMap, ledger PVC (SQLite mode), worker Service and Deployment, PodDisruptionBudget (replicas > 1),
    nightly CronJob, ServiceMonitor (when enabled), NetworkPolicy and Ingress (with spec.publicEndpoint).
    Owner references are left to the caller.
    """
    text = config_yaml(config_for(name, namespace, spec))
    children: list[dict[str, Any]] = [config_map(name, namespace, text)]
    if spec.uses_sqlite:
        children.append(ledger_pvc(name, namespace, spec))
    children.append(push_worker_service(name, namespace, spec))
    children.append(push_worker_deployment(name, namespace, spec, image=image, config_checksum=config_checksum(text)))
    if spec.pushWorker.replicas > 1:
        children.append(push_worker_pdb(name, namespace))
    children.append(nightly_sync_cronjob(name, namespace, spec, image=image))
    if spec.monitoring.serviceMonitor.enabled:
        children.append(service_monitor(name, namespace, spec))
    children += [child for child in (network_policy(name, namespace, spec), ingress(name, namespace, spec)) if child]
    return children

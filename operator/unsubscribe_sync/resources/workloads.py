"""The push worker (Deployment, Service, PodDisruptionBudget) and the nightly sync (CronJob)."""

from __future__ import annotations

import copy
from typing import Any, Final

from unsubscribe_sync.api.constants import ANNOTATION_PREFIX, CONFIG_FILE, PUBLIC_PORT, WORKER_PORT
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.resources.labels import ChildNames, child_labels, selector_labels
from unsubscribe_sync.resources.pod_security import container_security_context, pod_security_context, tmp_volume
from unsubscribe_sync.resources.senders import sender_volumes
from unsubscribe_sync.resources.volumes import (
    Volume,
    config_volume,
    ledger_data_volume,
    ledger_url_volume,
    one_click_keys_volume,
    salesforce_credentials_volume,
    webhook_token_volume,
)

CLI: Final = "unsubscribe-sync"
PORT_NAME: Final = "http"
PUBLIC_PORT_NAME: Final = "public"  # one-click links and sender webhooks (spec.publicEndpoint)
CONFIG_CHECKSUM_ANNOTATION: Final = f"{ANNOTATION_PREFIX}/config-checksum"

DEFAULT_WORKER_RESOURCES: Final[dict[str, Any]] = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"memory": "256Mi"},
}
NIGHTLY_RESOURCES: Final[dict[str, Any]] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "512Mi"},
}

NIGHTLY_STARTING_DEADLINE_SECONDS: Final = 3600  # a run missed by more than an hour waits for the next night
NIGHTLY_ACTIVE_DEADLINE_SECONDS: Final = 4 * 3600
NIGHTLY_BACKOFF_LIMIT: Final = 2
NIGHTLY_HISTORY_LIMIT: Final = 3


def _metadata(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": labels}


def _http_probe(path: str, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def worker_resources(spec: UnsubscribeSyncSpec) -> dict[str, Any]:
    """The worker container's resources: the spec's, or modest defaults when it gives none."""
    given: dict[str, Any] = {key: dict(values) for key, values in spec.pushWorker.resources.items() if values}
    return given or copy.deepcopy(DEFAULT_WORKER_RESOURCES)


def _pod_spec(container: dict[str, Any], volumes: list[Volume], **extra: Any) -> dict[str, Any]:
    tmp = tmp_volume()
    container["volumeMounts"] = [mount for _, mount in [*volumes, tmp]]
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [volume for volume, _ in [*volumes, tmp]],
        **extra,
    }


def push_worker_deployment(
    name: str, namespace: str, spec: UnsubscribeSyncSpec, *, image: str, config_checksum: str
) -> dict[str, Any]:
    names = ChildNames(name)
    volumes = [config_volume(name), salesforce_credentials_volume(spec), webhook_token_volume(spec)]
    volumes.append(ledger_data_volume(name) if spec.uses_sqlite else ledger_url_volume(spec))
    if spec.oneClick is not None:
        volumes.append(one_click_keys_volume(spec))
    volumes += sender_volumes(spec)
    ports = [{"name": PORT_NAME, "containerPort": WORKER_PORT, "protocol": "TCP"}]
    if spec.publicEndpoint is not None:
        ports.append({"name": PUBLIC_PORT_NAME, "containerPort": PUBLIC_PORT, "protocol": "TCP"})
    container = {
        "name": "push-worker",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [CLI, "worker", "--config", CONFIG_FILE],
        "ports": ports,
        # Startup allows two minutes (ledger migrations); liveness and readiness never depend on Salesforce.
        "startupProbe": _http_probe("/livez", period=2, failures=60),
        "livenessProbe": _http_probe("/livez", period=10, failures=3),
        "readinessProbe": _http_probe("/readyz", period=5, failures=2),
        "resources": worker_resources(spec),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    replicas = spec.pushWorker.replicas
    extra: dict[str, Any] = {"terminationGracePeriodSeconds": 30}
    if replicas > 1:
        extra["topologySpreadConstraints"] = [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(name, "push-worker")},
            }
        ]
    # A SQLite ledger lives on a ReadWriteOnce volume: the old pod must stop before the new one starts.
    strategy: dict[str, Any] = (
        {"type": "Recreate"}
        if spec.uses_sqlite
        else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(names.push_worker, namespace, child_labels(name, "push-worker")),
        "spec": {
            "replicas": 0 if spec.suspend else replicas,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector_labels(name, "push-worker")},
            "strategy": strategy,
            "template": {
                "metadata": {
                    "labels": child_labels(name, "push-worker"),
                    "annotations": {CONFIG_CHECKSUM_ANNOTATION: config_checksum},
                },
                "spec": _pod_spec(container, volumes, **extra),
            },
        },
    }


def push_worker_service(name: str, namespace: str, spec: UnsubscribeSyncSpec | None = None) -> dict[str, Any]:
    """The worker Service: port ``http`` (internal API, metrics), plus ``public`` with spec.publicEndpoint."""
    ports = [{"name": PORT_NAME, "port": WORKER_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}]
    if spec is not None and spec.publicEndpoint is not None:
        ports.append({"name": PUBLIC_PORT_NAME, "port": PUBLIC_PORT, "targetPort": PUBLIC_PORT_NAME, "protocol": "TCP"})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(ChildNames(name).push_worker, namespace, child_labels(name, "push-worker")),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name, "push-worker"),
            "ports": ports,
        },
    }


def push_worker_pdb(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(ChildNames(name).push_worker, namespace, child_labels(name, "push-worker")),
        "spec": {"minAvailable": 1, "selector": {"matchLabels": selector_labels(name, "push-worker")}},
    }


def nightly_sync_cronjob(name: str, namespace: str, spec: UnsubscribeSyncSpec, *, image: str) -> dict[str, Any]:
    """The nightly CronJob. With SQLite it asks the worker to run the sync (the ledger volume is the
    worker's alone); with PostgreSQL it opens the ledger and talks to Salesforce itself."""
    volumes = [config_volume(name), webhook_token_volume(spec)]
    if not spec.uses_sqlite:
        volumes += [ledger_url_volume(spec), salesforce_credentials_volume(spec)]
    container = {
        "name": "nightly-sync",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [CLI, "nightly", "--config", CONFIG_FILE],
        "resources": copy.deepcopy(NIGHTLY_RESOURCES),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(ChildNames(name).nightly_sync, namespace, child_labels(name, "nightly-sync")),
        "spec": {
            "schedule": spec.nightlySync.schedule,
            "timeZone": spec.nightlySync.timeZone,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": NIGHTLY_STARTING_DEADLINE_SECONDS,
            "successfulJobsHistoryLimit": NIGHTLY_HISTORY_LIMIT,
            "failedJobsHistoryLimit": NIGHTLY_HISTORY_LIMIT,
            "suspend": spec.suspend or not spec.nightlySync.enabled,
            "jobTemplate": {
                "metadata": {"labels": child_labels(name, "nightly-sync")},
                "spec": {
                    "backoffLimit": NIGHTLY_BACKOFF_LIMIT,
                    "activeDeadlineSeconds": NIGHTLY_ACTIVE_DEADLINE_SECONDS,
                    "template": {
                        "metadata": {"labels": child_labels(name, "nightly-sync")},
                        "spec": _pod_spec(container, volumes, restartPolicy="Never"),
                    },
                },
            },
        },
    }

"""The public surface of the push worker: an Ingress to the port ``public`` only, and a NetworkPolicy that lets
anyone reach that port and only pods of the cluster reach the internal one (``http``: API, probes, metrics).

Both exist only with ``spec.publicEndpoint`` (the Ingress only with ``spec.publicEndpoint.ingress``).
"""

from __future__ import annotations

from typing import Any, Final

from unsubscribe_sync.api.constants import PUBLIC_PORT, WORKER_PORT
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.resources.labels import ChildNames, child_labels, selector_labels

PUBLIC_PORT_NAME: Final = "public"
# The public routes (README, "Public listener"); the Ingress forwards these prefixes and nothing else.
PUBLIC_PATHS: Final = ("/u/", "/v1/webhooks/")


def ingress(name: str, namespace: str, spec: UnsubscribeSyncSpec) -> dict[str, Any] | None:
    """The Ingress to the worker's public port, or None when the spec asks for none."""
    endpoint = spec.publicEndpoint
    if endpoint is None or endpoint.ingress is None:
        return None
    given = endpoint.ingress
    backend = {"service": {"name": ChildNames(name).push_worker, "port": {"name": PUBLIC_PORT_NAME}}}
    body: dict[str, Any] = {
        "rules": [
            {
                "host": given.host,
                "http": {"paths": [{"path": p, "pathType": "Prefix", "backend": backend} for p in PUBLIC_PATHS]},
            }
        ]
    }
    if given.className:
        body = {"ingressClassName": given.className, **body}
    if given.tlsSecretName:
        body["tls"] = [{"hosts": [given.host], "secretName": given.tlsSecretName}]
    metadata: dict[str, Any] = {
        "name": ChildNames(name).push_worker,
        "namespace": namespace,
        "labels": child_labels(name, "push-worker"),
    }
    if given.annotations:
        metadata["annotations"] = dict(given.annotations)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata, "spec": body}


def network_policy(name: str, namespace: str, spec: UnsubscribeSyncSpec) -> dict[str, Any] | None:
    """Ingress rules of the worker pods: the public port from anywhere, the internal port from the cluster only."""
    if spec.publicEndpoint is None:
        return None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": ChildNames(name).push_worker,
            "namespace": namespace,
            "labels": child_labels(name, "push-worker"),
        },
        "spec": {
            "podSelector": {"matchLabels": selector_labels(name, "push-worker")},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"ports": [{"protocol": "TCP", "port": PUBLIC_PORT}]},
                # Every pod of every namespace (the nightly Job, Prometheus, the sales-email platform in the cluster).
                {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": WORKER_PORT}]},
            ],
        },
    }

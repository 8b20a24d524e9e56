"""The PersistentVolumeClaim of a SQLite ledger."""

from __future__ import annotations

from typing import Any

from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.resources.labels import ChildNames, child_labels


def ledger_pvc(name: str, namespace: str, spec: UnsubscribeSyncSpec) -> dict[str, Any]:
    storage = spec.ledger.storage
    claim: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage.size}},
    }
    if storage.storageClassName:
        claim["storageClassName"] = storage.storageClassName
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": ChildNames(name).ledger, "namespace": namespace, "labels": child_labels(name, "ledger")},
        "spec": claim,
    }

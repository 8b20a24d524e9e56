"""Names and labels of the children of an UnsubscribeSync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from unsubscribe_sync.api.constants import APP_NAME, MANAGED_BY

Component = Literal["push-worker", "nightly-sync", "config", "ledger", "metrics"]

NAME_LABEL: Final = "app.kubernetes.io/name"
INSTANCE_LABEL: Final = "app.kubernetes.io/instance"
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"


@dataclass(frozen=True)
class ChildNames:
    """The names of every child of the UnsubscribeSync called ``instance``."""

    instance: str

    @property
    def push_worker(self) -> str:
        """Deployment, Service, PodDisruptionBudget and ServiceMonitor."""
        return f"{self.instance}-push-worker"

    @property
    def nightly_sync(self) -> str:
        """CronJob."""
        return f"{self.instance}-nightly-sync"

    @property
    def config(self) -> str:
        """ConfigMap."""
        return f"{self.instance}-config"

    @property
    def ledger(self) -> str:
        """PersistentVolumeClaim (SQLite mode)."""
        return f"{self.instance}-ledger"


def selector_labels(instance: str, component: Component) -> dict[str, str]:
    """The labels that select one component's pods (immutable once a Deployment exists)."""
    return {NAME_LABEL: APP_NAME, INSTANCE_LABEL: instance, COMPONENT_LABEL: component}


def child_labels(instance: str, component: Component) -> dict[str, str]:
    """The labels on every child object and pod."""
    return {**selector_labels(instance, component), MANAGED_BY_LABEL: MANAGED_BY}


def instance_selector(instance: str) -> str:
    """A label selector string matching every child of one instance."""
    return f"{NAME_LABEL}={APP_NAME},{INSTANCE_LABEL}={instance},{MANAGED_BY_LABEL}={MANAGED_BY}"

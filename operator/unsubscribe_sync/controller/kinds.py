"""The Kubernetes resources the operator reads and writes, and their REST paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from unsubscribe_sync.api.constants import GROUP, KIND, PLURAL, VERSION


@dataclass(frozen=True)
class Kind:
    """One namespaced resource type."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        path = f"{base}/namespaces/{namespace}/{self.plural}"
        if name is not None:
            path += f"/{name}"
            if subresource:
                path += f"/{subresource}"
        return path


USYNC: Final = Kind(GROUP, VERSION, PLURAL, KIND)
DEPLOYMENT: Final = Kind("apps", "v1", "deployments", "Deployment")
SERVICE: Final = Kind("", "v1", "services", "Service")
CONFIG_MAP: Final = Kind("", "v1", "configmaps", "ConfigMap")
CRON_JOB: Final = Kind("batch", "v1", "cronjobs", "CronJob")
PVC: Final = Kind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")
PDB: Final = Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")
SERVICE_MONITOR: Final = Kind("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor")
INGRESS: Final = Kind("networking.k8s.io", "v1", "ingresses", "Ingress")
NETWORK_POLICY: Final = Kind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy")
JOB: Final = Kind("batch", "v1", "jobs", "Job")
POD: Final = Kind("", "v1", "pods", "Pod")
SECRET: Final = Kind("", "v1", "secrets", "Secret")

# Every kind the builders may return (the operator watches these for drift).
CHILD_KINDS: Final[tuple[Kind, ...]] = (
    CONFIG_MAP,
    PVC,
    SERVICE,
    DEPLOYMENT,
    PDB,
    CRON_JOB,
    SERVICE_MONITOR,
    NETWORK_POLICY,
    INGRESS,
)
_BY_API_KIND: Final = {(k.api_version, k.kind): k for k in CHILD_KINDS}


def kind_of(manifest: dict[str, object]) -> Kind:
    """The Kind of a child manifest (KeyError for a kind the operator does not manage)."""
    return _BY_API_KIND[(str(manifest["apiVersion"]), str(manifest["kind"]))]

"""Pydantic models of the UnsubscribeSync custom resource (spec and status).

The CRD in ``crds/`` is the schema the API server enforces; these models mirror it
(tests check that both agree on fields, defaults and enums).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class OptOutTarget(StrEnum):
    EMAIL_OPT_OUT = "EmailOptOut"
    MARKETO_SALES_OPT_OUT = "MarketoSalesOptOut"


SalesforceObject = Literal["Contact", "Lead"]


def default_objects() -> list[SalesforceObject]:
    return ["Contact", "Lead"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretRef(_Model):
    name: str = Field(min_length=1, max_length=253)


class SecretKeyRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class SalesforceSpec(_Model):
    loginUrl: str = Field(default="https://login.salesforce.com", pattern=r"^https://[^\s/]+(/.*)?$")
    apiVersion: str = Field(default="62.0", pattern=r"^[0-9]{2,3}\.0$")
    credentialsSecretRef: SecretRef
    objects: list[SalesforceObject] = Field(default_factory=default_objects, min_length=1, max_length=2)


class OptOutFieldSpec(_Model):
    target: OptOutTarget = OptOutTarget.EMAIL_OPT_OUT
    marketoSalesOptOutField: str = Field(default="", pattern=r"^$|^[A-Za-z][A-Za-z0-9_]*__c$")


class NightlySyncSpec(_Model):
    enabled: bool = True
    schedule: str = Field(default="0 20 * * *", min_length=9)
    timeZone: str = Field(default="America/Los_Angeles", min_length=1)


class WebhookSecretRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default="token", min_length=1, max_length=253)


class PushWorkerSpec(_Model):
    replicas: int = Field(default=1, ge=1, le=20)
    webhookSecretRef: WebhookSecretRef
    resources: dict[str, Any] = Field(default_factory=dict)


class DatabaseSecretRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default="url", min_length=1, max_length=253)


class StorageSpec(_Model):
    size: str = Field(default="1Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
    storageClassName: str | None = None


class LedgerSpec(_Model):
    databaseSecretRef: DatabaseSecretRef | None = None
    storage: StorageSpec = Field(default_factory=StorageSpec)


class ServiceMonitorSpec(_Model):
    enabled: bool = False
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    labels: dict[str, str] = Field(default_factory=dict)


class MonitoringSpec(_Model):
    serviceMonitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec)


class UnsubscribeSyncSpec(_Model):
    suspend: bool = False
    salesforce: SalesforceSpec
    optOutField: OptOutFieldSpec = Field(default_factory=OptOutFieldSpec)
    nightlySync: NightlySyncSpec = Field(default_factory=NightlySyncSpec)
    pushWorker: PushWorkerSpec
    ledger: LedgerSpec = Field(default_factory=LedgerSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)

    @property
    def uses_sqlite(self) -> bool:
        return self.ledger.databaseSecretRef is None


class Condition(BaseModel):
    """metav1.Condition."""

    model_config = ConfigDict(extra="forbid")

    type: str
    status: Literal["True", "False", "Unknown"]
    observedGeneration: int | None = None
    lastTransitionTime: str
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""


class NightlyCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    toSalesforce: int = 0
    fromSalesforce: int = 0
    skippedNoSalesforceId: int = 0
    failed: int = 0


class LastNightlySync(BaseModel):
    model_config = ConfigDict(extra="forbid")

    startTime: str | None = None
    completionTime: str | None = None
    outcome: Literal["Succeeded", "Failed"] | None = None
    jobName: str | None = None
    counts: NightlyCounts = Field(default_factory=NightlyCounts)


class UnsubscribeSyncStatus(BaseModel):
    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = None
    conditions: list[Condition] = Field(default_factory=list)
    pushField: str | None = None
    lastNightlySync: LastNightlySync | None = None


CONDITION_TYPES = (
    "Ready",
    "CredentialsValid",
    "FieldInstalled",
    "PushWorkerAvailable",
    "NightlySyncSucceeded",
    "Reconciling",
    "Stalled",
)

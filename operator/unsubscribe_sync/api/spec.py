"""Pydantic models of the UnsubscribeSync custom resource (spec and status).

The CRD in ``crds/`` is the schema the API server enforces; these models mirror it
(tests check that both agree on fields, defaults and enums).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
)

MIN_POLL_INTERVAL_SECONDS = 30  # spec.salesforcePoll.intervalSeconds: the config file takes any value from 1


class OptOutTarget(StrEnum):
    EMAIL_OPT_OUT = "EmailOptOut"
    MARKETO_SALES_OPT_OUT = "MarketoSalesOptOut"


SalesforceObject = Literal["Contact", "Lead"]


def default_objects() -> list[SalesforceObject]:
    return ["Contact", "Lead"]


SCHEDULE_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+( +\S+){4})$"
TIME_ZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$"
# A Kubernetes resource quantity ("100m", "128Mi", "1.5", "2e3"), as in the API server's own schema.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# Booleans and integers are strict, as in the CRD schema: "true" or "1" is refused, not converted.
Quantity = StrictInt | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN)]
ResourceList = dict[str, Quantity]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretRef(_Model):
    name: str = Field(min_length=1, max_length=253)


class SecretKeyRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253)


class SalesforceSpec(_Model):
    loginUrl: str = Field(default="https://login.salesforce.com", pattern=r"^https://[^\s/]+(/.*)?$", max_length=2048)
    apiVersion: str = Field(default="62.0", pattern=r"^[0-9]{2,3}\.0$")
    credentialsSecretRef: SecretRef
    objects: list[SalesforceObject] = Field(default_factory=default_objects, min_length=1, max_length=2)

    @field_validator("objects")
    @classmethod
    def _unique(cls, value: list[SalesforceObject]) -> list[SalesforceObject]:
        if len(set(value)) != len(value):
            raise ValueError("objects must not repeat")
        return value


class OptOutFieldSpec(_Model):
    target: OptOutTarget = OptOutTarget.EMAIL_OPT_OUT
    marketoSalesOptOutField: str = Field(default="", pattern=r"^$|^[A-Za-z][A-Za-z0-9_]*__c$", max_length=80)


class MatchingMode(StrEnum):
    """Which records an unsubscribe is written to (README "Matching")."""

    SALESFORCE_ID = "SalesforceId"  # only the record named by salesforceId; none = skipped
    EMAIL = "Email"  # every record of the configured objects whose Email equals the address, plus that record


class MatchingSpec(_Model):
    mode: MatchingMode = MatchingMode.SALESFORCE_ID


class NightlySyncSpec(_Model):
    enabled: StrictBool = True
    # Five cron fields or a macro such as @daily (no TZ= prefix: the zone comes from timeZone).
    schedule: str = Field(default="0 20 * * *", pattern=SCHEDULE_PATTERN, max_length=100)
    timeZone: str = Field(default="America/Los_Angeles", pattern=TIME_ZONE_PATTERN, max_length=64)
    # The blast-radius guard (absent: no guard): a run that would change more stops before writing.
    maxChangeRatio: StrictFloat | None = Field(default=None, gt=0, le=1)
    maxChanges: StrictInt | None = Field(default=None, ge=0)


class SalesforcePollSpec(_Model):
    # Seconds between polls of Salesforce for opt-outs set there; 0 = off; unset: the worker's default (300).
    intervalSeconds: StrictInt | None = Field(default=None, ge=0)

    @field_validator("intervalSeconds")
    @classmethod
    def _not_too_often(cls, value: int | None) -> int | None:
        if value is not None and 0 < value < MIN_POLL_INTERVAL_SECONDS:
            raise ValueError(f"must be 0 (off) or at least {MIN_POLL_INTERVAL_SECONDS}")
        return value


class WebhookSecretRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default="token", min_length=1, max_length=253)


class PushWorkerSpec(_Model):
    replicas: StrictInt = Field(default=1, ge=1, le=20)
    webhookSecretRef: WebhookSecretRef
    # As a Pod's container resources (limits / requests); kept a plain mapping for the builders.
    resources: dict[Literal["limits", "requests"], ResourceList] = Field(default_factory=dict)


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
    enabled: StrictBool = False
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$")
    labels: dict[str, str] = Field(default_factory=dict)


class MonitoringSpec(_Model):
    serviceMonitor: ServiceMonitorSpec = Field(default_factory=ServiceMonitorSpec)


HOSTNAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
PUBLIC_BASE_URL_PATTERN = r"^https://[^\s/?#]+(/[^\s?#]*)?$"


class IngressSpec(_Model):
    className: str | None = Field(default=None, min_length=1, max_length=253)
    host: str = Field(pattern=HOSTNAME_PATTERN, max_length=253)
    tlsSecretName: str | None = Field(default=None, min_length=1, max_length=253)
    annotations: dict[str, str] = Field(default_factory=dict)


class PublicEndpointSpec(_Model):
    """Where the worker's public listener (one-click links, sender webhooks) is reachable from the internet."""

    baseUrl: str = Field(pattern=PUBLIC_BASE_URL_PATTERN, max_length=2048)
    ingress: IngressSpec | None = None


class OneClickKeySecretRef(_Model):
    name: str = Field(min_length=1, max_length=253)
    key: str = Field(default="keys", min_length=1, max_length=253)


class OneClickSpec(_Model):
    keySecretRef: OneClickKeySecretRef


SNS_CERT_HOST_PATTERN_DEFAULT = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"


class SendGridSpec(_Model):
    publicKeySecretRef: SecretKeyRef


class MailgunSpec(_Model):
    signingKeySecretRef: SecretKeyRef


class PostmarkSpec(_Model):
    basicAuthSecretRef: SecretKeyRef


class MandrillSpec(_Model):
    webhookKeySecretRef: SecretKeyRef
    url: str = Field(pattern=r"^https?://\S+$", max_length=2048)


class SesSpec(_Model):
    topicArns: list[Annotated[str, StringConstraints(pattern=r"^arn:\S+$", max_length=256)]] = Field(min_length=1)
    certHostPattern: str = Field(default=SNS_CERT_HOST_PATTERN_DEFAULT, min_length=1, max_length=1024)
    caSecretRef: SecretKeyRef | None = None


class SendersSpec(_Model):
    """The email services whose webhooks the public listener takes; each is off until given (docs/SENDERS.md)."""

    sendgrid: SendGridSpec | None = None
    mailgun: MailgunSpec | None = None
    postmark: PostmarkSpec | None = None
    mandrill: MandrillSpec | None = None
    ses: SesSpec | None = None


class UnsubscribeSyncSpec(_Model):
    suspend: StrictBool = False
    salesforce: SalesforceSpec
    optOutField: OptOutFieldSpec = Field(default_factory=OptOutFieldSpec)
    matching: MatchingSpec = Field(default_factory=MatchingSpec)
    nightlySync: NightlySyncSpec = Field(default_factory=NightlySyncSpec)
    salesforcePoll: SalesforcePollSpec = Field(default_factory=SalesforcePollSpec)
    pushWorker: PushWorkerSpec
    ledger: LedgerSpec = Field(default_factory=LedgerSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    publicEndpoint: PublicEndpointSpec | None = None
    oneClick: OneClickSpec | None = None
    senders: SendersSpec | None = None

    @property
    def uses_sqlite(self) -> bool:
        return self.ledger.databaseSecretRef is None


class Condition(BaseModel):
    """metav1.Condition."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(max_length=316)
    status: Literal["True", "False", "Unknown"]
    observedGeneration: int | None = Field(default=None, ge=0)
    lastTransitionTime: str
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$", min_length=1, max_length=1024)
    message: str = Field(default="", max_length=32768)


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
    matchingMode: MatchingMode | None = None
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

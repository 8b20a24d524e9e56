"""Pydantic models of the UnsubscribeSync custom resource (spec and status): the one home of its schema.

:mod:`unsubscribe_sync.api.crd` generates the CRD's openAPIV3Schema from these models: each field's
``description``, default, enum, pattern and bounds, and the CEL rules (``x-kubernetes-validations``)
written beside the field or model they guard. ``json_schema_extra`` holds what only the CRD reads: CEL
rules, list types, formats, and the default the API server stores for an omitted object (``{}``, which
its nested defaults then fill, as the model's ``default_factory`` does).

CEL rules use the plain CEL language only (``has``, ``size``, ``matches``, ``startsWith``, ternaries), so
:mod:`unsubscribe_sync.api.validation` can evaluate them with cel-python exactly as the API server does.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

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
from pydantic.config import JsonDict
from pydantic_core import PydanticUndefined

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

DNS_SUBDOMAIN_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_RE = r"^[-._a-zA-Z0-9]+$"
EMPTY_OBJECT_DEFAULT: JsonDict = {"default": {}}  # the CRD stores {} for an omitted object; nested defaults fill it


def _rule(rule: str, message: str, reason: str, field_path: str | None = None) -> JsonDict:
    """One CEL rule of ``x-kubernetes-validations``; ``field_path`` (relative) is the field a failure names."""
    entry: JsonDict = {"rule": rule, "message": message, "reason": reason}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def _rules(*rules: JsonDict) -> JsonDict:
    return {"x-kubernetes-validations": list(rules)}


def _secret_name(what: str) -> str:
    return f"Name of the Secret (in the same namespace) that holds {what}."


SECRET_NAME_RULE = _rule(
    f"self.name.matches('{DNS_SUBDOMAIN_RE}')",
    "must be a valid Secret name (lowercase letters, digits, '-' and '.')",
    "FieldValueInvalid",
    ".name",
)
SECRET_KEY_RULE = _rule(
    f"self.key.matches('{SECRET_KEY_RE}')",
    "must be a valid Secret key (letters, digits, '-', '_' and '.')",
    "FieldValueInvalid",
    ".key",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SecretRef(_Model):
    """A Secret by name; the referring field describes what it holds (``secret_ref_field``)."""

    model_config = ConfigDict(json_schema_extra=_rules(SECRET_NAME_RULE))

    name: str = Field(min_length=1, max_length=253)


class SecretKeyRef(_Model):
    """A key of a Secret; the referring field describes what it holds (``sender_secret_field``)."""

    model_config = ConfigDict(json_schema_extra=_rules(SECRET_NAME_RULE, SECRET_KEY_RULE))

    name: str = Field(min_length=1, max_length=253)
    key: str = Field(min_length=1, max_length=253, description="Key in the Secret.")


def secret_ref_field(description: str, what: str) -> Any:
    """A required reference field whose Secret holds ``what`` (the description of its ``name``)."""
    return Field(
        description=description, json_schema_extra={"properties": {"name": {"description": _secret_name(what)}}}
    )


def sender_secret_field(what: str, *, optional: bool = False) -> Any:
    """A sender's Secret key (a :class:`SecretKeyRef`) holding ``what``, mounted as a file into the worker."""
    return Field(
        default=None if optional else PydanticUndefined,
        description=f"Secret key holding {what}; mounted as a file into the worker, never copied into the config.",
        json_schema_extra={"properties": {"name": {"description": _secret_name(what)}}},
    )


class SalesforceSpec(_Model):
    """Where and how to reach the Salesforce org."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule("self.loginUrl.startsWith('https://')", "must be an https:// URL", "FieldValueInvalid", ".loginUrl")
        )
    )

    loginUrl: str = Field(
        default="https://login.salesforce.com",
        pattern=r"^https://[^\s/]+(/.*)?$",
        max_length=2048,
        description="OAuth login URL of the org: its My Domain URL (needed for the client credentials flow), "
        "https://login.salesforce.com or https://test.salesforce.com. The token endpoint is "
        "{loginUrl}/services/oauth2/token.",
    )
    apiVersion: str = Field(
        default="62.0",
        pattern=r"^[0-9]{2,3}\.0$",
        description='Salesforce REST API version, without the leading "v" (for example "62.0").',
    )
    credentialsSecretRef: SecretRef = secret_ref_field(
        "Secret with the OAuth 2.0 credentials: client_id + client_secret (client credentials flow) or "
        "client_id + username + private_key (JWT bearer flow). Mounted as files, never copied.",
        "the Salesforce credentials",
    )
    objects: list[Annotated[SalesforceObject, Field(description="A Salesforce object.")]] = Field(
        default_factory=default_objects,
        min_length=1,
        max_length=2,
        description="Salesforce objects whose opt-out field is kept in sync.",
        json_schema_extra={"default": ["Contact", "Lead"], "x-kubernetes-list-type": "set"},
    )

    @field_validator("objects")
    @classmethod
    def _unique(cls, value: list[SalesforceObject]) -> list[SalesforceObject]:
        if len(set(value)) != len(value):
            raise ValueError("objects must not repeat")
        return value


class OptOutFieldSpec(_Model):
    """Which Salesforce opt-out field the sync writes."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "!has(self.marketoSalesOptOutField) || self.marketoSalesOptOutField == '' || "
                "(has(self.target) && self.target == 'MarketoSalesOptOut')",
                "can only be set when target is MarketoSalesOptOut",
                "FieldValueForbidden",
                ".marketoSalesOptOutField",
            )
        )
    )

    target: OptOutTarget = Field(
        default=OptOutTarget.EMAIL_OPT_OUT,
        description="EmailOptOut: the standard HasOptedOutOfEmail field (Email Opt Out). MarketoSalesOptOut: the "
        "custom Marketo Sales Opt Out field, which keeps sales unsubscribes apart from marketing ones. The nightly "
        "sync always uses the target; the real-time push uses it only while nightly sync is enabled and writes "
        "Email Opt Out otherwise.",
    )
    marketoSalesOptOutField: str = Field(
        default="",
        pattern=r"^$|^[A-Za-z][A-Za-z0-9_]*__c$",
        max_length=80,
        description='API name of the Marketo Sales Opt Out field (for example "ToutApp__Opt_Out__c"). Empty: '
        'discover it on describe by its label ("Marketo Sales Opt Out" or "MSE - Opt Out"). Only with target '
        "MarketoSalesOptOut.",
    )


class MatchingMode(StrEnum):
    """Which records an unsubscribe is written to (README "Matching")."""

    SALESFORCE_ID = "SalesforceId"  # only the record named by salesforceId; none = skipped
    EMAIL = "Email"  # every record of the configured objects whose Email equals the address, plus that record


class MatchingSpec(_Model):
    """Which records an unsubscribe is written to."""

    mode: MatchingMode = Field(
        default=MatchingMode.SALESFORCE_ID,
        description="SalesforceId: only the record named by salesforceId (none: skipped). Email: every record of "
        "the configured objects whose Email equals the address (case-insensitive; Leads only when not converted), "
        "plus the record named by salesforceId; an address with no record is kept and set by the nightly once a "
        "record appears.",
    )


class NightlySyncSpec(_Model):
    """The nightly bidirectional sync (a CronJob)."""

    enabled: StrictBool = Field(
        default=True,
        description="Run the nightly sync. When false the CronJob is suspended and the push writes Email Opt Out "
        "whatever the target says.",
    )
    # No TZ= prefix in the schedule: the zone comes from timeZone.
    schedule: str = Field(
        default="0 20 * * *",
        pattern=SCHEDULE_PATTERN,
        max_length=100,
        description='Cron schedule (five fields or a macro such as "@daily"), read in timeZone.',
    )
    timeZone: str = Field(
        default="America/Los_Angeles",
        pattern=TIME_ZONE_PATTERN,
        max_length=64,
        description="IANA time zone of the schedule.",
    )
    maxChangeRatio: StrictFloat | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Blast-radius guard: a run that would change more than this share of the records read on a "
        "side (toSalesforce against the ledger's unsubscribes, fromSalesforce against the opted-out Salesforce "
        "records) stops before writing anything and fails. 0 < x <= 1; absent: no ratio limit.",
    )
    maxChanges: StrictInt | None = Field(
        default=None,
        ge=0,
        description="Blast-radius guard: a run that would make more than this many changes in one direction stops "
        "before writing anything and fails. Absent: no count limit.",
    )


class SalesforcePollSpec(_Model):
    """The incremental pull of opt-outs set in Salesforce (runs only while nightlySync is enabled)."""

    intervalSeconds: StrictInt | None = Field(
        default=None,
        ge=0,
        description="Seconds between polls (records changed since the last poll, by SystemModstamp); 0 turns the "
        "poll off. Unset: 300.",
        json_schema_extra=_rules(
            _rule(
                f"self == 0 || self >= {MIN_POLL_INTERVAL_SECONDS}",
                f"must be 0 (off) or at least {MIN_POLL_INTERVAL_SECONDS}",
                "FieldValueInvalid",
            )
        ),
    )

    @field_validator("intervalSeconds")
    @classmethod
    def _not_too_often(cls, value: int | None) -> int | None:
        if value is not None and 0 < value < MIN_POLL_INTERVAL_SECONDS:
            raise ValueError(f"must be 0 (off) or at least {MIN_POLL_INTERVAL_SECONDS}")
        return value


class WebhookSecretRef(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(SECRET_NAME_RULE, SECRET_KEY_RULE))

    name: str = Field(min_length=1, max_length=253, description=_secret_name("the webhook token"))
    key: str = Field(default="token", min_length=1, max_length=253, description="Key of the token in the Secret.")


class PushWorkerSpec(_Model):
    """The push worker: webhook, durable ledger API and real-time push to Salesforce."""

    replicas: StrictInt = Field(
        default=1,
        ge=1,
        le=20,
        description="Number of worker pods. A SQLite ledger needs exactly 1; more need PostgreSQL.",
    )
    webhookSecretRef: WebhookSecretRef = Field(
        description="Secret key holding the bearer token the sales-email platform sends to the webhook."
    )
    # As a Pod's container resources (limits / requests); kept a plain mapping for the builders.
    resources: dict[Literal["limits", "requests"], ResourceList] = Field(
        default_factory=dict,
        description="Compute resources of the worker container (as in a Pod). Empty: modest defaults.",
        json_schema_extra={
            "default": {},
            "properties": {
                "limits": {"description": "Maximum compute resources allowed."},
                "requests": {"description": "Minimum compute resources required."},
            },
        },
    )


class DatabaseSecretRef(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(SECRET_NAME_RULE, SECRET_KEY_RULE))

    name: str = Field(min_length=1, max_length=253, description=_secret_name("the database URL"))
    key: str = Field(default="url", min_length=1, max_length=253, description="Key of the URL in the Secret.")


class StorageSpec(_Model):
    """The PersistentVolumeClaim of a SQLite ledger (unused with PostgreSQL)."""

    size: str = Field(
        default="1Gi",
        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
        description="Requested size.",
    )
    storageClassName: str | None = Field(
        default=None, description="StorageClass of the claim. Unset: the cluster default."
    )


class LedgerSpec(_Model):
    """Where unsubscribes are stored durably."""

    databaseSecretRef: DatabaseSecretRef | None = Field(
        default=None,
        description="Secret key holding a PostgreSQL URL (postgresql://...). Omit it for a SQLite ledger on a "
        "PersistentVolumeClaim (then pushWorker.replicas must be 1).",
    )
    storage: StorageSpec = Field(default_factory=StorageSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT)


class ServiceMonitorSpec(_Model):
    """A ServiceMonitor (Prometheus Operator) for the worker's /metrics."""

    enabled: StrictBool = Field(
        default=False, description="Create the ServiceMonitor (needs the monitoring.coreos.com CRDs)."
    )
    interval: str = Field(default="30s", pattern=r"^[0-9]+(ms|s|m|h)$", description="Scrape interval.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Extra labels on the ServiceMonitor (to match a serviceMonitorSelector).",
        json_schema_extra=EMPTY_OBJECT_DEFAULT,
    )


class MonitoringSpec(_Model):
    """Prometheus integration."""

    serviceMonitor: ServiceMonitorSpec = Field(
        default_factory=ServiceMonitorSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT
    )


HOSTNAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
PUBLIC_BASE_URL_PATTERN = r"^https://[^\s/?#]+(/[^\s?#]*)?$"


class IngressSpec(_Model):
    """Render an Ingress to the public port only. Absent: expose the port your own way."""

    className: str | None = Field(
        default=None, min_length=1, max_length=253, description="IngressClass name. Unset: the cluster default."
    )
    host: str = Field(pattern=HOSTNAME_PATTERN, max_length=253, description="Host name the Ingress serves.")
    tlsSecretName: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Secret with the TLS certificate for host. Unset: TLS is terminated elsewhere.",
    )
    annotations: dict[str, str] = Field(
        default_factory=dict,
        description="Annotations of the Ingress (e.g. cert-manager.io/cluster-issuer).",
        json_schema_extra=EMPTY_OBJECT_DEFAULT,
    )


class PublicEndpointSpec(_Model):
    """Where the worker's public listener (one-click links, sender webhooks) is reachable from the internet."""

    baseUrl: str = Field(
        pattern=PUBLIC_BASE_URL_PATTERN,
        max_length=2048,
        description="The https URL at which the public routes are reachable from the internet (one-click links "
        "are <baseUrl>/u/<token>).",
    )
    ingress: IngressSpec | None = None


class OneClickKeySecretRef(_Model):
    model_config = ConfigDict(json_schema_extra=_rules(SECRET_NAME_RULE, SECRET_KEY_RULE))

    name: str = Field(min_length=1, max_length=253, description=_secret_name("the one-click keys"))
    key: str = Field(default="keys", min_length=1, max_length=253, description="Key of the keys in the Secret.")


class OneClickSpec(_Model):
    """RFC 8058 one-click unsubscribe links (needs publicEndpoint)."""

    keySecretRef: OneClickKeySecretRef = Field(
        description="Secret key holding the HMAC keys, one per line: the first signs new links, every line verifies "
        "(add a new key on top to rotate; remove a line to retire its links)."
    )


SNS_CERT_HOST_PATTERN_DEFAULT = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"


class SendGridSpec(_Model):
    """Twilio SendGrid Signed Event Webhook."""

    publicKeySecretRef: SecretKeyRef = sender_secret_field("the Signed Event Webhook verification key (base64 or PEM)")


class MailgunSpec(_Model):
    """Mailgun webhooks."""

    signingKeySecretRef: SecretKeyRef = sender_secret_field("the HTTP webhook signing key")


class PostmarkSpec(_Model):
    """Postmark webhooks (HTTP basic auth in the webhook URL)."""

    basicAuthSecretRef: SecretKeyRef = sender_secret_field("user:password of the webhook URL")


class MandrillSpec(_Model):
    """Mandrill (Mailchimp Transactional) webhooks."""

    webhookKeySecretRef: SecretKeyRef = sender_secret_field("the webhook key")
    url: str = Field(
        pattern=r"^https?://\S+$",
        max_length=2048,
        description="The webhook URL exactly as registered in Mandrill (part of what Mandrill signs).",
    )


class SesSpec(_Model):
    """Amazon SES complaint notifications through Amazon SNS."""

    topicArns: list[
        Annotated[str, StringConstraints(pattern=r"^arn:\S+$", max_length=256), Field(description="An SNS topic ARN.")]
    ] = Field(min_length=1, description="SNS topics whose messages are accepted (others are refused).")
    certHostPattern: str = Field(
        default=SNS_CERT_HOST_PATTERN_DEFAULT,
        min_length=1,
        max_length=1024,
        description="Regular expression the host of SigningCertURL and SubscribeURL must match.",
    )
    caSecretRef: SecretKeyRef | None = sender_secret_field(
        "a CA bundle trusted for the certificate host (a re-signing proxy)", optional=True
    )


class SendersSpec(_Model):
    """The email services whose webhooks the public listener takes; each is off until given (docs/SENDERS.md)."""

    sendgrid: SendGridSpec | None = None
    mailgun: MailgunSpec | None = None
    postmark: PostmarkSpec | None = None
    mandrill: MandrillSpec | None = None
    ses: SesSpec | None = None


class UnsubscribeSyncSpec(_Model):
    """Desired state: keep email unsubscribes in sync with the opt-out field of Salesforce Contacts and Leads."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "!has(self.ledger) || has(self.ledger.databaseSecretRef) || "
                "!has(self.pushWorker.replicas) || self.pushWorker.replicas == 1",
                "a SQLite ledger (no ledger.databaseSecretRef) needs pushWorker.replicas == 1; "
                "set ledger.databaseSecretRef to a PostgreSQL URL to run more replicas",
                "FieldValueForbidden",
                ".pushWorker.replicas",
            ),
            _rule(
                "!has(self.oneClick) || has(self.publicEndpoint)",
                "oneClick needs publicEndpoint.baseUrl: the links point at the public listener",
                "FieldValueRequired",
                ".oneClick",
            ),
            _rule(
                "!has(self.senders) || has(self.publicEndpoint)",
                "senders needs publicEndpoint: the webhooks arrive on the public listener",
                "FieldValueRequired",
                ".senders",
            ),
        )
    )

    suspend: StrictBool = Field(
        default=False, description="Pause everything: the worker is scaled to 0 and the nightly CronJob suspended."
    )
    salesforce: SalesforceSpec
    optOutField: OptOutFieldSpec = Field(default_factory=OptOutFieldSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT)
    matching: MatchingSpec = Field(default_factory=MatchingSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT)
    nightlySync: NightlySyncSpec = Field(default_factory=NightlySyncSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT)
    salesforcePoll: SalesforcePollSpec = Field(
        default_factory=SalesforcePollSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT
    )
    pushWorker: PushWorkerSpec
    ledger: LedgerSpec = Field(default_factory=LedgerSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, json_schema_extra=EMPTY_OBJECT_DEFAULT)
    publicEndpoint: PublicEndpointSpec | None = Field(
        default=None,
        description="The worker's public listener (port `public`): RFC 8058 one-click links (/u/...) and the "
        "webhooks of email services (/v1/webhooks/...). The internal API stays cluster-only (a NetworkPolicy "
        "enforces it).",
    )
    oneClick: OneClickSpec | None = None
    senders: SendersSpec | None = Field(
        default=None,
        description="Email services whose webhooks the public listener takes (needs publicEndpoint; "
        "docs/SENDERS.md). Each is off until given; its route is then <baseUrl>/v1/webhooks/<name>.",
    )

    @property
    def uses_sqlite(self) -> bool:
        return self.ledger.databaseSecretRef is None


DATE_TIME: JsonDict = {"format": "date-time"}
INT64: JsonDict = {"format": "int64"}


class Condition(BaseModel):
    """A metav1.Condition."""

    # metav1.Condition requires message; the model defaults it to "" (and so always writes it).
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"required": ["type", "status", "lastTransitionTime", "reason", "message"]}
    )

    type: str = Field(max_length=316, description="Condition type (Ready, CredentialsValid, FieldInstalled, ...).")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observedGeneration: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was set for.", json_schema_extra=INT64
    )
    lastTransitionTime: str = Field(description="When the status last changed.", json_schema_extra=DATE_TIME)
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        min_length=1,
        max_length=1024,
        description="Machine-readable CamelCase reason.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")


class NightlyCounts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    toSalesforce: int = Field(default=0, description="Records set in Salesforce.")
    fromSalesforce: int = Field(default=0, description="Unsubscribes added to the ledger from Salesforce.")
    skippedNoSalesforceId: int = Field(
        default=0, description="Ledger unsubscribes without a Salesforce ID (kept, still suppress email)."
    )
    failed: int = Field(default=0, description="Records that failed permanently.")


class LastNightlySync(BaseModel):
    """The last finished nightly sync."""

    model_config = ConfigDict(extra="forbid")

    startTime: str | None = Field(default=None, description="When it started.", json_schema_extra=DATE_TIME)
    completionTime: str | None = Field(default=None, description="When it finished.", json_schema_extra=DATE_TIME)
    outcome: Literal["Succeeded", "Failed"] | None = Field(default=None, description="Succeeded or Failed.")
    jobName: str | None = Field(default=None, description="Name of its Job.")
    counts: NightlyCounts = Field(default_factory=NightlyCounts, description="Records per direction in that run.")


class UnsubscribeSyncStatus(BaseModel):
    """Observed state, written by the operator."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(
        default=None, description="metadata.generation the status reflects.", json_schema_extra=INT64
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (summary), CredentialsValid, FieldInstalled, PushWorkerAvailable, NightlySyncSucceeded, "
        "Reconciling and Stalled.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    pushField: str | None = Field(
        default=None, description="API name of the field the real-time push writes (seed rule 2)."
    )
    matchingMode: MatchingMode | None = Field(
        default=None, description="Which records an unsubscribe is written to (spec.matching.mode)."
    )
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

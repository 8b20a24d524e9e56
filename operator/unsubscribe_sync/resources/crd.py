"""The UnsubscribeSync CustomResourceDefinition, as data.

This module is the source of truth for ``crds/optout.dev_unsubscribesyncs.yaml`` (a test checks the
committed file equals :func:`crd_manifest`; regenerate it with ``unsubscribe-sync render --crd``).
It mirrors the pydantic models in :mod:`unsubscribe_sync.api.spec` field for field (tests check that too).

CEL rules (``x-kubernetes-validations``) use the plain CEL language only (``has``, ``size``,
``matches``, ``startsWith``, ternaries), so :mod:`unsubscribe_sync.resources.validation` can evaluate
them with cel-python exactly as the API server does.
"""

from __future__ import annotations

import copy
from typing import Any, Final

import yaml

from unsubscribe_sync.api.constants import CATEGORY, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION
from unsubscribe_sync.api.spec import (
    HOSTNAME_PATTERN,
    MIN_POLL_INTERVAL_SECONDS,
    PUBLIC_BASE_URL_PATTERN,
    QUANTITY_PATTERN,
    SCHEDULE_PATTERN,
    SNS_CERT_HOST_PATTERN_DEFAULT,
    TIME_ZONE_PATTERN,
    MatchingMode,
    OptOutTarget,
)

Schema = dict[str, Any]

CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# The CronJob name `<name>-nightly-sync` may have at most 52 characters (Jobs append 11).
MAX_NAME_LENGTH: Final = 52 - len("-nightly-sync")

DNS_SUBDOMAIN_RE: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
SECRET_KEY_RE: Final = r"^[-._a-zA-Z0-9]+$"


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _object(description: str, properties: dict[str, Schema], **extra: Any) -> Schema:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _secret_name(what: str) -> Schema:
    return _string(f"Name of the Secret (in the same namespace) that holds {what}.", minLength=1, maxLength=253)


def _secret_key(description: str, default: str) -> Schema:
    return _string(description, default=default, minLength=1, maxLength=253)


def _secret_ref_rules(with_key: bool) -> list[Schema]:
    rules: list[Schema] = [
        {
            "rule": f"self.name.matches('{DNS_SUBDOMAIN_RE}')",
            "message": "must be a valid Secret name (lowercase letters, digits, '-' and '.')",
            "fieldPath": ".name",
            "reason": "FieldValueInvalid",
        }
    ]
    if with_key:
        rules.append(
            {
                "rule": f"self.key.matches('{SECRET_KEY_RE}')",
                "message": "must be a valid Secret key (letters, digits, '-', '_' and '.')",
                "fieldPath": ".key",
                "reason": "FieldValueInvalid",
            }
        )
    return rules


def _quantity_map(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        },
    }


def _salesforce() -> Schema:
    return _object(
        "Where and how to reach the Salesforce org.",
        {
            "loginUrl": _string(
                "OAuth login URL of the org: its My Domain URL (needed for the client credentials flow), "
                "https://login.salesforce.com or https://test.salesforce.com. The token endpoint is "
                "{loginUrl}/services/oauth2/token.",
                default="https://login.salesforce.com",
                pattern=r"^https://[^\s/]+(/.*)?$",
                maxLength=2048,
            ),
            "apiVersion": _string(
                'Salesforce REST API version, without the leading "v" (for example "62.0").',
                default="62.0",
                pattern=r"^[0-9]{2,3}\.0$",
            ),
            "credentialsSecretRef": _object(
                "Secret with the OAuth 2.0 credentials: client_id + client_secret (client credentials flow) or "
                "client_id + username + private_key (JWT bearer flow). Mounted as files, never copied.",
                {"name": _secret_name("the Salesforce credentials")},
                required=["name"],
                **{"x-kubernetes-validations": _secret_ref_rules(with_key=False)},
            ),
            "objects": {
                "type": "array",
                "description": "Salesforce objects whose opt-out field is kept in sync.",
                "items": {"type": "string", "enum": ["Contact", "Lead"], "description": "A Salesforce object."},
                "default": ["Contact", "Lead"],
                "minItems": 1,
                "maxItems": 2,
                "x-kubernetes-list-type": "set",
            },
        },
        required=["credentialsSecretRef"],
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "self.loginUrl.startsWith('https://')",
                    "message": "must be an https:// URL",
                    "fieldPath": ".loginUrl",
                    "reason": "FieldValueInvalid",
                }
            ]
        },
    )


def _opt_out_field() -> Schema:
    return _object(
        "Which Salesforce opt-out field the sync writes.",
        {
            "target": _string(
                "EmailOptOut: the standard HasOptedOutOfEmail field (Email Opt Out). MarketoSalesOptOut: the custom "
                "Marketo Sales Opt Out field, which keeps sales unsubscribes apart from marketing ones. The nightly "
                "sync always uses the target; the real-time push uses it only while nightly sync is enabled and "
                "writes Email Opt Out otherwise.",
                default=OptOutTarget.EMAIL_OPT_OUT.value,
                enum=[t.value for t in OptOutTarget],
            ),
            "marketoSalesOptOutField": _string(
                'API name of the Marketo Sales Opt Out field (for example "ToutApp__Opt_Out__c"). Empty: discover '
                'it on describe by its label ("Marketo Sales Opt Out" or "MSE - Opt Out"). Only with target '
                "MarketoSalesOptOut.",
                default="",
                pattern=r"^$|^[A-Za-z][A-Za-z0-9_]*__c$",
                maxLength=80,
            ),
        },
        default={},
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.marketoSalesOptOutField) || self.marketoSalesOptOutField == '' || "
                    "(has(self.target) && self.target == 'MarketoSalesOptOut')",
                    "message": "can only be set when target is MarketoSalesOptOut",
                    "fieldPath": ".marketoSalesOptOutField",
                    "reason": "FieldValueForbidden",
                }
            ]
        },
    )


def _matching() -> Schema:
    return _object(
        "Which records an unsubscribe is written to.",
        {
            "mode": _string(
                "SalesforceId: only the record named by salesforceId (none: skipped). Email: every record of the "
                "configured objects whose Email equals the address (case-insensitive; Leads only when not "
                "converted), plus the record named by salesforceId; an address with no record is kept and set by "
                "the nightly once a record appears.",
                default=MatchingMode.SALESFORCE_ID.value,
                enum=[m.value for m in MatchingMode],
            ),
        },
        default={},
    )


def _salesforce_poll() -> Schema:
    return _object(
        "The incremental pull of opt-outs set in Salesforce (runs only while nightlySync is enabled).",
        {
            "intervalSeconds": {
                "type": "integer",
                "description": "Seconds between polls (records changed since the last poll, by SystemModstamp); "
                "0 turns the poll off. Unset: 300.",
                "minimum": 0,
                "x-kubernetes-validations": [
                    {
                        "rule": f"self == 0 || self >= {MIN_POLL_INTERVAL_SECONDS}",
                        "message": f"must be 0 (off) or at least {MIN_POLL_INTERVAL_SECONDS}",
                        "reason": "FieldValueInvalid",
                    }
                ],
            },
        },
        default={},
    )


def _nightly_sync() -> Schema:
    return _object(
        "The nightly bidirectional sync (a CronJob).",
        {
            "enabled": {
                "type": "boolean",
                "description": "Run the nightly sync. When false the CronJob is suspended and the push writes "
                "Email Opt Out whatever the target says.",
                "default": True,
            },
            "schedule": _string(
                'Cron schedule (five fields or a macro such as "@daily"), read in timeZone.',
                default="0 20 * * *",
                pattern=SCHEDULE_PATTERN,
                maxLength=100,
            ),
            "timeZone": _string(
                "IANA time zone of the schedule.",
                default="America/Los_Angeles",
                pattern=TIME_ZONE_PATTERN,
                maxLength=64,
            ),
            "maxChangeRatio": {
                "type": "number",
                "description": "Blast-radius guard: a run that would change more than this share of the records "
                "read on a side (toSalesforce against the ledger's unsubscribes, fromSalesforce against the "
                "opted-out Salesforce records) stops before writing anything and fails. 0 < x <= 1; absent: "
                "no ratio limit.",
                "minimum": 0,
                "exclusiveMinimum": True,
                "maximum": 1,
            },
            "maxChanges": {
                "type": "integer",
                "description": "Blast-radius guard: a run that would make more than this many changes in one "
                "direction stops before writing anything and fails. Absent: no count limit.",
                "minimum": 0,
            },
        },
        default={},
    )


def _push_worker() -> Schema:
    return _object(
        "The push worker: webhook, durable ledger API and real-time push to Salesforce.",
        {
            "replicas": {
                "type": "integer",
                "description": "Number of worker pods. A SQLite ledger needs exactly 1; more need PostgreSQL.",
                "default": 1,
                "minimum": 1,
                "maximum": 20,
            },
            "webhookSecretRef": _object(
                "Secret key holding the bearer token the sales-email platform sends to the webhook.",
                {
                    "name": _secret_name("the webhook token"),
                    "key": _secret_key("Key of the token in the Secret.", "token"),
                },
                required=["name"],
                **{"x-kubernetes-validations": _secret_ref_rules(with_key=True)},
            ),
            "resources": _object(
                "Compute resources of the worker container (as in a Pod). Empty: modest defaults.",
                {
                    "limits": _quantity_map("Maximum compute resources allowed."),
                    "requests": _quantity_map("Minimum compute resources required."),
                },
                default={},
            ),
        },
        required=["webhookSecretRef"],
    )


def _ledger() -> Schema:
    return _object(
        "Where unsubscribes are stored durably.",
        {
            "databaseSecretRef": _object(
                "Secret key holding a PostgreSQL URL (postgresql://...). Omit it for a SQLite ledger on a "
                "PersistentVolumeClaim (then pushWorker.replicas must be 1).",
                {
                    "name": _secret_name("the database URL"),
                    "key": _secret_key("Key of the URL in the Secret.", "url"),
                },
                required=["name"],
                **{"x-kubernetes-validations": _secret_ref_rules(with_key=True)},
            ),
            "storage": _object(
                "The PersistentVolumeClaim of a SQLite ledger (unused with PostgreSQL).",
                {
                    "size": _string(
                        "Requested size.",
                        default="1Gi",
                        pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$",
                    ),
                    "storageClassName": _string("StorageClass of the claim. Unset: the cluster default."),
                },
                default={},
            ),
        },
        default={},
    )


def _monitoring() -> Schema:
    return _object(
        "Prometheus integration.",
        {
            "serviceMonitor": _object(
                "A ServiceMonitor (Prometheus Operator) for the worker's /metrics.",
                {
                    "enabled": {
                        "type": "boolean",
                        "description": "Create the ServiceMonitor (needs the monitoring.coreos.com CRDs).",
                        "default": False,
                    },
                    "interval": _string("Scrape interval.", default="30s", pattern=r"^[0-9]+(ms|s|m|h)$"),
                    "labels": {
                        "type": "object",
                        "description": "Extra labels on the ServiceMonitor (to match a serviceMonitorSelector).",
                        "additionalProperties": {"type": "string"},
                        "default": {},
                    },
                },
                default={},
            )
        },
        default={},
    )


def _public_endpoint() -> Schema:
    return _object(
        "The worker's public listener (port `public`): RFC 8058 one-click links (/u/...) and the webhooks of "
        "email services (/v1/webhooks/...). The internal API stays cluster-only (a NetworkPolicy enforces it).",
        {
            "baseUrl": _string(
                "The https URL at which the public routes are reachable from the internet (one-click links are "
                "<baseUrl>/u/<token>).",
                pattern=PUBLIC_BASE_URL_PATTERN,
                maxLength=2048,
            ),
            "ingress": _object(
                "Render an Ingress to the public port only. Absent: expose the port your own way.",
                {
                    "className": _string("IngressClass name. Unset: the cluster default.", minLength=1, maxLength=253),
                    "host": _string("Host name the Ingress serves.", pattern=HOSTNAME_PATTERN, maxLength=253),
                    "tlsSecretName": _string(
                        "Secret with the TLS certificate for host. Unset: TLS is terminated elsewhere.",
                        minLength=1,
                        maxLength=253,
                    ),
                    "annotations": {
                        "type": "object",
                        "description": "Annotations of the Ingress (e.g. cert-manager.io/cluster-issuer).",
                        "additionalProperties": {"type": "string"},
                        "default": {},
                    },
                },
                required=["host"],
            ),
        },
        required=["baseUrl"],
    )


def _one_click() -> Schema:
    return _object(
        "RFC 8058 one-click unsubscribe links (needs publicEndpoint).",
        {
            "keySecretRef": _object(
                "Secret key holding the HMAC keys, one per line: the first signs new links, every line verifies "
                "(add a new key on top to rotate; remove a line to retire its links).",
                {
                    "name": _secret_name("the one-click keys"),
                    "key": _secret_key("Key of the keys in the Secret.", "keys"),
                },
                required=["name"],
                **{"x-kubernetes-validations": _secret_ref_rules(with_key=True)},
            )
        },
        required=["keySecretRef"],
    )


def _sender_secret(what: str) -> Schema:
    return _object(
        f"Secret key holding {what}; mounted as a file into the worker, never copied into the config.",
        {"name": _secret_name(what), "key": _string("Key in the Secret.", minLength=1, maxLength=253)},
        required=["name", "key"],
        **{"x-kubernetes-validations": _secret_ref_rules(with_key=True)},
    )


def _senders() -> Schema:
    return _object(
        "Email services whose webhooks the public listener takes (needs publicEndpoint; docs/SENDERS.md). Each "
        "is off until given; its route is then <baseUrl>/v1/webhooks/<name>.",
        {
            "sendgrid": _object(
                "Twilio SendGrid Signed Event Webhook.",
                {"publicKeySecretRef": _sender_secret("the Signed Event Webhook verification key (base64 or PEM)")},
                required=["publicKeySecretRef"],
            ),
            "mailgun": _object(
                "Mailgun webhooks.",
                {"signingKeySecretRef": _sender_secret("the HTTP webhook signing key")},
                required=["signingKeySecretRef"],
            ),
            "postmark": _object(
                "Postmark webhooks (HTTP basic auth in the webhook URL).",
                {"basicAuthSecretRef": _sender_secret("user:password of the webhook URL")},
                required=["basicAuthSecretRef"],
            ),
            "mandrill": _object(
                "Mandrill (Mailchimp Transactional) webhooks.",
                {
                    "webhookKeySecretRef": _sender_secret("the webhook key"),
                    "url": _string(
                        "The webhook URL exactly as registered in Mandrill (part of what Mandrill signs).",
                        pattern=r"^https?://\S+$",
                        maxLength=2048,
                    ),
                },
                required=["webhookKeySecretRef", "url"],
            ),
            "ses": _object(
                "Amazon SES complaint notifications through Amazon SNS.",
                {
                    "topicArns": {
                        "type": "array",
                        "description": "SNS topics whose messages are accepted (others are refused).",
                        "items": _string("An SNS topic ARN.", pattern=r"^arn:\S+$", maxLength=256),
                        "minItems": 1,
                    },
                    "certHostPattern": _string(
                        "Regular expression the host of SigningCertURL and SubscribeURL must match.",
                        default=SNS_CERT_HOST_PATTERN_DEFAULT,
                        minLength=1,
                        maxLength=1024,
                    ),
                    "caSecretRef": _sender_secret("a CA bundle trusted for the certificate host (a re-signing proxy)"),
                },
                required=["topicArns"],
            ),
        },
    )


def spec_schema() -> Schema:
    return _object(
        "Desired state: keep email unsubscribes in sync with the opt-out field of Salesforce Contacts and Leads.",
        {
            "suspend": {
                "type": "boolean",
                "description": "Pause everything: the worker is scaled to 0 and the nightly CronJob suspended.",
                "default": False,
            },
            "salesforce": _salesforce(),
            "optOutField": _opt_out_field(),
            "matching": _matching(),
            "nightlySync": _nightly_sync(),
            "salesforcePoll": _salesforce_poll(),
            "pushWorker": _push_worker(),
            "ledger": _ledger(),
            "monitoring": _monitoring(),
            "publicEndpoint": _public_endpoint(),
            "oneClick": _one_click(),
            "senders": _senders(),
        },
        required=["salesforce", "pushWorker"],
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.ledger) || has(self.ledger.databaseSecretRef) || "
                    "!has(self.pushWorker.replicas) || self.pushWorker.replicas == 1",
                    "message": "a SQLite ledger (no ledger.databaseSecretRef) needs pushWorker.replicas == 1; "
                    "set ledger.databaseSecretRef to a PostgreSQL URL to run more replicas",
                    "fieldPath": ".pushWorker.replicas",
                    "reason": "FieldValueForbidden",
                },
                {
                    "rule": "!has(self.oneClick) || has(self.publicEndpoint)",
                    "message": "oneClick needs publicEndpoint.baseUrl: the links point at the public listener",
                    "fieldPath": ".oneClick",
                    "reason": "FieldValueRequired",
                },
                {
                    "rule": "!has(self.senders) || has(self.publicEndpoint)",
                    "message": "senders needs publicEndpoint: the webhooks arrive on the public listener",
                    "fieldPath": ".senders",
                    "reason": "FieldValueRequired",
                },
            ]
        },
    )


def _condition() -> Schema:
    return _object(
        "A metav1.Condition.",
        {
            "type": _string("Condition type (Ready, CredentialsValid, FieldInstalled, ...).", maxLength=316),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "minimum": 0,
                "description": "metadata.generation the condition was set for.",
            },
            "lastTransitionTime": _string("When the status last changed.", format="date-time"),
            "reason": _string(
                "Machine-readable CamelCase reason.",
                maxLength=1024,
                minLength=1,
                pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            ),
            "message": _string("Human-readable details.", maxLength=32768),
        },
        required=["type", "status", "lastTransitionTime", "reason", "message"],
    )


def status_schema() -> Schema:
    counts = {
        "toSalesforce": "Records set in Salesforce.",
        "fromSalesforce": "Unsubscribes added to the ledger from Salesforce.",
        "skippedNoSalesforceId": "Ledger unsubscribes without a Salesforce ID (kept, still suppress email).",
        "failed": "Records that failed permanently.",
    }
    return _object(
        "Observed state, written by the operator.",
        {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "metadata.generation the status reflects.",
            },
            "conditions": {
                "type": "array",
                "description": "Ready (summary), CredentialsValid, FieldInstalled, PushWorkerAvailable, "
                "NightlySyncSucceeded, Reconciling and Stalled.",
                "items": _condition(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "pushField": _string("API name of the field the real-time push writes (seed rule 2)."),
            "matchingMode": _string(
                "Which records an unsubscribe is written to (spec.matching.mode).", enum=["SalesforceId", "Email"]
            ),
            "lastNightlySync": _object(
                "The last finished nightly sync.",
                {
                    "startTime": _string("When it started.", format="date-time"),
                    "completionTime": _string("When it finished.", format="date-time"),
                    "outcome": _string("Succeeded or Failed.", enum=["Succeeded", "Failed"]),
                    "jobName": _string("Name of its Job."),
                    "counts": _object(
                        "Records per direction in that run.",
                        {key: {"type": "integer", "description": text, "default": 0} for key, text in counts.items()},
                    ),
                },
            ),
        },
    )


def openapi_schema() -> Schema:
    """The openAPIV3Schema of version v1alpha1 (a fresh copy each call)."""
    return {
        "type": "object",
        "description": "Keeps email unsubscribes in sync with Salesforce Contact and Lead opt-out fields.",
        "properties": {
            "apiVersion": _string("APIVersion of this object."),
            "kind": _string("Kind of this object."),
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "required": ["spec"],
        "x-kubernetes-validations": [
            {
                "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
                "message": f"must be at most {MAX_NAME_LENGTH} characters "
                "(the CronJob <name>-nightly-sync is limited to 52)",
                "fieldPath": ".metadata.name",
                "reason": "FieldValueTooLong",
            },
            {
                "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
                "message": "must be a DNS-1035 label (lowercase letters, digits and '-', "
                "starting with a letter): it names the worker Service",
                "fieldPath": ".metadata.name",
                "reason": "FieldValueInvalid",
            },
        ],
    }


PRINTER_COLUMNS: Final[list[dict[str, Any]]] = [
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Target", "type": "string", "jsonPath": ".spec.optOutField.target"},
    {"name": "Nightly", "type": "boolean", "jsonPath": ".spec.nightlySync.enabled"},
    {"name": "Last Sync", "type": "date", "jsonPath": ".status.lastNightlySync.completionTime"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1) as a dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {"app.kubernetes.io/name": "unsubscribe-sync", "app.kubernetes.io/part-of": "unsubscribe-sync"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                }
            ],
        },
    }


CRD_HEADER: Final = (
    "# Generated from operator/unsubscribe_sync/resources/crd.py by `unsubscribe-sync render --crd`; do not edit.\n"
)


def crd_yaml() -> str:
    """The CRD as the YAML committed in crds/ (header comment included)."""
    return CRD_HEADER + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120)

"""Names of the UnsubscribeSync API and the labels the project puts on what it manages."""

from typing import Final

from unsubscribe_sync import __version__

GROUP: Final = "optout.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "UnsubscribeSync"
PLURAL: Final = "unsubscribesyncs"
SINGULAR: Final = "unsubscribesync"
SHORT_NAME: Final = "usync"
CATEGORY: Final = "optout"

APP_NAME: Final = "unsubscribe-sync"
MANAGED_BY: Final = "unsubscribe-sync-operator"
ANNOTATION_PREFIX: Final = "optout.dev"

EMAIL_OPT_OUT_FIELD: Final = "HasOptedOutOfEmail"
MARKETO_LABELS: Final = ("Marketo Sales Opt Out", "MSE - Opt Out")

# Salesforce key prefixes of the objects the project writes.
KEY_PREFIXES: Final = {"Contact": "003", "Lead": "00Q"}

# The one image for operator, worker and nightly job (chart and builders use it; overridable). Its tag is the
# package version, so a release build defaults to the image the release workflow pushed for the same tag.
IMAGE_REPOSITORY: Final = "ghcr.io/optout-dev/unsubscribe-sync"
DEFAULT_IMAGE: Final = f"{IMAGE_REPOSITORY}:{__version__}"

# Where children mount things (the rendered config file points at these paths).
CONFIG_DIR: Final = "/etc/unsubscribe-sync/config"
CONFIG_FILE: Final = f"{CONFIG_DIR}/config.yaml"
SALESFORCE_CREDENTIALS_DIR: Final = "/etc/unsubscribe-sync/salesforce"
WEBHOOK_TOKEN_DIR: Final = "/etc/unsubscribe-sync/webhook"
WEBHOOK_TOKEN_FILE: Final = f"{WEBHOOK_TOKEN_DIR}/token"
LEDGER_URL_DIR: Final = "/etc/unsubscribe-sync/ledger"
LEDGER_URL_FILE: Final = f"{LEDGER_URL_DIR}/url"
ONE_CLICK_KEYS_DIR: Final = "/etc/unsubscribe-sync/oneclick"
ONE_CLICK_KEYS_FILE: Final = f"{ONE_CLICK_KEYS_DIR}/keys"
SQLITE_DIR: Final = "/var/lib/unsubscribe-sync"
SQLITE_URL: Final = f"sqlite:///{SQLITE_DIR}/ledger.db"

WORKER_PORT: Final = 8080  # webhook API, /livez, /readyz, /metrics
PUBLIC_PORT: Final = 8081  # the worker's public listener: one-click links, sender webhooks
OPERATOR_HEALTH_PORT: Final = 8080  # kopf liveness endpoint /healthz
OPERATOR_METRICS_PORT: Final = 9090  # operator /metrics
# kopf peering lifetime (s) with several replicas: a killed leader is replaced within about this time.
OPERATOR_PEERING_LIFETIME: Final = 20
OPERATOR_MIN_PEERING_LIFETIME: Final = 15  # keepalives go every lifetime minus 5-10 s

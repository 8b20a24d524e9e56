"""Names of the UnsubscribeSync API and the labels the project puts on what it manages."""

from typing import Final

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

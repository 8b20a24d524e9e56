"""The UnsubscribeSync CustomResourceDefinition, generated from the models in :mod:`unsubscribe_sync.api.spec`.

The spec and status schemas are :func:`unsubscribe_sync.api.schema.structural_schema` of the pydantic
models (descriptions, defaults, enums, bounds and CEL rules all live beside the fields there); this
module adds the object around them (apiVersion, kind, metadata and the rules on the name) and the CRD's
names, version and printer columns. ``crds/optout.dev_unsubscribesyncs.yaml`` is :func:`crd_yaml`
(a test checks it; regenerate it with ``unsubscribe-sync render --crd``).
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Final

import yaml
from pydantic import BaseModel

from unsubscribe_sync.api.constants import CATEGORY, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION
from unsubscribe_sync.api.schema import Schema, structural_schema
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec, UnsubscribeSyncStatus

__all__ = [
    "CRD_NAME",
    "MAX_NAME_LENGTH",
    "PRINTER_COLUMNS",
    "Schema",
    "crd_manifest",
    "crd_yaml",
    "openapi_schema",
    "spec_schema",
    "status_schema",
]

CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# The CronJob name `<name>-nightly-sync` may have at most 52 characters (Jobs append 11).
MAX_NAME_LENGTH: Final = 52 - len("-nightly-sync")


@functools.cache
def _generated(model: type[BaseModel]) -> Schema:
    return structural_schema(model)  # pydantic's schema generation takes tens of milliseconds: once per model


def spec_schema() -> Schema:
    """The schema of ``spec`` (a fresh copy each call)."""
    return copy.deepcopy(_generated(UnsubscribeSyncSpec))


def status_schema() -> Schema:
    """The schema of ``status`` (a fresh copy each call)."""
    return copy.deepcopy(_generated(UnsubscribeSyncStatus))


def openapi_schema() -> Schema:
    """The openAPIV3Schema of version v1alpha1 (a fresh copy each call)."""
    return {
        "type": "object",
        "description": "Keeps email unsubscribes in sync with Salesforce Contact and Lead opt-out fields.",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
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
    "# Generated from the models in operator/unsubscribe_sync/api/spec.py by `unsubscribe-sync render --crd`; "
    "do not edit.\n"
)


def crd_yaml() -> str:
    """The CRD as the YAML committed in crds/ (header comment included)."""
    return CRD_HEADER + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120)

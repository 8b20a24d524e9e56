"""What to write for each child: pure decisions from the desired manifest and the object in the cluster.

Each desired child carries ``optout.dev/desired-hash``, a hash of its desired content. A child is written
when it is missing, when its hash differs (the spec changed), or when the cluster copy no longer contains
the desired content (edited by hand). Fields the API server adds (defaults, ``clusterIP``, status) are
tolerated, and quantities compare by value ("0.5" equals "500m"), so an unchanged CR causes no write.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Literal

from kubernetes.utils.quantity import parse_quantity

from unsubscribe_sync.api.constants import ANNOTATION_PREFIX

HASH_ANNOTATION: Final = f"{ANNOTATION_PREFIX}/desired-hash"
_IDENTITY_KEYS: Final = ("apiVersion", "kind")
_SERVER_METADATA: Final = ("name", "namespace")


def desired_hash(child: Mapping[str, Any]) -> str:
    """A stable hash of everything the operator sets on a child (the hash annotation itself excluded)."""
    content = copy.deepcopy(dict(child))
    metadata = content.get("metadata", {})
    annotations = metadata.get("annotations")
    if isinstance(annotations, dict):
        annotations.pop(HASH_ANNOTATION, None)
        if not annotations:
            del metadata["annotations"]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def with_hash(child: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``child`` with its desired-hash annotation set."""
    result = copy.deepcopy(dict(child))
    metadata = result.setdefault("metadata", {})
    annotations = metadata.setdefault("annotations", {})
    annotations[HASH_ANNOTATION] = desired_hash(child)
    return result


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError, InvalidOperation):
        return None


def contains(actual: Any, desired: Any) -> bool:
    """Whether ``actual`` holds everything in ``desired``: extra keys are fine, lists match item by item."""
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(key in actual and contains(actual[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(contains(a, d) for a, d in zip(actual, desired, strict=True))
    if actual == desired:
        return True
    if isinstance(desired, str | int | float) and isinstance(actual, str | int | float):
        left, right = _quantity(actual), _quantity(desired)
        return left is not None and left == right
    return False


@dataclass(frozen=True)
class ChildWrite:
    """One write the reconcile must make."""

    action: Literal["create", "patch"]
    reason: Literal["missing", "changed", "drifted"]
    name: str
    body: dict[str, Any]


def _managed_content(desired: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a desired child the operator owns (identity and server-owned metadata left out)."""
    body = {k: copy.deepcopy(v) for k, v in desired.items() if k not in _IDENTITY_KEYS and k != "status"}
    metadata = body.get("metadata", {})
    body["metadata"] = {k: v for k, v in metadata.items() if k not in _SERVER_METADATA}
    return body


def plan_write(desired: Mapping[str, Any], actual: Mapping[str, Any] | None) -> ChildWrite | None:
    """The write that makes ``actual`` match ``desired`` (which carries its hash), or None when none is needed.

    A patch is a JSON merge patch of the managed content: lists are replaced whole and keys the operator
    never sets are left alone, so server defaults survive and hand edits of managed fields are undone.
    """
    metadata = desired.get("metadata", {})
    name = str(metadata.get("name"))
    if actual is None:
        return ChildWrite("create", "missing", name, copy.deepcopy(dict(desired)))
    wanted = (metadata.get("annotations") or {}).get(HASH_ANNOTATION)
    have = ((actual.get("metadata") or {}).get("annotations") or {}).get(HASH_ANNOTATION)
    managed = _managed_content(desired)
    if wanted != have:
        return ChildWrite("patch", "changed", name, managed)
    if not contains(actual, managed):
        return ChildWrite("patch", "drifted", name, managed)
    return None


def owner_name(child: Mapping[str, Any], owner_kind: str, owner_api_version: str) -> str | None:
    """The name of the controlling owner of ``child`` when it is of the given kind, else None."""
    for ref in (child.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == owner_kind and ref.get("apiVersion") == owner_api_version and ref.get("controller"):
            name = ref.get("name")
            return str(name) if name else None
    return None


def newer(first: Mapping[str, Any] | None, second: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The later of two copies of the same object by resourceVersion (numeric, as etcd revisions are).

    Falls back to ``first`` when either version is not a number.
    """
    if first is None or second is None:
        return first if first is not None else second
    a = str((first.get("metadata") or {}).get("resourceVersion", ""))
    b = str((second.get("metadata") or {}).get("resourceVersion", ""))
    if a.isdigit() and b.isdigit():
        return second if int(b) > int(a) else first
    return first

"""Optional caches: kinds the operator watches for status only (nightly Jobs) or drift only (ServiceMonitors).

kopf fills every index before any handler runs, so a kind the RBAC does not let the operator list would block
every UnsubscribeSync and, after kopf's retries, stop the operator. These kinds are optional: the operator asks
once at start-up whether it may list them, and watches only those it may; the others degrade the status with a
condition naming the kind and the server's refusal (see conditions.StatusInputs.degraded_caches).
"""

from __future__ import annotations

from collections.abc import Sequence

from unsubscribe_sync.api.constants import MANAGED_BY
from unsubscribe_sync.controller import kinds
from unsubscribe_sync.controller.kubeapi import KubeApi, KubeApiError
from unsubscribe_sync.resources.labels import MANAGED_BY_LABEL

OPTIONAL_KINDS: tuple[kinds.Kind, ...] = (kinds.JOB, kinds.SERVICE_MONITOR)


def list_paths(kind: kinds.Kind, namespaces: Sequence[str]) -> list[str]:
    """The list paths kopf would watch for ``kind``: cluster-wide, or one per exact namespace."""
    if not namespaces:
        base = f"/apis/{kind.group}/{kind.version}" if kind.group else f"/api/{kind.version}"
        return [f"{base}/{kind.plural}"]
    return [kind.path(ns) for ns in namespaces if not set("*?[]!") & set(ns)]


def refusal_message(kind: kinds.Kind, exc: KubeApiError) -> str:
    return f"cannot list {kind.kind} ({kind.plural}.{kind.group or 'core'}): {exc.message or exc.reason}"


async def refused_kinds(api: KubeApi, namespaces: Sequence[str]) -> dict[kinds.Kind, str]:
    """The optional kinds the API refuses to list (403/401), with why. A missing CRD (404) is not a refusal."""
    refused: dict[kinds.Kind, str] = {}
    for kind in OPTIONAL_KINDS:
        for path in list_paths(kind, namespaces):
            try:
                await api.list(path, label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY}")
            except KubeApiError as exc:
                if exc.status in (401, 403):
                    refused[kind] = refusal_message(kind, exc)
                    break
    return refused

"""The operator's liveness: ``/healthz`` (kopf's health endpoint) fails while the operator cannot do its job.

kopf's endpoint answers 200 as soon as kopf runs, even when the operator's own CRD is not installed (nothing is
served) - a GitOps ordering where the operator comes before its CRD. A probe handler (``kopf.on.probe``) that
raises makes the endpoint answer 500, so the Deployment shows the operator as not ready and, if it lasts,
restarts it. The decision is a pure function of the API's discovery answer; the probe is the I/O around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from unsubscribe_sync.api.constants import GROUP, PLURAL, VERSION
from unsubscribe_sync.controller.kubeapi import KubeApi, KubeApiError

DISCOVERY_PATH = f"/apis/{GROUP}/{VERSION}"


def crd_problem(discovery: Mapping[str, Any] | None) -> str | None:
    """Why the operator's own resource is not served (None: it is), from ``GET /apis/<group>/<version>``."""
    if discovery is None:
        return f"the CRD {PLURAL}.{GROUP} is not installed ({DISCOVERY_PATH} not found)"
    names = {r.get("name") for r in discovery.get("resources") or [] if isinstance(r, Mapping)}
    if PLURAL not in names:
        return f"the CRD {PLURAL}.{GROUP} is not served in version {VERSION}"
    return None


async def check_crd(api: KubeApi) -> str:
    """The probe: raise (so /healthz answers 500) while the operator's CRD is unresolved."""
    try:
        discovery = await api.get(DISCOVERY_PATH)
    except KubeApiError as exc:
        raise kopf.PermanentError(f"API discovery failed: {exc}") from None
    problem = crd_problem(discovery)
    if problem is not None:
        raise kopf.PermanentError(problem)
    return "served"


def register(registry: kopf.OperatorRegistry, api: KubeApi) -> None:
    async def crd(**_: Any) -> str:
        return await check_crd(api)

    kopf.on.probe(id="crd", registry=registry, errors=kopf.ErrorsMode.PERMANENT)(crd)

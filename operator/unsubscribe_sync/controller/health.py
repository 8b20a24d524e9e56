"""The operator's liveness: ``/healthz`` (kopf's health endpoint) fails while the operator cannot do its job.

kopf's endpoint answers 200 as soon as kopf runs, even when the operator's own CRD is not installed (nothing is
served) - a GitOps ordering where the operator comes before its CRD. A probe handler (``kopf.on.probe``) that
raises makes the endpoint answer 500, so the Deployment shows the operator as not ready and, if it lasts,
restarts it. The decision is a pure function of the API's discovery answer; the probe is the I/O around it.

The same holds for a required cache (UnsubscribeSync, and every child kind but ServiceMonitor): kopf fills each
from a list of that kind and runs no handler until all are filled, so a list the API keeps refusing (403, a
kind not served) or failing (5xx, no answer) stops all work while kopf itself keeps running. The probe lists each
required kind (``limit=1``) and fails once one has been failing for longer than ``grace`` seconds; it passes
again as soon as every list succeeds. Optional caches (Jobs, ServiceMonitors: controller/caches.py) degrade a
condition instead and never fail the probe.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf

from unsubscribe_sync.api.constants import GROUP, MANAGED_BY, PLURAL, VERSION
from unsubscribe_sync.controller import caches, kinds
from unsubscribe_sync.controller.kubeapi import KubeApi, KubeApiError
from unsubscribe_sync.resources.labels import MANAGED_BY_LABEL

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


# Caches without which nothing is reconciled: the owner, and every child kind but the optional ones.
REQUIRED_KINDS: tuple[kinds.Kind, ...] = (
    kinds.USYNC,
    *(k for k in kinds.CHILD_KINDS if k not in caches.OPTIONAL_KINDS),
)
DEFAULT_CACHE_GRACE = 60.0  # seconds a required list may keep failing before liveness fails


@dataclass
class CacheHealth:
    """When each required kind's list started failing (monotonic seconds); absent: its last list succeeded."""

    failing_since: dict[str, float] = field(default_factory=dict)


def cache_problem(
    failures: Mapping[str, str | None], since: Mapping[str, float], now: float, grace: float
) -> tuple[dict[str, float], str | None]:
    """The new failing-since map, and why liveness fails (None: it passes), from this probe's list results.

    ``failures`` maps each required kind to why its list failed, or None if it succeeded. A kind fails liveness
    once its list has been failing for longer than ``grace``; one success resets it.
    """
    failing = {kind: since.get(kind, now) for kind, why in failures.items() if why is not None}
    expired = [kind for kind in failures if kind in failing and now - failing[kind] >= grace]
    if not expired:
        return failing, None
    reasons = "; ".join(f"{kind} for {now - failing[kind]:.0f} s: {failures[kind]}" for kind in expired)
    return failing, f"a required cache cannot fill (list failing: {reasons})"


async def list_failures(api: KubeApi, namespaces: Sequence[str]) -> dict[str, str | None]:
    """One small list (``limit=1``) of each required kind, as kopf's cache would list it: why each failed."""
    failures: dict[str, str | None] = {}
    for kind in REQUIRED_KINDS:
        failures[kind.kind] = None
        for path in caches.list_paths(kind, namespaces):
            params = {"limit": "1"}
            if kind is not kinds.USYNC:
                params["labelSelector"] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
            try:
                await api.request("GET", path, params=params)
            except KubeApiError as exc:
                failures[kind.kind] = f"{exc.status} {exc.message or exc.reason}" if exc.status else str(exc)
                break
    return failures


async def check_caches(
    api: KubeApi,
    state: CacheHealth,
    namespaces: Sequence[str],
    *,
    grace: float,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """The probe: raise (so /healthz answers 500) while a required list has failed for longer than ``grace``."""
    failures = await list_failures(api, namespaces)
    state.failing_since, problem = cache_problem(failures, state.failing_since, clock(), grace)
    if problem is not None:
        raise kopf.PermanentError(problem)
    return "filled" if not state.failing_since else f"retrying: {', '.join(sorted(state.failing_since))}"


def register(
    registry: kopf.OperatorRegistry,
    api: KubeApi,
    *,
    namespaces: Sequence[str] = (),
    cache_grace: float = DEFAULT_CACHE_GRACE,
) -> None:
    state = CacheHealth()

    async def crd(**_: Any) -> str:
        return await check_crd(api)

    async def required_caches(**_: Any) -> str:
        return await check_caches(api, state, namespaces, grace=cache_grace)

    kopf.on.probe(id="crd", registry=registry, errors=kopf.ErrorsMode.PERMANENT)(crd)
    kopf.on.probe(id="caches", registry=registry, errors=kopf.ErrorsMode.PERMANENT)(required_caches)

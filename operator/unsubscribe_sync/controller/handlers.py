"""kopf handlers: thin adapters from kopf's causes to the Reconciler.

- create / update / resume of an UnsubscribeSync: a full reconcile (children, Secrets, preflight, status);
  a temporary problem (a Secret not there yet) retries with backoff via ``kopf.TemporaryError``.
- a timer: the same full reconcile every ``resync_interval`` seconds (the safety net, and the periodic
  Salesforce preflight).
- events of managed children (labelled ``app.kubernetes.io/managed-by=unsubscribe-sync-operator``) and of
  the nightly Jobs: the owner is reconciled again, so a child deleted or edited by hand is restored and the
  status follows the Deployment and the Jobs.
- indexes (``kopf.index``) keep the watched objects in memory, so an unchanged object costs no request, and
  kopf fills them before any handler runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from unsubscribe_sync.api.constants import API_VERSION, KIND, MANAGED_BY
from unsubscribe_sync.controller import kinds
from unsubscribe_sync.controller.child_writes import owner_name
from unsubscribe_sync.controller.reconciler import JOBS_INDEX, OWNERS_INDEX, Reconciler, index_id, snapshot
from unsubscribe_sync.resources.labels import INSTANCE_LABEL, MANAGED_BY_LABEL

MANAGED = {MANAGED_BY_LABEL: MANAGED_BY}


def _resource(kind: kinds.Kind) -> tuple[str, str, str]:
    return (kind.group, kind.version, kind.plural)


def register(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler,
    *,
    resync_interval: float,
    login: Callable[..., kopf.ConnectionInfo | None],
    child_kinds: tuple[kinds.Kind, ...] = kinds.CHILD_KINDS,
    watch_jobs: bool = True,
) -> None:
    """Register every handler of the operator on ``registry``."""
    usync = _resource(kinds.USYNC)

    kopf.on.login(registry=registry)(login)

    # ---- indexes ---------------------------------------------------------------------------
    kopf.index(*usync, id=OWNERS_INDEX, registry=registry)(index_by_name)
    for kind in child_kinds:
        kopf.index(*_resource(kind), id=index_id(kind), labels=MANAGED, registry=registry)(index_by_name)
    if watch_jobs:  # optional (controller/caches.py): refused by the RBAC, the nightly condition says so
        kopf.index(*_resource(kinds.JOB), id=JOBS_INDEX, labels=MANAGED, registry=registry)(index_job_by_cronjob)

    # ---- the owner -------------------------------------------------------------------------
    async def reconcile(**kwargs: Any) -> None:
        await reconciler.reconcile(snapshot(kwargs["body"]), kwargs, full=True, retry=kwargs["retry"])

    kopf.on.create(*usync, id="reconcile-create", registry=registry)(reconcile)
    kopf.on.update(*usync, id="reconcile-update", registry=registry)(reconcile)
    kopf.on.resume(*usync, id="reconcile-resume", registry=registry)(reconcile)

    @kopf.timer(*usync, id="resync", interval=resync_interval, initial_delay=resync_interval, registry=registry)
    async def resync(**kwargs: Any) -> None:
        body: kopf.Body = kwargs["body"]
        if not body.metadata.get("deletionTimestamp"):
            await reconciler.reconcile(snapshot(body), kwargs, full=True, retry=None, fresh=True)

    @kopf.on.event(*usync, id="forget", registry=registry)
    async def forget(**kwargs: Any) -> None:
        body: kopf.Body = kwargs["body"]
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        if kwargs["type"] == "DELETED":
            reconciler.forget(namespace, name, body.metadata.uid)
        elif reconciler.relisted(kinds.USYNC, namespace, name, kwargs["type"]) and not body.metadata.get(
            "deletionTimestamp"
        ):
            await reconciler.trigger(namespace, name, kwargs, fresh=True)

    # ---- children and Jobs -----------------------------------------------------------------
    for kind in child_kinds:
        kopf.on.event(*_resource(kind), id=f"drift-{kind.plural}", labels=MANAGED, registry=registry)(
            _child_event(reconciler, kind)
        )
    if watch_jobs:
        kopf.on.event(*_resource(kinds.JOB), id="nightly-jobs", labels=MANAGED, registry=registry)(
            _job_event(reconciler)
        )


def index_by_name(**kwargs: Any) -> Any:
    """Index entry of a watched object: (namespace, name) -> a detached copy."""
    return {(kwargs["namespace"], kwargs["name"]): snapshot(kwargs["body"])}


def index_job_by_cronjob(**kwargs: Any) -> Any:
    """Index entry of a nightly Job: (namespace, CronJob name) -> its metadata and status."""
    body: kopf.Body = kwargs["body"]
    owners = [r.get("name") for r in body.metadata.get("ownerReferences", []) if r.get("kind") == "CronJob"]
    job = snapshot(body)
    job.pop("spec", None)
    return {(kwargs["namespace"], owner): job for owner in owners if owner}


def _child_event(reconciler: Reconciler, kind: kinds.Kind) -> Callable[..., Any]:
    async def on_child_event(**kwargs: Any) -> None:
        type, body = kwargs["type"], kwargs["body"]
        namespace, name = kwargs["namespace"], kwargs["name"]
        if type is None:
            # The first listing: the resume handlers reconcile every owner anyway. A re-list (after a watch
            # gap): kopf's cache may still hold children deleted meanwhile, so verify against the API.
            if reconciler.relisted(kind, namespace, name, type) and (owner := owner_name(body, KIND, API_VERSION)):
                await reconciler.trigger(namespace, owner, kwargs, fresh=True)
            return
        reconciler.relisted(kind, namespace, name, type)
        if type == "DELETED":
            reconciler.child_gone(kind, namespace, name)
        elif kind is not kinds.DEPLOYMENT and reconciler.is_own_write(kind, body):
            return  # the echo of our own write (the Deployment's status still matters)
        owner = owner_name(body, KIND, API_VERSION)
        if owner is not None:
            await reconciler.trigger(namespace, owner, kwargs)

    return on_child_event


def _job_event(reconciler: Reconciler) -> Callable[..., Any]:
    async def on_job_event(**kwargs: Any) -> None:
        if kwargs["type"] is None:
            return
        body: kopf.Body = kwargs["body"]
        instance = body.metadata.labels.get(INSTANCE_LABEL)
        if instance:
            await reconciler.trigger(kwargs["namespace"], instance, kwargs)

    return on_job_event

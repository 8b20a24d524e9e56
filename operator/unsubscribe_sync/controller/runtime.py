"""Running the operator: kopf settings, the handler registry, the metrics server, kopf itself."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import kopf

from unsubscribe_sync.api.constants import (
    ANNOTATION_PREFIX,
    DEFAULT_IMAGE,
    MANAGED_BY,
    OPERATOR_HEALTH_PORT,
    OPERATOR_METRICS_PORT,
    OPERATOR_PEERING_LIFETIME,
)
from unsubscribe_sync.controller import caches, handlers, health, kinds
from unsubscribe_sync.controller.kubeapi import KubeApi, KubeApiError
from unsubscribe_sync.controller.login_hosts import effective_patterns
from unsubscribe_sync.controller.metrics import OperatorMetrics
from unsubscribe_sync.controller.preflight import run_preflight
from unsubscribe_sync.controller.reconciler import Preflight, Reconciler, ReconcilerOptions
from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.resources.labels import MANAGED_BY_LABEL

log = get_logger(__name__)

GLOB_CHARS = set("*?[]!")


@dataclass
class OperatorOptions:
    """Everything ``unsubscribe-sync operator`` can be told."""

    namespaces: tuple[str, ...] = ()  # empty: all namespaces
    standalone: bool = True
    peering_name: str | None = None
    priority: int = 0  # peering: the replica with the highest priority is active, others stand by
    peering_lifetime: int = OPERATOR_PEERING_LIFETIME  # s a peering entry lives without a keepalive (take-over)
    image: str = DEFAULT_IMAGE
    metrics_host: str = "0.0.0.0"
    metrics_port: int | None = OPERATOR_METRICS_PORT  # None: no metrics server
    liveness_host: str = "0.0.0.0"
    liveness_port: int | None = OPERATOR_HEALTH_PORT  # None: no liveness endpoint
    cache_grace: float = health.DEFAULT_CACHE_GRACE  # liveness fails once a required list fails this long
    resync_interval: float = 120.0  # the safety net; re-lists are verified at once
    preflight_interval: float = 300.0
    salesforce_ca_file: Path | None = None
    secret_retry_delays: tuple[float, ...] = (5, 10, 20, 40, 80, 160, 300)
    allowed_login_hosts: tuple[str, ...] = ()  # patterns added to the default Salesforce login hosts
    watch_server_timeout: int = 300
    connection: kopf.ConnectionInfo | None = None  # explicit credentials (tests); default: in-cluster/kubeconfig
    posting_level: int = logging.INFO

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def build_settings(options: OperatorOptions) -> kopf.OperatorSettings:
    """kopf settings for production use (pure: no I/O)."""
    settings = kopf.OperatorSettings()
    # Watches: the server closes each watch after server_timeout; the client gives up a bit later.
    # (whole seconds: the API server parses timeoutSeconds as an integer)
    settings.watching.server_timeout = int(options.watch_server_timeout)
    settings.watching.client_timeout = int(options.watch_server_timeout) + 30
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # A handler that fails unexpectedly is retried in a few seconds, not kopf's default minute (a spec change
    # made meanwhile would wait for it). Known temporary problems set their own delays (TemporaryError).
    settings.execution.default_backoff = 5
    # The CRD's structural schema would prune status.kopf: keep kopf's state in annotations of our own.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    # Events: only those the operator posts itself (condition transitions), not every log line.
    settings.posting.enabled = True
    settings.posting.loggers = False
    settings.posting.level = options.posting_level
    settings.posting.reporting_component = MANAGED_BY
    # Peering: standalone by default (one replica); a named peering for several replicas.
    settings.peering.standalone = options.standalone
    settings.peering.clusterwide = options.clusterwide
    if options.peering_name:
        settings.peering.name = options.peering_name
        # Replicas of equal priority all pause (kopf's rule), so each replica needs its own.
        settings.peering.priority = options.priority
        # A killed leader's entry expires a lifetime after its last keepalive; only then does a standby take
        # over (it sleeps until that deadline), so the lifetime bounds the take-over time (kopf's default: 60 s).
        # kopf sends keepalives every lifetime minus 5-10 s: at 20 s every 10-15 s, each PATCH with 5-10 s to
        # land before the entry would look dead.
        settings.peering.lifetime = int(options.peering_lifetime)
    # Scanning on: a CRD installed after start-up (the operator's own, in a GitOps ordering, or ServiceMonitor's)
    # is served once it appears (RBAC: customresourcedefinitions get/list/watch). kopf couples it with namespace
    # scanning, so with a fixed list of namespaces (no globs; namespaced RBAC without namespace access) it
    # stays off: there a CRD installed later is served after a restart (the liveness probe restarts it).
    settings.scanning.disabled = bool(options.namespaces) and not any(GLOB_CHARS & set(ns) for ns in options.namespaces)
    # Watch only managed children server-side (Deployments etc. of other apps never reach the operator).
    for kind in (*kinds.CHILD_KINDS, kinds.JOB):
        settings.watching.label_selectors[kind.group, kind.plural] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    return settings


class OperatorRuntime:
    """The operator's parts, wired: the API client, the reconciler, the kopf registry."""

    def __init__(
        self,
        options: OperatorOptions,
        *,
        metrics: OperatorMetrics | None = None,
        preflight: Preflight | None = None,
    ) -> None:
        self.options = options
        self.metrics = metrics or OperatorMetrics()
        self.connection: kopf.ConnectionInfo | None = options.connection
        self.api = KubeApi(lambda: self.connection)
        if preflight is None and options.preflight_interval > 0:
            preflight = partial(run_preflight, ca_file=options.salesforce_ca_file)
        self.reconciler = Reconciler(
            self.api,
            self.metrics,
            ReconcilerOptions(
                image=options.image,
                preflight_interval=options.preflight_interval,
                secret_retry_delays=options.secret_retry_delays,
                allowed_login_hosts=effective_patterns(options.allowed_login_hosts),
            ),
            preflight=preflight,
        )
        self.registry = kopf.OperatorRegistry()
        health.register(self.registry, self.api, namespaces=options.namespaces, cache_grace=options.cache_grace)

    def register(self, refused: dict[kinds.Kind, str]) -> None:
        """Register the handlers; optional kinds the API refuses to list are not watched (controller/caches.py)."""
        options = self.options
        # The timer runs the full reconcile, which also runs the preflight once it is older than its interval.
        interval = options.resync_interval
        if options.preflight_interval > 0:
            interval = min(interval, options.preflight_interval)
        self.reconciler.degraded_caches = {kind.kind: message for kind, message in refused.items()}
        for message in refused.values():
            log.warning("optional cache degraded", reason=message)
        handlers.register(
            self.registry,
            self.reconciler,
            resync_interval=interval,
            login=self._login,
            child_kinds=tuple(k for k in kinds.CHILD_KINDS if k not in refused),
            watch_jobs=kinds.JOB not in refused,
        )

    async def _refused_caches(self) -> dict[kinds.Kind, str]:
        if self.connection is None:
            self.connection = kopf.login_via_client(
                logger=logging.getLogger("kopf.activities.authentication"), settings=build_settings(self.options)
            )
        try:
            return await caches.refused_kinds(self.api, self.options.namespaces)
        except KubeApiError as exc:  # no answer at all: kopf's own retries decide; watch everything
            log.warning("cannot check the optional caches", reason=str(exc))
            return {}

    def _login(self, **kwargs: Any) -> kopf.ConnectionInfo | None:
        """kopf's login handler; the operator's own client then uses the same credentials."""
        info = self.options.connection or kopf.login_via_client(**kwargs)
        self.connection = info
        return info

    async def run(self, *, stop_flag: Any = None, ready_flag: Any = None) -> None:
        options = self.options
        self.register(await self._refused_caches())
        runner = None
        if options.metrics_port is not None:
            runner = await self.metrics.serve(options.metrics_host, options.metrics_port)
        liveness = (
            f"http://{options.liveness_host}:{options.liveness_port}/healthz"
            if options.liveness_port is not None
            else None
        )
        log.info(
            "operator starting",
            namespaces=list(options.namespaces) or "all",
            standalone=options.standalone,
            peering=options.peering_name,
            metrics_port=options.metrics_port,
            allowed_login_hosts=list(self.reconciler.options.allowed_login_hosts),
        )
        try:
            await kopf.operator(
                registry=self.registry,
                settings=build_settings(options),
                standalone=options.standalone,
                peering_name=options.peering_name,
                clusterwide=options.clusterwide,
                namespaces=list(options.namespaces),
                liveness_endpoint=liveness,
                stop_flag=stop_flag,
                ready_flag=ready_flag,
            )
        finally:
            await self.api.close()
            if runner is not None:
                await runner.cleanup()


def namespaces_from(values: Sequence[str] | None) -> tuple[str, ...]:
    """Namespaces from repeated and/or comma-separated ``--namespace`` values (order kept, no repeats)."""
    found: dict[str, None] = {}
    for value in values or ():
        for part in value.split(","):
            if part.strip():
                found[part.strip()] = None
    return tuple(found)

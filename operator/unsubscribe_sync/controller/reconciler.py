"""One idempotent reconcile of an UnsubscribeSync: gather, decide, act.

One gather step reads every input (kopf indexes of the watched children and Jobs, a few GETs, the preflight)
into ``policies.Observed``; the decisions are pure (``policies``, ``child_writes``, ``conditions``,
``nightly_status``, ``login_hosts``); the act steps only write what they ask for. A reconcile of an unchanged
object makes no write at all.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from pydantic import ValidationError

from unsubscribe_sync.api.constants import API_VERSION, DEFAULT_IMAGE, KIND
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.controller import kinds
from unsubscribe_sync.controller.child_writes import ChildWrite, newer, plan_write, with_hash
from unsubscribe_sync.controller.conditions import (
    PreflightResult,
    StatusInputs,
    build_status,
    format_validation_error,
    status_patch,
    utc_now,
)
from unsubscribe_sync.controller.kubeapi import KubeApi, KubeApiError
from unsubscribe_sync.controller.login_hosts import DEFAULT_LOGIN_HOSTS, check_login_url
from unsubscribe_sync.controller.metrics import OperatorMetrics
from unsubscribe_sync.controller.nightly_status import JobRun, latest_job, termination_message
from unsubscribe_sync.controller.policies import (
    ChildPlan,
    ChildReads,
    ChildResults,
    Observed,
    Outcome,
    SecretCheck,
    events_to_post,
    job_pods,
    outcome,
    plan_children,
    status_inputs,
    write_failure,
)
from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.resources import ChildNames, desired_children

log = get_logger(__name__)

Preflight = Callable[[UnsubscribeSyncSpec, Mapping[str, str], str], PreflightResult]


def index_id(kind: kinds.Kind) -> str:
    """The kopf index (handler id, and handler kwarg) that holds the watched objects of ``kind``."""
    return f"usync_index_{kind.plural}"


OWNERS_INDEX = "usync_index_owners"
PRUNABLE = (kinds.PDB, kinds.SERVICE_MONITOR, kinds.NETWORK_POLICY, kinds.INGRESS)
JOBS_INDEX = "usync_index_jobs"


def snapshot(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached copy of an object, without managedFields (kopf bodies are live views)."""
    result = copy.deepcopy({k: v for k, v in body.items()})
    result.get("metadata", {}).pop("managedFields", None)
    return result


def _first(store: Any) -> dict[str, Any] | None:
    if store is None:
        return None
    for item in store:
        return item
    return None


@dataclass
class PreflightEntry:
    key: tuple[int, str]  # (generation, secret resourceVersion)
    at: float
    result: PreflightResult


@dataclass
class OwnerState:
    """What the operator remembers of one UnsubscribeSync between reconciles (in memory only)."""

    secrets: SecretCheck | None = None  # None: not checked yet
    preflight: PreflightEntry | None = None
    job_messages: dict[str, str | None] = field(default_factory=dict)  # Job uid -> termination message
    full_done: bool = False  # a full reconcile has run since the operator started


@dataclass
class ReconcilerOptions:
    image: str = DEFAULT_IMAGE
    preflight_interval: float = 300.0  # seconds; 0 turns the preflight off
    secret_retry_delays: tuple[float, ...] = (5, 10, 20, 40, 80, 160, 300)
    allowed_login_hosts: tuple[str, ...] = DEFAULT_LOGIN_HOSTS  # normalised patterns (login_hosts.parse_patterns)
    verify_delay: float = 0.5  # seconds a re-list's verification waits, so all kinds' listings share one


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        metrics: OperatorMetrics,
        options: ReconcilerOptions,
        *,
        preflight: Preflight | None = None,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.api = api
        self._clock = clock  # the status's transition times (injected so tests can fix them)
        self.metrics = metrics
        self.options = options
        self._preflight = preflight
        self.degraded_caches: dict[str, str] = {}  # Kind -> why its optional cache is off (controller/caches.py)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._pending: set[tuple[str, str]] = set()
        self._fresh: set[tuple[str, str]] = set()  # pending triggers that must read children from the API
        self._seen: set[tuple[str, str, str]] = set()  # (plural, ns, name) of objects a watch has shown
        self._owners: dict[str, OwnerState] = {}
        self._written: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, ns, name) -> body we wrote
        self._pruned: set[tuple[str, str, str]] = set()  # deleted by us, the watch has not shown it yet
        self.reconciles = 0

    # ---- bookkeeping ---------------------------------------------------------------------------
    def lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def forget(self, namespace: str, name: str, uid: str | None) -> None:
        """Drop what is remembered of a deleted UnsubscribeSync."""
        self._locks.pop((namespace, name), None)
        self.metrics.resources.ready.pop((namespace, name), None)
        if uid:
            self._owners.pop(uid, None)
        self._written.pop((kinds.USYNC.plural, namespace, name), None)
        self._seen.discard((kinds.USYNC.plural, namespace, name))

    def child_gone(self, kind: kinds.Kind, namespace: str, name: str) -> None:
        self._written.pop((kind.plural, namespace, name), None)
        self._pruned.discard((kind.plural, namespace, name))
        self._seen.discard((kind.plural, namespace, name))

    def relisted(self, kind: kinds.Kind, namespace: str, name: str, event_type: str | None) -> bool:
        """Whether this watch event is part of a re-list (not the first listing): an API server restart with
        compacted history (410 Gone), a new peering leader, a resumed stream.

        kopf keeps in its cache objects that a re-list no longer shows (deleted during the gap), so after a
        re-list the children must be read from the API server, not from the cache.
        """
        key = (kind.plural, namespace, name)
        again = event_type is None and key in self._seen
        self._seen.add(key)
        return again

    def is_own_write(self, kind: kinds.Kind, body: Mapping[str, Any]) -> bool:
        """Whether a watch event shows exactly the version of a child this operator wrote last."""
        meta = body.get("metadata") or {}
        mine = self._written.get((kind.plural, str(meta.get("namespace")), str(meta.get("name"))))
        if mine is None:
            return False
        return (mine.get("metadata") or {}).get("resourceVersion") == meta.get("resourceVersion")

    def _lookup(self, indexes: Mapping[str, Any], kind: kinds.Kind, namespace: str, name: str) -> Any:
        index = indexes.get(index_id(kind))
        seen = _first(index.get((namespace, name))) if index is not None else None
        key = (kind.plural, namespace, name)
        if key in self._pruned:
            return None
        mine = self._written.get(key)
        best = newer(seen, mine)
        if mine is not None and best is seen:
            self._written.pop(key, None)  # the watch has caught up with our write
        return best

    # ---- the reconcile -------------------------------------------------------------------------
    async def trigger(self, namespace: str, name: str, indexes: Mapping[str, Any], *, fresh: bool = False) -> None:
        """Reconcile an owner after an event of one of its children; bursts collapse into one reconcile.

        ``fresh`` (after a re-list) reads every child from the API server; it waits ``verify_delay`` first so
        that the listings of all child kinds, which arrive one after another, share one verification.
        """
        key = (namespace, name)
        if fresh:
            self._fresh.add(key)
        if key in self._pending:
            return
        self._pending.add(key)
        try:
            if fresh and self.options.verify_delay > 0:
                await asyncio.sleep(self.options.verify_delay)
            async with self.lock(key):
                self._pending.discard(key)
                verify = key in self._fresh
                self._fresh.discard(key)
                owner = _first((indexes.get(OWNERS_INDEX) or {}).get(key))
                if owner is None or owner.get("metadata", {}).get("deletionTimestamp"):
                    return
                await self._reconcile_locked(owner, indexes, full=False, retry=None, fresh=verify)
        finally:
            self._pending.discard(key)

    async def reconcile(
        self,
        owner: Mapping[str, Any],
        indexes: Mapping[str, Any],
        *,
        full: bool = True,
        retry: int | None = None,
        fresh: bool = False,
    ) -> Outcome:
        """Reconcile one UnsubscribeSync. With ``retry`` (kopf's attempt number) a temporary problem raises
        ``kopf.TemporaryError`` with a backoff delay; without it the outcome is returned."""
        meta = owner.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        async with self.lock(key):
            return await self._reconcile_locked(owner, indexes, full=full, retry=retry, fresh=fresh)

    async def _reconcile_locked(
        self,
        owner: Mapping[str, Any],
        indexes: Mapping[str, Any],
        *,
        full: bool,
        retry: int | None,
        fresh: bool = False,
    ) -> Outcome:
        started = time.perf_counter()
        self.reconciles += 1
        try:
            outcome = await self._reconcile(owner, indexes, full=full, fresh=fresh)
        except Exception:
            self.metrics.reconcile_total.labels("error").inc()
            raise
        finally:
            self.metrics.reconcile_duration.observe(time.perf_counter() - started)
        self.metrics.reconcile_total.labels(outcome.result).inc()
        if outcome.retry and retry is not None:
            delays = self.options.secret_retry_delays
            delay = delays[min(retry, len(delays) - 1)]
            raise kopf.TemporaryError(outcome.message, delay=delay)
        return outcome

    async def _reconcile(
        self, owner: Mapping[str, Any], indexes: Mapping[str, Any], *, full: bool, fresh: bool = False
    ) -> Outcome:
        """One reconcile in numbered steps: gather every input once, decide (pure), act (only writes).

        A trigger reconcile (``full`` False) before the first full one writes the children only: the
        create/resume handler computes the status, with the preflight.
        """
        meta = owner.get("metadata") or {}
        namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid", ""))
        state = self._owners.setdefault(uid, OwnerState())
        status_due = full or state.full_done
        # 0: gather: the one step that reads (the CR, the children, the Secrets and the preflight, the Deployment,
        # the nightly Job and its pods) into Observed.
        seen = await self._gather(owner, indexes, state, full=full, fresh=fresh, status_due=status_due)
        if seen.login is not None and not seen.login.allowed:
            log.warning("login host not allowed", namespace=namespace, name=name, host=seen.login.host)
        # 1: decide the children: which to write (child_writes.plan_write), which to delete (policies.may_prune).
        plan = plan_children(seen.children, meta.get("uid"))
        # 2: act: write them; a failed write is classified by policies.write_failure.
        done = await self._write_children(namespace, name, plan)
        if seen.spec is not None:
            if not status_due:
                return Outcome("success", writes=done.writes)
            state.full_done = True
        # 3: decide the status's inputs (policies.status_inputs), then the status itself (conditions.build_status).
        inputs = status_inputs(
            seen,
            done,
            jobs_not_watchable=self.degraded_caches.get(kinds.JOB.kind),
            preflight_enabled=self.options.preflight_interval > 0,
        )
        # 4: act: write the status at the injected clock's time, and post the Events it is worth.
        status_error = await self._write_status(owner, seen.current, inputs)
        # 5: the outcome (policies.outcome; kopf retries a temporary error with backoff).
        return outcome(inputs, status_error, done.writes)

    async def _gather(
        self,
        owner: Mapping[str, Any],
        indexes: Mapping[str, Any],
        state: OwnerState,
        *,
        full: bool,
        fresh: bool,
        status_due: bool,
    ) -> Observed:
        """Every read of a reconcile, in one place.

        The CR as last seen (the watch's copy or the one this operator wrote last, whichever is newer) and its
        spec (an invalid spec ends the reads). The login host then bounds what may be read: outside the
        allowlist no Secret is read, no preflight logs in and no child is read (nor later written; the
        ConfigMap would send the worker and the nightly pods to that host). Otherwise every desired child with
        its cluster copy (the watch cache, or the API server when ``fresh``) and the optional children no
        longer wanted. When the status is due: the Secrets (on a full reconcile, or when not checked yet) and
        the preflight they feed, the push worker Deployment, the nightly Job and its pods.
        """
        meta = owner.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        generation = int(meta.get("generation") or 1)
        current = newer(owner, self._written.get((kinds.USYNC.plural, namespace, name))) or owner
        try:
            spec = UnsubscribeSyncSpec.model_validate(owner.get("spec") or {})
        except ValidationError as exc:
            return Observed(current, generation, spec_error=format_validation_error(exc))
        login = check_login_url(spec.salesforce.loginUrl, self.options.allowed_login_hosts)
        children = await self._read_children(owner, spec, indexes, fresh=fresh) if login.allowed else None
        if not status_due:
            return Observed(current, generation, spec, login=login, children=children)
        if not login.allowed:
            state.secrets = None  # checked again once the host is allowed
        elif full or state.secrets is None:
            state.secrets, credentials_secret = await self._check_secrets(namespace, spec)
            if full and credentials_secret is not None:
                await self._maybe_preflight(spec, generation, credentials_secret, f"{namespace}/{name}", state)
        names = ChildNames(name)
        run = latest_job(self._jobs(indexes, namespace, names.nightly_sync), names.nightly_sync)
        return Observed(
            current,
            generation,
            spec,
            login=login,
            children=children,
            secrets=state.secrets or SecretCheck(),
            deployment=self._lookup(indexes, kinds.DEPLOYMENT, namespace, names.push_worker),
            run=run,
            job_message=await self._job_message(namespace, run, state) if run is not None else None,
            preflight=state.preflight.result if state.preflight is not None and login.allowed else None,
        )

    # ---- children ------------------------------------------------------------------------------
    async def _read_children(
        self, owner: Mapping[str, Any], spec: UnsubscribeSyncSpec, indexes: Mapping[str, Any], *, fresh: bool
    ) -> ChildReads:
        """The desired children (owner reference and hash set) and each one's copy in the cluster: the watch
        cache, or the API server when ``fresh`` (the periodic resync and re-lists: it also finds drift whose
        watch event was lost); a child whose read failed is left out of ``found``. Then the optional children
        (PodDisruptionBudget, ServiceMonitor, NetworkPolicy, Ingress) a spec change turned off, with their copy."""
        meta = owner.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        reads = ChildReads()
        wanted: set[tuple[str, str]] = set()  # (plural, name) of every desired child
        for manifest in desired_children(name, namespace, spec, image=self.options.image):
            kopf.append_owner_reference(manifest, owner=_owner_body(owner))
            desired = with_hash(manifest)
            kind = kinds.kind_of(desired)
            child = str(desired["metadata"]["name"])
            wanted.add((kind.plural, child))
            if fresh:
                try:
                    actual = await self.api.get(kind.path(namespace, child))
                except KubeApiError as exc:
                    text = f"{kind.kind} {child}: {exc.message or exc.reason}"
                    (reads.errors if exc.transient else reads.rejected).append(text)
                    continue
            else:
                actual = self._lookup(indexes, kind, namespace, child)
            reads.found.append((kind, child, desired, actual))
        child = ChildNames(name).push_worker
        for kind in PRUNABLE:
            if (kind.plural, child) not in wanted and (kind.plural, namespace, child) not in self._pruned:
                reads.unwanted.append((kind, child, self._lookup(indexes, kind, namespace, child)))
        return reads

    async def _write_children(self, namespace: str, name: str, plan: ChildPlan) -> ChildResults:
        """Make the writes and deletions of ``plan``; workloads and the ledger volume are never deleted."""
        done = ChildResults()
        for kind, child, write, desired in plan.writes:
            try:
                written = await self._apply(kind, namespace, write, desired)
            except KubeApiError as exc:
                failure = write_failure(kind, child, write.action, exc)
                {"retried": done.errors, "rejected": done.rejected, "degraded": done.degraded}[failure.effect].append(
                    failure.message
                )
                log.warning(
                    "child write failed",
                    namespace=namespace,
                    name=name,
                    child=child,
                    kind=kind.kind,
                    status=exc.status,
                    error=exc.message,
                )
                continue
            if written is not None:
                obj, wrote = written
                self._written[(kind.plural, namespace, child)] = obj
                if kind is kinds.DEPLOYMENT:
                    done.deployment = obj
                if not wrote:  # created meanwhile and already in shape: nothing was written
                    continue
                done.writes += 1
                self.metrics.child_writes.labels(kind.kind, write.reason).inc()
                log.info(
                    "child written",
                    namespace=namespace,
                    name=name,
                    child=child,
                    kind=kind.kind,
                    action=write.action,
                    reason=write.reason,
                )
        for kind, child in plan.prunes:
            key = (kind.plural, namespace, child)
            try:
                await self.api.delete(kind.path(namespace, child))
            except KubeApiError as exc:
                done.errors.append(f"{kind.kind} {child}: {exc.message or exc.reason}")
                continue
            self._pruned.add(key)
            self._written.pop(key, None)
            self.metrics.child_writes.labels(kind.kind, "pruned").inc()
            log.info("child deleted", namespace=namespace, name=name, child=child, kind=kind.kind)
            done.writes += 1
        return done

    async def _apply(
        self, kind: kinds.Kind, namespace: str, write: ChildWrite, desired: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool] | None:
        """Carry out one planned write: the child as the server returned it, and whether this call wrote it."""
        if write.action == "create":
            try:
                return await _written(self.api.create(kind.path(namespace), write.body))
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
            # Created meanwhile (the watch has not shown it yet): compare with the real thing.
            actual = await self.api.get(kind.path(namespace, write.name))
            again = plan_write(desired, actual)
            if again is None:
                return (actual, False) if actual is not None else None
            write = again
        try:
            return await _written(self.api.merge_patch(kind.path(namespace, write.name), write.body))
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            return await _written(self.api.create(kind.path(namespace), dict(desired)))

    def _jobs(self, indexes: Mapping[str, Any], namespace: str, cronjob: str) -> Iterable[Mapping[str, Any]]:
        index = indexes.get(JOBS_INDEX)
        store = index.get((namespace, cronjob)) if index is not None else None
        return list(store) if store is not None else []

    async def _job_message(self, namespace: str, run: JobRun, state: OwnerState) -> str | None:
        if run.uid in state.job_messages:
            return state.job_messages[run.uid]
        try:
            pods = await self.api.list(kinds.POD.path(namespace), label_selector=f"job-name={run.name}")
        except KubeApiError as exc:
            log.warning("cannot read nightly pods", namespace=namespace, job=run.name, status=exc.status)
            return None
        message = termination_message(job_pods(pods, run.name))
        state.job_messages = {run.uid: message}  # only the latest run matters
        return message

    # ---- secrets and preflight -------------------------------------------------------------------
    async def _check_secrets(
        self, namespace: str, spec: UnsubscribeSyncSpec
    ) -> tuple[SecretCheck, dict[str, Any] | None]:
        """Read each referenced Secret: which are missing, which the API server would not give, and the
        credentials Secret's object (for the preflight). Only names and the server's messages are kept."""
        names = [spec.salesforce.credentialsSecretRef.name, spec.pushWorker.webhookSecretRef.name]
        if spec.ledger.databaseSecretRef is not None:
            names.append(spec.ledger.databaseSecretRef.name)
        missing: list[str] = []
        refused: list[str] = []
        errors: list[str] = []
        unreadable: str | None = None
        credentials: dict[str, Any] | None = None
        for secret_name in dict.fromkeys(names):
            ref = f"{namespace}/{secret_name}"
            try:
                secret = await self.api.get(kinds.SECRET.path(namespace, secret_name))
            except KubeApiError as exc:
                text = f"Secret {ref}: {exc.status} {exc.reason}: {exc.message}".rstrip(": ")
                (errors if exc.transient else refused).append(text)
                if secret_name == spec.salesforce.credentialsSecretRef.name:
                    unreadable = text
                log.warning("cannot read secret", namespace=namespace, secret=secret_name, status=exc.status)
                continue
            if secret is None:
                missing.append(ref)
            elif secret_name == spec.salesforce.credentialsSecretRef.name:
                credentials = secret
        check = SecretCheck(tuple(missing), tuple(refused), tuple(errors), unreadable)
        return check, credentials

    async def _maybe_preflight(
        self, spec: UnsubscribeSyncSpec, generation: int, secret: Mapping[str, Any], secret_ref: str, state: OwnerState
    ) -> None:
        if self._preflight is None or self.options.preflight_interval <= 0:
            return
        rv = str((secret.get("metadata") or {}).get("resourceVersion", ""))
        key = (generation, rv)
        entry = state.preflight
        now = time.monotonic()
        if entry is not None and entry.key == key and now - entry.at < self.options.preflight_interval:
            return
        name = (secret.get("metadata") or {}).get("name", "")
        data = secret.get("data") or {}
        result = await asyncio.to_thread(self._preflight, spec, data, f"{secret_ref.split('/')[0]}/{name}")
        state.preflight = PreflightEntry(key=key, at=now, result=result)
        self.metrics.preflights.labels(result.field.reason).inc()

    # ---- status --------------------------------------------------------------------------------
    async def _write_status(
        self, owner: Mapping[str, Any], current: Mapping[str, Any], inputs: StatusInputs
    ) -> str | None:
        """Write the status when it changed; returns why it could not be written (an Event says so too)."""
        meta = owner.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        previous = current.get("status") or {}
        new = build_status(inputs, previous, self._clock())
        ready = next((c for c in new["conditions"] if c["type"] == "Ready"), None)
        self.metrics.resources.ready[(namespace, name)] = bool(ready and ready["status"] == "True")
        patch = status_patch(previous, new)
        if patch is None:
            return None
        try:
            written = await self.api.merge_patch(kinds.USYNC.path(namespace, name, "status"), {"status": patch})
        except KubeApiError as exc:
            if exc.status == 404:  # deleted meanwhile: nothing to report on
                return None
            text = f"status not written: {exc.status} {exc.reason}: {exc.message}".rstrip(": ")
            log.warning("status write failed", namespace=namespace, name=name, status=exc.status, error=exc.message)
            _post(_owner_body(owner), "StatusWriteFailed", text, warning=True)
            return text
        self.metrics.status_writes.inc()
        self._written[(kinds.USYNC.plural, namespace, name)] = written
        self._post_events(owner, previous.get("conditions") or [], new["conditions"])
        return None

    def _post_events(self, owner: Mapping[str, Any], before: list[Any], after: list[dict[str, Any]]) -> None:
        body = _owner_body(owner)
        for event in events_to_post(before, after):
            _post(body, event.reason, event.message, warning=event.warning)


def _post(body: Any, reason: str, message: str, *, warning: bool) -> None:
    """Post a Kubernetes Event about ``body`` through kopf's posting queue (retried by kopf)."""
    try:
        if warning:
            kopf.warn(body, reason=reason, message=message)
        else:
            kopf.info(body, reason=reason, message=message)
    except LookupError:  # outside a running operator (no posting queue): nothing to post to
        pass


def _owner_body(owner: Mapping[str, Any]) -> Any:
    """The owner in the shape kopf's helpers expect (apiVersion, kind, metadata)."""
    meta = owner.get("metadata") or {}
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner.get("kind", KIND),
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "uid") if meta.get(k) is not None},
    }


async def _written(call: Awaitable[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """The object a write returned, marked as written by this call."""
    return await call, True

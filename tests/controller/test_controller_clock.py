"""The reconciler's clock is injected: the status's transition times are the clock's, not the wall's."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import kopf

from tests.fixtures.api import minimal_with_token_key
from tests.fixtures.kube import USYNC_RESOURCE, RunningCluster
from unsubscribe_sync.api.constants import GROUP, PLURAL, VERSION
from unsubscribe_sync.controller.kubeapi import KubeApi
from unsubscribe_sync.controller.metrics import OperatorMetrics
from unsubscribe_sync.controller.reconciler import Reconciler, ReconcilerOptions

NS = "sales"
T0, T1 = "2001-02-03T04:05:06Z", "2001-02-03T05:00:00Z"


def _secret(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": {"token": base64.b64encode(b"t0ken").decode()},
    }


def _times(obj: dict[str, object] | None) -> dict[str, tuple[str, str]]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []  # type: ignore[attr-defined]
    return {c["type"]: (c["status"], c["lastTransitionTime"]) for c in conditions}


async def test_transition_times_follow_the_injected_clock(kube: RunningCluster) -> None:
    """A condition appearing takes the clock's time; one whose status changes on a later reconcile takes the
    clock's new time; one that held keeps its first time (the wall clock is never read)."""
    api = KubeApi(lambda: kopf.ConnectionInfo(server=kube.url))
    ticks: Iterator[str] = iter([T0, T1])  # one status write per reconcile: one tick each

    def clock() -> str:
        return next(ticks)

    reconciler = Reconciler(api, OperatorMetrics(), ReconcilerOptions(preflight_interval=0), clock=clock)
    try:
        await api.create(
            f"/apis/{GROUP}/{VERSION}/namespaces/{NS}/{PLURAL}",
            minimal_with_token_key(),
        )
        owner = kube.emulator.get(USYNC_RESOURCE, NS, "acme")
        assert owner is not None
        await reconciler.reconcile(owner, {}, full=True)  # the Secrets are missing
        first = _times(kube.emulator.get(USYNC_RESOURCE, NS, "acme"))
        assert first["CredentialsValid"] == ("False", T0)
        assert {time for _, time in first.values()} == {T0}

        for name in ("acme-salesforce", "acme-webhook"):
            await api.create(f"/api/v1/namespaces/{NS}/secrets", _secret(name))
        owner = kube.emulator.get(USYNC_RESOURCE, NS, "acme")
        assert owner is not None
        await reconciler.reconcile(owner, {}, full=True)
        second = _times(kube.emulator.get(USYNC_RESOURCE, NS, "acme"))
        assert second["CredentialsValid"] == ("Unknown", T1)  # the Secret exists; the preflight is off
        assert second["NightlySyncSucceeded"] == first["NightlySyncSucceeded"] == ("Unknown", T0)
    finally:
        await api.close()

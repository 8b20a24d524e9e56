"""docs/argocd-health.lua, run in a Lua runtime the way Argo CD runs it (global `obj`, returns a table)."""

from __future__ import annotations

from typing import Any

import pytest
from lupa import LuaRuntime

from tests.fixtures.deploy import REPO_ROOT

SCRIPT = (REPO_ROOT / "docs/argocd-health.lua").read_text()


def to_lua(lua: LuaRuntime, value: Any) -> Any:
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = to_lua(lua, obj)
    result = lua.execute(SCRIPT)
    return str(result["status"]), str(result["message"])


def resource(generation: int = 2, status: dict[str, Any] | None = None, suspend: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "optout.dev/v1alpha1",
        "kind": "UnsubscribeSync",
        "metadata": {"name": "acme", "namespace": "sales", "generation": generation},
        "spec": {"suspend": suspend},
    }
    if status is not None:
        obj["status"] = status
    return obj


def cond(type_: str, status: str, reason: str = "", message: str = "") -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }


def test_no_status_is_progressing() -> None:
    assert health(resource(status=None))[0] == "Progressing"


def test_ready_and_current_is_healthy() -> None:
    status = {"observedGeneration": 2, "conditions": [cond("Ready", "True", "Ready", "all good")]}
    assert health(resource(status=status)) == ("Healthy", "Ready: all good")


def test_stale_observed_generation_is_progressing_even_when_ready() -> None:
    status = {"observedGeneration": 1, "conditions": [cond("Ready", "True", "Ready")]}
    state, message = health(resource(generation=2, status=status))
    assert state == "Progressing"
    assert "generation 2" in message


def test_missing_observed_generation_is_progressing() -> None:
    status = {"conditions": [cond("Ready", "True", "Ready")]}
    assert health(resource(status=status))[0] == "Progressing"


def test_reconciling_is_progressing() -> None:
    status = {
        "observedGeneration": 2,
        "conditions": [
            cond("Ready", "False", "Reconciling", "creating the push worker"),
            cond("Reconciling", "True", "Progressing", "creating the push worker"),
        ],
    }
    assert health(resource(status=status)) == ("Progressing", "Progressing: creating the push worker")


def test_stalled_is_degraded_with_its_message() -> None:
    status = {
        "observedGeneration": 2,
        "conditions": [
            cond("Ready", "False", "InvalidSpec"),
            cond("Reconciling", "True", "Retrying"),
            cond("Stalled", "True", "InvalidSpec", "SQLite ledger needs replicas: 1"),
        ],
    }
    assert health(resource(status=status)) == ("Degraded", "InvalidSpec: SQLite ledger needs replicas: 1")


def test_ready_false_with_reason_is_degraded() -> None:
    status = {
        "observedGeneration": 2,
        "conditions": [
            cond("Ready", "False", "CredentialsInvalid", "invalid_client"),
            cond("Reconciling", "False", "Done"),
            cond("Stalled", "False", "Done"),
        ],
    }
    assert health(resource(status=status)) == ("Degraded", "CredentialsInvalid: invalid_client")


def test_ready_unknown_is_progressing() -> None:
    status = {"observedGeneration": 2, "conditions": [cond("Ready", "Unknown", "Checking")]}
    assert health(resource(status=status))[0] == "Progressing"


def test_no_conditions_yet_is_progressing() -> None:
    assert health(resource(status={"observedGeneration": 2}))[0] == "Progressing"


@pytest.mark.parametrize("ready", ["True", "False"])
def test_suspended_resource_is_suspended_unless_stalled(ready: str) -> None:
    conditions = [cond("Ready", ready, "Suspended")]
    status: dict[str, Any] = {"observedGeneration": 2, "conditions": conditions}
    assert health(resource(status=status, suspend=True))[0] == "Suspended"
    conditions.append(cond("Stalled", "True", "InvalidSpec", "bad"))
    assert health(resource(status=status, suspend=True))[0] == "Degraded"

"""Pod and container settings that satisfy the restricted Pod Security Standard."""

from __future__ import annotations

from typing import Any, Final

RUN_AS_USER: Final = 65532  # non-root user and group of the image (Containerfile USER)
TMP_MOUNT: Final = "/tmp"


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """A writable /tmp (the root filesystem is read-only): (volume, volumeMount).

    The nightly sync sorts both sides through a temporary SQLite file here (about 54 bytes a record).
    """
    return (
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "tmp", "mountPath": TMP_MOUNT},
    )

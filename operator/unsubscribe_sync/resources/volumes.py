"""Volumes and mounts of the worker and nightly pods: the config file and Secrets by name, never by value."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Final

from unsubscribe_sync.api.constants import (
    CONFIG_DIR,
    CONFIG_FILE,
    LEDGER_URL_DIR,
    LEDGER_URL_FILE,
    ONE_CLICK_KEYS_DIR,
    ONE_CLICK_KEYS_FILE,
    SALESFORCE_CREDENTIALS_DIR,
    SQLITE_DIR,
    WEBHOOK_TOKEN_DIR,
    WEBHOOK_TOKEN_FILE,
)
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.resources.labels import ChildNames

SECRET_FILE_MODE: Final = 0o440  # owner and fsGroup may read

Volume = tuple[dict[str, Any], dict[str, Any]]  # (volume, volumeMount)


def config_volume(instance: str) -> Volume:
    key = PurePosixPath(CONFIG_FILE).name
    return (
        {"name": "config", "configMap": {"name": ChildNames(instance).config, "items": [{"key": key, "path": key}]}},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
    )


def salesforce_credentials_volume(spec: UnsubscribeSyncSpec) -> Volume:
    """The whole credentials Secret as a directory, one file per key (rotations reach running pods)."""
    return (
        {
            "name": "salesforce-credentials",
            "secret": {"secretName": spec.salesforce.credentialsSecretRef.name, "defaultMode": SECRET_FILE_MODE},
        },
        {"name": "salesforce-credentials", "mountPath": SALESFORCE_CREDENTIALS_DIR, "readOnly": True},
    )


def secret_key_volume(volume: str, secret: str, key: str, file: str, directory: str) -> Volume:
    """One key of a Secret as the file ``file`` in ``directory`` (mounted read-only; rotations reach the pod)."""
    return (
        {
            "name": volume,
            "secret": {
                "secretName": secret,
                "defaultMode": SECRET_FILE_MODE,
                "items": [{"key": key, "path": PurePosixPath(file).name}],
            },
        },
        {"name": volume, "mountPath": directory, "readOnly": True},
    )


def webhook_token_volume(spec: UnsubscribeSyncSpec) -> Volume:
    ref = spec.pushWorker.webhookSecretRef
    return secret_key_volume("webhook-token", ref.name, ref.key, WEBHOOK_TOKEN_FILE, WEBHOOK_TOKEN_DIR)


def ledger_url_volume(spec: UnsubscribeSyncSpec) -> Volume:
    ref = spec.ledger.databaseSecretRef
    if ref is None:
        raise ValueError("ledger_url_volume needs ledger.databaseSecretRef (PostgreSQL mode)")
    return secret_key_volume("ledger-url", ref.name, ref.key, LEDGER_URL_FILE, LEDGER_URL_DIR)


def ledger_data_volume(instance: str) -> Volume:
    return (
        {"name": "ledger-data", "persistentVolumeClaim": {"claimName": ChildNames(instance).ledger}},
        {"name": "ledger-data", "mountPath": SQLITE_DIR},
    )


def one_click_keys_volume(spec: UnsubscribeSyncSpec) -> Volume:
    """The one-click HMAC keys (one per line); a rotated Secret reaches the running worker (it re-reads the file)."""
    if spec.oneClick is None:
        raise ValueError("one_click_keys_volume needs spec.oneClick")
    ref = spec.oneClick.keySecretRef
    return secret_key_volume("one-click-keys", ref.name, ref.key, ONE_CLICK_KEYS_FILE, ONE_CLICK_KEYS_DIR)

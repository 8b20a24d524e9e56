"""The config file (``api/config.py``) that the worker and the nightly job of one UnsubscribeSync read.

It holds paths and references only: Secret values are mounted as files at the paths it names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from unsubscribe_sync.api.config import (
    Config,
    LedgerConfig,
    LoggingConfig,
    MatchingConfig,
    NightlyConfig,
    OneClickConfig,
    OptOutConfig,
    SalesforceConfig,
    SalesforcePollConfig,
    WorkerConfig,
)
from unsubscribe_sync.api.constants import (
    CONFIG_FILE,
    LEDGER_URL_FILE,
    ONE_CLICK_KEYS_FILE,
    PUBLIC_PORT,
    SALESFORCE_CREDENTIALS_DIR,
    SQLITE_URL,
    WEBHOOK_TOKEN_FILE,
    WORKER_PORT,
)
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.resources.labels import ChildNames, child_labels
from unsubscribe_sync.resources.senders import senders_config

CONFIG_KEY = Path(CONFIG_FILE).name  # the ConfigMap key, mounted as CONFIG_FILE


def worker_url(name: str, namespace: str) -> str:
    """In-cluster URL of the worker Service (where `nightly` reaches the worker)."""
    return f"http://{ChildNames(name).push_worker}.{namespace}.svc:{WORKER_PORT}"


def config_for(name: str, namespace: str, spec: UnsubscribeSyncSpec) -> Config:
    """The config of the worker and nightly job of this UnsubscribeSync."""
    ledger = LedgerConfig(url=SQLITE_URL) if spec.uses_sqlite else LedgerConfig(urlFile=Path(LEDGER_URL_FILE))
    return Config(
        salesforce=SalesforceConfig(
            loginUrl=spec.salesforce.loginUrl,
            apiVersion=spec.salesforce.apiVersion,
            credentialsDir=Path(SALESFORCE_CREDENTIALS_DIR),
            objects=list(spec.salesforce.objects),
        ),
        optOut=OptOutConfig(
            target=spec.optOutField.target,
            marketoSalesOptOutField=spec.optOutField.marketoSalesOptOutField or None,
        ),
        **_matching(spec),
        nightly=_nightly(spec),
        **_salesforce_poll(spec),
        ledger=ledger,
        worker=WorkerConfig(
            listen=f"0.0.0.0:{WORKER_PORT}",
            tokenFile=Path(WEBHOOK_TOKEN_FILE),
            url=worker_url(name, namespace),
            # The public listener only where spec.publicEndpoint says it is reachable.
            publicListen=f"0.0.0.0:{PUBLIC_PORT}" if spec.publicEndpoint is not None else None,
        ),
        logging=LoggingConfig(format="json"),
        **_one_click(spec),
        **_senders(spec),
    )


def _one_click(spec: UnsubscribeSyncSpec) -> dict[str, Any]:
    """The oneClick section when spec.oneClick is set (links point at spec.publicEndpoint.baseUrl)."""
    if spec.oneClick is None or spec.publicEndpoint is None:
        return {}
    return {"oneClick": OneClickConfig(keyFile=Path(ONE_CLICK_KEYS_FILE), baseUrl=spec.publicEndpoint.baseUrl)}


def _senders(spec: UnsubscribeSyncSpec) -> dict[str, Any]:
    """The senders section when spec.senders is set (file paths where resources/senders.py mounts the Secrets)."""
    section = senders_config(spec)
    return {} if section is None else {"senders": section}


def _matching(spec: UnsubscribeSyncSpec) -> dict[str, Any]:
    """The matching section, only when the mode is not the default (so existing config files stay as they are)."""
    if spec.matching.mode == MatchingConfig().mode:
        return {}
    return {"matching": MatchingConfig(mode=spec.matching.mode)}


def _salesforce_poll(spec: UnsubscribeSyncSpec) -> dict[str, Any]:
    """The salesforcePoll section, only when spec.salesforcePoll.intervalSeconds is set (else the default)."""
    interval = spec.salesforcePoll.intervalSeconds
    return {} if interval is None else {"salesforcePoll": SalesforcePollConfig(intervalSeconds=interval)}


def _nightly(spec: UnsubscribeSyncSpec) -> NightlyConfig:
    """The nightly section; the guard's keys only when set (so an unset guard stays absent from the file)."""
    nightly = spec.nightlySync
    guard: dict[str, Any] = {}
    if nightly.maxChangeRatio is not None:
        guard["maxChangeRatio"] = nightly.maxChangeRatio
    if nightly.maxChanges is not None:
        guard["maxChanges"] = nightly.maxChanges
    return NightlyConfig(enabled=nightly.enabled, **guard)


def config_yaml(config: Config) -> str:
    """The config file text: the keys set explicitly, so the image's defaults apply to the rest."""
    data = config.model_dump(mode="json", exclude_unset=True)
    return yaml.safe_dump(data, sort_keys=False)


def config_checksum(text: str) -> str:
    """A short digest of the config text (a pod template annotation, so a change rolls the pods)."""
    return hashlib.sha256(text.encode()).hexdigest()


def config_map(name: str, namespace: str, text: str) -> dict[str, Any]:
    """The ConfigMap holding the config file (``text`` from :func:`config_yaml`)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ChildNames(name).config, "namespace": namespace, "labels": child_labels(name, "config")},
        "data": {CONFIG_KEY: text},
    }

"""spec.senders rendered: each sender's Secret key as a file in the worker pod, and the config section naming it.

The two halves live together so that the path a Secret is mounted at and the path the config names are the
same constant. Only the worker gets these files: the nightly job serves no webhooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from unsubscribe_sync.api.config import (
    MailgunConfig,
    MandrillConfig,
    PostmarkConfig,
    SendersConfig,
    SendGridConfig,
    SesConfig,
)
from unsubscribe_sync.api.spec import SecretKeyRef, UnsubscribeSyncSpec
from unsubscribe_sync.resources.volumes import Volume, secret_key_volume

SENDERS_DIR: Final = "/etc/unsubscribe-sync/senders"

# (sender, file name): one directory per sender, so each Secret is its own volume.
SENDGRID_KEY_FILE: Final = f"{SENDERS_DIR}/sendgrid/public-key"
MAILGUN_KEY_FILE: Final = f"{SENDERS_DIR}/mailgun/signing-key"
POSTMARK_AUTH_FILE: Final = f"{SENDERS_DIR}/postmark/basic-auth"
MANDRILL_KEY_FILE: Final = f"{SENDERS_DIR}/mandrill/webhook-key"
SES_CA_FILE: Final = f"{SENDERS_DIR}/ses/ca.crt"


def _mounts(spec: UnsubscribeSyncSpec) -> list[tuple[str, SecretKeyRef, str]]:
    """(volume name, Secret reference, file) of every configured sender secret."""
    senders = spec.senders
    if senders is None:
        return []
    found: list[tuple[str, SecretKeyRef, str]] = []
    if senders.sendgrid is not None:
        found.append(("sender-sendgrid", senders.sendgrid.publicKeySecretRef, SENDGRID_KEY_FILE))
    if senders.mailgun is not None:
        found.append(("sender-mailgun", senders.mailgun.signingKeySecretRef, MAILGUN_KEY_FILE))
    if senders.postmark is not None:
        found.append(("sender-postmark", senders.postmark.basicAuthSecretRef, POSTMARK_AUTH_FILE))
    if senders.mandrill is not None:
        found.append(("sender-mandrill", senders.mandrill.webhookKeySecretRef, MANDRILL_KEY_FILE))
    if senders.ses is not None and senders.ses.caSecretRef is not None:
        found.append(("sender-ses-ca", senders.ses.caSecretRef, SES_CA_FILE))
    return found


def sender_volumes(spec: UnsubscribeSyncSpec) -> list[Volume]:
    """The worker's volumes for the sender secrets (none without spec.senders)."""
    return [
        secret_key_volume(volume, ref.name, ref.key, file, str(Path(file).parent))
        for volume, ref, file in _mounts(spec)
    ]


def senders_config(spec: UnsubscribeSyncSpec) -> SendersConfig | None:
    """The config's senders section (file paths, never values), or None without spec.senders."""
    senders = spec.senders
    if senders is None:
        return None
    section: dict[str, object] = {}
    if senders.sendgrid is not None:
        section["sendgrid"] = SendGridConfig(publicKeyFile=Path(SENDGRID_KEY_FILE))
    if senders.mailgun is not None:
        section["mailgun"] = MailgunConfig(signingKeyFile=Path(MAILGUN_KEY_FILE))
    if senders.postmark is not None:
        section["postmark"] = PostmarkConfig(basicAuthFile=Path(POSTMARK_AUTH_FILE))
    if senders.mandrill is not None:
        section["mandrill"] = MandrillConfig(webhookKeyFile=Path(MANDRILL_KEY_FILE), url=senders.mandrill.url)
    if senders.ses is not None:
        ses: dict[str, object] = {"topicArns": list(senders.ses.topicArns)}
        if "certHostPattern" in senders.ses.model_fields_set:
            ses["certHostPattern"] = senders.ses.certHostPattern
        if senders.ses.caSecretRef is not None:
            ses["caFile"] = Path(SES_CA_FILE)
        section["ses"] = SesConfig.model_validate(ses)
    return SendersConfig.model_validate(section)

"""The Salesforce preflight: log in and describe the objects with the credentials Secret's data.

The Secret's data is written to a private temporary directory (0700, files 0600) for the connector,
which reads one file per key, and removed right after; it is never logged. Errors that mention the
temporary directory are rewritten to name the Secret instead.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from unsubscribe_sync.api.config import SalesforceConfig
from unsubscribe_sync.api.push_field import effective_push_target
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.controller.conditions import PreflightResult, Verdict
from unsubscribe_sync.logs import redact_text
from unsubscribe_sync.salesforce.types import AuthenticationError, ErrorClass, SalesforceError

_KEY = re.compile(r"^[A-Za-z0-9._-]+$")
CREDENTIAL_KEYS = ("client_id", "client_secret", "username", "private_key")


def _decode(data: Mapping[str, str]) -> dict[str, bytes]:
    decoded = {}
    for key, value in data.items():
        if key not in CREDENTIAL_KEYS or not _KEY.match(key):
            continue
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
    return decoded


def _clean(message: str, directory: str, secret: str) -> str:
    message = message.replace(f"in {directory}", f"in Secret {secret}").replace(directory, f"Secret {secret}")
    message = message.replace("missing or empty file", "missing or empty key")
    return redact_text(message)


def run_preflight(
    spec: UnsubscribeSyncSpec,
    secret_data: Mapping[str, str],
    secret: str,
    *,
    ca_file: Path | None = None,
    timeout: float = 20.0,
) -> PreflightResult:
    """Log in to Salesforce and check the effective push field on every configured object (blocking)."""
    from unsubscribe_sync.salesforce.client import SalesforceClient  # keeps requests & co out of import time

    target = effective_push_target(spec.optOutField.target, spec.nightlySync.enabled)
    with tempfile.TemporaryDirectory(prefix="usync-preflight-") as directory:
        os.chmod(directory, 0o700)
        for key, value in _decode(secret_data).items():
            path = Path(directory, key)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(value)
        cfg = SalesforceConfig(
            loginUrl=spec.salesforce.loginUrl,
            apiVersion=spec.salesforce.apiVersion,
            credentialsDir=Path(directory),
            caFile=ca_file,
            objects=list(spec.salesforce.objects),
            requestTimeoutSeconds=timeout,
        )
        try:
            client = SalesforceClient.from_config(cfg)
        except AuthenticationError as exc:
            message = _clean(str(exc), directory, secret)
            return PreflightResult(
                credentials=Verdict("False", "InvalidCredentials", message),
                field=Verdict("Unknown", "CredentialsInvalid", "cannot describe Salesforce objects"),
            )
        credentials: Verdict | None = None
        try:
            client.login()
            credentials = Verdict("True", "LoginSucceeded", f"logged in to {spec.salesforce.loginUrl}")
            report = client.check_fields(target, spec.optOutField.marketoSalesOptOutField or None, cfg.objects)
        except AuthenticationError as exc:
            return PreflightResult(
                credentials=Verdict("False", "AuthenticationFailed", _clean(str(exc), directory, secret)),
                field=Verdict("Unknown", "CredentialsInvalid", "cannot describe Salesforce objects"),
            )
        except SalesforceError as exc:
            message = _clean(str(exc), directory, secret)
            if exc.error_class is ErrorClass.CONFIGURATION:
                return PreflightResult(
                    credentials=Verdict("True", "LoginSucceeded", f"logged in to {spec.salesforce.loginUrl}"),
                    field=Verdict("False", "FieldNotInstalled", message),
                )
            unreachable = Verdict("Unknown", "SalesforceUnreachable", message)
            return PreflightResult(credentials=credentials or unreachable, field=unreachable)
        except OSError as exc:  # DNS, TLS, connection refused not wrapped by the connector
            unreachable = Verdict("Unknown", "SalesforceUnreachable", _clean(str(exc), directory, secret))
            return PreflightResult(credentials=credentials or unreachable, field=unreachable)
        finally:
            client.close()
    objects = ", ".join(cfg.objects)
    assert credentials is not None
    if report.ok and report.field:
        return PreflightResult(
            credentials=credentials,
            field=Verdict("True", "FieldInstalled", f"{report.field} is updateable on {objects}"),
            discovered_field=report.field,
        )
    problems = "; ".join(report.problems()) or f"no usable {target.value} field on {objects}"
    return PreflightResult(credentials=credentials, field=Verdict("False", "FieldNotInstalled", problems))

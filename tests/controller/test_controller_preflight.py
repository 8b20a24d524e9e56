"""The operator's Salesforce preflight (login + describe) against the sandbox."""

from __future__ import annotations

import base64
from typing import Any

from tests.fixtures.sandbox import SandboxHandle
from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
from unsubscribe_sync.controller.preflight import run_preflight

SECRET = "sales/acme-salesforce"


def spec(sandbox: SandboxHandle, **opt_out: Any) -> UnsubscribeSyncSpec:
    return UnsubscribeSyncSpec.model_validate(
        {
            "salesforce": {"loginUrl": sandbox.url, "credentialsSecretRef": {"name": "acme-salesforce"}},
            "pushWorker": {"webhookSecretRef": {"name": "acme-webhook"}},
            "optOutField": opt_out,
        }
    )


def data(**values: str) -> dict[str, str]:
    return {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}


def test_valid_client_credentials_and_standard_field(sandbox: SandboxHandle) -> None:
    secret = data(client_id=sandbox.client_id, client_secret=sandbox.client_secret)
    result = run_preflight(spec(sandbox), secret, SECRET, ca_file=sandbox.ca_file)
    assert (result.credentials.status, result.credentials.reason) == ("True", "LoginSucceeded")
    assert (result.field.status, result.field.reason) == ("True", "FieldInstalled")
    assert "HasOptedOutOfEmail" in result.field.message
    assert result.discovered_field == "HasOptedOutOfEmail"


def test_jwt_bearer_and_marketo_field_discovered_by_label(sandbox: SandboxHandle) -> None:
    secret = data(client_id=sandbox.client_id, username=sandbox.jwt_username, private_key=sandbox.jwt_private_key_pem)
    result = run_preflight(spec(sandbox, target="MarketoSalesOptOut"), secret, SECRET, ca_file=sandbox.ca_file)
    assert result.credentials.status == "True"
    assert result.field.status == "True", result.field.message
    assert result.discovered_field and result.discovered_field.endswith("__c")


def test_wrong_secret_is_an_authentication_failure_without_the_secret(sandbox: SandboxHandle) -> None:
    secret = data(client_id=sandbox.client_id, client_secret="not-the-secret-value")
    result = run_preflight(spec(sandbox), secret, SECRET, ca_file=sandbox.ca_file)
    assert (result.credentials.status, result.credentials.reason) == ("False", "AuthenticationFailed")
    assert result.field.status == "Unknown"
    assert "not-the-secret-value" not in result.credentials.message + result.field.message


def test_incomplete_secret_names_the_secret_and_the_missing_key(sandbox: SandboxHandle) -> None:
    result = run_preflight(spec(sandbox), data(client_id="abc"), SECRET, ca_file=sandbox.ca_file)
    assert (result.credentials.status, result.credentials.reason) == ("False", "InvalidCredentials")
    assert "Secret sales/acme-salesforce" in result.credentials.message
    assert "client_secret" in result.credentials.message
    assert "usync-preflight" not in result.credentials.message  # the private temp dir is not shown


def test_missing_marketo_field_names_the_object(sandbox: SandboxHandle) -> None:
    result_before = run_preflight(
        spec(sandbox, target="MarketoSalesOptOut"),
        data(client_id=sandbox.client_id, client_secret=sandbox.client_secret),
        SECRET,
        ca_file=sandbox.ca_file,
    )
    field = result_before.discovered_field
    assert field is not None
    sandbox.state.remove_field("Lead", field)
    result = run_preflight(
        spec(sandbox, target="MarketoSalesOptOut"),
        data(client_id=sandbox.client_id, client_secret=sandbox.client_secret),
        SECRET,
        ca_file=sandbox.ca_file,
    )
    assert result.credentials.status == "True"
    assert (result.field.status, result.field.reason) == ("False", "FieldNotInstalled")
    assert "Lead" in result.field.message


def test_unreachable_salesforce_is_unknown_not_false(sandbox: SandboxHandle) -> None:
    sandbox.state.set_unavailable(None)
    try:
        result = run_preflight(
            spec(sandbox),
            data(client_id=sandbox.client_id, client_secret=sandbox.client_secret),
            SECRET,
            ca_file=sandbox.ca_file,
            timeout=5,
        )
    finally:
        sandbox.state.clear_unavailable()
    assert result.field.status == "Unknown"
    assert result.field.reason == "SalesforceUnreachable"

"""Sandbox over real HTTPS: OAuth token endpoint, sessions, API versions, limits, outage and allowance faults."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fixtures.sandbox import SandboxApi, SandboxHandle

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SESSION_EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
NOT_FOUND = [{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]


def _token(sandbox: SandboxHandle, data: dict[str, str], **kwargs: Any) -> requests.Response:
    return sandbox.session().post(f"{sandbox.url}/services/oauth2/token", data=data, timeout=30, **kwargs)


def _assertion(sandbox: SandboxHandle, **overrides: Any) -> str:
    claims = {
        "iss": sandbox.client_id,
        "sub": sandbox.jwt_username,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 180,
    }
    key = overrides.pop("key", sandbox.jwt_private_key_pem)
    algorithm = overrides.pop("algorithm", "RS256")
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm)


# --------------------------------------------------------------------------- client credentials


def test_client_credentials_in_form_gives_a_working_token(sandbox: SandboxHandle) -> None:
    response = _token(
        sandbox,
        {"grant_type": "client_credentials", "client_id": sandbox.client_id, "client_secret": sandbox.client_secret},
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) >= {"access_token", "instance_url", "token_type", "issued_at", "id", "signature"}
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == sandbox.url
    assert body["issued_at"].isdigit()
    limits = sandbox.session().get(
        f"{sandbox.url}/services/data/v62.0/limits", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert limits.status_code == 200


def test_client_credentials_via_http_basic(sandbox: SandboxHandle) -> None:
    basic = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode()).decode()
    response = _token(sandbox, {"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"})
    assert response.status_code == 200
    assert response.json()["access_token"]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}, "invalid_client_id"),
        ({"grant_type": "client_credentials", "client_id": "{id}", "client_secret": "wrong"}, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "{id}"}, "invalid_client"),
        ({"grant_type": "password", "username": "u", "password": "p"}, "unsupported_grant_type"),
        ({}, "invalid_request"),  # no form body at all
    ],
)
def test_token_refusals(sandbox: SandboxHandle, data: dict[str, str], error: str) -> None:
    data = {k: v.replace("{id}", sandbox.client_id) for k, v in data.items()}
    response = _token(sandbox, data)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert sandbox.client_secret not in response.text


def test_token_needs_a_form_body(sandbox: SandboxHandle) -> None:
    response = sandbox.session().post(
        f"{sandbox.url}/services/oauth2/token",
        json={"grant_type": "client_credentials", "client_id": sandbox.client_id},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_token_calls_do_not_count_against_the_api_allowance(sandbox: SandboxHandle) -> None:
    sandbox.access_token()
    assert sandbox.state.api_usage == 0
    assert sandbox.state.call_counts()["token"] == 1


# --------------------------------------------------------------------------- JWT bearer


@pytest.mark.parametrize("audience", ["https://login.salesforce.com", "https://test.salesforce.com", "own"])
def test_jwt_bearer_with_accepted_audiences(sandbox: SandboxHandle, audience: str) -> None:
    aud = sandbox.url if audience == "own" else audience
    response = _token(sandbox, {"grant_type": JWT_GRANT, "assertion": _assertion(sandbox, aud=aud)})
    assert response.status_code == 200, response.text
    assert response.json()["instance_url"] == sandbox.url


def _other_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.mark.parametrize(
    ("overrides", "error", "description"),
    [
        ({"key": "other"}, "invalid_grant", "invalid assertion"),
        ({"aud": "https://evil.example.com"}, "invalid_grant", "audience is invalid"),
        ({"exp": int(time.time()) - 3600}, "invalid_grant", "expired"),
        ({"exp": None}, "invalid_grant", "exp"),
        ({"sub": "stranger@example.com"}, "invalid_grant", "user hasn't approved this consumer"),
        ({"iss": "unknown-client"}, "invalid_client_id", "client identifier invalid"),
        ({"key": "hmac", "algorithm": "HS256"}, "invalid_grant", "RS256"),
    ],
)
def test_jwt_bearer_refusals(sandbox: SandboxHandle, overrides: dict[str, Any], error: str, description: str) -> None:
    if overrides.get("key") == "other":
        overrides["key"] = _other_key()
    elif overrides.get("key") == "hmac":
        overrides["key"] = "a-shared-secret-that-is-long-enough-for-hs256"
    response = _token(sandbox, {"grant_type": JWT_GRANT, "assertion": _assertion(sandbox, **overrides)})
    assert response.status_code == 400
    assert response.json()["error"] == error
    assert description in response.json()["error_description"]


def test_jwt_bearer_garbage_assertion(sandbox: SandboxHandle) -> None:
    response = _token(sandbox, {"grant_type": JWT_GRANT, "assertion": "not.a.jwt"})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


# --------------------------------------------------------------------------- sessions


def test_calls_without_or_with_a_bad_token_get_401(sandbox: SandboxHandle) -> None:
    http = sandbox.session()
    url = f"{sandbox.url}/services/data/v62.0/limits"
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic abc"}):
        response = http.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json() == SESSION_EXPIRED
        assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_expire_sessions_invalidates_issued_tokens(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    assert sandbox_api.get("limits").status_code == 200
    assert sandbox.state.expire_sessions() == 1
    response = sandbox_api.get("limits")
    assert response.status_code == 401
    assert response.json() == SESSION_EXPIRED
    sandbox_api.token = sandbox.access_token()
    assert sandbox_api.get("limits").status_code == 200


def test_session_lifetime_applies_to_new_tokens(sandbox: SandboxHandle) -> None:
    sandbox.state.set_session_lifetime(0.2)
    api = sandbox.api()
    time.sleep(0.3)
    assert api.get("limits").status_code == 401


# --------------------------------------------------------------------------- versions, routing, limits


def test_unknown_api_version_or_resource_is_404_like_salesforce(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    http = sandbox.session()
    headers = {"Authorization": f"Bearer {sandbox_api.token}"}
    for path in ("v99.0/limits", "v62.5/limits", "62.0/limits", "v62.0/nothing/here", "v62.0/sobjects/Account/x/y"):
        response = http.get(f"{sandbox.url}/services/data/{path}", headers=headers)
        assert response.status_code == 404, path
        assert response.json() == NOT_FOUND


def test_method_not_allowed(sandbox_api: SandboxApi) -> None:
    response = sandbox_api.post("composite/sobjects", json={"records": []})
    assert response.status_code == 405
    assert response.json()[0]["errorCode"] == "METHOD_NOT_ALLOWED"


def test_versions_list_needs_no_token(sandbox: SandboxHandle) -> None:
    response = sandbox.session().get(f"{sandbox.url}/services/data")
    assert response.status_code == 200
    assert {"version": "62.0", "label": "v62.0", "url": "/services/data/v62.0"} in response.json()


def test_limits_and_the_usage_header_count_each_call(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.set_daily_api_limit(5000)
    first = sandbox_api.get("limits")
    second = sandbox_api.get("limits")
    assert first.headers["Sforce-Limit-Info"] == "api-usage=1/5000"
    assert second.headers["Sforce-Limit-Info"] == "api-usage=2/5000"
    assert second.json()["DailyApiRequests"] == {"Max": 5000, "Remaining": 4998}


def test_daily_allowance_exhausted_gives_request_limit_exceeded(
    sandbox_api: SandboxApi, sandbox: SandboxHandle
) -> None:
    sandbox.state.set_daily_api_limit(3, used=2)
    assert sandbox_api.get("limits").status_code == 200
    response = sandbox_api.get("limits")
    assert response.status_code == 403
    assert response.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert response.headers["Sforce-Limit-Info"] == "api-usage=3/3"


def test_request_limit_fault_toggles(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.set_request_limit_exceeded(True)
    assert sandbox_api.get("limits").status_code == 403
    sandbox.state.set_request_limit_exceeded(False)
    assert sandbox_api.get("limits").status_code == 200


def test_outage_window_answers_503_until_cleared(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.set_unavailable(None)
    response = sandbox_api.get("query", params={"q": "SELECT Id FROM Contact"})
    assert response.status_code == 503
    assert response.json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sandbox.access_token()  # the login endpoint stays up
    sandbox.state.clear_unavailable()
    assert sandbox_api.get("limits").status_code == 200


def test_outage_window_ends_by_itself(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.set_unavailable(0.2)
    assert sandbox_api.get("limits").status_code == 503
    time.sleep(0.3)
    assert sandbox_api.get("limits").status_code == 200


def test_latency_delays_every_answer(sandbox_api: SandboxApi, sandbox: SandboxHandle) -> None:
    sandbox.state.set_latency(400)
    with pytest.raises(requests.exceptions.ReadTimeout):
        sandbox_api.http.get(
            f"{sandbox_api.base}limits",
            headers={"Authorization": f"Bearer {sandbox_api.token}"},
            verify=str(sandbox.ca_file),
            timeout=0.1,
        )
    sandbox.state.set_latency(0)
    assert sandbox_api.get("limits").status_code == 200


def test_jwt_credentials_files_work_like_a_mounted_secret(sandbox: SandboxHandle, tmp_path: Path) -> None:
    directory = sandbox.write_credentials(tmp_path / "jwt", grant="jwt")
    assert sorted(p.name for p in directory.iterdir()) == ["client_id", "private_key", "username"]
    key = (directory / "private_key").read_text()
    claims = {
        "iss": (directory / "client_id").read_text(),
        "sub": (directory / "username").read_text(),
        "aud": sandbox.url,
        "exp": int(time.time()) + 120,
    }
    response = _token(sandbox, {"grant_type": JWT_GRANT, "assertion": jwt.encode(claims, key, algorithm="RS256")})
    assert response.status_code == 200
    with pytest.raises(ValueError, match="grant"):
        sandbox.write_credentials(tmp_path / "other", grant="password")


def test_paths_outside_the_api_are_404_in_salesforce_shape(sandbox: SandboxHandle) -> None:
    response = sandbox.session().get(f"{sandbox.url}/services/apexrest/whatever")
    assert response.status_code == 404
    assert response.json() == NOT_FOUND

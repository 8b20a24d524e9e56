"""Credentials files and the JWT assertion (no server needed)."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from unsubscribe_sync.salesforce.auth import (
    ClientCredentials,
    JwtBearerCredentials,
    jwt_assertion,
    jwt_audience,
    read_credentials,
    token_request_form,
)
from unsubscribe_sync.salesforce.types import AuthenticationError

SECRET = "canary-client-secret-5b1f"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(directory: Path, **files: str) -> Path:
    directory.mkdir(exist_ok=True)
    for name, value in files.items():
        (directory / name).write_text(value)
    return directory


def test_client_credentials_files(tmp_path: Path) -> None:
    creds = read_credentials(_write(tmp_path / "c", client_id="cid\n", client_secret=SECRET + "\n"))
    assert creds == ClientCredentials("cid", SECRET)
    assert SECRET not in repr(creds)


def test_jwt_files(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    pem = _pem(rsa_key)
    creds = read_credentials(_write(tmp_path / "j", client_id="cid", username="api@example.com", private_key=pem))
    assert isinstance(creds, JwtBearerCredentials)
    assert creds.username == "api@example.com"
    assert "PRIVATE KEY" not in repr(creds)


@pytest.mark.parametrize(
    ("files", "missing"),
    [
        ({}, "client_id"),
        ({"client_secret": SECRET}, "client_id"),
        ({"client_id": "cid"}, "client_secret"),
        ({"client_id": "cid", "username": "u"}, "private_key"),
        ({"client_id": "cid", "private_key": "pem"}, "username"),
        ({"client_id": "cid", "client_secret": "  \n"}, "client_secret"),
    ],
)
def test_missing_file_is_named(tmp_path: Path, files: dict[str, str], missing: str) -> None:
    directory = _write(tmp_path / "x", **files)
    with pytest.raises(AuthenticationError, match=f"missing or empty file {missing}") as info:
        read_credentials(directory)
    assert SECRET not in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(AuthenticationError, match="does not exist"):
        read_credentials(tmp_path / "nope")


def test_jwt_assertion_claims(rsa_key: rsa.RSAPrivateKey) -> None:
    creds = JwtBearerCredentials("cid", "api@example.com", _pem(rsa_key))
    token = jwt_assertion(creds, "https://login.example.test", now=1_000_000)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    claims = jwt.decode(
        token,
        rsa_key.public_key(),
        algorithms=["RS256"],
        audience="https://login.example.test",
        options={"verify_exp": False},
    )
    assert claims == {"iss": "cid", "sub": "api@example.com", "aud": "https://login.example.test", "exp": 1_000_180}


@pytest.mark.parametrize(
    ("login_url", "configured", "audience"),
    [
        ("https://login.salesforce.com", None, "https://login.salesforce.com"),
        ("https://test.salesforce.com/", None, "https://test.salesforce.com"),
        ("https://acme.my.salesforce.com", None, "https://login.salesforce.com"),
        ("https://acme--uat.sandbox.my.salesforce.com", None, "https://test.salesforce.com"),
        ("https://127.0.0.1:8443", None, "https://127.0.0.1:8443"),
        ("https://acme.my.salesforce.com", "https://acme.my.site.com/", "https://acme.my.site.com"),
    ],
)
def test_jwt_audience_is_the_authorization_server(
    rsa_key: rsa.RSAPrivateKey, login_url: str, configured: str | None, audience: str
) -> None:
    assert jwt_audience(login_url, configured) == audience
    form = token_request_form(JwtBearerCredentials("cid", "u", _pem(rsa_key)), login_url, audience=configured)
    assert jwt.decode(form["assertion"], options={"verify_signature": False})["aud"] == audience


def test_token_form_audience_is_the_login_url(rsa_key: rsa.RSAPrivateKey) -> None:
    creds = JwtBearerCredentials("cid", "u", _pem(rsa_key))
    form = token_request_form(creds, "https://login.example.test/")
    assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
    assert jwt.decode(form["assertion"], options={"verify_signature": False})["aud"] == "https://login.example.test"
    assert token_request_form(ClientCredentials("cid", SECRET), "https://x") == {
        "grant_type": "client_credentials",
        "client_id": "cid",
        "client_secret": SECRET,
    }


def test_bad_private_keys_are_refused_without_echoing_them() -> None:
    garbage = "-----BEGIN PRIVATE KEY-----\ncanaryGARBAGE\n-----END PRIVATE KEY-----\n"
    with pytest.raises(AuthenticationError, match="not an unencrypted PEM private key") as info:
        jwt_assertion(JwtBearerCredentials("cid", "u", garbage), "https://x")
    assert "canaryGARBAGE" not in str(info.value)
    ec_pem = _pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(AuthenticationError, match="must be an RSA key"):
        jwt_assertion(JwtBearerCredentials("cid", "u", ec_pem), "https://x")

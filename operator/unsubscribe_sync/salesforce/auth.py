"""Salesforce OAuth 2.0: credentials from files, the token exchange, and a thread-safe token cache.

Two grants (the SOAP / password login is being retired and is not supported):
- client credentials: files ``client_id`` + ``client_secret``;
- JWT bearer (RS256): files ``client_id`` + ``username`` + ``private_key``; the assertion has
  iss = client id, sub = username, aud = the authorization server (see ``jwt_audience``), exp a few
  minutes ahead.

Errors name files and Salesforce error codes, never the values of secrets or tokens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.salesforce.transport import DeadlineExceeded
from unsubscribe_sync.salesforce.types import AuthenticationError, ErrorClass, SalesforceCallError

log = get_logger(__name__)

TOKEN_PATH = "/services/oauth2/token"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
JWT_LIFETIME_SECONDS = 180

OnRequest = Callable[[str, str], None]


@dataclass(frozen=True)
class ClientCredentials:
    """OAuth 2.0 client credentials grant."""

    client_id: str
    client_secret: str = field(repr=False)

    grant = "client_credentials"

    def secrets(self) -> tuple[str, ...]:
        return (self.client_secret,)


@dataclass(frozen=True)
class JwtBearerCredentials:
    """OAuth 2.0 JWT bearer grant (RS256)."""

    client_id: str
    username: str
    private_key: str = field(repr=False)

    grant = "jwt_bearer"

    def secrets(self) -> tuple[str, ...]:
        return (self.private_key,)


Credentials = ClientCredentials | JwtBearerCredentials


@dataclass(frozen=True)
class Token:
    """An access token and the instance it is valid for."""

    access_token: str = field(repr=False)
    instance_url: str
    obtained_at: float


def _read(directory: Path, name: str, *, strip: bool = True) -> str | None:
    path = directory / name
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AuthenticationError(
            f"salesforce credentials: cannot read file {name} in {directory}: {exc.strerror}"
        ) from None
    value = text.strip() if strip else text
    return value or None


def read_credentials(directory: Path | str) -> Credentials:
    """Credentials from one-file-per-key ``directory`` (a mounted Secret); errors name the missing file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AuthenticationError(f"salesforce credentials: directory {directory} does not exist")
    client_id = _read(directory, "client_id")
    if client_id is None:
        raise AuthenticationError(f"salesforce credentials: missing or empty file client_id in {directory}")
    client_secret = _read(directory, "client_secret")
    if client_secret is not None:
        return ClientCredentials(client_id=client_id, client_secret=client_secret)
    username = _read(directory, "username")
    private_key = _read(directory, "private_key")
    if username is not None and private_key is not None:
        return JwtBearerCredentials(client_id=client_id, username=username, private_key=private_key)
    if username is not None:
        missing = "private_key"
    elif private_key is not None:
        missing = "username"
    else:
        missing = "client_secret (client credentials grant), or username + private_key (JWT bearer grant)"
    raise AuthenticationError(f"salesforce credentials: missing or empty file {missing} in {directory}")


def _load_rsa_key(pem: str) -> RSAPrivateKey:
    try:
        key = load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise AuthenticationError("salesforce credentials: private_key is not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise AuthenticationError("salesforce credentials: private_key must be an RSA key (RS256)")
    return key


def jwt_assertion(creds: JwtBearerCredentials, audience: str, now: float | None = None) -> str:
    """The signed RS256 assertion for the JWT bearer grant."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": creds.client_id, "sub": creds.username, "aud": audience, "exp": issued + JWT_LIFETIME_SECONDS}
    return jwt.encode(claims, _load_rsa_key(creds.private_key), algorithm="RS256")


def jwt_audience(login_url: str, configured: str | None = None) -> str:
    """The ``aud`` claim of the JWT bearer assertion.

    Salesforce expects the authorization server, not the My Domain host: https://login.salesforce.com for
    production orgs, https://test.salesforce.com for sandboxes (``*.sandbox.my.salesforce.com``). Any other
    login URL (an Experience Cloud site, a local sandbox server) is its own audience. ``configured``
    (config key ``salesforce.jwtAudience``) wins when set.
    """
    if configured:
        return configured.rstrip("/")
    host = (urlsplit(login_url).hostname or "").lower()
    if host in ("login.salesforce.com", "test.salesforce.com"):
        return f"https://{host}"
    if host.endswith(".sandbox.my.salesforce.com"):
        return "https://test.salesforce.com"
    if host.endswith(".my.salesforce.com"):
        return "https://login.salesforce.com"
    return login_url.rstrip("/")


def token_request_form(
    creds: Credentials, login_url: str, now: float | None = None, *, audience: str | None = None
) -> dict[str, str]:
    """The form body of the token request for ``creds`` (holds secrets: never log it)."""
    if isinstance(creds, ClientCredentials):
        return {"grant_type": "client_credentials", "client_id": creds.client_id, "client_secret": creds.client_secret}
    return {"grant_type": JWT_GRANT, "assertion": jwt_assertion(creds, jwt_audience(login_url, audience), now)}


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text


class TokenProvider:
    """Owns the access token: fetches it on first use, caches it, renews it on demand (thread-safe)."""

    def __init__(
        self,
        login_url: str,
        credentials: Credentials,
        session: requests.Session,
        *,
        on_request: OnRequest | None = None,
        jwt_audience: str | None = None,
    ) -> None:
        self.login_url = login_url.rstrip("/")
        self.jwt_audience = jwt_audience
        self.credentials = credentials
        self._session = session
        self._on_request = on_request
        self._lock = threading.Lock()
        self._token: Token | None = None
        self.exchanges = 0  # token requests made (successful or not)

    @property
    def grant(self) -> str:
        return self.credentials.grant

    def token(self) -> Token:
        """The cached token, fetched when there is none."""
        current = self._token
        if current is not None:
            return current
        with self._lock:
            if self._token is None:
                self._token = self._exchange()
            return self._token

    def renew(self, stale: Token | None) -> Token:
        """A fresh token after ``stale`` was refused; threads that saw the same stale token share one exchange."""
        with self._lock:
            if stale is not None and self._token is not None and self._token is not stale:
                return self._token
            self._token = None
            self._token = self._exchange()
            return self._token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _report(self, status: str) -> None:
        if self._on_request is not None:
            self._on_request("token", status)

    def _exchange(self) -> Token:
        url = self.login_url + TOKEN_PATH
        secrets = self.credentials.secrets()
        form = token_request_form(self.credentials, self.login_url, audience=self.jwt_audience)
        self.exchanges += 1
        try:
            # Never follow a redirect: a 307/308 would post the secret or the assertion to whatever host the
            # Location names. Only the configured login URL ever sees them.
            response = self._session.post(url, data=form, headers={"Accept": "application/json"}, allow_redirects=False)
        except DeadlineExceeded as exc:
            self._report("error")
            raise SalesforceCallError(
                f"token request to {url} failed: {exc}", error_class=ErrorClass.TRANSIENT
            ) from None
        except requests.RequestException as exc:
            self._report("error")
            hint = (
                " (TLS verification failed: check salesforce.caFile)"
                if isinstance(exc, requests.exceptions.SSLError)
                else ""
            )
            raise SalesforceCallError(
                f"token request to {url} failed: {type(exc).__name__}{hint}", error_class=ErrorClass.TRANSIENT
            ) from None
        self._report(str(response.status_code))
        if response.is_redirect:
            target = urlsplit(response.headers.get("Location", "")).hostname or "an unnamed host"
            raise AuthenticationError(
                f"token request to {url} answered HTTP {response.status_code}, a redirect to {target}; credentials "
                "are sent only to salesforce.loginUrl: set it to the URL that answers the token request",
                status=response.status_code,
            )
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
            instance_url = str(body.get("instance_url") or self.login_url).rstrip("/")
            log.info("salesforce.token_obtained", grant=self.grant, instance_url=instance_url)
            return Token(access_token=str(body["access_token"]), instance_url=instance_url, obtained_at=time.time())
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise SalesforceCallError(
                f"token request to {url} failed: HTTP {response.status_code}",
                error_class=ErrorClass.TRANSIENT if response.status_code != 429 else ErrorClass.RATE_LIMITED,
                status=response.status_code,
            )
        code = str(body.get("error")) if isinstance(body, dict) and body.get("error") else None
        description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
        detail = f"{code}: {description}" if description else (code or "no error code in the answer")
        raise AuthenticationError(
            _scrub(
                f"Salesforce refused the {self.grant} token request for client_id {self.credentials.client_id} "
                f"(HTTP {response.status_code}, {detail})",
                secrets,
            ),
            error_code=code,
            status=response.status_code,
        )

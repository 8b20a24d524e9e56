"""Connected apps, the OAuth 2.0 token flows (client credentials, JWT bearer), and access-token sessions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import jwt

from .errors import invalid_session
from .schema import USER_ID

JWT_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
ORG_ID = "00DRx0000000001EAA"


class TokenError(Exception):
    """The token endpoint refuses: HTTP 400 {"error", "error_description"}."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass
class ConnectedApp:
    client_id: str
    client_secret: str | None = None  # client credentials flow
    public_key_pem: str | None = None  # JWT bearer flow: the certificate's public key
    usernames: set[str] = field(default_factory=set)  # users pre-authorised for the JWT flow
    run_as: str = "integration@sandbox.example"  # client credentials flow's execution user


@dataclass
class Session:
    token: str
    client_id: str
    username: str
    issued_at: float
    expires_at: float


class Authority:
    """Registered connected apps and the sessions their tokens open. Not thread-safe: the state locks."""

    def __init__(self, session_lifetime_s: float) -> None:
        self.apps: dict[str, ConnectedApp] = {}
        self.sessions: dict[str, Session] = {}
        self.session_lifetime_s = session_lifetime_s

    def register(
        self,
        client_id: str,
        client_secret: str | None = None,
        public_key_pem: str | None = None,
        usernames: Iterable[str] = (),
    ) -> ConnectedApp:
        app = ConnectedApp(client_id, client_secret, public_key_pem, set(usernames))
        self.apps[client_id] = app
        return app

    def _open_session(self, app: ConnectedApp, username: str) -> Session:
        now = time.time()
        if len(self.sessions) >= 1000:  # long runs with short lifetimes: forget expired sessions
            self.sessions = {t: s for t, s in self.sessions.items() if s.expires_at > now}
        token = f"{ORG_ID[:15]}!AQ" + secrets.token_urlsafe(72).replace("-", ".")
        session = Session(token, app.client_id, username, now, now + self.session_lifetime_s)
        self.sessions[token] = session
        return session

    @staticmethod
    def _token_response(session: Session, instance_url: str, secret: str | None) -> dict[str, Any]:
        issued_at = str(int(session.issued_at * 1000))
        identity = f"{instance_url}/id/{ORG_ID}/{USER_ID}"
        key = (secret or session.client_id).encode()
        signature = base64.b64encode(hmac.new(key, (identity + issued_at).encode(), hashlib.sha256).digest()).decode()
        return {
            "access_token": session.token,
            "signature": signature,
            "scope": "api",
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
        }

    def client_credentials(self, client_id: str, client_secret: str, instance_url: str) -> dict[str, Any]:
        app = self.apps.get(client_id)
        if app is None or app.client_secret is None:  # Salesforce's answer for an id it does not know
            raise TokenError("invalid_client_id", "client identifier invalid")
        if not hmac.compare_digest(app.client_secret.encode(), client_secret.encode()):
            raise TokenError("invalid_client", "invalid client credentials")
        return self._token_response(self._open_session(app, app.run_as), instance_url, app.client_secret)

    def jwt_bearer(self, assertion: str, instance_url: str) -> dict[str, Any]:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise TokenError("invalid_grant", "invalid assertion") from exc
        if header.get("alg") != "RS256":
            raise TokenError("invalid_grant", "invalid assertion: the signing algorithm must be RS256")
        app = self.apps.get(str(unverified.get("iss", "")))
        if app is None or app.public_key_pem is None:
            raise TokenError("invalid_client_id", "client identifier invalid")
        audiences = [*JWT_AUDIENCES, instance_url]
        try:
            claims = jwt.decode(
                assertion,
                key=app.public_key_pem,
                algorithms=["RS256"],
                audience=[a for aud in audiences for a in (aud, aud + "/")],
                options={"require": ["iss", "sub", "aud", "exp"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenError("invalid_grant", "expired assertion: exp is in the past") from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError("invalid_grant", "audience is invalid") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("invalid_grant", f"invalid assertion: missing claim {exc.claim}") from exc
        except jwt.PyJWTError as exc:
            raise TokenError("invalid_grant", "invalid assertion") from exc
        # No upper bound on exp: production accepts an exp far ahead, even one in milliseconds (the sf CLI's).
        username = str(claims["sub"])
        if username not in app.usernames:
            raise TokenError("invalid_grant", "user hasn't approved this consumer")
        return self._token_response(self._open_session(app, username), instance_url, app.client_secret)

    def identity(self, session: Session, base_url: str, version: str | None) -> dict[str, Any]:
        """The identity URL's answer (`GET /id/{org}/{user}`): who the token belongs to and the API URLs, with
        `{version}` left in them unless a version was asked for."""
        v = version or "{version}"
        data = f"{base_url}/services/data/v{v}"
        user = session.username
        return {
            "id": f"{base_url}/id/{ORG_ID}/{USER_ID}",
            "asserted_user": True,
            "user_id": USER_ID,
            "organization_id": ORG_ID,
            "username": user,
            "nick_name": user.split("@")[0],
            "display_name": "Sandbox Integration",
            "email": user,
            "email_verified": True,
            "first_name": "Sandbox",
            "last_name": "Integration",
            "timezone": "GMT",
            "photos": {
                "picture": f"{base_url}/img/userprofile/default_profile_200_v2.png",
                "thumbnail": f"{base_url}/img/userprofile/default_profile_45_v2.png",
            },
            "addr_street": None, "addr_city": None, "addr_state": None, "addr_country": None, "addr_zip": None,
            "mobile_phone": None,
            "mobile_phone_verified": False,
            "is_lightning_login_user": False,
            "status": {"created_date": None, "body": None},
            "urls": {
                "enterprise": f"{base_url}/services/Soap/c/{v}/{ORG_ID[:15]}",
                "metadata": f"{base_url}/services/Soap/m/{v}/{ORG_ID[:15]}",
                "partner": f"{base_url}/services/Soap/u/{v}/{ORG_ID[:15]}",
                "rest": f"{data}/",
                "sobjects": f"{data}/sobjects/",
                "search": f"{data}/search/",
                "query": f"{data}/query/",
                "recent": f"{data}/recent/",
                "tooling_soap": f"{base_url}/services/Soap/T/{v}/{ORG_ID[:15]}",
                "tooling_rest": f"{data}/tooling/",
                "profile": f"{base_url}/{USER_ID}",
                "feeds": f"{data}/chatter/feeds",
                "groups": f"{data}/chatter/groups",
                "users": f"{data}/chatter/users",
                "feed_items": f"{data}/chatter/feed-items",
                "feed_elements": f"{data}/chatter/feed-elements",
                "custom_domain": base_url,
            },
            "active": True,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "last_modified_date": "2026-01-01T00:00:00Z",
            "is_app_installed": True,
        }  # fmt: skip

    def userinfo(self, session: Session, base_url: str) -> dict[str, Any]:
        """OpenID Connect UserInfo (`/services/oauth2/userinfo`), built from the same identity."""
        identity = self.identity(session, base_url, None)
        return {
            "sub": identity["id"],
            "user_id": USER_ID,
            "organization_id": ORG_ID,
            "preferred_username": session.username,
            "nickname": identity["nick_name"],
            "name": identity["display_name"],
            "email": identity["email"],
            "email_verified": True,
            "given_name": identity["first_name"],
            "family_name": identity["last_name"],
            "zoneinfo": "GMT",
            "photos": identity["photos"],
            "profile": identity["urls"]["profile"],
            "picture": identity["photos"]["picture"],
            "address": {},
            "is_salesforce_integration_user": False,
            "urls": identity["urls"],
            "active": True,
            "user_type": "STANDARD",
            "language": "en_US",
            "locale": "en_US",
            "utcOffset": 0,
            "updated_at": "2026-01-01T00:00:00Z",
            "is_app_installed": True,
        }

    def session_of(self, token: str | None) -> Session | None:
        """The live session of a token, or None (identity and userinfo answer 403 Bad_OAuth_Token then)."""
        session = self.sessions.get(token or "")
        return session if session is not None and session.expires_at > time.time() else None

    def authenticate(self, token: str | None) -> Session:
        session = self.sessions.get(token or "")
        if session is None or session.expires_at <= time.time():
            raise invalid_session()
        return session

    def expire_all(self) -> int:
        count = len(self.sessions)
        self.sessions.clear()
        return count

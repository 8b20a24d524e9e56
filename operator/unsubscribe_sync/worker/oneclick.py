"""RFC 8058 one-click unsubscribe links: tokens that carry the address, signed with HMAC-SHA256.

A token is ``<payload>.<tag>``, both base64url without padding: the payload is compact JSON (``e`` address,
``i`` Salesforce ID, ``s`` source, ``t`` issue time in epoch seconds) and the tag is the full 256-bit
HMAC-SHA256 of the payload text under the first key of ``oneClick.keyFile``. Any key of the file verifies, so a
new key goes first and the old one stays below it until its links no longer matter. Nothing is stored per link;
a link never expires unless ``oneClick.maxAgeDays`` says so (CAN-SPAM asks for at least 30 days).

The payload is encoded, not encrypted: the address is visible to whoever holds the link, which is the mailbox
it was sent to. The event id is a digest of the payload, so the mail client's POST, a retry and the confirm form
are stored once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from unsubscribe_sync.api.config import ConfigError, OneClickConfig
from unsubscribe_sync.worker.secret_files import SecretFile, require_lines
from unsubscribe_sync.worker.senders import SenderEvent

MIN_KEY_LENGTH = 32
MAX_TOKEN_LENGTH = 2048
SOURCE_ONE_CLICK = "one-click"
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"
_DOMAIN = b"unsubscribe-sync one-click v1\n"  # keeps these tags apart from any other use of the same key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: str, payload: str) -> bytes:
    return hmac.new(key.encode(), _DOMAIN + payload.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Link:
    """What a valid token says."""

    email: str
    salesforce_id: str | None
    source: str | None
    issued_at: int
    payload: str

    def event(self) -> SenderEvent:
        digest = hashlib.sha256(self.payload.encode()).hexdigest()[:32]
        return SenderEvent(email=self.email, source=self.source or SOURCE_ONE_CLICK, event_id=f"one-click:{digest}")


def sign(keys: Sequence[str], email: str, salesforce_id: str | None, source: str | None, now: float) -> str:
    """A token for one recipient, signed with the first key."""
    if not keys:
        raise ValueError("no one-click key to sign with")
    body: dict[str, Any] = {"e": email, "t": int(now)}
    if salesforce_id:
        body["i"] = salesforce_id
    if source:
        body["s"] = source
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_b64(_tag(keys[0], payload))}"


def verify(keys: Sequence[str], token: str, now: float, max_age_days: int | None) -> Link | None:
    """The link a token stands for, or None when it is malformed, signed by no listed key, or too old."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        return None
    payload, _, tag_text = token.partition(".")
    try:
        tag = _unb64(tag_text)
    except (binascii.Error, ValueError):
        return None
    if len(tag) != hashlib.sha256().digest_size:
        return None
    matched = False
    for key in keys:  # every key is tried, so the time taken does not tell which one matched
        matched |= hmac.compare_digest(tag, _tag(key, payload))
    if not matched:
        return None
    try:
        body = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict) or not isinstance(body.get("e"), str) or not isinstance(body.get("t"), int):
        return None
    if max_age_days is not None and now - body["t"] > max_age_days * 86400:
        return None
    salesforce_id, source = body.get("i"), body.get("s")
    return Link(
        email=body["e"],
        salesforce_id=salesforce_id if isinstance(salesforce_id, str) else None,
        source=source if isinstance(source, str) else None,
        issued_at=body["t"],
        payload=payload,
    )


class OneClickLinks:
    """Signing and checking links with the keys of ``oneClick.keyFile`` (re-read when the Secret rotates)."""

    def __init__(self, keys: SecretFile, base_url: str | None, max_age_days: int | None = None) -> None:
        self._keys = require_lines(keys, min_length=MIN_KEY_LENGTH)
        if not self._keys.lines():
            raise ConfigError(f"{keys.key}: no key in the file")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.max_age_days = max_age_days

    @classmethod
    def from_config(cls, config: OneClickConfig) -> OneClickLinks | None:
        if config.keyFile is None:
            return None
        return cls(SecretFile("oneClick.keyFile", config.keyFile), config.baseUrl, config.maxAgeDays)

    def _usable_keys(self) -> list[str]:
        return [key for key in self._keys.lines() if len(key) >= MIN_KEY_LENGTH]

    def link(self, email: str, salesforce_id: str | None, source: str | None, now: float) -> dict[str, str]:
        """The ``links[]`` entry of ``POST /v1/unsubscribe-links`` (and of ``unsubscribe-sync link``)."""
        if self.base_url is None:
            raise ConfigError("oneClick.baseUrl: needed to make links (spec.publicEndpoint.baseUrl in the cluster)")
        keys = self._usable_keys()
        if not keys:
            raise ConfigError("oneClick.keyFile: the file holds no key now")
        url = f"{self.base_url}/u/{sign(keys, email, salesforce_id, source, now)}"
        return {"email": email, "url": url, "listUnsubscribe": f"<{url}>", "listUnsubscribePost": LIST_UNSUBSCRIBE_POST}

    def verify(self, token: str, now: float) -> Link | None:
        return verify(self._usable_keys(), token, now, self.max_age_days)


ONE_CLICK: web.AppKey[OneClickLinks] = web.AppKey("one_click", OneClickLinks)


def masked(email: str) -> str:
    """The address as the confirm page shows it: first character of the local part, the domain (``a***@x.org``)."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


_STYLE = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}"


def _html(title: str, content: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{content}</body></html>"
    )


def confirm_page(email: str) -> str:
    """The GET answer: names the masked address and POSTs the same URL (no script, nothing stored)."""
    return _html(
        "Unsubscribe",
        f"<h1>Unsubscribe</h1><p>Stop emails to <strong>{html.escape(masked(email))}</strong>?</p>"
        f'<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
        f'<button type="submit">Unsubscribe</button></form>',
    )


def done_page() -> str:
    return _html("Unsubscribed", "<h1>You are unsubscribed</h1><p>You will not get these emails any more.</p>")


def not_found_page() -> str:
    return _html("Link not valid", "<h1>This link is not valid</h1><p>Use the unsubscribe link of a recent email.</p>")

"""Mailgun webhooks: hex HMAC-SHA256 of ``timestamp`` + ``token`` under the HTTP webhook signing key.

The signature travels in the JSON body (``signature.timestamp``, ``.token``, ``.signature``), not in a header; a
timestamp more than 15 minutes away from now is refused (replays). ``event-data.event`` ``unsubscribed`` and
``complained`` are unsubscribes of ``event-data.recipient``; every other event is ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from unsubscribe_sync.worker.secret_files import SecretFile
from unsubscribe_sync.worker.senders import Malformed, SenderBatch, SenderEvent, Unauthorized, epoch_of, same

MAX_SKEW_SECONDS = 15 * 60
UNSUBSCRIBE_EVENTS = frozenset({"unsubscribed", "complained"})


def expected_signature(key: str, timestamp: str, token: str) -> str:
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def events_of(event: Any) -> SenderBatch:
    """The unsubscribe in one Mailgun ``event-data`` object (Mailgun posts one event a request)."""
    if not isinstance(event, dict):
        raise Malformed("event-data must be a JSON object")
    kind = event.get("event")
    if kind not in UNSUBSCRIBE_EVENTS:
        return SenderBatch(ignored=1)
    recipient = event.get("recipient")
    if not isinstance(recipient, str):
        raise Malformed(f"an {kind} event has no recipient")
    event_id = event.get("id")
    return SenderBatch(
        events=[
            SenderEvent(
                email=recipient,
                source=f"mailgun:{kind}",
                event_id=f"mailgun:{event_id}" if isinstance(event_id, str) and event_id else None,
                occurred_at=epoch_of(event.get("timestamp")),
            )
        ]
    )


class Mailgun:
    name = "mailgun"

    def __init__(self, key_file: SecretFile) -> None:
        self._key = key_file

    async def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> SenderBatch:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            data = None
        signature = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(signature, dict):
            raise Unauthorized("the request is not signed")
        timestamp, token, presented = (signature.get(k) for k in ("timestamp", "token", "signature"))
        key = self._key.value
        if not (isinstance(timestamp, str | int) and isinstance(token, str) and isinstance(presented, str) and key):
            raise Unauthorized("the request is not signed")
        if not same(presented.lower(), expected_signature(key, str(timestamp), token)):
            raise Unauthorized("the signature does not match")
        sent = epoch_of(timestamp)
        if sent is None or abs(now - sent) > MAX_SKEW_SECONDS:
            raise Unauthorized("the signature timestamp is stale")
        assert isinstance(data, dict)
        return events_of(data.get("event-data"))

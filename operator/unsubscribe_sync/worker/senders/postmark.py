"""Postmark webhooks, authenticated by the HTTP basic auth put in the webhook URL (``https://user:pass@host/...``).

Postmark signs nothing; the credentials of ``senders.postmark.basicAuthFile`` are compared in constant time.
``SubscriptionChange`` with ``SuppressSending: true`` is an unsubscribe of ``Recipient`` at ``ChangedAt``; with
``false`` (a reactivation) it is ignored: a resubscribe stays an explicit act (``POST /v1/resubscribes``).
``SpamComplaint`` is an unsubscribe of ``Email``. Postmark gives these records no event id, so one is derived
from the record's content.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from unsubscribe_sync.worker.secret_files import SecretFile
from unsubscribe_sync.worker.senders import (
    Malformed,
    SenderBatch,
    SenderEvent,
    Unauthorized,
    content_id,
    epoch_of,
    same,
)


def presented_credentials(header: str | None) -> str | None:
    """``user:password`` from an ``Authorization: Basic ...`` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def events_of(record: Any) -> SenderBatch:
    if not isinstance(record, dict):
        raise Malformed("the body must be a JSON object")
    kind = record.get("RecordType")
    if kind == "SubscriptionChange":
        if record.get("SuppressSending") is not True:
            return SenderBatch(ignored=1)
        recipient, changed_at = record.get("Recipient"), record.get("ChangedAt")
        if not isinstance(recipient, str):
            raise Malformed("a SubscriptionChange record has no Recipient")
        reason = record.get("SuppressionReason") or "Suppressed"
        event_id = content_id("postmark", kind, record.get("MessageStream"), recipient, changed_at, reason)
        return SenderBatch(events=[SenderEvent(recipient, f"postmark:{reason}", event_id, epoch_of(changed_at))])
    if kind == "SpamComplaint":
        email = record.get("Email")
        if not isinstance(email, str):
            raise Malformed("a SpamComplaint record has no Email")
        record_id = record.get("ID")
        event_id = f"postmark:spam:{record_id}" if record_id is not None else content_id("postmark", kind, email)
        at = epoch_of(record.get("BouncedAt"))
        return SenderBatch(events=[SenderEvent(email, "postmark:SpamComplaint", event_id, at)])
    return SenderBatch(ignored=1)


class Postmark:
    name = "postmark"

    def __init__(self, credentials_file: SecretFile) -> None:
        self._credentials = credentials_file

    async def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> SenderBatch:
        presented = presented_credentials(headers.get("Authorization"))
        expected = self._credentials.value
        if presented is None or not expected or not same(presented, expected):
            raise Unauthorized("missing or wrong basic auth credentials")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Malformed("the body is not valid JSON") from None
        return events_of(data)

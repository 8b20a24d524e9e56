"""Mandrill (Mailchimp Transactional) webhooks: ``X-Mandrill-Signature``.

The signature is base64 HMAC-SHA1, under the webhook key, of the webhook URL exactly as registered followed by
each POST field name and value, sorted by name. The events are the form field ``mandrill_events`` (a JSON array);
``unsub`` and ``spam`` are unsubscribes of ``msg.email`` at ``ts``, everything else is ignored. Mandrill checks
the URL with a HEAD request before saving it (answered 200 by the public app).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from unsubscribe_sync.worker.secret_files import ParsedSecret, SecretFile
from unsubscribe_sync.worker.senders import Malformed, SenderBatch, SenderEvent, Unauthorized, epoch_of, same

SIGNATURE_HEADER = "X-Mandrill-Signature"
UNSUBSCRIBE_EVENTS = frozenset({"unsub", "spam"})


def expected_signature(key: str, url: str, fields: Sequence[tuple[str, str]]) -> str:
    signed = url + "".join(name + value for name, value in sorted(fields, key=lambda f: f[0]))
    return base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()


def events_of(data: Any) -> SenderBatch:
    if not isinstance(data, list):
        raise Malformed("mandrill_events must be a JSON array")
    batch = SenderBatch()
    for entry in data:
        if not isinstance(entry, dict):
            raise Malformed("every event must be a JSON object")
        kind = entry.get("event")
        if kind not in UNSUBSCRIBE_EVENTS:
            batch.ignored += 1
            continue
        msg = entry.get("msg")
        email = msg.get("email") if isinstance(msg, dict) else None
        if not isinstance(email, str):
            raise Malformed(f"a {kind} event has no msg.email")
        event_id = entry.get("_id")
        batch.events.append(
            SenderEvent(
                email=email,
                source=f"mandrill:{kind}",
                event_id=f"mandrill:{event_id}" if isinstance(event_id, str) and event_id else None,
                occurred_at=epoch_of(entry.get("ts")),
            )
        )
    return batch


class Mandrill:
    name = "mandrill"

    def __init__(self, key_file: SecretFile, url: str) -> None:
        self._key = ParsedSecret(key_file, str, unusable="the file holds no webhook key")
        self._url = url

    async def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> SenderBatch:
        presented = headers.get(SIGNATURE_HEADER)
        key = self._key.current()
        if not presented or not key:
            raise Unauthorized("the request is not signed")
        try:
            fields = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            raise Unauthorized("the signature does not match") from None
        if not same(presented.strip(), expected_signature(key, self._url, fields)):
            raise Unauthorized("the signature does not match")
        raw = dict(fields).get("mandrill_events")
        if raw is None:
            raise Malformed("the form has no mandrill_events field")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            raise Malformed("mandrill_events is not valid JSON") from None
        return events_of(data)

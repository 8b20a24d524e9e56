"""SendGrid's Signed Event Webhook: ECDSA P-256 (SHA-256) over the timestamp header + the raw body.

SendGrid shows the verification key (Settings > Mail Settings > Event Webhook > Signature Verification) as base64
DER; a PEM file is accepted too. Events ``unsubscribe``, ``group_unsubscribe`` and ``spamreport`` are unsubscribes;
every other event is ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from unsubscribe_sync.worker.secret_files import ParsedSecret, SecretFile
from unsubscribe_sync.worker.senders import Malformed, SenderBatch, SenderEvent, Unauthorized, epoch_of

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_SKEW_SECONDS = 15 * 60
UNSUBSCRIBE_EVENTS = frozenset({"unsubscribe", "group_unsubscribe", "spamreport"})


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The verification key from SendGrid's base64 DER text or a PEM block; ValueError when it is not P-256."""
    data = text.strip().encode()
    if data.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(data)
    else:
        try:
            der = base64.b64decode(b"".join(data.split()), validate=True)
        except binascii.Error:
            raise ValueError("is neither PEM nor base64 DER") from None
        key = serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("is not an ECDSA P-256 public key")
    return key


def verify(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, body: bytes) -> bool:
    try:
        der = base64.b64decode(signature, validate=True)
        key.verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, InvalidSignature, ValueError):
        return False
    return True


def events_of(data: Any) -> SenderBatch:
    """The unsubscribes in a decoded SendGrid event list."""
    if not isinstance(data, list):
        raise Malformed("the body must be a JSON array of events")
    batch = SenderBatch()
    for entry in data:
        if not isinstance(entry, dict):
            raise Malformed("every event must be a JSON object")
        event = entry.get("event")
        if event not in UNSUBSCRIBE_EVENTS:
            batch.ignored += 1
            continue
        email = entry.get("email")
        if not isinstance(email, str):
            raise Malformed(f"a {event} event has no email")
        event_id = entry.get("sg_event_id")
        batch.events.append(
            SenderEvent(
                email=email,
                source=f"sendgrid:{event}",
                event_id=f"sendgrid:{event_id}" if isinstance(event_id, str) and event_id else None,
                occurred_at=epoch_of(entry.get("timestamp")),
            )
        )
    return batch


class SendGrid:
    name = "sendgrid"

    def __init__(self, key_file: SecretFile) -> None:
        self._key = ParsedSecret(key_file, load_public_key, unusable="the file holds no usable ECDSA P-256 public key")

    async def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> SenderBatch:
        signature, timestamp = headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER)
        key = self._key.current()
        if not signature or not timestamp or key is None:
            raise Unauthorized("the request is not signed")
        if not verify(key, signature, timestamp, body):
            raise Unauthorized("the signature does not match")
        sent = epoch_of(timestamp)
        if sent is None or abs(now - sent) > MAX_SKEW_SECONDS:
            raise Unauthorized("the signature timestamp is stale")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Malformed("the body is not valid JSON") from None
        return events_of(data)

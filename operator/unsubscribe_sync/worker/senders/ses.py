"""Amazon SES notifications delivered by an SNS HTTPS subscription.

SNS posts JSON with ``Content-Type: text/plain; charset=UTF-8``. Every message is checked the documented way:
``SigningCertURL`` must be https on a host matching ``senders.ses.certHostPattern`` (the certificate is fetched
once per URL and cached), the signature (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) must verify over the
documented string to sign, ``TopicArn`` must be one of ``senders.ses.topicArns`` and ``Timestamp`` within an hour.

``SubscriptionConfirmation`` is confirmed by a GET of its ``SubscribeURL`` (same host rule). A ``Notification``
whose Message is an SES ``Complaint`` unsubscribes every ``complaint.complainedRecipients[].emailAddress``;
bounces, deliveries and other messages are ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from unsubscribe_sync.api.config import SesConfig
from unsubscribe_sync.logs import get_logger
from unsubscribe_sync.worker.senders import (
    Malformed,
    SenderBatch,
    SenderEvent,
    Unauthorized,
    Unavailable,
    epoch_of,
)

log = get_logger(__name__)

MAX_SKEW_SECONDS = 3600
FETCH_TIMEOUT_SECONDS = 10.0
CERT_CACHE_SIZE = 16
MAX_CERT_BYTES = 64 * 1024
# The keys signed, in this order, by message type (SNS "Verifying the signatures of Amazon SNS messages").
SIGNED_KEYS: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The documented canonical form: ``key\\nvalue\\n`` for each signed key present (Subject only when set)."""
    keys = SIGNED_KEYS[str(message["Type"])]
    parts = []
    for key in keys:
        value = message.get(key)
        if value is None:
            if key == "Subject":
                continue
            raise Malformed(f"the message has no {key}")
        parts.append(f"{key}\n{value}\n")
    return "".join(parts).encode()


def allowed_url(url: Any, host_pattern: str) -> bool:
    """Whether ``url`` is https on a host the pattern allows (no user info, no other port than 443 or the given)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    return (
        parts.scheme == "https"
        and parts.hostname is not None
        and parts.username is None
        and re.fullmatch(host_pattern, parts.hostname) is not None
    )


def complaint_events(message_text: Any) -> SenderBatch:
    """The unsubscribes of one SES notification (the SNS ``Message``, itself JSON)."""
    try:
        note = json.loads(message_text) if isinstance(message_text, str) else None
    except (ValueError, RecursionError):
        note = None
    if not isinstance(note, dict):
        return SenderBatch(ignored=1)  # a message that is not an SES notification (a test publish, say)
    kind = note.get("notificationType", note.get("eventType"))
    complaint = note.get("complaint")
    if kind != "Complaint" or not isinstance(complaint, dict):
        return SenderBatch(ignored=1)
    recipients = complaint.get("complainedRecipients")
    if not isinstance(recipients, list):
        raise Malformed("a Complaint has no complainedRecipients list")
    feedback_id = complaint.get("feedbackId")
    at = epoch_of(complaint.get("timestamp"))
    batch = SenderBatch()
    for recipient in recipients:
        address = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        if not isinstance(address, str):
            raise Malformed("a complained recipient has no emailAddress")
        event_id = f"ses:{feedback_id}:{address.strip().lower()}" if isinstance(feedback_id, str) else None
        batch.events.append(SenderEvent(address, "ses:complaint", event_id, at))
    return batch


class Ses:
    name = "ses"

    def __init__(self, config: SesConfig) -> None:
        self._topics = frozenset(config.topicArns)
        self._pattern = config.certHostPattern
        self._ssl = ssl.create_default_context(cafile=str(config.caFile) if config.caFile else None)
        self._certs: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS),
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                trust_env=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, url: str) -> bytes:
        try:
            async with self._client().get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise Unavailable(f"{urlsplit(url).hostname} answered {response.status}")
                return await response.content.read(MAX_CERT_BYTES)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"{urlsplit(url).hostname} did not answer: {type(exc).__name__}") from None

    async def _key(self, url: str) -> rsa.RSAPublicKey:
        key = self._certs.get(url)
        if key is not None:
            self._certs.move_to_end(url)
            return key
        pem = await self._get(url)
        try:
            found = x509.load_pem_x509_certificate(pem).public_key()
        except ValueError:
            raise Unauthorized("the signing certificate is not a PEM certificate") from None
        if not isinstance(found, rsa.RSAPublicKey):
            raise Unauthorized("the signing certificate does not hold an RSA key")
        self._certs[url] = found
        while len(self._certs) > CERT_CACHE_SIZE:
            self._certs.popitem(last=False)
        return found

    async def _verify(self, message: Mapping[str, Any], now: float) -> None:
        if message.get("TopicArn") not in self._topics:
            raise Unauthorized("the topic is not one of senders.ses.topicArns")
        algorithm = HASHES.get(str(message.get("SignatureVersion")))
        if algorithm is None:
            raise Unauthorized("unknown SignatureVersion")
        if not allowed_url(message.get("SigningCertURL"), self._pattern):
            raise Unauthorized("SigningCertURL is not an https URL on an allowed host")
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        except binascii.Error:
            raise Unauthorized("the signature is not base64") from None
        if not signature:
            raise Unauthorized("the message is not signed")
        signed = string_to_sign(message)
        key = await self._key(str(message["SigningCertURL"]))
        try:
            key.verify(signature, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise Unauthorized("the signature does not match") from None
        sent = epoch_of(message.get("Timestamp"))
        if sent is None or abs(now - sent) > MAX_SKEW_SECONDS:
            raise Unauthorized("the message timestamp is stale")

    async def parse(self, headers: Mapping[str, str], body: bytes, now: float) -> SenderBatch:
        try:
            message = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Unauthorized("the body is not a signed SNS message") from None
        if not isinstance(message, dict) or message.get("Type") not in SIGNED_KEYS:
            raise Unauthorized("the body is not a signed SNS message")
        header_type = headers.get("x-amz-sns-message-type")
        if header_type is not None and header_type != message["Type"]:
            raise Malformed("x-amz-sns-message-type does not match the message Type")
        await self._verify(message, now)
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            url = message.get("SubscribeURL")
            if not allowed_url(url, self._pattern):
                raise Unauthorized("SubscribeURL is not an https URL on an allowed host")
            await self._get(str(url))
            log.info("sns_subscription_confirmed", topic=message["TopicArn"])
            return SenderBatch(note="subscription confirmed")
        if kind == "UnsubscribeConfirmation":
            log.warning("sns_subscription_ended", topic=message["TopicArn"])
            return SenderBatch(note="unsubscribe confirmation")
        return complaint_events(message.get("Message"))

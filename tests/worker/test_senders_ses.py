"""Amazon SES through SNS: a local HTTPS server (CA from senders.ses.caFile, host pattern 127.0.0.1) plays the SNS
certificate host; messages are the documented SNS envelopes around the documented SES complaint notification,
signed here with a generated RSA key (SignatureVersion 1 and 2)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fixtures.public_apps import public_config, running
from unsubscribe_sync.sandbox.tls import ensure_tls_files
from unsubscribe_sync.worker.senders.ses import string_to_sign

TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"
SNS_HEADERS = {"Content-Type": "text/plain; charset=UTF-8", "User-Agent": "Amazon Simple Notification Service Agent"}

# The SES complaint notification example (SES Developer Guide, "Amazon SNS complaint notification examples").
COMPLAINT = {
    "notificationType": "Complaint",
    "complaint": {
        "userAgent": "AnyCompany Feedback Loop (V0.01)",
        "complainedRecipients": [{"emailAddress": "richard@example.com"}],
        "complaintFeedbackType": "abuse",
        "arrivalDate": "2016-01-27T14:59:38.237Z",
        "timestamp": "2016-01-27T14:59:38.237Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000",
    },
    "mail": {
        "timestamp": "2016-01-27T14:59:38.237Z",
        "messageId": "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
        "source": "john@example.com",
        "sourceArn": "arn:aws:ses:us-east-1:888888888888:identity/example.com",
        "sourceIp": "127.0.3.0",
        "sendingAccountId": "123456789012",
        "callerIdentity": "IAM_user_or_role_name",
        "destination": ["jane@example.com", "mary@example.com", "richard@example.com"],
        "headersTruncated": False,
        "commonHeaders": {
            "from": ["John Doe <john@example.com>"],
            "date": "Wed, 27 Jan 2016 14:05:45 +0000",
            "to": ["Jane Doe <jane@example.com>, Mary Doe <mary@example.com>, Richard Doe <richard@example.com>"],
            "messageId": "custom-message-ID",
            "subject": "Hello",
        },
    },
}
BOUNCE = {"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "bouncedRecipients": []}, "mail": {}}


@dataclass
class CertHost:
    base: str
    ca_file: Path
    key: rsa.RSAPrivateKey
    hits: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return f"{self.base}/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"

    def envelope(self, kind: str, message: str, *, version: str = "1", **extra: Any) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body: dict[str, Any] = {
            "Type": kind,
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": TOPIC,
            "Message": message,
            "Timestamp": now,
            "SignatureVersion": version,
            "SigningCertURL": self.cert_url,
            **extra,
        }
        if kind == "Notification":
            body.setdefault("Subject", "Amazon SES Email Event Notification")
            body["UnsubscribeURL"] = f"{self.base}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:c9135db0"
        return self.signed(body)

    def signed(self, body: dict[str, Any]) -> dict[str, Any]:
        algorithm = hashes.SHA1() if body["SignatureVersion"] == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(body), padding.PKCS1v15(), algorithm)
        return {**body, "Signature": base64.b64encode(signature).decode()}


def signing_certificate(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-west-2.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
async def cert_host(tmp_path: Path) -> AsyncIterator[CertHost]:
    tls = ensure_tls_files(tmp_path / "tls")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = signing_certificate(key)
    hits: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path_qs)
        if request.path.endswith(".pem"):
            return web.Response(body=pem, content_type="application/x-pem-file")
        if request.query.get("Action") == "ConfirmSubscription":
            return web.Response(text="<ConfirmSubscriptionResponse/>", content_type="text/xml")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.server_context())
    await site.start()
    port = runner.addresses[0][1]
    yield CertHost(f"https://127.0.0.1:{port}", tls.ca_file, key, hits)
    await runner.cleanup()


def ses_config(tmp_path: Path, host: CertHost) -> Any:
    return public_config(
        tmp_path,
        senders={"ses": {"topicArns": [TOPIC], "certHostPattern": r"^127\.0\.0\.1$", "caFile": str(host.ca_file)}},
    )


@pytest.mark.parametrize("version", ["1", "2"])
async def test_ses_complaint_is_stored_bounce_ignored_and_the_certificate_fetched_once(
    tmp_path: Path, cert_host: CertHost, version: str
) -> None:
    async with running(ses_config(tmp_path, cert_host)) as apps:
        complaint = cert_host.envelope("Notification", json.dumps(COMPLAINT), version=version)
        headers = {**SNS_HEADERS, "x-amz-sns-message-type": "Notification"}
        answer = await apps.public.post("/v1/webhooks/ses", data=json.dumps(complaint), headers=headers)
        assert answer.status == 200 and await answer.json() == {"accepted": 1, "ignored": 0}
        (entry,) = await apps.history("richard@example.com")
        assert entry["source"] == "ses:complaint" and entry["at"].startswith("2016-01-27T14:59:38")
        bounce = cert_host.envelope("Notification", json.dumps(BOUNCE), version=version)
        answer = await apps.public.post("/v1/webhooks/ses", data=json.dumps(bounce), headers=headers)
        assert await answer.json() == {"accepted": 0, "ignored": 1}
        counts = apps.ledger.table_counts()
        again = await apps.public.post("/v1/webhooks/ses", data=json.dumps(complaint), headers=headers)
        assert again.status == 200 and apps.ledger.table_counts() == counts  # ses:<feedbackId>:<address>
        assert len([hit for hit in cert_host.hits if hit.endswith(".pem")]) == 1  # cached after the first fetch


async def test_ses_subscription_confirmation_is_confirmed_by_a_get_of_subscribe_url(
    tmp_path: Path, cert_host: CertHost
) -> None:
    token = "2336412f37fb687f5d51e6e241d638b05824e9e2f6713b42abaeb8607743f5ba91d34edd2b9dabe2f1616ed77c0f8801ee79911d3"
    subscribe_url = f"{cert_host.base}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}"
    message = (
        f"You have chosen to subscribe to the topic {TOPIC}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message."
    )
    body = cert_host.envelope("SubscriptionConfirmation", message, Token=token, SubscribeURL=subscribe_url)
    async with running(ses_config(tmp_path, cert_host)) as apps:
        headers = {**SNS_HEADERS, "x-amz-sns-message-type": "SubscriptionConfirmation"}
        answer = await apps.public.post("/v1/webhooks/ses", data=json.dumps(body), headers=headers)
        assert answer.status == 200 and await answer.json() == {"accepted": 0, "ignored": 0}
        assert any("Action=ConfirmSubscription" in hit and token in hit for hit in cert_host.hits)


async def test_ses_refuses_tampered_stale_unsigned_foreign_topic_and_foreign_hosts(
    tmp_path: Path, cert_host: CertHost
) -> None:
    good = cert_host.envelope("Notification", json.dumps(COMPLAINT))
    tampered = {**good, "Message": good["Message"].replace("richard@", "victim@")}
    unsigned = {k: v for k, v in good.items() if k != "Signature"}
    stale = cert_host.signed({**unsigned, "Timestamp": "2016-01-27T14:59:38.237Z"})
    foreign_topic = cert_host.signed({**unsigned, "TopicArn": "arn:aws:sns:us-west-2:999999999999:Other"})
    foreign_host = cert_host.signed({**unsigned, "SigningCertURL": "https://attacker.example.com/cert.pem"})
    plain_http = cert_host.signed({**unsigned, "SigningCertURL": cert_host.cert_url.replace("https:", "http:")})
    bad_confirm = cert_host.envelope(
        "SubscriptionConfirmation", "confirm", Token="t", SubscribeURL="https://attacker.example.com/?Action=x"
    )
    async with running(ses_config(tmp_path, cert_host)) as apps:
        for name, body in {
            "tampered": tampered,
            "unsigned": unsigned,
            "stale": stale,
            "foreign topic": foreign_topic,
            "foreign certificate host": foreign_host,
            "certificate over http": plain_http,
            "subscribe url on a foreign host": bad_confirm,
        }.items():
            answer = await apps.public.post("/v1/webhooks/ses", data=json.dumps(body), headers=SNS_HEADERS)
            assert answer.status == 401, name
        assert (await apps.public.post("/v1/webhooks/ses", data=b"<xml/>", headers=SNS_HEADERS)).status == 401
        await apps.public.post("/v1/webhooks/ses", data=json.dumps(good), headers=SNS_HEADERS)  # the good one works
        assert len(await apps.history("richard@example.com")) == 1
        assert await apps.history("victim@example.com") == []
        assert not any("attacker" in hit for hit in cert_host.hits)


async def test_ses_answers_503_when_the_certificate_host_is_away(tmp_path: Path, cert_host: CertHost) -> None:
    body = cert_host.envelope("Notification", json.dumps(COMPLAINT))
    unsigned = {k: v for k, v in body.items() if k != "Signature"}
    moved = cert_host.signed({**unsigned, "SigningCertURL": cert_host.base + "/missing"})
    async with running(ses_config(tmp_path, cert_host)) as apps:
        answer = await apps.public.post("/v1/webhooks/ses", data=json.dumps(moved), headers=SNS_HEADERS)
        assert answer.status == 503
        assert await apps.history("richard@example.com") == []

"""Sender webhooks over real HTTP with the payloads of each sender's own documentation, signed here with keys the
test generates; refused when tampered, stale or unsigned, and nothing stored then."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.public_apps import Apps, public_config, running
from tests.fixtures.worker import MANDRILL_KEY, MANDRILL_URL, SendGridSigner, mandrill_event, mandrill_request
from unsubscribe_sync.worker.senders import content_id, epoch_of

# --- SendGrid (Event Webhook Reference: the documented unsubscribe, group_unsubscribe and spamreport events) ---

SENDGRID_EVENTS: list[dict[str, Any]] = [
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "processed",
        "category": "cat facts",
        "sg_event_id": "sg_event_id",
        "sg_message_id": "sg_message_id",
    },
    {
        "email": "example@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "spamreport",
        "category": "cat facts",
        "sg_event_id": "sg_event_id_spam",
        "sg_message_id": "sg_message_id",
    },
    {
        "email": "unsub@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "unsubscribe",
        "category": "cat facts",
        "sg_event_id": "sg_event_id_unsub",
        "sg_message_id": "sg_message_id",
    },
    {
        "email": "group@test.com",
        "timestamp": 1513299569,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": "group_unsubscribe",
        "category": "cat facts",
        "sg_event_id": "sg_event_id_group",
        "sg_message_id": "sg_message_id",
        "useragent": "Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)",
        "ip": "255.255.255.255",
        "url": "http://www.sendgrid.com/",
        "asm_group_id": 10,
    },
]


async def assert_nothing_stored(apps: Apps, *emails: str) -> None:
    for email in emails:
        assert await apps.history(email) == [], email


@pytest.mark.parametrize("pem", [False, True], ids=["base64-der", "pem"])
async def test_sendgrid_signed_events_are_stored_and_others_ignored(tmp_path: Path, pem: bool) -> None:
    signer = SendGridSigner(tmp_path, pem=pem)
    config = public_config(tmp_path, senders={"sendgrid": {"publicKeyFile": str(signer.file)}})
    body = json.dumps(SENDGRID_EVENTS).encode()
    async with running(config) as apps:
        answer = await apps.public.post("/v1/webhooks/sendgrid", data=body, headers=signer.headers(body))
        assert answer.status == 200 and await answer.json() == {"accepted": 3, "ignored": 1}
        (entry,) = await apps.history("group@test.com")
        assert entry["source"] == "sendgrid:group_unsubscribe" and entry["action"] == "unsubscribed"
        assert (await apps.history("example@test.com"))[0]["source"] == "sendgrid:spamreport"
        counts = apps.ledger.table_counts()
        again = await apps.public.post("/v1/webhooks/sendgrid", data=body, headers=signer.headers(body))
        assert again.status == 200 and apps.ledger.table_counts() == counts  # idempotent by sg_event_id
        assert await apps.metric("unsubscribe_sync_sender_events_total", sender="sendgrid", outcome="accepted") == 6
        assert await apps.metric("unsubscribe_sync_sender_events_total", sender="sendgrid", outcome="ignored") == 2


async def test_sendgrid_refuses_tampered_stale_unsigned_and_foreign_requests(tmp_path: Path) -> None:
    signer = SendGridSigner(tmp_path)
    config = public_config(tmp_path, senders={"sendgrid": {"publicKeyFile": str(signer.file)}})
    body = json.dumps(SENDGRID_EVENTS).encode()
    tampered = body.replace(b"unsub@test.com", b"victim@test.com")
    other = SendGridSigner(tmp_path / "..")  # a key SendGrid never showed us
    cases = {
        "tampered body": (tampered, signer.headers(body)),
        "stale": (body, signer.headers(body, timestamp=int(time.time()) - 3600)),
        "unsigned": (body, {"Content-Type": "application/json"}),
        "other key": (body, other.headers(body)),
        "signature not base64": (body, {**signer.headers(body), "X-Twilio-Email-Event-Webhook-Signature": "%%"}),
    }
    async with running(config) as apps:
        for name, (data, headers) in cases.items():
            answer = await apps.public.post("/v1/webhooks/sendgrid", data=data, headers=headers)
            assert answer.status == 401, name
        bad = b'{"not": "a list"}'
        assert (await apps.public.post("/v1/webhooks/sendgrid", data=bad, headers=signer.headers(bad))).status == 400
        await assert_nothing_stored(apps, "unsub@test.com", "victim@test.com", "group@test.com")
        assert await apps.metric("unsubscribe_sync_sender_events_total", sender="sendgrid", outcome="rejected") == 6


def test_a_sendgrid_key_file_that_is_not_p256_is_refused_at_start(tmp_path: Path) -> None:
    from unsubscribe_sync.api.config import ConfigError
    from unsubscribe_sync.worker.secret_files import SecretFile
    from unsubscribe_sync.worker.senders.sendgrid import SendGrid

    wrong = tmp_path / "k"
    wrong.write_text("bm90IGEga2V5")
    with pytest.raises(ConfigError, match=r"senders\.sendgrid\.publicKeyFile: the file holds no usable ECDSA P-256"):
        SendGrid(SecretFile("senders.sendgrid.publicKeyFile", wrong))


# --- Mailgun (Securing Webhooks; the documented "unsubscribed" event-data) ---

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def mailgun_body(event: str, *, timestamp: int | None = None, key: str = MAILGUN_KEY) -> dict[str, Any]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    token = "e0b5477167110d68991efc6b9f89f0a11066af27834600e123"
    return {
        "signature": {
            "token": token,
            "timestamp": ts,
            "signature": hmac.new(key.encode(), (ts + token).encode(), hashlib.sha256).hexdigest(),
        },
        "event-data": {
            "tags": ["my_tag_1", "my_tag_2"],
            "timestamp": 1521243339.873676,
            "storage": {"url": "https://se.api.mailgun.net/v3/domains/example.com/messages/message_key", "key": "k"},
            "envelope": {"sending-ip": "209.61.154.250"},
            "recipient-domain": "example.com",
            "id": "Ase7i2zsRYeDXztHGENqRA",
            "campaigns": [],
            "user-variables": {"my_var_1": "Mailgun Variable #1", "my-var-2": "awesome"},
            "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
            "log-level": "info",
            "message": {
                "headers": {
                    "to": "Alice <alice@example.com>",
                    "message-id": "20130503182626.18666.16540@example.com",
                    "from": "Bob <bob@example.com>",
                    "subject": "Test unsubscribe webhook",
                },
                "attachments": [],
                "size": 111,
            },
            "recipient": "alice@example.com",
            "event": event,
        },
    }


async def test_mailgun_unsubscribed_and_complained_are_stored_other_events_ignored(tmp_path: Path) -> None:
    key_file = tmp_path / "mailgun"
    key_file.write_text(MAILGUN_KEY + "\n")
    config = public_config(tmp_path, senders={"mailgun": {"signingKeyFile": str(key_file)}})
    async with running(config) as apps:
        answer = await apps.public.post("/v1/webhooks/mailgun", json=mailgun_body("unsubscribed"))
        assert answer.status == 200 and await answer.json() == {"accepted": 1, "ignored": 0}
        (entry,) = await apps.history("alice@example.com")
        assert entry["source"] == "mailgun:unsubscribed"
        delivered = await apps.public.post("/v1/webhooks/mailgun", json=mailgun_body("delivered"))
        assert await delivered.json() == {"accepted": 0, "ignored": 1}
        counts = apps.ledger.table_counts()
        again = await apps.public.post("/v1/webhooks/mailgun", json=mailgun_body("unsubscribed"))
        assert again.status == 200 and apps.ledger.table_counts() == counts  # eventId mailgun:<event-data.id>


async def test_mailgun_refuses_tampered_stale_unsigned_and_wrong_key(tmp_path: Path) -> None:
    key_file = tmp_path / "mailgun"
    key_file.write_text(MAILGUN_KEY)
    config = public_config(tmp_path, senders={"mailgun": {"signingKeyFile": str(key_file)}})
    tampered = mailgun_body("unsubscribed")
    tampered["signature"]["token"] = "f" * 50
    unsigned = mailgun_body("unsubscribed")
    del unsigned["signature"]
    cases = {
        "tampered": tampered,
        "stale": mailgun_body("unsubscribed", timestamp=int(time.time()) - 16 * 60),
        "unsigned": unsigned,
        "wrong key": mailgun_body("unsubscribed", key="key-not-ours"),
    }
    async with running(config) as apps:
        for name, body in cases.items():
            assert (await apps.public.post("/v1/webhooks/mailgun", json=body)).status == 401, name
        assert (await apps.public.post("/v1/webhooks/mailgun", data=b"not json")).status == 401
        broken = mailgun_body("unsubscribed")
        broken["event-data"] = ["not", "an", "object"]
        assert (await apps.public.post("/v1/webhooks/mailgun", json=broken)).status == 400
        await assert_nothing_stored(apps, "alice@example.com")


# --- Postmark (Subscription change webhook and Spam complaint webhook examples) ---

POSTMARK_CHANGE = {
    "RecordType": "SubscriptionChange",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
    "ServerID": 123456,
    "MessageStream": "outbound",
    "ChangedAt": "2020-02-01T10:53:34.416071Z",
    "Recipient": "bounced-address@wildbit.com",
    "Origin": "Recipient",
    "SuppressSending": True,
    "SuppressionReason": "HardBounce",
    "Tag": "my-tag",
    "Metadata": {"example": "value", "example_2": "value"},
}
POSTMARK_SPAM = {
    "RecordType": "SpamComplaint",
    "MessageStream": "outbound",
    "ID": 42,
    "Type": "SpamComplaint",
    "TypeCode": 512,
    "Name": "Spam complaint",
    "Tag": "Test",
    "MessageID": "00000000-0000-0000-0000-000000000000",
    "Metadata": {"a_key": "a_value", "b_key": "b_value"},
    "ServerID": 1234,
    "Description": "The subscriber explicitly marked this message as spam.",
    "Details": "Test spam complaint details",
    "Email": "john@example.com",
    "From": "sender@example.com",
    "BouncedAt": "2019-11-05T16:33:54.9070259Z",
    "DumpAvailable": True,
    "Inactive": True,
    "CanActivate": False,
    "Subject": "Test subject",
    "Content": "<Abuse report dump>",
}


def basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


async def test_postmark_suppressions_and_spam_complaints_are_stored_reactivations_ignored(tmp_path: Path) -> None:
    credentials = tmp_path / "postmark"
    credentials.write_text("postmark:correct-horse-battery-staple\n")
    config = public_config(tmp_path, senders={"postmark": {"basicAuthFile": str(credentials)}})
    auth = basic("postmark:correct-horse-battery-staple")
    reactivation = {**POSTMARK_CHANGE, "SuppressSending": False, "SuppressionReason": None, "Tag": None}
    async with running(config) as apps:
        answer = await apps.public.post("/v1/webhooks/postmark", json=POSTMARK_CHANGE, headers=auth)
        assert answer.status == 200 and await answer.json() == {"accepted": 1, "ignored": 0}
        (entry,) = await apps.history("bounced-address@wildbit.com")
        assert entry["source"] == "postmark:HardBounce"
        spam = await apps.public.post("/v1/webhooks/postmark", json=POSTMARK_SPAM, headers=auth)
        assert await spam.json() == {"accepted": 1, "ignored": 0}
        assert (await apps.history("john@example.com"))[0]["source"] == "postmark:SpamComplaint"
        counts = apps.ledger.table_counts()
        ignored = await apps.public.post("/v1/webhooks/postmark", json=reactivation, headers=auth)
        assert await ignored.json() == {"accepted": 0, "ignored": 1}
        again = await apps.public.post("/v1/webhooks/postmark", json=POSTMARK_CHANGE, headers=auth)
        assert again.status == 200 and apps.ledger.table_counts() == counts  # the derived event id repeats


async def test_postmark_refuses_wrong_or_missing_credentials(tmp_path: Path) -> None:
    credentials = tmp_path / "postmark"
    credentials.write_text("postmark:correct-horse-battery-staple")
    config = public_config(tmp_path, senders={"postmark": {"basicAuthFile": str(credentials)}})
    async with running(config) as apps:
        for name, headers in {
            "none": {},
            "wrong password": basic("postmark:wrong"),
            "bearer": {"Authorization": "Bearer postmark:correct-horse-battery-staple"},
            "not base64": {"Authorization": "Basic %%%"},
        }.items():
            answer = await apps.public.post("/v1/webhooks/postmark", json=POSTMARK_CHANGE, headers=headers)
            assert answer.status == 401, name
        auth = basic("postmark:correct-horse-battery-staple")
        assert (await apps.public.post("/v1/webhooks/postmark", data=b"{", headers=auth)).status == 400
        await assert_nothing_stored(apps, "bounced-address@wildbit.com")


# --- Mandrill (Webhook format: the documented unsub/spam message events; Authenticating webhook requests) ---


async def test_mandrill_unsub_and_spam_are_stored_and_head_answers(tmp_path: Path) -> None:
    key_file = tmp_path / "mandrill"
    key_file.write_text(MANDRILL_KEY)
    config = public_config(tmp_path, senders={"mandrill": {"webhookKeyFile": str(key_file), "url": MANDRILL_URL}})
    events = [
        mandrill_event("unsub", "example.webhook@mandrillapp.com", "exampleaaaaaaaaaaaaaaaaaaaaaaaa1"),
        mandrill_event("spam", "spam.webhook@mandrillapp.com", "exampleaaaaaaaaaaaaaaaaaaaaaaaa2"),
        mandrill_event("open", "example.webhook@mandrillapp.com", "exampleaaaaaaaaaaaaaaaaaaaaaaaa3"),
    ]
    body, headers = mandrill_request(events)
    async with running(config) as apps:
        assert (await apps.public.head("/v1/webhooks/mandrill")).status == 200
        answer = await apps.public.post("/v1/webhooks/mandrill", data=body, headers=headers)
        assert answer.status == 200 and await answer.json() == {"accepted": 2, "ignored": 1}
        assert (await apps.history("spam.webhook@mandrillapp.com"))[0]["source"] == "mandrill:spam"
        # Mandrill's own check when the webhook is saved: an empty event list, signed.
        empty_body, empty_headers = mandrill_request([])
        empty = await apps.public.post("/v1/webhooks/mandrill", data=empty_body, headers=empty_headers)
        assert empty.status == 200 and await empty.json() == {"accepted": 0, "ignored": 0}


async def test_mandrill_refuses_tampered_unsigned_and_wrong_key(tmp_path: Path) -> None:
    key_file = tmp_path / "mandrill"
    key_file.write_text(MANDRILL_KEY)
    config = public_config(tmp_path, senders={"mandrill": {"webhookKeyFile": str(key_file), "url": MANDRILL_URL}})
    events = [mandrill_event("unsub", "example.webhook@mandrillapp.com", "exampleaaaaaaaaaaaaaaaaaaaaaaaa1")]
    body, headers = mandrill_request(events)
    _, wrong = mandrill_request(events, key="another-key")
    async with running(config) as apps:
        for name, (data, hdrs) in {
            "tampered": (body.replace(b"example.webhook", b"victim.webhook"), headers),
            "unsigned": (body, {"Content-Type": "application/x-www-form-urlencoded"}),
            "wrong key": (body, wrong),
        }.items():
            assert (await apps.public.post("/v1/webhooks/mandrill", data=data, headers=hdrs)).status == 401, name
        no_events, no_events_headers = b"other=1", {}
        signed = MANDRILL_URL + "other1"
        no_events_headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Mandrill-Signature": base64.b64encode(
                hmac.new(MANDRILL_KEY.encode(), signed.encode(), hashlib.sha1).digest()
            ).decode(),
        }
        answer = await apps.public.post("/v1/webhooks/mandrill", data=no_events, headers=no_events_headers)
        assert answer.status == 400
        await assert_nothing_stored(apps, "example.webhook@mandrillapp.com", "victim.webhook@mandrillapp.com")


# --- pure helpers ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sends seconds as a number", None),
        (1513299569, 1513299569.0),
        ("1529006854", 1529006854.0),
        ("2020-02-01T10:53:34Z", 1580554414.0),
        ("2020-02-01T10:53:34", None),  # no offset: refused rather than guessed
        (True, None),
    ],
)
def test_epoch_of_reads_sender_timestamps(value: object, expected: float | None) -> None:
    assert epoch_of(value) == expected


def test_content_ids_repeat_for_the_same_content_only() -> None:
    assert content_id("postmark", "a", 1) == content_id("postmark", "a", 1) != content_id("postmark", "a", 2)
    assert copy.deepcopy(POSTMARK_CHANGE) == POSTMARK_CHANGE

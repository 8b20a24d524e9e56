"""The public listener: its config keys, and the split from the internal listener (each serves only its routes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.public_apps import AUTH, public_config, running
from unsubscribe_sync.api.config import ConfigError, parse_config


def test_public_listen_defaults_to_8081_and_null_turns_it_off() -> None:
    assert parse_config({}).worker.publicListen == "0.0.0.0:8081"
    assert (parse_config({}).worker.public_host, parse_config({}).worker.public_port) == ("0.0.0.0", 8081)
    off = parse_config({"worker": {"publicListen": None}}).worker
    assert off.publicListen is None and off.public_port is None


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"worker": {"publicListen": "nonsense"}}, "worker.publicListen"),
        ({"oneClick": {"maxAgeDays": 7}}, "oneClick.maxAgeDays"),
        ({"oneClick": {"baseUrl": "ftp://x"}}, "oneClick.baseUrl"),
        ({"senders": {"ses": {"topicArns": []}}}, "senders.ses.topicArns"),
        ({"senders": {"ses": {"topicArns": ["nope"]}}}, "senders.ses.topicArns"),
        ({"senders": {"ses": {"topicArns": ["arn:aws:sns:x:1:t"], "certHostPattern": "("}}}, "certHostPattern"),
        ({"senders": {"mandrill": {"webhookKeyFile": "/k"}}}, "senders.mandrill.url"),
        ({"senders": {"sparkpost": {}}}, "senders.sparkpost"),
        ({"senders": {"mailgun": {"signingKey": "inline"}}}, "senders.mailgun.signingKey"),
    ],
)
def test_bad_public_config_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert key in str(info.value)


async def test_public_listener_serves_none_of_the_internal_routes(tmp_path: Path) -> None:
    key_file = tmp_path / "oneclick"
    key_file.write_text("k" * 40 + "\n")
    mailgun_key = tmp_path / "mailgun"
    mailgun_key.write_text("key-0123456789abcdef")
    config = public_config(
        tmp_path,
        oneClick={"keyFile": str(key_file), "baseUrl": "https://unsub.example.com"},
        senders={"mailgun": {"signingKeyFile": str(mailgun_key)}},
    )
    async with running(config) as apps:
        for method, path in [
            ("POST", "/v1/unsubscribes"),
            ("GET", "/v1/unsubscribes"),
            ("POST", "/v1/resubscribes"),
            ("POST", "/v1/unsubscribe-links"),
            ("POST", "/v1/nightly-runs"),
            ("GET", "/metrics"),
            ("GET", "/readyz"),
            ("GET", "/livez"),
            ("POST", "/v1/webhooks/sendgrid"),  # not configured: off
        ]:
            answer = await apps.public.request(method, path, json={"email": "a@example.com"}, headers=AUTH)
            assert answer.status in (404, 405), (method, path, answer.status)
            assert answer.status == 404 or method == "GET"
        # The internal listener has no public route, with or without its token.
        for path in ["/u/anything", "/v1/webhooks/mailgun"]:
            answer = await apps.internal.post(path, data=b"List-Unsubscribe=One-Click", headers=AUTH)
            assert answer.status == 404, path
        assert (await apps.internal.post("/v1/webhooks/mailgun", json={})).status == 401  # /v1 without the token
        # The internal API still works, and nothing above was stored.
        assert (await apps.internal.get("/readyz")).status == 200
        assert await apps.history("a@example.com") == []


async def test_public_requests_are_counted_by_route_pattern_never_by_token(tmp_path: Path) -> None:
    key_file = tmp_path / "oneclick"
    key_file.write_text("k" * 40)
    config = public_config(tmp_path, oneClick={"keyFile": str(key_file), "baseUrl": "https://unsub.example.com"})
    async with running(config) as apps:
        await apps.public.get("/u/secret-looking-token")
        text = await (await apps.internal.get("/metrics")).text()
        assert "secret-looking-token" not in text
        assert 'route="/u/{token}"' in text


async def test_an_unusable_secret_file_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    config = public_config(tmp_path, senders={"mailgun": {"signingKeyFile": str(empty)}})
    with pytest.raises(ConfigError, match=r"senders\.mailgun\.signingKeyFile: .* is empty"):
        async with running(config):
            pass
    short = tmp_path / "short"
    short.write_text("tooshort\n")
    config = public_config(tmp_path, oneClick={"keyFile": str(short), "baseUrl": "https://u.example.com"})
    with pytest.raises(ConfigError, match=r"oneClick\.keyFile: line 1 is shorter than 32"):
        async with running(config):
            pass


async def test_public_listener_reads_request_bodies_through_a_small_buffer(tmp_path: Path) -> None:
    """As on the internal listener: the socket is read at most READ_BUFFER_BYTES ahead of the handler (aiohttp
    pauses reading above twice that), so a large or slow body waits in the kernel, not in the worker's memory."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from unsubscribe_sync.ledger import Ledger
    from unsubscribe_sync.worker.app import MAX_BODY_BYTES, READ_BUFFER_BYTES, create_app
    from unsubscribe_sync.worker.public import create_public_app

    config = public_config(tmp_path)
    ledger = Ledger.open(config.ledger.resolve_url())
    try:
        public_app = create_public_app(create_app(config, ledger=ledger, push=False), senders=[])
        seen: list[tuple[int, int]] = []

        async def probe(request: web.Request) -> web.Response:
            seen.append(request.content.get_read_buffer_limits())
            await request.read()
            return web.Response()

        public_app.router.add_post("/probe", probe)
        async with TestClient(TestServer(public_app)) as client:
            answer = await client.post("/probe", data=b"x" * (MAX_BODY_BYTES // 2))
            assert answer.status == 200
    finally:
        ledger.close()
    assert seen == [(READ_BUFFER_BYTES, 2 * READ_BUFFER_BYTES)]


async def test_both_listeners_count_requests_by_route_pattern_and_status(tmp_path: Path) -> None:
    """One request-metrics middleware on both apps: the public requests (a tampered link's 404 labelled by the route
    pattern, never the token) and the internal ones (a 401 before any handler) land in the same series."""
    key_file = tmp_path / "oneclick"
    key_file.write_text("k" * 40 + "\n")
    config = public_config(tmp_path, oneClick={"keyFile": str(key_file), "baseUrl": "https://unsub.example.com"})
    async with running(config) as apps:
        assert (await apps.public.post("/u/not-a-token-secret")).status == 404
        assert (await apps.public.get("/nothing-here")).status == 404
        assert (await apps.internal.post("/v1/unsubscribes", json={})).status == 401
        text = await (await apps.internal.get("/metrics")).text()
        assert "not-a-token-secret" not in text and "nothing-here" not in text
        total = "unsubscribe_sync_http_requests_total"
        assert await apps.metric(total, method="POST", route="/u/{token}", status="404") == 1
        assert await apps.metric(total, method="GET", route="unmatched", status="404") == 1
        assert await apps.metric(total, method="POST", route="/v1/unsubscribes", status="401") == 1

"""One-click unsubscribe links (RFC 8058): tokens, the internal link API, the public /u/<token> routes, the CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fixtures.public_apps import AUTH, Apps, public_config, running
from unsubscribe_sync.cli import main
from unsubscribe_sync.worker import oneclick
from unsubscribe_sync.worker.secret_files import SecretFile

OLD_KEY = "old-key-" + "a" * 40
NEW_KEY = "new-key-" + "b" * 40
BASE = "https://unsub.example.com"
NOW = 1_780_000_000.0


def token_for(keys: list[str], email: str = "ann@example.com", **kw: Any) -> str:
    return oneclick.sign(keys, email, kw.get("salesforce_id"), kw.get("source"), kw.get("now", NOW))


def _flip(token: str, index: int) -> str:
    char = token[index]
    return token[:index] + ("A" if char != "A" else "B") + token[index + 1 :]


@pytest.mark.parametrize(
    ("case", "token", "keys", "max_age", "valid"),
    [
        ("a token verifies under its key", token_for([NEW_KEY]), [NEW_KEY], None, True),
        ("the old key still verifies after rotation", token_for([OLD_KEY]), [NEW_KEY, OLD_KEY], None, True),
        ("a retired key's token is refused", token_for([OLD_KEY]), [NEW_KEY], None, False),
        ("a changed payload is refused", _flip(token_for([NEW_KEY]), 3), [NEW_KEY], None, False),
        ("a changed tag is refused", _flip(token_for([NEW_KEY]), -3), [NEW_KEY], None, False),
        ("a token without a tag is refused", token_for([NEW_KEY]).split(".")[0], [NEW_KEY], None, False),
        ("a short tag is refused", token_for([NEW_KEY])[:-20], [NEW_KEY], None, False),
        ("garbage is refused", "not-a-token", [NEW_KEY], None, False),
        ("three parts are refused", token_for([NEW_KEY]) + ".x", [NEW_KEY], None, False),
        ("a link within maxAgeDays works", token_for([NEW_KEY], now=NOW - 29 * 86400), [NEW_KEY], 30, True),
        ("a link past maxAgeDays is refused", token_for([NEW_KEY], now=NOW - 31 * 86400), [NEW_KEY], 30, False),
        ("links never expire by default", token_for([NEW_KEY], now=NOW - 3650 * 86400), [NEW_KEY], None, True),
    ],
)
def test_token_checks(case: str, token: str, keys: list[str], max_age: int | None, valid: bool) -> None:
    assert (oneclick.verify(keys, token, NOW, max_age) is not None) is valid, case


def test_token_is_url_safe_carries_address_id_and_source_with_a_256_bit_tag() -> None:
    token = token_for([NEW_KEY], "Zoë+tag@example.com", salesforce_id="003000000000001AAA", source="newsletter")
    assert all(c.isalnum() or c in "-_." for c in token)
    assert len(oneclick._unb64(token.split(".")[1])) * 8 >= 128
    link = oneclick.verify([NEW_KEY], token, NOW, None)
    assert link is not None
    assert (link.email, link.salesforce_id, link.source) == ("Zoë+tag@example.com", "003000000000001AAA", "newsletter")
    event = link.event()
    assert event.source == "newsletter" and event.event_id is not None and event.event_id.startswith("one-click:")
    assert oneclick.verify([NEW_KEY], token, NOW, None).event() == event  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("email", "shown"), [("ann@example.com", "a***@example.com"), ("x@y.org", "x***@y.org"), ("nope", "***")]
)
def test_the_confirm_page_masks_the_address(email: str, shown: str) -> None:
    assert oneclick.masked(email) == shown


def one_click_config(tmp_path: Path, keys: list[str], **extra: Any) -> Any:
    key_file = tmp_path / "oneclick-keys"
    key_file.write_text("\n".join(keys) + "\n")
    return public_config(tmp_path, oneClick={"keyFile": str(key_file), "baseUrl": BASE + "/", **extra})


async def links(apps: Apps, *recipients: dict[str, str]) -> list[dict[str, str]]:
    answer = await apps.internal.post("/v1/unsubscribe-links", json={"recipients": list(recipients)}, headers=AUTH)
    assert answer.status == 200, await answer.text()
    return list((await answer.json())["links"])


def path_of(url: str) -> str:
    assert url.startswith(BASE + "/u/")
    return url[len(BASE) :]


async def test_links_api_answers_list_unsubscribe_headers(tmp_path: Path) -> None:
    async with running(one_click_config(tmp_path, [NEW_KEY])) as apps:
        (link,) = await links(apps, {"email": " Ann@Example.com ", "salesforceId": "003000000000001", "source": "x"})
        assert link["email"] == "ann@example.com"
        assert link["listUnsubscribe"] == f"<{link['url']}>"
        assert link["listUnsubscribePost"] == "List-Unsubscribe=One-Click"
        assert link["url"].startswith(f"{BASE}/u/")
        assert (await apps.internal.post("/v1/unsubscribe-links", json={"recipients": []})).status == 401
        for body in [
            {"recipients": []},
            {"recipients": [{"email": "not an address"}]},
            {"recipients": [{"email": "a@example.com", "eventId": "x"}]},
            {"recipients": [{"email": "a@example.com", "salesforceId": "001000000000001"}]},
            {"recipients": [{"email": f"u{i}@example.com"} for i in range(1001)]},
            {"emails": ["a@example.com"]},
        ]:
            answer = await apps.internal.post("/v1/unsubscribe-links", json=body, headers=AUTH)
            assert answer.status == 400, body
            assert "error" in await answer.json()


async def test_links_api_is_501_while_one_click_is_off(tmp_path: Path) -> None:
    async with running(public_config(tmp_path)) as apps:
        body = {"recipients": [{"email": "a@example.com"}]}
        answer = await apps.internal.post("/v1/unsubscribe-links", json=body, headers=AUTH)
        assert answer.status == 501
        assert (await apps.public.get("/u/anything")).status == 404


def _assert_plain_page(answer: aiohttp.ClientResponse) -> None:
    assert answer.status == 200 and answer.content_type == "text/html"
    assert "Set-Cookie" not in answer.headers and "Location" not in answer.headers
    assert answer.headers["Cache-Control"] == "no-store"


async def test_mail_client_posts_store_the_unsubscribe_in_both_encodings_once(tmp_path: Path) -> None:
    async with running(one_click_config(tmp_path, [NEW_KEY])) as apps:
        ann, bob = await links(apps, {"email": "ann@example.com", "source": "newsletter"}, {"email": "bob@example.com"})
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        form = await apps.public.post(path_of(ann["url"]), data="List-Unsubscribe=One-Click", headers=form_type)
        _assert_plain_page(form)
        multipart = aiohttp.FormData()
        multipart.add_field("List-Unsubscribe", "One-Click")
        answer = await apps.public.post(path_of(bob["url"]), data=multipart, allow_redirects=False)
        _assert_plain_page(answer)
        assert "unsubscribed" in (await answer.text()).lower()
        (entry,) = await apps.history("ann@example.com")
        assert entry["source"] == "newsletter"
        assert (await apps.history("bob@example.com"))[0]["source"] == "one-click"
        counts = apps.ledger.table_counts()
        for body in ["List-Unsubscribe=One-Click", "", "anything at all"]:  # a retry, the confirm form, odd clients
            _assert_plain_page(await apps.public.post(path_of(ann["url"]), data=body))
        assert apps.ledger.table_counts() == counts  # the event id comes from the token: stored once
        accepted = await apps.metric("unsubscribe_sync_sender_events_total", sender="oneclick", outcome="accepted")
        assert accepted == 5


async def test_get_shows_a_confirm_page_and_stores_nothing(tmp_path: Path) -> None:
    async with running(one_click_config(tmp_path, [NEW_KEY])) as apps:
        (link,) = await links(apps, {"email": "carol@example.com"})
        counts = apps.ledger.table_counts()
        page = await apps.public.get(path_of(link["url"]))
        _assert_plain_page(page)
        text = await page.text()
        assert "c***@example.com" in text and "carol@example.com" not in text
        assert '<form method="post"' in text and "<script" not in text
        assert apps.ledger.table_counts() == counts and await apps.history("carol@example.com") == []


async def test_bad_tokens_are_404_on_both_methods_and_store_nothing(tmp_path: Path) -> None:
    async with running(one_click_config(tmp_path, [NEW_KEY])) as apps:
        (link,) = await links(apps, {"email": "dave@example.com"})
        good = path_of(link["url"])
        forged = "/u/" + oneclick.sign(["an-attacker-key-" + "x" * 32], "dave@example.com", None, None, time.time())
        for path in [_flip(good, 6), _flip(good, -2), forged, "/u/x", "/u/" + "a" * 3000]:
            assert (await apps.public.get(path)).status == 404, path
            assert (await apps.public.post(path, data="List-Unsubscribe=One-Click")).status == 404, path
        assert await apps.history("dave@example.com") == []


async def test_key_rotation_in_the_mounted_file_reaches_the_running_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SecretFile, "RECHECK_SECONDS", 0.0)
    config = one_click_config(tmp_path, [OLD_KEY])
    key_file = config.oneClick.keyFile
    async with running(config) as apps:
        (old,) = await links(apps, {"email": "erin@example.com"})
        key_file.write_text(f"{NEW_KEY}\n{OLD_KEY}\n")  # rotate: the new key signs, the old one still verifies
        os.utime(key_file, (time.time() + 5, time.time() + 5))
        (new,) = await links(apps, {"email": "erin@example.com"})
        assert new["url"] != old["url"]
        assert oneclick.verify([NEW_KEY], new["url"].rsplit("/", 1)[1], time.time(), None) is not None
        assert (await apps.public.get(path_of(old["url"]))).status == 200
        key_file.write_text(f"{NEW_KEY}\n")  # retire the old key
        os.utime(key_file, (time.time() + 10, time.time() + 10))
        assert (await apps.public.post(path_of(old["url"]))).status == 404
        assert (await apps.public.post(path_of(new["url"]))).status == 200


async def test_max_age_days_is_enforced_on_the_public_route(tmp_path: Path) -> None:
    config = one_click_config(tmp_path, [NEW_KEY], maxAgeDays=30)
    old = oneclick.sign([NEW_KEY], "frank@example.com", None, None, time.time() - 31 * 86400)
    async with running(config) as apps:
        assert (await apps.public.post(f"/u/{old}")).status == 404


def test_link_command_prints_one_link_object(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = one_click_config(tmp_path, [NEW_KEY])
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config.model_dump(mode="json", exclude_unset=True)))
    code = main(["link", "--config", str(path), "--email", "Gina@Example.com", "--salesforce-id", "00Q000000000001"])
    assert code == 0
    link = json.loads(capsys.readouterr().out)
    assert set(link) == {"email", "url", "listUnsubscribe", "listUnsubscribePost"}
    assert link["email"] == "gina@example.com" and link["listUnsubscribe"] == f"<{link['url']}>"
    parsed = oneclick.verify([NEW_KEY], link["url"].rsplit("/", 1)[1], time.time(), None)
    assert parsed is not None and parsed.salesforce_id == "00Q000000000001EAA"
    assert main(["link", "--config", str(path), "--email", "nope"]) == 1
    assert "email" in capsys.readouterr().err
    off = tmp_path / "off.yaml"
    off.write_text("{}\n")
    assert main(["link", "--config", str(off), "--email", "a@example.com"]) == 2
    assert "oneClick.keyFile" in capsys.readouterr().err

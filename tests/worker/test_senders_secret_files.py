"""Sender secrets re-read from their files: a rotated Secret reaches the running senders even when the new file
keeps the old one's mtime (a Kubernetes Secret volume swaps a symlink; a rewrite within the clock's resolution)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.fixtures.worker import MANDRILL_URL, SendGridSigner, mandrill_event, mandrill_request
from unsubscribe_sync.worker.secret_files import SecretFile
from unsubscribe_sync.worker.senders import Unauthorized
from unsubscribe_sync.worker.senders.mandrill import Mandrill
from unsubscribe_sync.worker.senders.sendgrid import SendGrid


@pytest.fixture(autouse=True)
def _recheck_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SecretFile, "RECHECK_SECONDS", 0.0)


def rewrite_keeping_mtime(path: Path, data: bytes) -> None:
    before = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_rewrite_that_keeps_the_mtime_is_picked_up(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("first-key\n")
    secret = SecretFile("senders.mailgun.signingKeyFile", file)
    rewrite_keeping_mtime(file, b"second-key\n")
    assert secret.value == "second-key"
    rewrite_keeping_mtime(file, b"")
    assert secret.value == ""  # emptied: refuses every request


def test_an_unchanged_file_keeps_its_value(tmp_path: Path) -> None:
    file = tmp_path / "key"
    file.write_text("same-key\n")
    secret = SecretFile("senders.mailgun.signingKeyFile", file)
    assert [secret.value, secret.value] == ["same-key", "same-key"]


async def test_sendgrid_takes_a_rotated_key_with_the_same_mtime(tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    old, new = SendGridSigner(tmp_path), SendGridSigner(tmp_path / "new")
    sender = SendGrid(SecretFile("senders.sendgrid.publicKeyFile", old.file))
    body = b'[{"email": "a@example.com", "event": "unsubscribe", "sg_event_id": "e1", "timestamp": 1700000000}]'
    assert len((await sender.parse(old.headers(body), body, time.time())).events) == 1
    rewrite_keeping_mtime(old.file, new.file.read_bytes())
    with pytest.raises(Unauthorized):
        await sender.parse(old.headers(body), body, time.time())
    assert len((await sender.parse(new.headers(body), body, time.time())).events) == 1
    rewrite_keeping_mtime(old.file, b"not a key")
    with pytest.raises(Unauthorized):  # an unusable key refuses, it does not keep the old one
        await sender.parse(new.headers(body), body, time.time())


async def test_mandrill_takes_a_rotated_key_with_the_same_mtime(tmp_path: Path) -> None:
    file = tmp_path / "mandrill"
    file.write_text("old-mandrill-key\n")
    sender = Mandrill(SecretFile("senders.mandrill.webhookKeyFile", file), MANDRILL_URL)
    body, headers = mandrill_request([mandrill_event("unsub", "a@example.com", "id1")], key="new-mandrill-key")
    with pytest.raises(Unauthorized):
        await sender.parse(headers, body, time.time())
    rewrite_keeping_mtime(file, b"new-mandrill-key\n")
    assert len((await sender.parse(headers, body, time.time())).events) == 1
    rewrite_keeping_mtime(file, b"")
    with pytest.raises(Unauthorized):
        await sender.parse(headers, body, time.time())

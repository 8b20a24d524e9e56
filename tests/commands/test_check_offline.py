"""`unsubscribe-sync check` paths that need no Salesforce: bad config, missing credentials, unreachable login."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.fixtures.common import free_port
from unsubscribe_sync.cli import main


def _config(tmp_path: Path, **salesforce: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"salesforce": salesforce, "ledger": {"url": f"sqlite:///{tmp_path}/l.db"}}))
    return path


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("salesforce:\n  objects: [Account]\n")
    assert main(["check", "--config", str(path)]) == 2
    assert "salesforce.objects" in capsys.readouterr().err


def test_missing_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "none.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_missing_credentials_file_fails_and_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "client_id").write_text("cid")
    path = _config(tmp_path, credentialsDir=str(creds), loginUrl=f"https://127.0.0.1:{free_port()}")
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert "✗ credentials" in out and "client_secret" in out and "verdict: NOT ready" in out


def test_unreachable_login_url_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "client_id").write_text("cid")
    (creds / "client_secret").write_text("canary-secret-value-77")
    path = _config(tmp_path, credentialsDir=str(creds), loginUrl=f"https://127.0.0.1:{free_port()}")
    assert main(["check", "--config", str(path), "--json"]) == 1
    out = capsys.readouterr().out
    assert '"ok": false' in out and "token request" in out
    assert "canary-secret-value-77" not in out

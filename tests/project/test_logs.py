"""Structured logs: JSON in pods, secrets redacted, emails masked."""

import io
import json
import logging

from unsubscribe_sync.logs import REDACTED, configure_logging, get_logger, mask_email, redact_text

CANARY = "canary-s3cr3t-value-42"


def _capture() -> io.StringIO:
    buf = io.StringIO()
    configure_logging("json", "debug", stream=buf)
    return buf


def test_json_lines_with_secret_keys_redacted() -> None:
    buf = _capture()
    log = get_logger("test")
    log.info("token refreshed", access_token=CANARY, client_secret=CANARY, count=3)
    logging.getLogger("kopf.test").warning("stdlib line with Bearer %s inside", CANARY)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert lines[0]["event"] == "token refreshed"
    assert lines[0]["access_token"] == REDACTED
    assert lines[0]["count"] == 3
    assert CANARY not in buf.getvalue()
    assert all(line["level"] in {"info", "warning"} for line in lines)


def test_redact_text_removes_url_passwords_and_bearer_tokens() -> None:
    text = f"connect postgresql://app:{CANARY}@db:5432/ledger failed; header Bearer {CANARY}"
    out = redact_text(text)
    assert CANARY not in out
    assert "postgresql://app:[REDACTED]@db:5432/ledger" in out


def test_mask_email_is_stable_and_hides_the_local_part() -> None:
    masked = mask_email("Jane.Doe@Example.com")
    assert masked == mask_email("jane.doe@example.com")
    assert "jane" not in masked.lower()
    assert masked.endswith("@example.com") or masked.endswith("@Example.com")

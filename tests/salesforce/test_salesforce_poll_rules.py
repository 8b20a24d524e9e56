"""The Salesforce poll's pure rules (salesforce/poll.py) and the config keys."""

from __future__ import annotations

import datetime as dt

import pytest
import yaml

from unsubscribe_sync.api.config import ConfigError, parse_config
from unsubscribe_sync.salesforce.poll import (
    FIRST_START_LOOKBACK_SECONDS,
    completed_watermark,
    first_watermark,
    next_watermark,
    parse_stamp,
    poll_soql,
    read_from,
    reserve_reached,
    soql_datetime,
)
from unsubscribe_sync.salesforce.types import ApiUsage

T0 = dt.datetime(2026, 12, 3, 19, 0, 0, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("object_name", "field", "expected"),
    [
        (
            "Contact",
            "HasOptedOutOfEmail",
            "SELECT Id, Email, HasOptedOutOfEmail, SystemModstamp FROM Contact WHERE HasOptedOutOfEmail = true "
            "AND SystemModstamp >= 2026-12-03T19:00:00.000Z ORDER BY SystemModstamp",
        ),
        (
            "Lead",
            "X__c",
            "SELECT Id, Email, X__c, SystemModstamp FROM Lead WHERE X__c = true AND IsConverted = false "
            "AND SystemModstamp >= 2026-12-03T19:00:00.000Z ORDER BY SystemModstamp",
        ),
    ],
)
def test_poll_soql(object_name: str, field: str, expected: str) -> None:
    assert poll_soql(object_name, field, T0) == expected


@pytest.mark.parametrize("bad", [("Contact; DELETE", "F"), ("Contact", "F OR Id != null")])
def test_poll_soql_refuses_bad_names(bad: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="invalid Salesforce"):
        poll_soql(bad[0], bad[1], T0)


@pytest.mark.parametrize(
    ("epoch", "literal"),
    [
        (T0, "2026-12-03T19:00:00.000Z"),
        (T0 + 1.2349, "2026-12-03T19:00:01.234Z"),
        (T0 - 0.0001, "2026-12-03T18:59:59.999Z"),
    ],
)
def test_soql_datetime_rounds_down(epoch: float, literal: str) -> None:
    assert soql_datetime(epoch) == literal


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-03T19:00:00.000+0000", T0),
        ("2026-12-03T19:00:00.000Z", T0),
        ("2026-12-03T20:00:00.000+01:00", T0),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_stamp(value: object, expected: float | None) -> None:
    assert parse_stamp(value) == expected


@pytest.mark.parametrize(
    ("current", "stamps", "expected"),
    [
        (T0, [], T0),
        (T0, ["2026-12-03T19:00:05.000+0000", "2026-12-03T19:00:02.000+0000"], T0 + 5),
        (T0, ["2026-12-03T18:00:00.000+0000"], T0),  # never back
        (T0, [None, "junk"], T0),
    ],
)
def test_next_watermark(current: float, stamps: list[str | None], expected: float) -> None:
    assert next_watermark(current, [{"SystemModstamp": s} for s in stamps]) == expected


@pytest.mark.parametrize(("current", "started", "expected"), [(T0, T0 + 60, T0 + 60), (T0, T0 - 60, T0)])
def test_completed_watermark(current: float, started: float, expected: float) -> None:
    assert completed_watermark(current, started) == expected


@pytest.mark.parametrize(("watermark", "lookback", "expected"), [(T0, 300, T0 - 300), (T0, 0, T0), (T0, -5, T0)])
def test_read_from(watermark: float, lookback: float, expected: float) -> None:
    assert read_from(watermark, lookback) == expected


@pytest.mark.parametrize(
    ("nightly", "now", "expected"),
    [(T0 - 3600, T0, T0 - 3600), (None, T0, T0 - FIRST_START_LOOKBACK_SECONDS), (T0 + 10, T0, T0)],
)
def test_first_watermark(nightly: float | None, now: float, expected: float) -> None:
    assert first_watermark(nightly, now) == expected


@pytest.mark.parametrize(
    ("usage", "ratio", "expected"),
    [
        (None, 0.1, False),
        (ApiUsage(used=10, max=100), 0.1, False),
        (ApiUsage(used=90, max=100), 0.1, True),  # 10 left = the reserve
        (ApiUsage(used=89, max=100), 0.1, False),
        (ApiUsage(used=100, max=100), 0.0, True),
        (ApiUsage(used=0, max=0), 0.1, False),
    ],
)
def test_reserve_reached(usage: ApiUsage | None, ratio: float, expected: bool) -> None:
    assert reserve_reached(usage, ratio) is expected


def test_config_defaults_and_bounds() -> None:
    cfg = parse_config({})
    assert (cfg.salesforcePoll.intervalSeconds, cfg.salesforcePoll.lookbackSeconds) == (300, 300)
    assert parse_config({"salesforcePoll": {"intervalSeconds": 1}}).salesforcePoll.intervalSeconds == 1
    assert parse_config({"salesforcePoll": {"intervalSeconds": 0}}).salesforcePoll.intervalSeconds == 0
    with pytest.raises(ConfigError, match=r"salesforcePoll\.intervalSeconds"):
        parse_config({"salesforcePoll": {"intervalSeconds": -1}})
    with pytest.raises(ConfigError, match=r"salesforcePoll\.unknown: unknown key"):
        parse_config({"salesforcePoll": {"unknown": 1}})


SPEC = {
    "salesforce": {"credentialsSecretRef": {"name": "sf"}},
    "pushWorker": {"webhookSecretRef": {"name": "hook"}},
}


@pytest.mark.parametrize(("interval", "rendered"), [(None, None), (0, 0), (30, 30), (600, 600)])
def test_spec_interval_is_rendered_into_the_config_only_when_set(interval: int | None, rendered: int | None) -> None:
    from unsubscribe_sync.api.spec import UnsubscribeSyncSpec
    from unsubscribe_sync.resources.config_file import config_for, config_yaml

    poll = {} if interval is None else {"salesforcePoll": {"intervalSeconds": interval}}
    spec = UnsubscribeSyncSpec.model_validate({**SPEC, **poll})
    text = config_yaml(config_for("acme", "ns", spec))
    section = parse_config(yaml.safe_load(text)).salesforcePoll
    if rendered is None:
        assert "salesforcePoll" not in text and section.intervalSeconds == 300
    else:
        assert section.intervalSeconds == rendered


@pytest.mark.parametrize("interval", [1, 29, -1])
def test_spec_interval_below_30_is_refused(interval: int) -> None:
    from pydantic import ValidationError

    from unsubscribe_sync.api.spec import UnsubscribeSyncSpec

    with pytest.raises(ValidationError, match=r"salesforcePoll\.intervalSeconds"):
        UnsubscribeSyncSpec.model_validate({**SPEC, "salesforcePoll": {"intervalSeconds": interval}})


def test_crd_rule_says_0_or_at_least_30() -> None:
    from unsubscribe_sync.api.crd import crd_manifest

    spec = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    interval = spec["properties"]["salesforcePoll"]["properties"]["intervalSeconds"]
    assert interval["minimum"] == 0
    assert interval["x-kubernetes-validations"][0]["rule"] == "self == 0 || self >= 30"

"""matching.mode: config key, CRD field and the operator's rendering of it."""

from __future__ import annotations

import pytest
import yaml

from unsubscribe_sync.api.config import ConfigError, parse_config
from unsubscribe_sync.api.crd import spec_schema
from unsubscribe_sync.api.spec import MatchingMode, UnsubscribeSyncSpec
from unsubscribe_sync.resources.config_file import config_for, config_yaml

SPEC = {"salesforce": {"credentialsSecretRef": {"name": "sf"}}, "pushWorker": {"webhookSecretRef": {"name": "wh"}}}


def test_config_default_is_salesforce_id() -> None:
    assert parse_config({}).matching.mode is MatchingMode.SALESFORCE_ID
    assert not parse_config({}).matching.by_email


def test_config_email_mode() -> None:
    assert parse_config({"matching": {"mode": "Email"}}).matching.by_email


def test_config_bad_mode_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"matching\.mode"):
        parse_config({"matching": {"mode": "email"}})


def test_crd_has_the_mode_enum_with_its_default() -> None:
    mode = spec_schema()["properties"]["matching"]["properties"]["mode"]
    assert mode["enum"] == ["SalesforceId", "Email"]
    assert mode["default"] == "SalesforceId"


@pytest.mark.parametrize(
    ("spec_mode", "rendered"),
    [(None, None), ("SalesforceId", None), ("Email", "Email")],
)
def test_operator_renders_the_mode_into_the_config(spec_mode: str | None, rendered: str | None) -> None:
    raw = dict(SPEC)
    if spec_mode is not None:
        raw["matching"] = {"mode": spec_mode}
    text = config_yaml(config_for("s", "ns", UnsubscribeSyncSpec.model_validate(raw)))
    config = parse_config(yaml.safe_load(text))
    assert config.matching.mode == (MatchingMode(rendered) if rendered else MatchingMode.SALESFORCE_ID)
    assert ("matching:" in text) == (rendered is not None)

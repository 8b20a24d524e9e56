"""The config file model and the push-field rule."""

from pathlib import Path

import pytest

from unsubscribe_sync.api.config import ConfigError, load_config, parse_config
from unsubscribe_sync.api.push_field import effective_push_target
from unsubscribe_sync.api.spec import OptOutTarget


def test_contract_defaults() -> None:
    cfg = parse_config({})
    assert cfg.salesforce.loginUrl == "https://login.salesforce.com"
    assert cfg.salesforce.apiVersion == "62.0"
    assert cfg.salesforce.objects == ["Contact", "Lead"]
    assert cfg.optOut.target is OptOutTarget.EMAIL_OPT_OUT
    assert cfg.nightly.enabled is True
    assert cfg.ledger.url == "sqlite:////var/lib/unsubscribe-sync/ledger.db"
    assert cfg.worker.listen == "0.0.0.0:8080"
    assert cfg.worker.port == 8080


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"salesforce": {"objects": ["Account"]}}, "salesforce.objects.0"),
        ({"optOut": {"target": "Nope"}}, "optOut.target"),
        ({"worker": {"listen": "nonsense"}}, "worker.listen"),
        ({"ledger": {"url": "mysql://x"}}, "ledger"),
        ({"salesforce": {"bogus": 1}}, "salesforce.bogus"),
        ({"salesforce": {"objects": []}}, "salesforce.objects"),
    ],
)
def test_bad_config_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert key in str(info.value)


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("salesforce: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("optOut: {target: MarketoSalesOptOut}\nledger: {url: 'sqlite:///x.db'}\n")
    assert load_config(good).optOut.target is OptOutTarget.MARKETO_SALES_OPT_OUT


@pytest.mark.parametrize(
    ("target", "nightly", "expected"),
    [
        ("EmailOptOut", True, OptOutTarget.EMAIL_OPT_OUT),
        ("MarketoSalesOptOut", True, OptOutTarget.MARKETO_SALES_OPT_OUT),
        ("EmailOptOut", False, OptOutTarget.EMAIL_OPT_OUT),
        ("MarketoSalesOptOut", False, OptOutTarget.EMAIL_OPT_OUT),
    ],
)
def test_push_field_rule(target: str, nightly: bool, expected: OptOutTarget) -> None:
    assert effective_push_target(target, nightly) is expected


@pytest.mark.postgres
def test_postgres_fixture_gives_a_fresh_database(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select count(*) from pg_tables where schemaname = 'public'").fetchone() == (0,)

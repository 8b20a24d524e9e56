"""The peering lifetime: it bounds the take-over time after a killed leader (kopf's default is 60 s).

A standby takes over once the leader's entry in the peering object has gone a lifetime without a keepalive;
kopf sends keepalives every lifetime minus 5-10 s, so the lifetime has a floor."""

from __future__ import annotations

import argparse

import pytest

from unsubscribe_sync.api.constants import OPERATOR_MIN_PEERING_LIFETIME, OPERATOR_PEERING_LIFETIME
from unsubscribe_sync.cli import build_parser
from unsubscribe_sync.commands.operator import operator_options
from unsubscribe_sync.controller.runtime import OperatorOptions, build_settings


def parse(*argv: str) -> argparse.Namespace:
    return build_parser(["operator", *argv]).parse_args(["operator", *argv])


def settings_from(*argv: str) -> tuple[OperatorOptions, int]:
    options = operator_options(parse(*argv), namespaces=(), allowed_login_hosts=())
    return options, build_settings(options).peering.lifetime


def test_the_default_lifetime_is_shorter_than_kopfs_and_keeps_keepalives_sane() -> None:
    import kopf

    kopf_default = kopf.OperatorSettings().peering.lifetime
    assert kopf_default == 60
    assert OPERATOR_MIN_PEERING_LIFETIME <= OPERATOR_PEERING_LIFETIME < kopf_default
    # kopf's keepalive interval is the lifetime minus 5-10 s: at the floor it stays at 5 s or more.
    assert OPERATOR_MIN_PEERING_LIFETIME - 10 >= 5
    assert OperatorOptions().peering_lifetime == OPERATOR_PEERING_LIFETIME


def test_the_lifetime_reaches_kopfs_peering_settings() -> None:
    settings = build_settings(OperatorOptions(standalone=False, peering_name="usync", peering_lifetime=33))
    assert settings.peering.lifetime == 33
    assert build_settings(OperatorOptions(standalone=False, peering_name="usync")).peering.lifetime == 20


def test_the_command_line_flag_reaches_kopfs_settings() -> None:
    options, lifetime = settings_from("--peering", "usync", "--peering-lifetime", "45")
    assert (options.peering_name, options.peering_lifetime, lifetime) == ("usync", 45, 45)
    options, lifetime = settings_from("--peering", "usync")
    assert (options.peering_lifetime, lifetime) == (OPERATOR_PEERING_LIFETIME, OPERATOR_PEERING_LIFETIME)


def test_the_flag_is_harmless_when_standalone() -> None:
    options, _ = settings_from("--standalone", "--peering-lifetime", "30")
    assert options.standalone and build_settings(options).peering.standalone is True


@pytest.mark.parametrize("value", ["14", "0", "-20", "20.5", "soon"])
def test_the_command_line_refuses_a_lifetime_below_the_floor_or_not_whole(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse("--peering", "usync", "--peering-lifetime", value)
    assert "--peering-lifetime" in capsys.readouterr().err

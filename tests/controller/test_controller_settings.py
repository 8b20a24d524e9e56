"""kopf settings, command-line options and the RBAC the operator needs."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml

from unsubscribe_sync.cli import build_parser
from unsubscribe_sync.controller.kinds import CHILD_KINDS, DEPLOYMENT, USYNC, kind_of
from unsubscribe_sync.controller.reconciler import PRUNABLE
from unsubscribe_sync.controller.runtime import OperatorOptions, build_settings, namespaces_from

REPO = Path(__file__).resolve().parents[2]


def test_settings_for_production() -> None:
    settings = build_settings(OperatorOptions(namespaces=("sales",)))
    assert settings.watching.server_timeout == 300
    assert settings.watching.client_timeout and settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.watching.connect_timeout
    assert isinstance(settings.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert settings.persistence.progress_storage.prefix == "optout.dev"
    assert isinstance(settings.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)
    assert settings.persistence.diffbase_storage.prefix == "optout.dev"
    assert settings.persistence.finalizer == "optout.dev/finalizer"
    assert settings.posting.level == logging.INFO
    assert settings.peering.standalone is True
    assert settings.scanning.disabled is True


def test_settings_for_globs_and_peering() -> None:
    settings = build_settings(OperatorOptions(namespaces=("team-*",), standalone=False, peering_name="usync"))
    assert settings.scanning.disabled is False
    assert settings.peering.name == "usync" and settings.peering.standalone is False


def test_each_peering_replica_gets_its_own_priority() -> None:
    """Replicas of equal kopf priority all pause; the command gives each a random one unless told."""
    from unsubscribe_sync.commands import operator as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    explicit = build_settings(OperatorOptions(standalone=False, peering_name="usync", priority=7))
    assert explicit.peering.priority == 7
    priorities = set()
    for _ in range(5):
        args = parser.parse_args(["--peering", "usync"])
        assert args.priority is None
        priorities.add(random_priority_from(args))
    assert len(priorities) > 1


def random_priority_from(args: argparse.Namespace) -> int:
    from unsubscribe_sync.commands.operator import peering_priority

    return peering_priority(args)


def test_namespaces_from_repeated_and_comma_separated() -> None:
    assert namespaces_from(["a,b", "b", " c "]) == ("a", "b", "c")
    assert namespaces_from(None) == ()
    assert OperatorOptions().clusterwide and not OperatorOptions(namespaces=("a",)).clusterwide


def parse(*argv: str) -> Any:
    return build_parser(["operator", *argv]).parse_args(["operator", *argv])


def test_command_line_defaults_and_choices() -> None:
    args = parse()
    assert (args.metrics_port, args.liveness_port, args.peering, args.standalone) == (9090, 8080, None, False)
    args = parse("-n", "sales", "-n", "ops", "--peering", "usync", "--metrics-port", "9100")
    assert args.namespace == ["sales", "ops"] and args.peering == "usync" and args.metrics_port == 9100


@pytest.mark.parametrize(
    "argv",
    [
        ["--all-namespaces", "--namespace", "x"],
        ["--standalone", "--peering", "p"],
        ["--metrics-port", "99999"],
        ["--preflight-interval", "-1"],
    ],
)
def test_command_line_rejects_conflicts(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


def test_kind_of_child_manifests() -> None:
    assert kind_of({"apiVersion": "apps/v1", "kind": "Deployment"}) is DEPLOYMENT
    assert DEPLOYMENT.path("ns", "x", "status") == "/apis/apps/v1/namespaces/ns/deployments/x/status"
    assert USYNC.path("ns") == "/apis/optout.dev/v1alpha1/namespaces/ns/unsubscribesyncs"
    with pytest.raises(KeyError):
        kind_of({"apiVersion": "v1", "kind": "Secret"})


def _rules() -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all((REPO / "deploy/base/rbac.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "ClusterRole")
    return role["rules"]  # type: ignore[no-any-return]


def _allowed(group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in _rules():
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs |= set(rule["verbs"])
    return verbs


def test_rbac_covers_what_the_operator_does_and_no_more() -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy/base/rbac.yaml").read_text()))
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    assert _allowed("optout.dev", "unsubscribesyncs") == {"get", "list", "watch", "patch"}
    assert _allowed("optout.dev", "unsubscribesyncs/status") == {"get", "patch"}
    assert "create" not in _allowed("optout.dev", "unsubscribesyncs")
    assert _allowed("optout.dev", "unsubscribesyncs/finalizers") == {"update"}  # blockOwnerDeletion
    for kind in CHILD_KINDS:
        assert {"get", "list", "watch", "create", "patch"} <= _allowed(kind.group, kind.plural), kind.plural
        # Only the optional children a spec change can turn off are ever deleted by the operator.
        assert ("delete" in _allowed(kind.group, kind.plural)) is (kind in PRUNABLE), kind.plural
    assert _allowed("batch", "jobs") == {"get", "list", "watch"}
    assert _allowed("", "pods") == {"list"}
    assert _allowed("", "secrets") == {"get"}
    assert _allowed("", "events") == {"create"}
    assert not any("kopf.dev" in rule["apiGroups"] for rule in _rules())  # standalone by default
    for rule in _rules():
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]


def test_allowed_login_hosts_come_from_the_flag_and_the_environment() -> None:
    from unsubscribe_sync.commands.operator import allowed_login_hosts

    args = parse("--allowed-login-hosts", "127.0.0.1,*.corp.example", "--allowed-login-hosts", "sso.example")
    env = {"UNSUBSCRIBE_SYNC_ALLOWED_LOGIN_HOSTS": "Login.Proxy.Example"}
    assert allowed_login_hosts(args, env) == ("login.proxy.example", "127.0.0.1", "*.corp.example", "sso.example")
    assert allowed_login_hosts(parse(), {}) == ()


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_bad_allowed_login_host_stops_the_command_naming_it(
    where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from unsubscribe_sync.cli import main

    argv = ["operator"]
    if where == "flag":
        argv += ["--allowed-login-hosts", "ok.example,*.com"]
    else:
        monkeypatch.setenv("UNSUBSCRIBE_SYNC_ALLOWED_LOGIN_HOSTS", "*.com")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--allowed-login-hosts" in err and "'*.com'" in err

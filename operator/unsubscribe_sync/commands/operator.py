"""`unsubscribe-sync operator`: run the kopf operator that reconciles UnsubscribeSync objects."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from unsubscribe_sync.api.constants import (
    DEFAULT_IMAGE,
    OPERATOR_HEALTH_PORT,
    OPERATOR_METRICS_PORT,
    OPERATOR_MIN_PEERING_LIFETIME,
    OPERATOR_PEERING_LIFETIME,
)
from unsubscribe_sync.logs import configure_logging

if TYPE_CHECKING:
    from unsubscribe_sync.controller.runtime import OperatorOptions

_NAMESPACE = re.compile(r"^[a-z0-9*?\[\]!]([-a-z0-9*?\[\]!]*[a-z0-9*?\[\]!])?$")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0-65535: {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def _lifetime(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if value < OPERATOR_MIN_PEERING_LIFETIME:
        raise argparse.ArgumentTypeError(
            f"at least {OPERATOR_MIN_PEERING_LIFETIME} s (keepalives go every lifetime minus 5-10 s): {value}"
        )
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        metavar="NS",
        help="watch this namespace (repeat, or comma-separate; globs like 'team-*' allowed)",
    )
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace (the default)")
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument("--standalone", action="store_true", help="run without peering (one replica; the default)")
    peering.add_argument("--peering", metavar="NAME", help="coordinate replicas through this kopf peering object")
    parser.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority of this replica (default: random, so exactly one replica is active)",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=_lifetime,
        default=OPERATOR_PEERING_LIFETIME,
        metavar="SECONDS",
        help="with --peering: a replica's peering entry expires this long after its last keepalive; a standby "
        f"takes over from a killed leader within about this time (default {OPERATOR_PEERING_LIFETIME}, "
        f"kopf's own 60; at least {OPERATOR_MIN_PEERING_LIFETIME})",
    )
    parser.add_argument("--metrics-port", type=_port, default=OPERATOR_METRICS_PORT, help="port of /metrics (0: off)")
    parser.add_argument(
        "--liveness-port",
        type=_port,
        default=OPERATOR_HEALTH_PORT,
        help="port of the /healthz liveness endpoint (0: off)",
    )
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="image of the push worker and nightly job")
    parser.add_argument(
        "--resync-interval",
        type=_seconds,
        default=120.0,
        metavar="SECONDS",
        help="full reconcile of every object this often (the drift safety net)",
    )
    parser.add_argument(
        "--preflight-interval",
        type=_seconds,
        default=300.0,
        metavar="SECONDS",
        help="Salesforce login + describe per object this often (0: off)",
    )
    parser.add_argument(
        "--salesforce-ca-file",
        type=Path,
        metavar="PEM",
        help="extra CA bundle to trust for Salesforce (e.g. a TLS-inspecting proxy)",
    )
    parser.add_argument(
        "--allowed-login-hosts",
        action="append",
        metavar="HOSTS",
        help="comma-separated login hosts to allow besides the Salesforce ones (exact names, '*.suffix' "
        "wildcards or IP literals; repeatable; also $UNSUBSCRIBE_SYNC_ALLOWED_LOGIN_HOSTS). The operator "
        "reads no Secret and sends no credentials for an UnsubscribeSync whose loginUrl host is not allowed",
    )
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default="json")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")


def peering_priority(args: argparse.Namespace) -> int:
    """This replica's peering priority: as given, else random so that exactly one replica is active."""
    return int(args.priority) if args.priority is not None else random.randint(1, 1_000_000)


def allowed_login_hosts(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The extra login host patterns from the flag and the environment variable (ValueError names a bad one)."""
    from unsubscribe_sync.controller.login_hosts import ENV_VAR, parse_patterns

    return parse_patterns([environ.get(ENV_VAR, ""), *(args.allowed_login_hosts or ())])


def run(args: argparse.Namespace) -> int:
    from unsubscribe_sync.controller.runtime import OperatorRuntime, namespaces_from

    namespaces = () if args.all_namespaces else namespaces_from(args.namespace)
    bad = [ns for ns in namespaces if not _NAMESPACE.match(ns)]
    if bad:
        print(f"unsubscribe-sync operator: invalid --namespace value(s): {', '.join(bad)}", file=sys.stderr)
        return 2
    if args.resync_interval == 0:
        print("unsubscribe-sync operator: --resync-interval must be greater than 0", file=sys.stderr)
        return 2
    if args.salesforce_ca_file is not None and not args.salesforce_ca_file.is_file():
        print(
            f"unsubscribe-sync operator: --salesforce-ca-file {args.salesforce_ca_file} is not a readable file",
            file=sys.stderr,
        )
        return 2
    try:
        extra_hosts = allowed_login_hosts(args, os.environ)
    except ValueError as exc:
        print(f"unsubscribe-sync operator: --allowed-login-hosts: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_format, args.log_level)
    options = operator_options(args, namespaces=namespaces, allowed_login_hosts=extra_hosts)
    asyncio.run(OperatorRuntime(options).run())
    return 0


def operator_options(
    args: argparse.Namespace, *, namespaces: tuple[str, ...], allowed_login_hosts: tuple[str, ...]
) -> OperatorOptions:
    """The runtime's options from parsed (and checked) arguments."""
    from unsubscribe_sync.controller.runtime import OperatorOptions

    return OperatorOptions(
        namespaces=namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=peering_priority(args),
        peering_lifetime=args.peering_lifetime,
        image=args.image,
        metrics_port=args.metrics_port or None,
        liveness_port=args.liveness_port or None,
        resync_interval=args.resync_interval,
        preflight_interval=args.preflight_interval,
        salesforce_ca_file=args.salesforce_ca_file,
        allowed_login_hosts=allowed_login_hosts,
    )

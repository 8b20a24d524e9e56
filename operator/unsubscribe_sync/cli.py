"""Command line: `unsubscribe-sync <command>`; each command lives in unsubscribe_sync.commands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from unsubscribe_sync import __version__

# name -> (module under unsubscribe_sync.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "operator": ("operator", "run the operator (kopf)"),
    "worker": ("worker", "run the push worker and ledger API"),
    "nightly": ("nightly", "run one nightly bidirectional sync"),
    "render": ("render", "print the child manifests the operator would apply"),
    "sandbox": ("sandbox", "run a local Salesforce-compatible server (TLS)"),
    "demo": ("demo", "run the whole flow locally and print a report"),
    "check": ("check", "preflight: credentials, fields installed, API limits"),
    "link": ("link", "print a one-click unsubscribe link (RFC 8058) for one recipient"),
}


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unsubscribe-sync", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the command that runs (keeps `render` free of kopf etc.)
            mod = importlib.import_module(f"unsubscribe_sync.commands.{module}")
            mod.add_arguments(p)
            p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    run = getattr(args, "_run", None)
    if run is None:  # pragma: no cover - argparse already rejected it
        parser.error("unknown command")
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130

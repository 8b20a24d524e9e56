"""`unsubscribe-sync link --config FILE --email E [--salesforce-id ID] [--source S]`: one one-click link.

Prints the object ``POST /v1/unsubscribe-links`` returns for one recipient (``email``, ``url``,
``listUnsubscribe``, ``listUnsubscribePost``) as JSON, signed with the first key of ``oneClick.keyFile``.
Exit codes: 0 printed, 2 config unusable (one-click off, key file unreadable), 1 recipient refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from unsubscribe_sync.api.config import ConfigError
from unsubscribe_sync.commands.common import BAD_CONFIG_EXIT, load_config_for

BAD_RECIPIENT_EXIT = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file (oneClick.keyFile and oneClick.baseUrl)")
    parser.add_argument("--email", required=True, help="the recipient's address")
    parser.add_argument("--salesforce-id", help="the recipient's Contact or Lead ID (15 or 18 characters)")
    parser.add_argument("--source", help="stored as the unsubscribe's source (default: one-click)")


def run(args: argparse.Namespace) -> int:
    config = load_config_for("link", args.config, log_level="warning")
    if config is None:
        return BAD_CONFIG_EXIT
    from unsubscribe_sync.worker.links import parse_recipients
    from unsubscribe_sync.worker.oneclick import OneClickLinks
    from unsubscribe_sync.worker.validation import InvalidRequest

    recipient: dict[str, str] = {"email": args.email}
    if args.salesforce_id:
        recipient["salesforceId"] = args.salesforce_id
    if args.source:
        recipient["source"] = args.source
    try:
        links = OneClickLinks.from_config(config.oneClick)
        if links is None:
            raise ConfigError("oneClick.keyFile: not set, so one-click links are off")
        ((email, salesforce_id, source),) = parse_recipients({"recipients": [recipient]}, config.salesforce.objects)
        link = links.link(email, salesforce_id, source, time.time())
    except ConfigError as exc:
        print(f"unsubscribe-sync link: {exc}", file=sys.stderr)
        return BAD_CONFIG_EXIT
    except InvalidRequest as exc:
        problems = "; ".join(f"{p.field}: {p.message}" for p in exc.details)
        print(f"unsubscribe-sync link: {problems or exc.message}", file=sys.stderr)
        return BAD_RECIPIENT_EXIT
    print(json.dumps(link, indent=2))
    return 0

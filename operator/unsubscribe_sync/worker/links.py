"""``POST /v1/unsubscribe-links`` (internal listener, bearer): one-click links for a mail pipeline's recipients.

The recipients are checked by the same rules as ``POST /v1/unsubscribes`` (address, Salesforce ID, source), so a
link only ever carries an address the ledger will take.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from unsubscribe_sync.worker.oneclick import OneClickLinks
from unsubscribe_sync.worker.validation import MAX_ITEMS, FieldProblem, InvalidRequest, parse_item

RECIPIENT_FIELDS = ("email", "salesforceId", "source")


def parse_recipients(body: Any, objects: Sequence[str]) -> list[tuple[str, str | None, str | None]]:
    """(address, salesforce id, source) of each recipient of ``{"recipients": [...]}``; InvalidRequest if any is bad."""
    if not isinstance(body, dict) or set(body) != {"recipients"}:
        raise InvalidRequest(
            "the body must be a JSON object holding only 'recipients'", [FieldProblem(None, "recipients", "required")]
        )
    raw = body["recipients"]
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'recipients' must be a non-empty list", [FieldProblem(None, "recipients", "invalid")])
    if len(raw) > MAX_ITEMS:
        raise InvalidRequest(
            f"too many recipients: {len(raw)} (at most {MAX_ITEMS} a request)",
            [FieldProblem(None, "recipients", f"at most {MAX_ITEMS} items")],
        )
    problems: list[FieldProblem] = []
    found: list[tuple[str, str | None, str | None]] = []
    for index, entry in enumerate(raw):
        if isinstance(entry, dict):
            for key in sorted(k for k in entry if k not in RECIPIENT_FIELDS):
                allowed = ", ".join(RECIPIENT_FIELDS)
                problems.append(FieldProblem(index, str(key), f"unknown field (allowed: {allowed})"))
        item = parse_item(entry, index, objects, problems)
        if item is not None:
            source = entry.get("source") if isinstance(entry, dict) else None
            found.append((item.email, item.salesforce_id, source.strip() if isinstance(source, str) else None))
    if problems:
        count = len({p.index for p in problems})
        raise InvalidRequest(f"{count} of {len(raw)} recipients are invalid; no link was made", problems)
    return found


def make_links(links: OneClickLinks, recipients: Sequence[tuple[str, str | None, str | None]]) -> dict[str, Any]:
    now = time.time()
    return {"links": [links.link(email, sf_id, source, now) for email, sf_id, source in recipients]}

"""`unsubscribe-sync demo` runs the whole flow end to end from a fresh process."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_end_to_end() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unsubscribe_sync", "demo"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Posted 4 unsubscribes" in out
    assert "skipped: no id" in out
    push, _, email_mode = out.partition("Email matching (matching.mode: Email)")
    # the pushed records read back from the sandbox, the 15-character Lead id included
    assert len(re.findall(r"acme-demo\.com\s*\S\s*true\b", push)) == 3, out
    counts = re.search(r"toSalesforce=(\d+) fromSalesforce=(\d+) skippedNoSalesforceId=(\d+) failed=(\d+)", out)
    assert counts is not None, out
    to_sf, from_sf, skipped, failed = map(int, counts.groups())
    assert to_sf == 1  # the opt-out a Salesforce user cleared is set again
    assert from_sf > 0  # records already opted out in the seeded org come into the ledger
    assert skipped == 3 and failed == 0  # the address without an id, the Mailgun and the one-click unsubscribes
    # the public listener: a signed sender webhook and a one-click link, stored (address only)
    assert "POST /v1/webhooks/mailgun" in out and "200 {'accepted': 1, 'ignored': 0}" in out
    assert "POST /u/<token> List-Unsubscribe=One-Click" in out
    assert "mailgun:unsubscribed" in out and "one-click" in out
    assert "salesforce-sync" in out and "Demo finished" in out
    # Email matching: one address-only unsubscribe set the Contact and both Leads (any case), not the converted Lead
    assert len(re.findall(r"(?i)pat\.doe@acme-demo\.com\s*\S\s*true\b", email_mode)) == 3, out
    assert re.search(r"Lead \(converted\).*pat\.doe@acme-demo\.com\s*\S\s*false", email_mode), out

"""`unsubscribe-sync check --config FILE`: preflight of credentials, opt-out fields and API limits.

Prints one line per requirement (✓ holds, ✗ fails, ! worth knowing) and a verdict. Exit codes:
0 every requirement holds, 1 at least one fails, 2 the config file is unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TextIO

from unsubscribe_sync.api.config import Config
from unsubscribe_sync.api.constants import EMAIL_OPT_OUT_FIELD
from unsubscribe_sync.api.push_field import effective_push_target
from unsubscribe_sync.api.spec import OptOutTarget
from unsubscribe_sync.commands.common import BAD_CONFIG_EXIT, load_config_for
from unsubscribe_sync.salesforce.client import SalesforceClient
from unsubscribe_sync.salesforce.fields import FieldReport
from unsubscribe_sync.salesforce.matching import matching_field_problem, matching_fields
from unsubscribe_sync.salesforce.types import SalesforceError

OK, FAIL, NOTE = "ok", "fail", "note"
_MARKS = {OK: "✓", FAIL: "✗", NOTE: "!"}


@dataclass(frozen=True)
class Requirement:
    name: str
    status: str  # ok | fail | note (a note never fails the check)
    detail: str


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file (the same one the worker reads)")
    parser.add_argument("--json", action="store_true", help="print the verdict as one JSON object")


def _field_label(target: OptOutTarget, field: str | None) -> str:
    name = "Email Opt Out" if target is OptOutTarget.EMAIL_OPT_OUT else "Marketo Sales Opt Out"
    return f"{name} ({field})" if field else name


def _field_requirements(role: str, report: FieldReport) -> list[Requirement]:
    out = []
    for status in report.objects.values():
        if status.ok:
            out.append(
                Requirement(
                    f"{role} on {status.object}",
                    OK,
                    f"{_field_label(report.target, status.field)} exists, is boolean and updateable",
                )
            )
        else:
            out.append(Requirement(f"{role} on {status.object}", FAIL, status.problem or "unusable"))
    if report.problem:
        out.append(Requirement(role, FAIL, report.problem))
    return out


def _matching_requirements(client: SalesforceClient, objects: Sequence[str]) -> list[Requirement]:
    """Email mode: the integration user can query Email (and IsConverted on Lead) on each object."""
    out = []
    for obj in objects:
        name = f"Email matching on {obj}"
        try:
            problem = matching_field_problem(obj, client.describe(obj))
        except SalesforceError as exc:
            out.append(Requirement(name, FAIL, f"describe failed: {exc}"))
            continue
        fields = " and ".join(matching_fields(obj))
        out.append(Requirement(name, FAIL, problem) if problem else Requirement(name, OK, f"{fields} can be queried"))
    return out


def run_checks(cfg: Config) -> list[Requirement]:
    """Every preflight requirement, in order; stops at the first one the rest depend on (login)."""
    sf = cfg.salesforce
    results: list[Requirement] = []
    if cfg.nightly.enabled:
        results.append(Requirement("nightly sync", OK, "enabled (bidirectional sync of the target field)"))
    else:
        detail = "disabled: only the real-time push runs"
        if cfg.optOut.target is OptOutTarget.MARKETO_SALES_OPT_OUT:
            detail += f", and it writes {EMAIL_OPT_OUT_FIELD} (Email Opt Out), not the Marketo Sales Opt Out target"
        results.append(Requirement("nightly sync", NOTE, detail))
    try:
        client = SalesforceClient.from_config(sf)
    except SalesforceError as exc:
        results.append(Requirement("credentials", FAIL, str(exc)))
        return results
    try:
        try:
            instance = client.login()
        except SalesforceError as exc:
            results.append(Requirement("credentials", FAIL, str(exc)))
            return results
        grant = "client credentials" if client.tokens.grant == "client_credentials" else "JWT bearer"
        results.append(Requirement("credentials", OK, f"logged in with the {grant} grant; instance {instance}"))

        push = effective_push_target(cfg.optOut.target, cfg.nightly.enabled)
        # Seed rule 2: with nightly sync on, the push and the nightly sync share the target field.
        roles: list[tuple[str, OptOutTarget]] = [("opt-out field" if cfg.nightly.enabled else "push field", push)]
        for role, target in roles:
            try:
                report = client.check_fields(target, cfg.optOut.marketoSalesOptOutField, sf.objects)
            except SalesforceError as exc:
                results.append(Requirement(role, FAIL, f"describe failed: {exc}"))
                continue
            results.extend(_field_requirements(role, report))

        if cfg.matching.by_email:
            results.extend(_matching_requirements(client, sf.objects))

        try:
            usage = client.limits()
        except SalesforceError as exc:
            results.append(Requirement("API limits", FAIL, f"cannot read /limits: {exc}"))
        else:
            remaining = usage.max - usage.used
            reserve = int(usage.max * sf.apiReserveRatio)
            detail = f"{usage.used} of {usage.max} daily API requests used ({usage.ratio:.0%}); {remaining} left"
            if remaining <= reserve:
                results.append(
                    Requirement("API limits", FAIL, f"{detail}, at or below the reserve of {reserve} (apiReserveRatio)")
                )
            else:
                results.append(Requirement("API limits", OK, detail))
    finally:
        client.close()
    return results


def render_text(results: list[Requirement], out: TextIO) -> None:
    width = max((len(r.name) for r in results), default=0)
    for r in results:
        out.write(f"{_MARKS[r.status]} {r.name.ljust(width)}  {r.detail}\n")
    failed = sum(r.status == FAIL for r in results)
    out.write("verdict: ready\n" if not failed else f"verdict: NOT ready ({failed} requirement(s) failing)\n")


def run(args: argparse.Namespace) -> int:
    cfg = load_config_for("check", args.config, log_level="warning")
    if cfg is None:
        return BAD_CONFIG_EXIT
    results = run_checks(cfg)
    ok = all(r.status != FAIL for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "requirements": [asdict(r) for r in results]}, ensure_ascii=False))
    else:
        render_text(results, sys.stdout)
    return 0 if ok else 1

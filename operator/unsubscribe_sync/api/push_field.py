"""The effective push field rule (seed rule 2), in one place.

With nightly sync enabled the push writes the field chosen by ``optOutField.target`` (the one the nightly
sync reads and writes); with nightly sync disabled it writes Email Opt Out (``HasOptedOutOfEmail``) whatever
the target says.
"""

from __future__ import annotations

from unsubscribe_sync.api.constants import EMAIL_OPT_OUT_FIELD
from unsubscribe_sync.api.spec import OptOutTarget, UnsubscribeSyncSpec


def effective_push_target(target: OptOutTarget | str, nightly_enabled: bool) -> OptOutTarget:
    """The opt-out target the real-time push writes."""
    if not nightly_enabled:
        return OptOutTarget.EMAIL_OPT_OUT
    return OptOutTarget(target)


def effective_push_field(spec: UnsubscribeSyncSpec, discovered_field: str | None = None) -> str:
    """API name of the field the real-time push writes, for ``status.pushField``.

    Email Opt Out is ``HasOptedOutOfEmail``. For Marketo Sales Opt Out it is the configured API name,
    else ``discovered_field`` (found on describe), else the target name ``MarketoSalesOptOut`` until
    the field has been discovered.
    """
    target = effective_push_target(spec.optOutField.target, spec.nightlySync.enabled)
    if target is OptOutTarget.EMAIL_OPT_OUT:
        return EMAIL_OPT_OUT_FIELD
    return spec.optOutField.marketoSalesOptOutField or discovered_field or target.value

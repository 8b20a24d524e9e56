"""The effective push field rule (seed rule 2), in one place.

With nightly sync enabled the push writes the field chosen by ``optOutField.target``;
with nightly sync disabled it writes Email Opt Out (``HasOptedOutOfEmail``) whatever
the target says.
"""

from unsubscribe_sync.api.spec import OptOutTarget


def effective_push_target(target: OptOutTarget | str, nightly_enabled: bool) -> OptOutTarget:
    """The opt-out target the real-time push writes."""
    if not nightly_enabled:
        return OptOutTarget.EMAIL_OPT_OUT
    return OptOutTarget(target)


def nightly_target(target: OptOutTarget | str) -> OptOutTarget:
    """The field the nightly sync reads and writes (only meaningful when it is enabled)."""
    return OptOutTarget(target)

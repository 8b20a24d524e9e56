"""The one writer step: every Salesforce write (push, resubscribe, nightly) is a fenced outbox claim written here."""

from unsubscribe_sync.writer.step import (
    DrainResult,
    WriteClient,
    WriteReport,
    WriteSettings,
    decide_outcomes,
    drain,
    write_claim,
)

__all__ = ["DrainResult", "WriteClient", "WriteReport", "WriteSettings", "decide_outcomes", "drain", "write_claim"]

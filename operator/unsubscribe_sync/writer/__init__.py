"""The one writer step: every Salesforce write (push, resubscribe, nightly) is a fenced outbox claim written here."""

from unsubscribe_sync.writer.step import WriteClient, WriteReport, WriteSettings, decide_outcomes, write_claim

__all__ = ["WriteClient", "WriteReport", "WriteSettings", "decide_outcomes", "write_claim"]

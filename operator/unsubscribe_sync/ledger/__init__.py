"""The unsubscribe ledger (SQLite or PostgreSQL): suppression list, Salesforce targets, push outbox, history, runs."""

from unsubscribe_sync.ledger.models import (
    IngestResult,
    LedgerStats,
    OutboxRow,
    PushOutcome,
    Resubscribe,
    ResubscribeResult,
    Unsubscribe,
)
from unsubscribe_sync.ledger.outbox import Claim, Completion
from unsubscribe_sync.ledger.store import Ledger, normalize_email

__all__ = [
    "Claim",
    "Completion",
    "IngestResult",
    "Ledger",
    "LedgerStats",
    "OutboxRow",
    "PushOutcome",
    "Resubscribe",
    "ResubscribeResult",
    "Unsubscribe",
    "normalize_email",
]

"""The ledger side of the nightly sync: the targets still owed to Salesforce, permanent failures left out.

``Ledger.iter_targets`` lists every target of an object; the nightly sync must not retry a record that
already failed for good (deleted, converted, malformed id...), so it reads the targets through this one
query on the ledger's own tables instead (keyset-paged like ``iter_targets``, bounded memory).
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Engine, select

from unsubscribe_sync.ledger import Ledger
from unsubscribe_sync.ledger.schema import salesforce_targets

FAILED = "failed"


def _engine(ledger: Ledger) -> Engine:
    engine = getattr(ledger, "engine", None) or ledger._engine
    assert isinstance(engine, Engine)
    return engine


def iter_open_targets(ledger: Ledger, object_name: str, *, page_size: int = 5000) -> Iterator[tuple[str, str]]:
    """(salesforce_id, email) of the object's targets not marked failed, ordered by id, streamed in pages."""
    engine = _engine(ledger)
    t = salesforce_targets
    after = ""
    while True:
        with engine.connect() as conn:
            page = conn.execute(
                select(t.c.salesforce_id, t.c.email)
                .where(t.c.object == object_name, t.c.salesforce_id > after, t.c.status != FAILED)
                .order_by(t.c.salesforce_id)
                .limit(page_size)
            ).all()
        yield from ((sid, email) for sid, email in page)
        if len(page) < page_size:
            return
        after = page[-1][0]

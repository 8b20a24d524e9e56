"""The Salesforce poll's state in the ledger: per-object watermarks and the one poller's lease.

The lease is a row (owner, expiry, fence) rather than a PostgreSQL advisory lock so it works the same on
SQLite and survives a connection drop: a replica holds it while it renews it; one that dies stops renewing
and another takes it over once it expires. Each take-over bumps the fence, and a watermark is only advanced
by the holder of the current fence, so a poller that lost its lease mid-tick cannot move it.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from unsubscribe_sync.ledger.base import LedgerBase
from unsubscribe_sync.ledger.schema import salesforce_poll_state

LEASE_ROW = "lease"
SOURCE_SALESFORCE_POLL = "salesforce-poll"  # the history source of opt-outs the poll read


def _object_row(object_name: str) -> str:
    return f"object:{object_name}"


class PollStateStore(LedgerBase):
    def acquire_poll_lease(self, owner: str, seconds: float) -> int | None:
        """Take or renew the poller's lease for ``seconds``; the fence held, or None while another owns it."""
        t = salesforce_poll_state
        try:
            with self._write() as conn:
                now = self._db_now(conn)
                query = select(t.c.owner, t.c.expires_at, t.c.fence).where(t.c.name == LEASE_ROW)
                if self._pg:
                    query = query.with_for_update()
                row = conn.execute(query).first()
                if row is None:
                    conn.execute(
                        t.insert().values(
                            name=LEASE_ROW, owner=owner, expires_at=now + seconds, fence=1, updated_at=now
                        )
                    )
                    return 1
                holder, expires_at, fence = row
                if holder != owner and expires_at is not None and expires_at > now:
                    return None
                fence = int(fence) if holder == owner else int(fence) + 1
                conn.execute(
                    update(t)
                    .where(t.c.name == LEASE_ROW)
                    .values(owner=owner, expires_at=now + seconds, fence=fence, updated_at=now)
                )
                return fence
        except IntegrityError:  # another replica created the row at the same moment: it holds the lease
            return None

    def release_poll_lease(self, owner: str) -> None:
        """Give the lease up (a clean shutdown): another replica takes over at its next tick."""
        t = salesforce_poll_state
        with self._write() as conn:
            conn.execute(update(t).where(t.c.name == LEASE_ROW, t.c.owner == owner).values(expires_at=0.0))

    def poll_watermark(self, object_name: str) -> float | None:
        """The stored watermark of ``object_name`` (the latest SystemModstamp committed), None before its first poll."""
        t = salesforce_poll_state
        with self._read() as conn:
            value = conn.execute(select(t.c.watermark).where(t.c.name == _object_row(object_name))).scalar()
        return None if value is None else float(value)

    def advance_poll_watermark(self, object_name: str, watermark: float, fence: int) -> bool:
        """Store ``watermark`` (never moving it back) and the success time, if ``fence`` still holds the lease.

        Called only after the rows read up to ``watermark`` are committed. False when the lease was lost.
        """
        t = salesforce_poll_state
        name = _object_row(object_name)
        with self._write() as conn:
            now = self._db_now(conn)
            held = conn.execute(select(t.c.fence).where(t.c.name == LEASE_ROW)).scalar()
            if held is None or int(held) != fence:
                return False
            current = conn.execute(select(t.c.watermark).where(t.c.name == name)).first()
            if current is None:
                conn.execute(
                    t.insert().values(name=name, watermark=watermark, last_success_at=now, fence=0, updated_at=now)
                )
            else:
                value = watermark if current[0] is None else max(float(current[0]), watermark)
                conn.execute(
                    update(t).where(t.c.name == name).values(watermark=value, last_success_at=now, updated_at=now)
                )
        return True

    def poll_last_success(self) -> float | None:
        """When the poll last completed for every object it polled (the oldest object's last success)."""
        t = salesforce_poll_state
        with self._read() as conn:
            value = conn.execute(select(func.min(t.c.last_success_at)).where(t.c.name.like("object:%"))).scalar()
        return None if value is None else float(value)

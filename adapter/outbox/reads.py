"""Reading the outbox: one delivery with its attempt log and the other deliveries of its
submission, the newest deliveries, a stored payload, the count of rows per status."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, select

from .engine import OutboxDatabase
from .model import Delivery, OutboxError, row_to_delivery
from .schema import STATUSES, attempts, deliveries

_SUMMARY_COLUMNS = [c for c in deliveries.c if c.name != "payload"]


class DeliveryReads(OutboxDatabase):
    """The read side of the outbox (its own engine on SQLite: readers never wait for writers)."""

    def get(self, delivery_id: str) -> Delivery | None:
        with self._read() as conn:
            row = conn.execute(select(*_SUMMARY_COLUMNS).where(deliveries.c.id == delivery_id)).first()
            if row is None:
                return None
            log_rows = conn.execute(
                select(attempts).where(attempts.c.delivery_id == delivery_id).order_by(attempts.c.id)
            ).all()
            related = conn.execute(
                select(deliveries.c.id)
                .where(deliveries.c.group_id == row.group_id, deliveries.c.id != delivery_id)
                .order_by(deliveries.c.created_at, deliveries.c.id)
            ).scalars().all()
        return row_to_delivery(row, log_rows, related)

    def list(self, status: str | None = None, limit: int = 100) -> list[Delivery]:
        """Newest first, without attempt logs."""
        if status is not None and status not in STATUSES:
            raise OutboxError(f"unknown status {status!r} (one of: {', '.join(STATUSES)})", "config")
        query = (
            select(*_SUMMARY_COLUMNS)
            .order_by(deliveries.c.created_at.desc(), deliveries.c.id)
            .limit(limit)
        )
        if status:
            query = query.where(deliveries.c.status == status)
        with self._read() as conn:
            return [row_to_delivery(r) for r in conn.execute(query).all()]

    def payload(self, delivery_id: str) -> dict[str, Any] | None:
        with self._read() as conn:
            value = conn.execute(select(deliveries.c.payload).where(deliveries.c.id == delivery_id)).scalar()
        return None if value is None else json.loads(value)

    def counts(self) -> dict[str, int]:
        """Rows per status (for metrics and readiness)."""
        with self._read() as conn:
            rows = conn.execute(
                select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
            ).all()
        out = dict.fromkeys(STATUSES, 0)
        out.update({status: int(n) for status, n in rows})
        return out

    def attempts_made(self, delivery_id: str) -> int:
        """Every attempt ever recorded for a delivery, lease expiries included. ``retry`` resets
        the attempt counter (a replay gets its full budget again); this count it never resets,
        so a destination can tell that an earlier attempt may have reached the receiver."""
        with self._read() as conn:
            return int(conn.execute(
                select(func.count()).select_from(attempts).where(attempts.c.delivery_id == delivery_id)
            ).scalar() or 0)

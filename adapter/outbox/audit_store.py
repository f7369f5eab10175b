"""The audit trail in the outbox's database: append an event (masked before it is stored), read
events back, export them as FHIR AuditEvents."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import insert, select

from .audit import AuditRecord, audit_bundle
from .engine import OutboxDatabase
from .masking import mask_audit
from .schema import audit_events

# One row per validation the service runs, written off the request path but on the same cores:
# the statement is built once.
_INSERT_EVENT = insert(audit_events)


class AuditTrail(OutboxDatabase):
    def record_audit(
        self,
        action: str,
        *,
        who: str | None,
        what: str | None,
        outcome: str,
        detail: str | None = None,
        durable: bool = True,
    ) -> None:
        """Append one audit event (``validate``, ``accept``...). Text is masked before storing.
        ``durable=False``: committed without waiting for the disk (SQLite ``synchronous=NORMAL``,
        PostgreSQL ``synchronous_commit off``), for the events the service queues in memory
        anyway (validations); the next durable commit hardens them too."""
        who, what, detail = mask_audit(who, what, detail)
        row = {
            "recorded_at": time.time(),
            "action": action,
            "who": who,
            "what": what,
            "outcome": outcome,
            "detail": detail or None,
        }
        with self._write() if durable else self._bookkeeping() as conn:
            conn.execute(_INSERT_EVENT, row)

    def audit_records(self, *, since: float | None = None, limit: int = 1000) -> list[AuditRecord]:
        query = select(audit_events).order_by(audit_events.c.id).limit(limit)
        if since is not None:
            query = query.where(audit_events.c.recorded_at >= since)
        with self._read() as conn:
            return [
                AuditRecord(r.id, r.recorded_at, r.action, r.who, r.what, r.outcome, r.detail)
                for r in conn.execute(query).all()
            ]

    def audit_events_as_fhir(self, *, since: float | None = None, limit: int = 1000) -> dict[str, Any]:
        """A ``collection`` Bundle of FHIR AuditEvent resources."""
        return audit_bundle(self.audit_records(since=since, limit=limit))

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


class AuditTrail(OutboxDatabase):
    def record_audit(
        self,
        action: str,
        *,
        who: str | None,
        what: str | None,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        """Append one audit event (``validate``, ``accept``...). Text is masked before storing."""
        who, what, detail = mask_audit(who, what, detail)
        with self._write() as conn:
            conn.execute(
                insert(audit_events).values(
                    recorded_at=time.time(), action=action, who=who, what=what, outcome=outcome,
                    detail=detail or None,
                )
            )

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

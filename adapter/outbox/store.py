"""The durable outbox: accepted bundles, their delivery attempts and the audit trail.

The service answers 202 only after ``enqueue`` has committed, so nothing accepted is lost;
workers then ``claim`` due rows under a lease and record each outcome. ``Outbox`` is the one
object callers hold; each of its parts lives in a module of its own:

- ``engine``: engines (SQLite pragmas, pools), the per-file write lock, transactions, tables;
- ``reads``: deliveries with their attempt logs, counts per status;
- ``enqueue``: enqueue with group commit, routing a blocked delivery sent again, replay;
- ``claims``: claim, begin, complete, release (the workers' side, and why it is safe);
- ``audit_store``: the audit trail;
- ``model``: the records handed out (``Delivery``, ``ClaimedItem``...) and ``OutboxError``.
"""

from __future__ import annotations

from .audit_store import AuditTrail
from .claims import Claims, StepSql
from .enqueue import Enqueuing, GroupCommitter
from .model import Attempt, AttemptResult, ClaimedItem, Delivery, OutboxError, Outcome

DEFAULT_URL = "sqlite:///becare.db"
DEFAULT_MAX_ATTEMPTS = 8

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_URL",
    "Attempt",
    "AttemptResult",
    "ClaimedItem",
    "Delivery",
    "Outbox",
    "OutboxError",
    "Outcome",
]


class Outbox(Enqueuing, Claims, AuditTrail):
    """SQLite (WAL) or PostgreSQL, by SQLAlchemy URL (a bare path is a SQLite file)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sqlite_synchronous: str = "FULL",
    ) -> None:
        self.max_attempts = max_attempts
        self._listeners = []
        super().__init__(url, sqlite_synchronous=sqlite_synchronous)  # engines, locks, tables
        self._committer = GroupCommitter(self._insert_batch, batching=self.dialect == "sqlite")
        self._step_sql = StepSql.for_dialect(self.dialect)

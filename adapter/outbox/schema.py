"""Tables of the outbox: deliveries, their attempts, and the audit trail.

Times are stored as UNIX epoch seconds (float): they compare and sort the same way on SQLite
and PostgreSQL, which keeps the claim query portable.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

STATUSES = ("pending", "in-flight", "delivered", "dead", "blocked")

deliveries = Table(
    "outbox_deliveries",
    metadata,
    Column("id", String(36), primary_key=True),
    # One submission can go to several destinations: one row each, sharing the key and group.
    Column("idempotency_key", String(512), nullable=False),
    Column("destination", String(200), nullable=False, default=""),
    Column("group_id", String(36), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("max_attempts", Integer, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("lease_until", Double, nullable=True),
    Column("claimed_by", String(100), nullable=True),
    # where the last claim came from, and what the next attempt must know (see claims._CLAIMED_FROM):
    # pending | in-flight (took over a claim never sent) | sending (the attempt is on the wire) |
    # taken-over / unknown (took over an attempt on the wire: outcome unknown) | replay (`retry`)
    Column("claimed_from", String(16), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("last_status_code", Integer, nullable=True),
    Column("client", String(200), nullable=True),
    Column("region", String(40), nullable=True),
    Column("route_via", String(40), nullable=True),
    Column("reason", Text, nullable=True),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("delivered_at", Double, nullable=True),
    Column("payload", Text, nullable=False),
    UniqueConstraint("idempotency_key", "destination", name="uq_outbox_key_destination"),
)
Index("ix_outbox_due", deliveries.c.status, deliveries.c.next_attempt_at)
Index("ix_outbox_group", deliveries.c.group_id)

attempts = Table(
    "outbox_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), ForeignKey("outbox_deliveries.id"), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("worker", String(100), nullable=True),
    Column("started_at", Double, nullable=False),
    Column("finished_at", Double, nullable=True),
    # delivered | retry | dead | blocked | unknown (sent, no answer) | lease-expired (the worker
    # stopped while the attempt was on the wire: outcome unknown too)
    Column("outcome", String(20), nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Double, nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("recorded_at", Double, nullable=False, index=True),
    Column("action", String(40), nullable=False),  # validate | accept | deliver | retry | block | ...
    Column("who", String(200), nullable=True),
    Column("what", String(512), nullable=True),
    Column("outcome", String(20), nullable=False),  # success | failure | error | rejected
    Column("detail", Text, nullable=True),
)

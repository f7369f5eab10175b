"""Workers' side of the outbox: claiming due rows, beginning an attempt, recording outcomes,
giving rows back.

The service answers 202 only after ``enqueue`` has committed, so nothing accepted is lost; workers
then ``claim`` due rows with one conditional UPDATE (plus ``FOR UPDATE SKIP LOCKED`` on PostgreSQL)
so two workers never hold the same row, and a lease lets a restarted worker take over rows that
a crashed one left in flight.

A claim is short (seconds): right before sending a row, its worker ``begin``s the attempt, one
UPDATE fenced on ``claimed_by`` that marks the row as on the wire and extends the lease to a
whole attempt. A row a dead worker claimed but never sent is therefore free again within seconds
and costs no attempt; a row another worker took over is never sent by the one that lost it; and
a row taken over while on the wire is known to have an unknown outcome (``lease-expired`` in
its log; ``ClaimedItem.outcome_unknown``), which the next attempt resolves with the destination
(a lookup, a conditional create, an idempotency key). Each outcome is recorded as it happens,
in the same short transaction that begins the worker's next row.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Double, Integer, Text, and_, bindparam, case, insert, or_, select, update

from .engine import OutboxDatabase
from .masking import mask
from .model import AttemptResult, ClaimedItem, Outcome
from .schema import attempts, audit_events, deliveries

_d = deliveries
_DUE = or_(
    and_(_d.c.status == "pending", _d.c.next_attempt_at <= bindparam("p_now")),
    and_(_d.c.status == "in-flight", _d.c.lease_until < bindparam("p_now")),
)
# ``claimed_from`` says where a claim came from, and carries what the next attempt must know:
#   pending | in-flight   claimed from that status (in-flight: a claim that was never sent expired)
#   sending               set by ``begin``: this row's attempt is on the wire
#   taken-over            a claim took over a row whose attempt was on the wire: outcome unknown
#   unknown               the same, carried by later claims until an attempt begins
#   replay                set by ``retry`` (an operator's replay), carried until an attempt begins
_TAKEN_OVER = and_(_d.c.status == "in-flight", _d.c.claimed_from == "sending")
_CLAIMED_FROM = case(
    (_TAKEN_OVER, "taken-over"),
    (_d.c.claimed_from.in_(("taken-over", "unknown")), "unknown"),
    (_d.c.claimed_from == "replay", "replay"),
    else_=_d.c.status,
)
# A claim counts its attempt; taking over a claim that was never sent reuses that claim's number.
_CLAIM_ATTEMPTS = case(
    (and_(_d.c.status == "in-flight", or_(_d.c.claimed_from.is_(None), _d.c.claimed_from != "sending")),
     _d.c.attempts),
    else_=_d.c.attempts + 1,
)
# Statements are built once: constructing SQLAlchemy statements per call cost more CPU than
# running them. One UPDATE claims: FOR UPDATE SKIP LOCKED is rendered on PostgreSQL only. The
# rows are picked in a MATERIALIZED CTE: as a plain ``id IN (SELECT ... LIMIT n FOR UPDATE SKIP
# LOCKED)``, PostgreSQL planned a nested-loop semi join that ran the subquery again for every
# due row, each run locking and returning further rows, so one claim took every due row.
_PICK = (
    select(_d.c.id)
    .where(_DUE)
    .order_by(_d.c.next_attempt_at)
    .limit(bindparam("p_limit", type_=Integer))
    .with_for_update(skip_locked=True)
    .cte("picked")
    .prefix_with("MATERIALIZED", dialect="postgresql")
)
_CLAIM = (
    update(_d)
    .where(_d.c.id.in_(select(_PICK.c.id)))
    .where(_DUE)
    .values(
        claimed_from=_CLAIMED_FROM,
        status="in-flight",
        claimed_by=bindparam("p_worker"),
        lease_until=bindparam("p_lease"),
        attempts=_CLAIM_ATTEMPTS,
        updated_at=bindparam("p_now"),
    )
    .returning(_d.c.id, _d.c.destination, _d.c.idempotency_key, _d.c.attempts, _d.c.max_attempts,
               _d.c.payload, _d.c.claimed_from)
)
# Right before sending: still ours (fenced on claimed_by), now on the wire, leased for an attempt.
_BEGIN = (
    update(_d)
    .where(_d.c.id == bindparam("p_id"), _d.c.status == "in-flight", _d.c.claimed_by == bindparam("p_worker"))
    .values(claimed_from="sending", lease_until=bindparam("p_lease"), updated_at=bindparam("p_now"))
)
_FINISH = (
    update(_d)
    .where(_d.c.id == bindparam("p_id"), _d.c.status == "in-flight", _d.c.claimed_by == bindparam("p_worker"))
    .values(
        status=bindparam("p_status"),
        lease_until=None,
        claimed_by=None,
        claimed_from=None,
        updated_at=bindparam("p_now"),
        last_status_code=bindparam("p_code", type_=Integer),
        last_error=bindparam("p_error", type_=Text),
        reason=bindparam("p_reason", type_=Text),
        delivered_at=bindparam("p_delivered", type_=Double),
        next_attempt_at=bindparam("p_next", type_=Double),
    )
)
_INSERT_ATTEMPT = insert(attempts)
_INSERT_AUDIT = insert(audit_events)
_ATTEMPT_KEYS = ("delivery_id", "number", "worker", "started_at", "finished_at", "outcome", "http_status",
                 "error", "duration_ms")
_AUDIT_KEYS = ("recorded_at", "action", "who", "what", "outcome", "detail")


class StepSql:
    """The statements a worker runs between two sends (record one outcome, begin the next row),
    as driver SQL: through SQLAlchemy each cost ~25 us of CPU more than the statement itself,
    and with one short transaction per delivery that was a tenth of a delivery's CPU. The same
    statements as ``_FINISH``, ``_INSERT_ATTEMPT``, ``_INSERT_AUDIT`` and ``_BEGIN``."""

    @classmethod
    def for_dialect(cls, dialect: str) -> StepSql | None:
        """The statements in the driver's parameter style; None for a driver we have not measured."""
        return cls(dialect) if dialect in ("sqlite", "postgresql") else None

    def __init__(self, dialect: str) -> None:
        def p(name: str) -> str:
            return f":{name}" if dialect == "sqlite" else f"%({name})s"

        d = deliveries.name
        fence = f"id = {p('p_id')} AND status = 'in-flight' AND claimed_by = {p('p_worker')}"
        self.finish = (
            f"UPDATE {d} SET status = {p('p_status')}, lease_until = NULL, claimed_by = NULL, "
            f"claimed_from = NULL, updated_at = {p('p_now')}, last_status_code = {p('p_code')}, "
            f"last_error = {p('p_error')}, reason = {p('p_reason')}, delivered_at = {p('p_delivered')}, "
            f"next_attempt_at = {p('p_next')} WHERE {fence}"
        )
        self.begin = (f"UPDATE {d} SET claimed_from = 'sending', lease_until = {p('p_lease')}, "
                      f"updated_at = {p('p_now')} WHERE {fence}")
        self.attempt = (f"INSERT INTO {attempts.name} ({', '.join(_ATTEMPT_KEYS)}) "
                        f"VALUES ({', '.join(p(k) for k in _ATTEMPT_KEYS)})")
        self.audit = (f"INSERT INTO {audit_events.name} ({', '.join(_AUDIT_KEYS)}) "
                      f"VALUES ({', '.join(p(k) for k in _AUDIT_KEYS)})")



class Claims(OutboxDatabase):
    """What workers run: ``claim``, then per row ``begin`` / ``complete`` (or ``release``), or
    ``advance`` for all of it in one short transaction. ``_step_sql``: the driver SQL of the
    steady state, where the dialect has it."""

    _step_sql: StepSql | None

    def claim(self, worker: str, *, limit: int = 10, lease_seconds: float = 60.0) -> list[ClaimedItem]:
        """Take up to ``limit`` due rows under a lease, atomically.

        Due = pending whose ``next_attempt_at`` has come, or in-flight whose lease expired (its
        worker died). One UPDATE ... WHERE id IN (SELECT ... [FOR UPDATE SKIP LOCKED]) RETURNING:
        SQLite serialises writers, PostgreSQL skips rows another worker is claiming. Taking over
        a row whose attempt was on the wire logs that attempt as ``lease-expired`` (outcome
        unknown), in the attempt log and the audit trail.
        """
        now = time.time()
        with self._bookkeeping() as conn:
            rows = conn.execute(
                _CLAIM, {"p_now": now, "p_limit": limit, "p_worker": worker, "p_lease": now + lease_seconds}
            ).all()
            lost = [r for r in rows if r.claimed_from == "taken-over"]
            if lost:
                error = ("the worker holding this delivery stopped after sending it, before it heard back: "
                         "outcome unknown")
                conn.execute(
                    _INSERT_ATTEMPT,
                    [
                        {
                            "delivery_id": r.id, "number": r.attempts - 1, "worker": None,
                            "started_at": now, "finished_at": now, "outcome": "lease-expired",
                            "error": error, "http_status": None, "duration_ms": None,
                        }
                        for r in lost
                    ],
                )
                conn.execute(_INSERT_AUDIT, [
                    {"recorded_at": now, "action": "deliver", "who": f"becare-forwarder/{worker}",
                     "what": r.id, "outcome": "failure",
                     "detail": f"attempt {r.attempts - 1} to {r.destination}: lease-expired: {error}"}
                    for r in lost
                ])
        return [
            ClaimedItem(
                id=r.id,
                destination=r.destination,
                idempotency_key=r.idempotency_key,
                attempt=r.attempts,
                max_attempts=r.max_attempts,
                payload_text=r.payload,
                reclaimed=r.claimed_from in ("in-flight", "taken-over"),
                outcome_unknown=r.claimed_from in ("taken-over", "unknown"),
                replayed=r.claimed_from == "replay",
            )
            for r in rows
        ]

    def begin(self, item: ClaimedItem, *, worker: str, lease_seconds: float) -> bool:
        """Right before sending ``item``: True if it is still ours, now leased for a whole attempt
        and marked as on the wire; False if another worker took it over (do not send it)."""
        return self.advance(worker, start=item, lease_seconds=lease_seconds)[1]

    def complete(
        self,
        item: ClaimedItem,
        *,
        worker: str,
        outcome: Outcome,
        started_at: float,
        finished_at: float,
        http_status: int | None = None,
        error: str | None = None,
        retry_at: float | None = None,
        unknown: bool = False,
    ) -> str:
        """Record one attempt and move the row on; returns the new status (see ``complete_many``)."""
        result = AttemptResult(item, outcome, started_at, finished_at, http_status, error, retry_at, unknown)
        return self.complete_many([result], worker=worker)[0]

    def complete_many(self, results: Sequence[AttemptResult], *, worker: str) -> list[str]:
        """Record attempts and move their rows on, in one transaction; returns the new statuses.

        ``retry`` on the last allowed attempt becomes ``dead``; ``blocked`` (the destination
        refused to take it for a reason an operator must resolve, e.g. no patient consent at the
        hub) stores that reason, and ``becare outbox retry`` replays it later. Each update is fenced on
        ``claimed_by``: if our lease was taken over meanwhile, only the attempt is recorded
        (and ``"lost"`` returned for it).
        """
        return self.advance(worker, finished=results)[0]

    def release(self, items: Iterable[ClaimedItem], worker: str) -> None:
        """Give rows back without counting an attempt (graceful shutdown before sending)."""
        self.advance(worker, release=items)

    def advance(
        self,
        worker: str,
        *,
        finished: Sequence[AttemptResult] = (),
        start: ClaimedItem | None = None,
        lease_seconds: float = 60.0,
        release: Iterable[ClaimedItem] = (),
    ) -> tuple[list[str], bool]:
        """A worker's bookkeeping between two sends, in one short transaction: record the
        ``finished`` attempts (as ``complete_many``), ``begin`` the ``start`` row, and give back
        the ``release`` rows (claimed, never sent). Returns the statuses of ``finished`` and
        whether ``start`` may be sent."""
        ids = [i.id for i in release]
        if not finished and start is None and not ids:
            return [], False
        finishes, attempt_rows, audit_rows, statuses = self._finish_rows(finished, worker)
        now = time.time()
        begin = None if start is None else {
            "p_id": start.id, "p_worker": worker, "p_lease": now + lease_seconds, "p_now": now}
        if len(finishes) <= 1 and not ids and self._step_sql is not None:
            return statuses, self._step(finishes, attempt_rows, audit_rows, statuses, begin)
        began = False
        with self._bookkeeping() as conn:
            if len(finishes) == 1:
                # one row (the steady state): the fenced update says itself whether it was ours
                if conn.execute(_FINISH, finishes[0]).rowcount != 1:
                    statuses[0] = "lost"
            elif finishes:
                # Which rows are still ours, then one executemany for those: a statement per row
                # cost more CPU than the delivery's HTTP exchange. SQLite's write transaction and
                # PostgreSQL's row locks keep the answer true until the update.
                owned_query = select(_d.c.id).where(
                    _d.c.id.in_([f["p_id"] for f in finishes]), _d.c.status == "in-flight",
                    _d.c.claimed_by == worker,
                )
                if self.dialect == "postgresql":
                    owned_query = owned_query.with_for_update()
                owned = set(conn.execute(owned_query).scalars())
                for i, params in enumerate(finishes):
                    if params["p_id"] not in owned:
                        statuses[i] = "lost"
                mine = [params for params in finishes if params["p_id"] in owned]
                if mine:
                    conn.execute(_FINISH, mine)  # still fenced on claimed_by, as a second guard
            if attempt_rows:
                conn.execute(_INSERT_ATTEMPT, attempt_rows)
                conn.execute(_INSERT_AUDIT, audit_rows)
            if begin is not None:
                began = conn.execute(_BEGIN, begin).rowcount == 1
            if ids:
                conn.execute(
                    update(deliveries)
                    .where(deliveries.c.id.in_(ids), deliveries.c.status == "in-flight",
                           deliveries.c.claimed_by == worker)
                    .values(status="pending", attempts=deliveries.c.attempts - 1, lease_until=None,
                            claimed_by=None, updated_at=now, next_attempt_at=now)
                )
        return statuses, began

    def _step(self, finishes: list[dict[str, Any]], attempt_rows: list[dict[str, Any]],
              audit_rows: list[dict[str, Any]], statuses: list[str], begin: dict[str, Any] | None) -> bool:
        """``advance``'s steady state (at most one outcome, at most one row to begin) in driver SQL."""
        sql = self._step_sql
        assert sql is not None
        with self._bookkeeping() as conn:
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                if finishes:
                    cursor.execute(sql.finish, finishes[0])
                    if cursor.rowcount != 1:  # fenced on claimed_by: taken over meanwhile
                        statuses[0] = "lost"
                    cursor.execute(sql.attempt, attempt_rows[0])
                    cursor.execute(sql.audit, audit_rows[0])
                if begin is None:
                    return False
                cursor.execute(sql.begin, begin)
                return bool(cursor.rowcount == 1)
            finally:
                cursor.close()

    @staticmethod
    def _finish_rows(
        results: Sequence[AttemptResult], worker: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[str]]:
        finishes, attempt_rows, audit_rows, statuses = [], [], [], []
        for r in results:
            item = r.item
            status = r.outcome
            if r.outcome == "retry":
                status = "dead" if item.attempt >= item.max_attempts else "pending"
            statuses.append(status)
            logged = "unknown" if r.unknown else r.outcome
            safe_error = mask(r.error) if r.error else None
            detail = f"attempt {item.attempt} to {item.destination}: {logged}"
            if r.http_status is not None:
                detail += f" (HTTP {r.http_status})"
            if safe_error:  # a failure's reason, or how a delivery was found at the receiver
                detail += f": {safe_error}"
            finishes.append({
                "p_id": item.id, "p_worker": worker, "p_status": status, "p_now": r.finished_at,
                "p_code": r.http_status, "p_error": safe_error,
                "p_reason": safe_error if status == "blocked" else None,
                "p_delivered": r.finished_at if status == "delivered" else None,
                "p_next": (r.retry_at if r.retry_at is not None else r.finished_at)
                if status == "pending" else r.finished_at,
            })
            attempt_rows.append({
                "delivery_id": item.id, "number": item.attempt, "worker": worker,
                "started_at": r.started_at, "finished_at": r.finished_at, "outcome": logged,
                "http_status": r.http_status, "error": safe_error,
                "duration_ms": (r.finished_at - r.started_at) * 1000.0,
            })
            audit_rows.append({
                "recorded_at": r.finished_at, "action": "block" if r.outcome == "blocked" else "deliver",
                "who": f"becare-forwarder/{worker}",
                "what": item.id, "outcome": "success" if r.outcome == "delivered" else "failure",
                "detail": detail,
            })
        return finishes, attempt_rows, audit_rows, statuses

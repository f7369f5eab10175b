"""Putting bundles in the queue: ``enqueue`` (durable before it returns, with group commit on
SQLite), a blocked delivery routed when it is sent again, and an operator's replay (``retry``);
listeners are woken after each, so in-process workers start at once."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from .keys import canonical_json
from .masking import mask
from .model import Delivery, OutboxError, row_to_delivery
from .reads import DeliveryReads
from .schema import audit_events, deliveries

if TYPE_CHECKING:
    from adapter.forwarding.routing import RouteDecision

log = logging.getLogger("becare.outbox")

_INSERT_DELIVERY = insert(deliveries)
_INSERT_AUDIT = insert(audit_events)


@dataclass(slots=True)
class EnqueueRequest:
    key: str
    rows: list[dict[str, Any]]
    audit: dict[str, Any] | None
    existing_group: str | None = None
    done: bool = False
    error: BaseException | None = None


class GroupCommitter:
    """Group commit for SQLite: concurrent enqueues share one transaction and one fsync.

    The first caller to arrive while no batch is running becomes the leader and commits
    everything queued; the others wait for it. Each caller still returns only after the commit
    holding its rows, so "durable before 202" holds, at a fraction of the fsyncs.
    """

    def __init__(self, run: Callable[[list[EnqueueRequest]], None], *, batching: bool) -> None:
        self._run = run
        self._batching = batching
        self._cond = threading.Condition()
        self._queue: list[EnqueueRequest] = []
        self._busy = False

    def submit(self, request: EnqueueRequest) -> None:
        if not self._batching:
            self._run([request])
            return
        with self._cond:
            self._queue.append(request)
            while not request.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch, self._queue = self._queue, []
                self._cond.release()
                try:
                    self._run(batch)
                except Exception as exc:
                    if len(batch) == 1:
                        batch[0].error = exc
                    else:  # one bad apple (e.g. a key raced by another process): go one by one
                        for r in batch:
                            try:
                                self._run([r])
                            except Exception as single:
                                r.error = single
                finally:
                    self._cond.acquire()
                    for r in batch:
                        r.done = True
                    self._busy = False
                    self._cond.notify_all()
        if request.error is not None:
            raise request.error


class Enqueuing(DeliveryReads):
    """The write side that fills the queue. ``max_attempts`` is what each new row is given."""

    max_attempts: int
    _listeners: list[Callable[[], None]]
    _committer: GroupCommitter

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called after each enqueue commits, so in-process workers wake at once."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # a listener must never fail an accepted submission
                log.exception("outbox listener failed")

    def enqueue(
        self,
        bundle: dict[str, Any],
        *,
        route: RouteDecision,
        idempotency_key: str,
        client: str | None = None,
    ) -> Delivery:
        """Store ``bundle`` for each destination of ``route``; committed before returning.

        The same idempotency key returns the existing delivery (the first of its group), whatever
        the route says now. A blocked route, or one without destinations, is stored as ``blocked``
        with the reason, so the status can say why nothing was sent.
        """
        now = time.time()
        payload = canonical_json(bundle)
        destinations = [d for d in dict.fromkeys(route.destinations) if d]
        blocked = bool(getattr(route, "blocked", False)) or not destinations
        reason = route.reason if route.reason else (None if destinations else "no destination configured")
        group_id = str(uuid.uuid4())
        rows = []
        for i, dest in enumerate(destinations if not blocked else [""]):
            rows.append(
                {
                    "id": group_id if i == 0 else str(uuid.uuid4()),
                    "idempotency_key": idempotency_key,
                    "destination": dest,
                    "group_id": group_id,
                    "status": "blocked" if blocked else "pending",
                    "attempts": 0,
                    "max_attempts": self.max_attempts,
                    "next_attempt_at": now,
                    "lease_until": None,
                    "claimed_by": None,
                    "claimed_from": None,
                    "last_status_code": None,
                    "delivered_at": None,
                    "client": client,
                    "region": route.region,
                    "route_via": route.via,
                    "reason": reason,
                    "last_error": reason if blocked else None,
                    "created_at": now,
                    "updated_at": now,
                    "payload": payload,
                }
            )
        audit = None
        if blocked:
            audit = {"recorded_at": now, "action": "block", "who": client, "what": group_id,
                     "outcome": "rejected", "detail": mask(reason)}
        request = EnqueueRequest(idempotency_key, rows, audit)
        try:
            self._committer.submit(request)
        except IntegrityError:
            # lost a race with another process enqueueing the same key: theirs wins
            found = self._first_of_key(idempotency_key)
            if found is None:
                raise
            return self._same_content(found, payload)
        if request.existing_group is not None:
            found = self.get(request.existing_group)
            assert found is not None
            found = self._same_content(found, payload)
            if found.status == "blocked" and not found.destination and not blocked:
                found = self._route_blocked(found, rows)
            return found
        if not blocked:
            self._notify()
        first = SimpleNamespace(**rows[0])
        return row_to_delivery(first, (), tuple(r["id"] for r in rows[1:]))

    def _insert_batch(self, batch: list[EnqueueRequest]) -> None:
        """One transaction (one fsync) for every enqueue waiting: group commit."""
        keys = list(dict.fromkeys(r.key for r in batch))
        with self._write() as conn:
            known = dict(
                conn.execute(
                    select(deliveries.c.idempotency_key, deliveries.c.group_id)
                    .where(deliveries.c.idempotency_key.in_(keys))
                    .distinct()
                ).all()
            )
            rows: list[dict[str, Any]] = []
            audits: list[dict[str, Any]] = []
            for req in batch:
                if req.key in known:
                    req.existing_group = known[req.key]
                    continue
                known[req.key] = req.rows[0]["group_id"]
                rows.extend(req.rows)
                if req.audit:
                    audits.append(req.audit)
            if rows:
                conn.execute(_INSERT_DELIVERY, rows)
            if audits:
                conn.execute(_INSERT_AUDIT, audits)

    def _first_of_key(self, key: str) -> Delivery | None:
        with self._read() as conn:
            row = conn.execute(
                select(deliveries.c.group_id).where(deliveries.c.idempotency_key == key).limit(1)
            ).first()
        return self.get(row.group_id) if row else None

    def _route_blocked(self, found: Delivery, rows: list[dict[str, Any]]) -> Delivery:
        """The same bundle sent again after it was blocked for want of a destination, now that
        the route names destinations: the blocked delivery takes the first and is queued (the
        others join its group), rather than staying blocked forever behind its identifier."""
        now = time.time()
        with self._write() as conn:
            updated = conn.execute(
                update(deliveries)
                .where(deliveries.c.id == found.id, deliveries.c.status == "blocked")
                .values(status="pending", destination=rows[0]["destination"], attempts=0, next_attempt_at=now,
                        updated_at=now, reason=None, last_error=None, route_via=rows[0]["route_via"],
                        region=rows[0]["region"])
            )
            if updated.rowcount:
                extra = [{**r, "id": str(uuid.uuid4()), "group_id": found.group_id} for r in rows[1:]]
                if extra:
                    conn.execute(_INSERT_DELIVERY, extra)
                conn.execute(_INSERT_AUDIT, [{"recorded_at": now, "action": "route", "who": None,
                                              "what": found.id, "outcome": "success",
                                              "detail": "blocked delivery routed on resubmission"}])
        self._notify()
        routed = self.get(found.id)
        assert routed is not None
        return routed

    def _same_content(self, found: Delivery, payload: str) -> Delivery:
        """A resubmission is the same delivery only if it is the same bundle: different content
        under an identifier already accepted would otherwise be dropped without a word."""
        with self._read() as conn:
            stored = conn.execute(select(deliveries.c.payload).where(deliveries.c.id == found.id)).scalar()
        if stored is not None and stored != payload:
            raise OutboxError(
                f"a different bundle was already accepted with the same identifier (delivery {found.id}); "
                "give the new bundle its own Bundle.identifier",
                "conflict",
                delivery_id=found.id,
            )
        return found

    def retry(self, delivery_id: str, *, who: str | None = None) -> Delivery:
        """Dead-letter (or blocked with a destination) -> pending, attempts reset, due now."""
        now = time.time()
        with self._write() as conn:
            row = conn.execute(
                select(deliveries.c.status, deliveries.c.destination).where(deliveries.c.id == delivery_id)
            ).first()
            if row is None:
                raise OutboxError(f"no delivery {delivery_id!r}", "not-found")
            if row.status not in ("dead", "blocked"):
                raise OutboxError(
                    f"delivery {delivery_id} is {row.status}; only dead or blocked deliveries can be retried"
                )
            if not row.destination:
                raise OutboxError(
                    f"delivery {delivery_id} has no destination (it was blocked before routing); "
                    "submit the bundle again once the reason is resolved"
                )
            conn.execute(
                update(deliveries)
                .where(deliveries.c.id == delivery_id, deliveries.c.status == row.status)
                .values(status="pending", attempts=0, next_attempt_at=now, updated_at=now,
                        lease_until=None, claimed_by=None, claimed_from="replay")
            )
            conn.execute(
                insert(audit_events).values(
                    recorded_at=now, action="retry", who=who, what=delivery_id, outcome="success",
                    detail=f"manual replay from {row.status}",
                )
            )
        self._notify()
        found = self.get(delivery_id)
        assert found is not None
        return found

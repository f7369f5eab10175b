"""The durable outbox.

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

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import (
    Double,
    Integer,
    Text,
    and_,
    bindparam,
    case,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from adapter.database import is_memory_sqlite

from .audit import AuditRecord, audit_bundle, iso
from .keys import canonical_json
from .masking import mask
from .schema import STATUSES, attempts, audit_events, deliveries, metadata

if TYPE_CHECKING:
    from adapter.forwarding.routing import RouteDecision

log = logging.getLogger("becare.outbox")

DEFAULT_URL = "sqlite:///becare.db"
DEFAULT_MAX_ATTEMPTS = 8
Outcome = Literal["delivered", "retry", "dead", "blocked"]


class OutboxError(Exception):
    """A request the outbox cannot honour; ``code`` is ``not-found``, ``conflict`` or ``config``."""

    def __init__(self, message: str, code: str = "conflict", *, delivery_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.delivery_id = delivery_id  # the delivery a conflict is with, when there is one


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    started_at: float
    finished_at: float | None
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: float | None
    worker: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "started": iso(self.started_at),
            "finished": iso(self.finished_at),
            "outcome": self.outcome,
            "httpStatus": self.http_status,
            "error": self.error,
            "durationMs": None if self.duration_ms is None else round(self.duration_ms, 1),
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    idempotency_key: str
    destination: str
    group_id: str
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: float
    last_error: str | None
    last_status_code: int | None
    client: str | None
    region: str | None
    route_via: str | None
    reason: str | None
    created_at: float
    updated_at: float
    delivered_at: float | None
    attempt_log: tuple[Attempt, ...] = ()
    related: tuple[str, ...] = ()  # the other deliveries of the same submission (other destinations)

    def to_json(self) -> dict[str, Any]:
        """The shape served at ``GET /deliveries/{id}``."""
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "destination": self.destination or None,
            "idempotencyKey": self.idempotency_key,
            "attempts": self.attempts,
            "maxAttempts": self.max_attempts,
            "created": iso(self.created_at),
            "updated": iso(self.updated_at),
            "delivered": iso(self.delivered_at),
            "nextAttempt": iso(self.next_attempt_at) if self.status == "pending" else None,
            "lastError": self.last_error,
            "lastHttpStatus": self.last_status_code,
            "region": self.region,
            "routedBy": self.route_via,
            "reason": self.reason,
            "related": list(self.related),
            "attemptLog": [a.to_json() for a in self.attempt_log],
        }
        outcome = self.operation_outcome()
        if outcome is not None:
            out["outcome"] = outcome
        return out

    def operation_outcome(self) -> dict[str, Any] | None:
        """Why the delivery is not (yet) delivered, as the FHIR OperationOutcome a caller reads:
        blocked (an operator or the person must act), dead (the receiver refused it), or pending
        after a failed attempt (it will be retried)."""
        text = self.reason if self.status == "blocked" and self.reason else self.last_error
        if self.status == "delivered" or not text:
            return None
        severity, code = {"blocked": ("error", "business-rule"), "dead": ("error", "exception")}.get(
            self.status, ("warning", "transient"))
        where = f" to {self.destination}" if self.destination else ""
        issue = {"severity": severity, "code": code, "diagnostics": text,
                 "details": {"text": f"delivery{where}: {self.status}"}}
        return {"resourceType": "OperationOutcome", "issue": [issue]}


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    """A row a worker holds under lease; ``attempt`` is this attempt's number (1-based).

    ``reclaimed``: the claim took over an expired lease (of a row without a replay or unknown
    mark, which takes precedence in ``claimed_from``). ``outcome_unknown``: an earlier
    attempt's worker stopped after sending, before it heard back (the receiver may hold it).
    ``replayed``: an operator replayed it (``retry``), so attempts before the replay exist."""

    id: str
    destination: str
    idempotency_key: str
    attempt: int
    max_attempts: int
    payload_text: str = field(repr=False)
    reclaimed: bool = False
    outcome_unknown: bool = False
    replayed: bool = False

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.payload_text)


def _normalise_url(url: str) -> str:
    if not url or not isinstance(url, str):
        raise OutboxError("database URL is empty", "config")
    if "://" not in url:  # a bare path is a SQLite file
        return f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one delivery attempt came to, for ``Outbox.complete_many``. ``unknown``: the request
    went out whole and no answer came back (logged as outcome ``unknown``)."""

    item: ClaimedItem
    outcome: Outcome
    started_at: float
    finished_at: float
    http_status: int | None = None
    error: str | None = None
    retry_at: float | None = None
    unknown: bool = False


def _row_to_delivery(row: Any, log_rows: Sequence[Any] = (), related: Sequence[str] = ()) -> Delivery:
    return Delivery(
        id=row.id,
        idempotency_key=row.idempotency_key,
        destination=row.destination,
        group_id=row.group_id,
        status=row.status,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        next_attempt_at=row.next_attempt_at,
        last_error=row.last_error,
        last_status_code=row.last_status_code,
        client=row.client,
        region=row.region,
        route_via=row.route_via,
        reason=row.reason,
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
        attempt_log=tuple(
            Attempt(a.number, a.started_at, a.finished_at, a.outcome, a.http_status, a.error, a.duration_ms,
                    a.worker)
            for a in log_rows
        ),
        related=tuple(related),
    )


_SUMMARY_COLUMNS = [c for c in deliveries.c if c.name != "payload"]
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
_INSERT_DELIVERY = insert(deliveries)
_INSERT_ATTEMPT = insert(attempts)
_INSERT_AUDIT = insert(audit_events)
_ATTEMPT_KEYS = ("delivery_id", "number", "worker", "started_at", "finished_at", "outcome", "http_status",
                 "error", "duration_ms")
_AUDIT_KEYS = ("recorded_at", "action", "who", "what", "outcome", "detail")


class _StepSql:
    """The statements a worker runs between two sends (record one outcome, begin the next row),
    as driver SQL: through SQLAlchemy each cost ~25 us of CPU more than the statement itself,
    and with one short transaction per delivery that was a tenth of a delivery's CPU. The same
    statements as ``_FINISH``, ``_INSERT_ATTEMPT``, ``_INSERT_AUDIT`` and ``_BEGIN``."""

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

_FILE_LOCKS: dict[str, threading.Lock] = {}


@dataclass(slots=True)
class _EnqueueRequest:
    key: str
    rows: list[dict[str, Any]]
    audit: dict[str, Any] | None
    existing_group: str | None = None
    done: bool = False
    error: BaseException | None = None


class _GroupCommitter:
    """Group commit for SQLite: concurrent enqueues share one transaction and one fsync.

    The first caller to arrive while no batch is running becomes the leader and commits
    everything queued; the others wait for it. Each caller still returns only after the commit
    holding its rows, so "durable before 202" holds, at a fraction of the fsyncs.
    """

    def __init__(self, run: Callable[[list[_EnqueueRequest]], None], *, batching: bool) -> None:
        self._run = run
        self._batching = batching
        self._cond = threading.Condition()
        self._queue: list[_EnqueueRequest] = []
        self._busy = False

    def submit(self, request: _EnqueueRequest) -> None:
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
_FILE_LOCKS_GUARD = threading.Lock()


def _file_lock(path: str) -> threading.Lock:
    """One lock per SQLite file per process, shared by every Outbox opened on it."""
    key = path if path.startswith(":memory:") else str(Path(path).expanduser().resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


def _NullLock() -> AbstractContextManager[None]:
    return nullcontext()


class Outbox:
    """SQLite (WAL) or PostgreSQL, by SQLAlchemy URL."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        sqlite_synchronous: str = "FULL",
    ) -> None:
        self.url = _normalise_url(url)
        self.max_attempts = max_attempts
        self._listeners: list[Callable[[], None]] = []
        self.engine = self._make_engine(self.url, sqlite_synchronous, immediate=True)
        self._work_engine = self.engine
        if self.dialect == "sqlite" and not is_memory_sqlite(self.engine.url):
            # Readers must not queue behind writers: WAL lets them read a snapshot in parallel.
            self._read_engine = self._make_engine(self.url, sqlite_synchronous, immediate=False)
            # Worker bookkeeping (claims, outcomes) need not survive a power cut: losing one only
            # means a redelivery, which the idempotency key absorbs. Accepts stay fully synced,
            # and each of their fsyncs also hardens the bookkeeping written before them.
            if sqlite_synchronous.upper() in ("FULL", "EXTRA"):
                self._work_engine = self._make_engine(self.url, "NORMAL", immediate=True)
            self._write_lock: AbstractContextManager[Any] = _file_lock(self.engine.url.database or "")
        else:
            self._read_engine = self.engine
            self._write_lock = (
                nullcontext() if self.dialect != "sqlite" else _file_lock(f":memory:{id(self)}")
            )
        self._committer = _GroupCommitter(self._insert_batch, batching=self.dialect == "sqlite")
        self._step_sql = _StepSql(self.dialect) if self.dialect in ("sqlite", "postgresql") else None
        self._create_schema()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction. On SQLite, threads of this process take turns on a lock first:
        SQLite's own busy handler sleeps in coarse steps, which would cap throughput."""
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _bookkeeping(self) -> Iterator[Connection]:
        """A write transaction for worker state, with relaxed durability (see ``__init__``)."""
        with self._write_lock, self._work_engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            yield conn

    def _read(self) -> AbstractContextManager[Connection]:
        return self._read_engine.begin()

    # -- setup -------------------------------------------------------------------------------
    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @staticmethod
    def _make_engine(url: str, synchronous: str, *, immediate: bool) -> Engine:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise OutboxError(f"invalid database URL: {exc}", "config") from None
        try:
            if parsed.get_backend_name() == "sqlite":
                memory = is_memory_sqlite(parsed)
                if not memory:
                    parent = Path(parsed.database or "").expanduser().resolve().parent
                    if not parent.is_dir():
                        raise OutboxError(f"database folder does not exist: {parent}", "config")
                kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False}}
                if memory:
                    kwargs["poolclass"] = StaticPool
                else:
                    kwargs["pool_size"] = 16
                    kwargs["max_overflow"] = 16
                engine = create_engine(parsed, **kwargs)
                sync = synchronous.upper()
                if sync not in ("OFF", "NORMAL", "FULL", "EXTRA"):
                    raise OutboxError(f"invalid sqlite synchronous mode {synchronous!r}", "config")

                @event.listens_for(engine, "connect")
                def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                    # Let SQLAlchemy, not the driver, decide when transactions begin (see "begin").
                    dbapi_conn.isolation_level = None
                    cur = dbapi_conn.cursor()
                    if not memory:
                        cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute(f"PRAGMA synchronous={sync}")
                    cur.execute("PRAGMA busy_timeout=30000")
                    cur.execute("PRAGMA foreign_keys=ON")
                    cur.close()

                @event.listens_for(engine, "begin")
                def _on_begin(conn: Connection) -> None:
                    # Writers take the lock up front: no deadlock when a reader upgrades to writer.
                    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

                return engine
            return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)
        except NoSuchModuleError as exc:
            raise OutboxError(f"unsupported database URL {url!r}: {exc}", "config") from None
        except ModuleNotFoundError as exc:
            raise OutboxError(
                f"the database driver {exc.name!r} is not installed "
                "(for PostgreSQL: pip install 'psycopg[binary]')",
                "config",
            ) from None

    def _create_schema(self) -> None:
        try:
            with self._write() as conn:
                if self.dialect == "postgresql":
                    # Several instances may start together: serialise DDL.
                    conn.execute(text("SELECT pg_advisory_xact_lock(715517)"))
                metadata.create_all(conn)
        except OperationalError as exc:
            raise OutboxError(f"cannot open the outbox database: {mask(str(exc.orig))}", "config") from None

    def close(self) -> None:
        for engine in {self.engine, self._read_engine, self._work_engine}:
            engine.dispose()

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Called after each enqueue commits, so in-process workers wake at once."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # a listener must never fail an accepted submission
                log.exception("outbox listener failed")

    # -- enqueue -----------------------------------------------------------------------------
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
        request = _EnqueueRequest(idempotency_key, rows, audit)
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
        return _row_to_delivery(first, (), tuple(r["id"] for r in rows[1:]))

    def _insert_batch(self, batch: list[_EnqueueRequest]) -> None:
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

    # -- read --------------------------------------------------------------------------------
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
        return _row_to_delivery(row, log_rows, related)

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
            return [_row_to_delivery(r) for r in conn.execute(query).all()]

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

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    # -- manual replay -------------------------------------------------------------------------
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

    def attempts_made(self, delivery_id: str) -> int:
        """Every attempt ever recorded for a delivery, lease expiries included. ``retry`` resets
        the attempt counter (a replay gets its full budget again); this count it never resets,
        so a destination can tell that an earlier attempt may have reached the receiver."""
        with self._read() as conn:
            return int(conn.execute(
                select(func.count()).select_from(attempts).where(attempts.c.delivery_id == delivery_id)
            ).scalar() or 0)

    # -- workers -------------------------------------------------------------------------------
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

    # -- audit ---------------------------------------------------------------------------------
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
        with self._write() as conn:
            conn.execute(
                insert(audit_events).values(
                    recorded_at=time.time(), action=action, who=who and mask(who, limit=200),
                    what=what and mask(what, limit=500), outcome=outcome, detail=mask(detail) or None,
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


def record_audit(outbox: Outbox, action: str, *, who: str | None, what: str | None, outcome: str,
                 detail: str | None = None) -> None:
    """Function form of :meth:`Outbox.record_audit` for callers that pass the outbox around."""
    outbox.record_audit(action, who=who, what=what, outcome=outcome, detail=detail)


def audit_events_as_fhir(outbox: Outbox, *, since: float | None = None, limit: int = 1000) -> dict[str, Any]:
    return outbox.audit_events_as_fhir(since=since, limit=limit)



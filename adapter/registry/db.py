"""Database plumbing of the registry: URLs, engines, and the per-person write lock.

The registry shares its database URL with the outbox (``becare serve --db``), so it reads it the
same way (``adapter.database.normalise_url``): a bare path is a SQLite file and ``postgresql://``
means psycopg 3.

Checking "is there already another coordinator?" and storing the new one must be one step, or
two submissions for the same person can both see an empty registry. PostgreSQL serialises such
steps with transaction-scoped advisory locks, one per person (and per episode, so that two
re-submissions of one episode cannot both keep their rows); SQLite takes its database-wide
write lock up front (``BEGIN IMMEDIATE``), and threads of one process take turns before that.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from adapter.database import is_memory_sqlite
from adapter.rules.checks import RegistryUnavailable

# Any fixed 64-bit number: the lock under which the schema is created on PostgreSQL.
SCHEMA_LOCK = 0x62656361726500


class RegistryError(RegistryUnavailable):
    """The registry database cannot be used (bad URL, missing driver, unreachable, gone).

    A ``RegistryUnavailable`` of the rulebook: raised while IC-ONE-1/2 query the registry, it
    stops the validation (503 from the service, exit code 2 from the command line) instead of
    passing for a rule failure or, worse, for "no other coordinator"."""


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise RegistryError(f"invalid registry database URL: {exc}") from None
    try:
        if parsed.get_backend_name() != "sqlite":
            return create_engine(parsed, pool_pre_ping=True)
        memory = is_memory_sqlite(parsed)
        # One in-memory database per registry, seen by every thread (the service records from
        # its thread pool); a file gets a pool and waits for other writers instead of failing.
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if memory:
            kwargs["poolclass"] = StaticPool
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise RegistryError(f"unsupported registry database URL: {exc}") from None
    except ModuleNotFoundError as exc:
        raise RegistryError(
            f"the database driver {exc.name!r} is not installed "
            "(for PostgreSQL: pip install 'psycopg[binary]')"
        ) from None

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event below starts transactions

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def lock_id(name: str) -> int:
    """A signed 64-bit advisory lock number for a person key or an episode key."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Locks:
    """Serialises the registry's read-check-write steps for the names they touch."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect.name
        self._local: AbstractContextManager[Any] = (
            threading.Lock() if self.dialect == "sqlite" else nullcontext()
        )

    def take(self, conn: Connection, names: Iterable[str]) -> None:
        """Inside ``conn``'s transaction: its commit or rollback releases them. They are taken
        in one global order, so two writers never wait on each other in a ring."""
        if self.dialect == "postgresql":
            for number in sorted({lock_id(n) for n in names}):
                conn.execute(text("SELECT pg_advisory_xact_lock(:n)"), {"n": number})

    def local(self) -> AbstractContextManager[Any]:
        """Threads of this process take turns on SQLite (its busy handler sleeps coarsely)."""
        return self._local


def create_schema(engine: Engine, metadata: Any) -> None:
    """Create the tables once, even when several processes start on an empty database."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:n)"), {"n": SCHEMA_LOCK})
        metadata.create_all(conn)

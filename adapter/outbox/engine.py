"""The outbox's database: engines (SQLite pragmas, pools), the per-file write lock, and the
three kinds of transaction the outbox runs (accepts, worker bookkeeping, reads).

On SQLite, accepts are fully synced, while worker bookkeeping (claims, outcomes) is written
with ``synchronous=NORMAL``: losing one only means a redelivery, which the idempotency key
absorbs. Readers use their own engine so that WAL lets them read a snapshot while a writer
writes. Threads of one process take turns on a lock before writing, because SQLite's own busy
handler sleeps in coarse steps.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from adapter.database import is_memory_sqlite, normalise_url

from .masking import mask
from .model import OutboxError
from .schema import metadata

_FILE_LOCKS: dict[str, threading.Lock] = {}
_FILE_LOCKS_GUARD = threading.Lock()


def file_lock(path: str) -> threading.Lock:
    """One lock per SQLite file per process, shared by every Outbox opened on it."""
    key = path if path.startswith(":memory:") else str(Path(path).expanduser().resolve())
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(key, threading.Lock())


def make_engine(url: str, synchronous: str, *, immediate: bool) -> Engine:
    """An engine for the outbox: on SQLite a file in WAL mode (or a shared in-memory database)
    with the ``synchronous`` level given, and writers that take the lock up front
    (``immediate``); on PostgreSQL a pool that checks its connections."""
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


class OutboxDatabase:
    """The outbox's engines and transactions, on SQLite (WAL) or PostgreSQL, by SQLAlchemy URL
    (a bare path is a SQLite file); the tables are created when missing."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        try:
            self.url = normalise_url(url)
        except ValueError as exc:
            raise OutboxError(str(exc), "config") from None
        self.engine = make_engine(self.url, sqlite_synchronous, immediate=True)
        self._work_engine = self.engine
        if self.dialect == "sqlite" and not is_memory_sqlite(self.engine.url):
            # Readers must not queue behind writers: WAL lets them read a snapshot in parallel.
            self._read_engine = make_engine(self.url, sqlite_synchronous, immediate=False)
            # Worker bookkeeping (claims, outcomes) need not survive a power cut: losing one only
            # means a redelivery, which the idempotency key absorbs. Accepts stay fully synced,
            # and each of their fsyncs also hardens the bookkeeping written before them.
            if sqlite_synchronous.upper() in ("FULL", "EXTRA"):
                self._work_engine = make_engine(self.url, "NORMAL", immediate=True)
            self._write_lock: AbstractContextManager[Any] = file_lock(self.engine.url.database or "")
        else:
            self._read_engine = self.engine
            self._write_lock = (
                nullcontext() if self.dialect != "sqlite" else file_lock(f":memory:{id(self)}")
            )
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

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

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

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

"""The episode registry: who coordinates and who case-manages whom, across submissions.

IC-ONE-1/2 ("never more than one coordinator or case manager per person") cannot be judged on
one bundle. The registry remembers the roles of every accepted bundle. Persons are keyed by a
salted SHA-256 of their SSIN so the database never holds an SSIN in clear; the salt comes from
``BECARE_REGISTRY_SALT`` or, failing that, a random value stored once in the database.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Date, DateTime, Integer, String, create_engine, delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

SALT_ENV = "BECARE_REGISTRY_SALT"
ACTIVE_STATUSES = ("active", "onhold")


class _Base(DeclarativeBase):
    pass


class _Meta(_Base):
    __tablename__ = "becare_registry_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class _Role(_Base):
    __tablename__ = "becare_episode_role"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    holder: Mapped[str | None] = mapped_column(String(256), nullable=True)
    episode_key: Mapped[str] = mapped_column(String(512), index=True)
    period_start: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    period_end: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(String(256), nullable=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class EpisodeRole:
    person_key: str
    role: str  # care-coordinator | case-manager
    holder: str | None  # "nihdi:<number>", "patient", or a reference
    episode_key: str
    start: dt.date | None
    end: dt.date | None
    status: str
    source: str | None = None


class EpisodeRegistry:
    """SQLAlchemy store of episode roles; SQLite by default, any SQLAlchemy URL (PostgreSQL) works."""

    def __init__(self, url: str = "sqlite:///becare.db", *, salt: str | None = None) -> None:
        self.url = url
        self._engine: Engine = create_engine(url, future=True)
        _Base.metadata.create_all(self._engine)
        self._salt = salt or os.environ.get(SALT_ENV) or self._stored_salt()

    def _stored_salt(self) -> str:
        with Session(self._engine) as session:
            row = session.get(_Meta, "salt")
            if row is None:
                session.add(_Meta(key="salt", value=secrets.token_hex(32)))
                try:
                    session.commit()
                except Exception:  # another process created it first
                    session.rollback()
                row = session.get(_Meta, "salt")
            assert row is not None
            return row.value

    def person_key(self, ssin: str) -> str:
        """Salted SHA-256 of an SSIN (digits only), the only form in which persons are stored."""
        digits = "".join(ch for ch in ssin if ch.isdigit())
        return hashlib.sha256(f"{self._salt}:{digits}".encode()).hexdigest()

    def record(self, bundle: dict[str, Any], *, source: str | None = None) -> int:
        """Store the roles of the episodes of an accepted bundle (replacing earlier versions of
        the same episodes). Episodes whose person has no SSIN cannot be keyed and are skipped.
        Returns the number of roles stored."""
        from adapter.registry.extract import extract_roles

        roles = extract_roles(bundle, self.person_key, source=source)
        now = dt.datetime.now(dt.UTC)
        with Session(self._engine) as session, session.begin():
            keys = {r.episode_key for r in roles}
            if keys:
                session.execute(delete(_Role).where(_Role.episode_key.in_(keys)))
            for r in roles:
                session.add(
                    _Role(
                        person_key=r.person_key,
                        role=r.role,
                        holder=r.holder,
                        episode_key=r.episode_key,
                        period_start=r.start,
                        period_end=r.end,
                        status=r.status,
                        source=r.source,
                        recorded_at=now,
                    )
                )
        return len(roles)

    def active_roles(self, ssin_hash: str, role: str, at: dt.date | None = None) -> list[EpisodeRole]:
        """Roles of that person with an active status (and, given ``at``, a period containing it)."""
        stmt = (
            select(_Role)
            .where(_Role.person_key == ssin_hash, _Role.role == role, _Role.status.in_(ACTIVE_STATUSES))
            .order_by(_Role.id)
        )
        with Session(self._engine) as session:
            rows = session.scalars(stmt).all()
            out = [
                EpisodeRole(
                    r.person_key,
                    r.role,
                    r.holder,
                    r.episode_key,
                    r.period_start,
                    r.period_end,
                    r.status,
                    r.source,
                )
                for r in rows
            ]
        if at is not None:
            out = [r for r in out if (r.start is None or r.start <= at) and (r.end is None or at <= r.end)]
        return out

    def close(self) -> None:
        self._engine.dispose()

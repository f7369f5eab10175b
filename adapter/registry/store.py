"""The episode registry: who coordinates and who case-manages whom, across submissions.

IC-ONE-1/2 ("never more than one coordinator or case manager per person") cannot be judged on
one bundle. The registry remembers the roles of every accepted bundle. Persons are keyed by a
salted SHA-256 of their SSIN so the database never holds an SSIN in clear; the salt comes from
``BECARE_REGISTRY_SALT`` or, failing that, a random value stored once in the database. Holders
and episode keys are built by ``adapter.registry.labels`` with the same hash, however the bundle
names the person (resolved resource, logical or conditional reference); rows written before
that (reference text kept as it came) are relabelled once when a registry opens the database.

``record`` checks and stores under the person's lock (see ``adapter.registry.db``), so of two
conflicting submissions recorded at the same moment exactly one is told it is the only one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Date, DateTime, Integer, String, Text, bindparam, delete, select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from adapter.database import normalise_url
from adapter.registry.conflicts import Conflict, find_conflicts
from adapter.registry.db import Locks, RegistryError, create_schema, make_engine
from adapter.registry.extract import extract_roles, role_of
from adapter.registry.labels import Labeller
from adapter.registry.model import ACTIVE_STATUSES, EpisodeRole
from adapter.rules.situation import Episode, Situation

SALT_ENV = "BECARE_REGISTRY_SALT"
LABELS_KEY, LABELS_VERSION = "labels", "2"  # 2: SSINs in holders and episode keys hashed
log = logging.getLogger("becare.registry")


class _Base(DeclarativeBase):
    pass


class _Meta(_Base):
    __tablename__ = "becare_registry_meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


# The columns that make an EpisodeRole, in the order of its fields (``_Role.to_role`` and
# ``_ACTIVE_ROLES`` both read them).
_ROLE_COLUMNS = (
    "person_key",
    "role",
    "holder",
    "episode_key",
    "period_start",
    "period_end",
    "status",
    "source",
)


class _Role(_Base):
    __tablename__ = "becare_episode_role"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(32))
    # Text: identifiers and references have no length limit in FHIR, and PostgreSQL (unlike
    # SQLite) refuses a value longer than a VARCHAR's length.
    holder: Mapped[str | None] = mapped_column(Text, nullable=True)
    episode_key: Mapped[str] = mapped_column(Text, index=True)
    period_start: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    period_end: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    source: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    def to_role(self) -> EpisodeRole:
        return EpisodeRole(*(getattr(self, column) for column in _ROLE_COLUMNS))


# The rulebook asks this for each episode of every validation the service runs (IC-ONE-1/2): one
# statement built once, read without the ORM (~90 us a query on SQLite, ~300 us through a Session
# and mapped objects).
_ROLES = _Role.__table__
_ACTIVE_ROLES = (
    select(*(_ROLES.c[column] for column in _ROLE_COLUMNS))
    .where(
        _ROLES.c.person_key == bindparam("person_key"),
        _ROLES.c.role == bindparam("role"),
        _ROLES.c.status.in_(ACTIVE_STATUSES),
    )
    .order_by(_ROLES.c.id)
)


@dataclass(frozen=True)
class Recorded:
    """What ``record`` did: the roles stored, and the roles of other episodes they collide with
    (found under the person's lock, so concurrent submissions cannot both miss each other)."""

    stored: int
    conflicts: tuple[Conflict, ...] = ()


class EpisodeRegistry:
    """SQLAlchemy store of episode roles; SQLite by default, PostgreSQL by URL."""

    def __init__(self, url: str = "sqlite:///becare.db", *, salt: str | None = None) -> None:
        try:
            self.url = normalise_url(url)
        except ValueError:
            raise RegistryError("the registry database URL is empty") from None
        self._engine = make_engine(self.url)
        self._locks = Locks(self._engine)
        try:
            create_schema(self._engine, _Base.metadata)
            self._salt = salt or os.environ.get(SALT_ENV) or self._stored_salt()
            self._relabel_once()
        except OperationalError as exc:
            self._engine.dispose()
            raise RegistryError(f"cannot use the registry database: {exc.orig or exc}") from exc

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def _stored_salt(self) -> str:
        with self._locks.local(), Session(self._engine) as session:
            row = session.get(_Meta, "salt")
            if row is None:
                session.add(_Meta(key="salt", value=secrets.token_hex(32)))
                try:
                    session.commit()
                except IntegrityError:  # another process stored its salt first: use that one
                    session.rollback()
                row = session.get(_Meta, "salt")
            assert row is not None
            return row.value

    def _relabel_once(self) -> None:
        """Hash the SSINs that rows stored by earlier versions keep in clear in their holder or
        episode key (a conditional reference was stored as text). Runs once per database."""
        labels = Labeller(self.person_key)
        with self._locks.local(), Session(self._engine) as session, session.begin():
            self._locks.take(session.connection(), [LABELS_KEY])
            flag = session.get(_Meta, LABELS_KEY)
            if flag is not None and flag.value == LABELS_VERSION:
                return
            for row in session.scalars(select(_Role)).all():
                holder = labels.relabel_stored(row.holder, row.person_key)
                episode = labels.scrub(row.episode_key)
                if holder != row.holder or episode != row.episode_key:
                    row.holder, row.episode_key = holder, episode
            if flag is None:
                session.add(_Meta(key=LABELS_KEY, value=LABELS_VERSION))
            else:
                flag.value = LABELS_VERSION

    def person_key(self, ssin: str) -> str:
        """Salted SHA-256 of an SSIN (digits only), the only form in which persons are stored."""
        digits = "".join(ch for ch in ssin if ch.isdigit())
        return hashlib.sha256(f"{self._salt}:{digits}".encode()).hexdigest()

    def role_of(self, situation: Situation, episode: Episode) -> EpisodeRole | None:
        """The row ``record`` would store for that episode (person key, holder and episode key
        as stored), for the rulebook to compare with ``active_roles``; None when the episode
        holds no role or its person has no SSIN."""
        return role_of(situation, episode, self.person_key)

    def record(
        self, bundle: dict[str, Any], *, source: str | None = None, exclusive: bool = False
    ) -> Recorded:
        """Store the roles of the episodes of an accepted bundle (replacing earlier versions of
        the same episodes) and report the other episodes they collide with. ``exclusive``
        stores nothing when there is a collision: a caller that records *before* accepting
        gets an atomic "claim the coordinator role". Episodes whose person has no SSIN cannot
        be keyed and are skipped."""
        roles = extract_roles(bundle, self.person_key, source=source)
        if not roles:
            return Recorded(0)
        persons = {r.person_key for r in roles}
        episodes = {r.episode_key for r in roles}
        now = dt.datetime.now(dt.UTC)
        try:
            with self._locks.local(), Session(self._engine) as session, session.begin():
                self._locks.take(session.connection(), persons | episodes)
                existing = session.scalars(
                    select(_Role).where(
                        _Role.person_key.in_(persons),
                        _Role.status.in_(ACTIVE_STATUSES),
                        _Role.episode_key.not_in(episodes),
                    )
                ).all()
                conflicts = tuple(find_conflicts(roles, (r.to_role() for r in existing)))
                if conflicts and exclusive:
                    return Recorded(0, conflicts)
                session.execute(delete(_Role).where(_Role.episode_key.in_(episodes)))
                session.add_all(_row(r, now) for r in roles)
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from exc
        for c in conflicts:  # accepted anyway (the caller decided): make the double role visible
            log.warning(
                "%s of episode %s overlaps episode %s (source %s) for the same person",
                c.role.role,
                c.role.episode_key,
                c.other.episode_key,
                c.other.source,
            )
        return Recorded(len(roles), conflicts)

    def active_roles(self, ssin_hash: str, role: str, at: dt.date | None = None) -> list[EpisodeRole]:
        """Roles of that person with an active status (and, given ``at``, a period containing it)."""
        try:
            with self._locks.local(), self._engine.connect() as conn:
                rows = conn.execute(_ACTIVE_ROLES, {"person_key": ssin_hash, "role": role}).all()
            out = [EpisodeRole(*row) for row in rows]
        except SQLAlchemyError as exc:
            raise _unavailable(exc) from exc
        if at is not None:
            out = [r for r in out if (r.start is None or r.start <= at) and (r.end is None or at <= r.end)]
        return out

    def close(self) -> None:
        self._engine.dispose()


def _unavailable(exc: SQLAlchemyError) -> RegistryError:
    """The registry cannot be queried: the driver's reason only (never the statement or its
    parameters, which hold person keys)."""
    reason = getattr(exc, "orig", None) or type(exc).__name__
    return RegistryError(f"cannot query the registry database: {reason}")


def _row(role: EpisodeRole, now: dt.datetime) -> _Role:
    fields = dataclasses.asdict(role)
    return _Role(period_start=fields.pop("start"), period_end=fields.pop("end"), recorded_at=now, **fields)

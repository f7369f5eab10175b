"""What the database URL says, for the parts that share one database (outbox, registry,
delivery process): one reading of the URL a user wrote and of "in memory", so they never
disagree about it."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def normalise_url(url: str) -> str:
    """The SQLAlchemy URL for what a user wrote: a bare path is a SQLite file, and
    ``postgresql://`` / ``postgres://`` mean psycopg 3, the driver we ship (SQLAlchemy's own
    default for that scheme, psycopg2, is not installed). ``ValueError`` when it is empty."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError("database URL is empty")
    if "://" not in url:
        return f"sqlite:///{url}"
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def is_memory_sqlite(url: str | URL) -> bool:
    """An in-memory SQLite database: seen by one process only, gone when it stops. A string is
    read as ``normalise_url`` reads it (a bare path is a file)."""
    parsed = make_url(normalise_url(url)) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")

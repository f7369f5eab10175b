"""What the database URL says, for the parts that share one database (outbox, registry,
delivery process): one reading of "in memory", so they never disagree about it."""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url


def is_memory_sqlite(url: str | URL) -> bool:
    """An in-memory SQLite database: seen by one process only, gone when it stops."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() != "sqlite":
        return False
    database = parsed.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:")

"""What the registry stores and answers, free of any database type."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

ACTIVE_STATUSES = ("active", "onhold")


@dataclass(frozen=True)
class EpisodeRole:
    person_key: str  # salted SHA-256 of the SSIN
    role: str  # care-coordinator | case-manager
    holder: str | None  # "nihdi:<number>", "ssin:<hash>", "patient", "Type/id" or "ref:<reference>"
    episode_key: str
    start: dt.date | None
    end: dt.date | None
    status: str
    source: str | None = None

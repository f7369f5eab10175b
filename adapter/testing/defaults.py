"""Run-wide defaults for the helpers, set once by the plugin from the command line and ini file.

The helpers are plain functions (usable without fixtures), so the options reach them through this
module rather than through arguments every test would have to thread along.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

REGIONS = ("flanders", "wallonia", "brussels", "german-speaking")
LANGS = ("en", "fr", "nl", "de")


@dataclass
class Defaults:
    region: str | None = None  # None: the bundle's ext-region or the person's postal code decides
    lang: str = "en"
    allow: tuple[str, ...] = ()  # rule ids, issue codes or message ids tolerated everywhere
    today: dt.date | None = None  # the date rules judge "active" and "planned" against (None: today)
    suppressions: tuple[Any, ...] = ()  # adapter.validation.suppressions entries (--becare-suppress)


current = Defaults()


def configure(
    *,
    region: str | None,
    lang: str | None,
    allow: tuple[str, ...] = (),
    today: str | None = None,
    suppress: str | None = None,
) -> None:
    """Validate and install the defaults; a bad value is a usage error, reported before any test runs."""
    if region is not None and region not in REGIONS:
        raise ValueError(f"unknown region {region!r} (one of: {', '.join(REGIONS)})")
    if lang is not None and lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (one of: {', '.join(LANGS)})")
    day = None
    if today:
        try:
            if len(today) != 10:
                raise ValueError(today)
            day = dt.date.fromisoformat(today)
        except ValueError:
            raise ValueError(f"not a date YYYY-MM-DD: today {today!r}") from None
    suppressions: tuple[Any, ...] = ()
    if suppress:
        from adapter.validation.suppressions import load_suppressions

        suppressions = load_suppressions(suppress)  # SuppressionError is a ValueError: usage error
    current.region = region
    current.lang = lang or "en"
    current.allow = tuple(allow)
    current.today = day
    current.suppressions = suppressions


def snapshot() -> Defaults:
    return replace(current)


def restore(saved: Defaults) -> None:
    current.region, current.lang, current.allow = saved.region, saved.lang, saved.allow
    current.today = saved.today
    current.suppressions = saved.suppressions

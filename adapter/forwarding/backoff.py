"""Retry timing: exponential backoff with full jitter, and ``Retry-After`` parsing.

Full jitter (a uniform draw between 0 and the exponential ceiling) spreads the retries of many
deliveries that failed together, so a hub coming back is not hit by a synchronized wave.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry number ``attempt`` (1 = the first retry)."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return (rng or random).uniform(0.0, ceiling)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return max(delta, 0.0)


def retry_delay(
    attempt: int,
    *,
    retry_after: float | None,
    base: float,
    cap: float,
    retry_after_max: float,
    rng: random.Random | None = None,
) -> float:
    """The server's ``Retry-After`` wins (bounded by ``retry_after_max``); otherwise full jitter."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), retry_after_max)
    return full_jitter(attempt, base=base, cap=cap, rng=rng)

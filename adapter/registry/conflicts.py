"""Which stored roles a new one collides with: the registry's side of IC-ONE-1/2.

The same test as the rule (``adapter.rules.checks``): another episode of the same person and
role, held by someone else, active, with an overlapping period. The rule asks it before a
bundle is accepted; the registry asks it again under the person's lock while storing, which is
the only place where two submissions arriving at once can be told apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapter.registry.model import ACTIVE_STATUSES, EpisodeRole
from adapter.rules.situation import overlaps


@dataclass(frozen=True)
class Conflict:
    role: EpisodeRole  # being recorded
    other: EpisodeRole  # already in the registry


def find_conflicts(new: Iterable[EpisodeRole], stored: Iterable[EpisodeRole]) -> list[Conflict]:
    stored = list(stored)
    out: list[Conflict] = []
    for role in new:
        if role.status not in ACTIVE_STATUSES:
            continue
        for other in stored:
            if (
                other.person_key == role.person_key
                and other.role == role.role
                and other.status in ACTIVE_STATUSES
                and other.episode_key != role.episode_key
                and other.holder != role.holder
                and overlaps(role.start, role.end, other.start, other.end)
            ):
                out.append(Conflict(role, other))
    return out

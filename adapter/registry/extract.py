"""Turn an accepted bundle into registry rows, with the same reading of the bundle as the rules."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.registry.model import EpisodeRole
from adapter.rules.checks import coordinators, episode_key
from adapter.rules.situation import Situation


def extract_roles(
    bundle: dict[str, Any], person_key: Callable[[str], str], *, source: str | None = None
) -> list[EpisodeRole]:
    situation = Situation(bundle)
    out: list[EpisodeRole] = []
    for ep in situation.episodes:
        if not (ep.is_cc or ep.is_cm):
            continue
        ssin = situation.ssin_of(ep.patient)
        if ssin is None:
            continue
        role = "care-coordinator" if ep.is_cc else "case-manager"
        holder: str | None = None
        if ep.care_manager_ref:
            holder = situation.holder(ep.care_manager, ep.care_manager_ref)
        elif ep.is_cc:
            for key, (node, _path) in coordinators(situation, ep).items():
                holder = situation.holder(node, None) if node is not None else key
                break
        out.append(
            EpisodeRole(
                person_key=person_key(ssin),
                role=role,
                holder=holder,
                episode_key=episode_key(situation, ep),
                start=ep.start,
                end=ep.end,
                status=ep.status,
                source=source,
            )
        )
    return out

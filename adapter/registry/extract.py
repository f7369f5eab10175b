"""Turn an accepted bundle into registry rows, with the same reading of the bundle as the rules.

Every person-derived value goes through ``adapter.registry.labels``: the rows hold hashes and
labels, never the SSIN or the reference text that carries it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapter.registry.labels import Labeller
from adapter.registry.model import EpisodeRole
from adapter.rules.checks import coordinators, episode_key
from adapter.rules.situation import Episode, Situation


def _member_reference(situation: Situation, ep: Episode, path: str) -> Any:
    """The raw ``CareTeam.participant.member`` at ``path`` (its identifier or query names the
    coordinator when the bundle does not hold them)."""
    for team in ep.teams:
        for part in situation.team_participants(team):
            if part.path == path:
                return (team.resource.get("participant") or [])[part.index].get("member")
    return None


def _holder(situation: Situation, ep: Episode, person: str | None, labels: Labeller) -> str | None:
    """Who holds the episode's role: the care manager, else (care coordination) the first
    coordinator of its teams, as the rulebook reads them."""
    if ep.care_manager_ref:
        if ep.care_manager is not None:
            return labels.resolved(situation, ep.care_manager, person, ep)
        return labels.unresolved(ep.node.resource.get("careManager"), person)
    if ep.is_cc:
        for _key, (node, path) in coordinators(situation, ep).items():
            if node is not None:
                return labels.resolved(situation, node, person, ep)
            return labels.unresolved(_member_reference(situation, ep, path), person)
    return None


def role_of(
    situation: Situation, ep: Episode, hash_ssin: Callable[[str], str], *, source: str | None = None
) -> EpisodeRole | None:
    """The registry row of one episode, or None when it holds no role or its person has no SSIN
    (a person without one cannot be keyed across submissions)."""
    if not (ep.is_cc or ep.is_cm):
        return None
    labels = Labeller(hash_ssin)
    person = labels.person_ssin(situation, ep)
    if person is None:
        return None
    return EpisodeRole(
        person_key=hash_ssin(person),
        role="care-coordinator" if ep.is_cc else "case-manager",
        holder=_holder(situation, ep, person, labels),
        episode_key=labels.scrub(episode_key(situation, ep)),
        start=ep.start,
        end=ep.end,
        status=ep.status,
        source=source,
    )


def extract_roles(
    bundle: dict[str, Any], hash_ssin: Callable[[str], str], *, source: str | None = None
) -> list[EpisodeRole]:
    situation = Situation(bundle)
    roles = (role_of(situation, ep, hash_ssin, source=source) for ep in situation.episodes)
    return [r for r in roles if r is not None]

"""Which region a bundle belongs to, and whose bundle it is: what routing needs to know.

Routing reads the bundle through the rulebook's reader (``adapter.rules.situation``), so the
person, their SSIN and their region (CONTRACT section 4) are decided by one piece of code for
the rules, the registry and forwarding alike.
"""

from __future__ import annotations

from typing import Any

from adapter.rules.catalog import REGIONS
from adapter.rules.situation import Situation, postal_code_region, resolve_region

SSIN_SYSTEMS = (
    "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin",
    "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/ssin",  # legacy, accepted
)

__all__ = ["REGIONS", "SSIN_SYSTEMS", "bundle_region", "person", "person_ssin", "region_for_postal_code"]


def region_for_postal_code(postal_code: str | None) -> str | None:
    """The region of a Belgian postal code (``B-`` prefix tolerated); None for anything else."""
    return postal_code_region(postal_code)


def _situation(bundle: Any) -> Situation | None:
    return Situation(bundle) if isinstance(bundle, dict) else None


def person(bundle: dict[str, Any]) -> dict[str, Any] | None:
    """The person of the bundle: the episode's patient when it resolves, else the first Patient."""
    situation = _situation(bundle)
    node = situation.person if situation else None
    return node.resource if node else None


def person_ssin(bundle: dict[str, Any]) -> str | None:
    situation = _situation(bundle)
    return situation.person_ssin() if situation else None


def bundle_region(bundle: dict[str, Any], explicit: str | None = None) -> str | None:
    """The option, else ``ext-region``, else the person's postal code. An unknown explicit
    region raises ``UnknownRegionError`` (the caller's mistake, not "no region")."""
    situation = _situation(bundle) or Situation({})
    return resolve_region(situation, explicit)[0]

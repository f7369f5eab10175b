"""Three-valued code sets: what a value set surely holds, what it may hold, and where we cannot tell.

A value set composed over an unavailable code system (SNOMED CT, LOINC, a fragment) is only
partly known offline. Keeping "maybe" explicit through union, intersection and exclusion lets
the checker answer "unknown" there and still say "invalid" wherever the definition is decidable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Pair = tuple[str, str]  # (system, code)
Tri = Literal["yes", "maybe", "no"]

_EMPTY: frozenset = frozenset()


@dataclass(frozen=True, slots=True)
class Membership:
    yes: frozenset[Pair] = _EMPTY
    maybe: frozenset[Pair] = _EMPTY
    maybe_systems: frozenset[str] = _EMPTY  # any code of these systems not in ``yes`` may be a member
    maybe_all: bool = False  # any code of any system may be a member (unknown imported value set)

    @property
    def decided(self) -> bool:
        return not (self.maybe or self.maybe_systems or self.maybe_all)

    def system_open(self, system: str) -> bool:
        return self.maybe_all or system in self.maybe_systems

    def status(self, pair: Pair) -> Tri:
        if pair in self.yes:
            return "yes"
        if pair in self.maybe or self.system_open(pair[0]):
            return "maybe"
        return "no"

    def union(self, other: Membership) -> Membership:
        yes = self.yes | other.yes
        return Membership(
            yes,
            (self.maybe | other.maybe) - yes,
            self.maybe_systems | other.maybe_systems,
            self.maybe_all or other.maybe_all,
        )

    def intersect(self, other: Membership) -> Membership:
        yes: set[Pair] = set()
        maybe: set[Pair] = set()
        for pair in self.yes | self.maybe | other.yes | other.maybe:
            a, b = self.status(pair), other.status(pair)
            if a == "no" or b == "no":
                continue
            (yes if a == b == "yes" else maybe).add(pair)
        if self.maybe_all and other.maybe_all:
            systems, all_ = _EMPTY, True
        elif self.maybe_all:
            systems, all_ = other.maybe_systems, False
        elif other.maybe_all:
            systems, all_ = self.maybe_systems, False
        else:
            systems, all_ = self.maybe_systems & other.maybe_systems, False
        return Membership(frozenset(yes), frozenset(maybe), systems, all_)

    def minus(self, other: Membership) -> Membership:
        """Exclusion. Codes of an open system of ``self`` stay "maybe" even where ``other``
        surely excludes them: conservative, and rare in practice."""
        yes: set[Pair] = set()
        maybe: set[Pair] = set()
        for pair in self.yes | self.maybe:
            b = other.status(pair)
            if b == "yes":
                continue
            (yes if b == "no" and pair in self.yes else maybe).add(pair)
        return Membership(frozenset(yes), frozenset(maybe), self.maybe_systems, self.maybe_all)


def union_all(parts: list[Membership]) -> Membership:
    out = Membership()
    for part in parts:
        out = out.union(part)
    return out


def intersect_all(parts: list[Membership]) -> Membership:
    if not parts:
        return Membership()
    out = parts[0]
    for part in parts[1:]:
        out = out.intersect(part)
    return out

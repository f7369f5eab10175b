"""ValueSet definition -> Membership: ``compose`` (include/exclude, concept lists, filters,
imports) or a carried ``expansion``.

Pure: code systems and imported value sets come from the callables the caller passes, so the
same logic serves the real store and tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from adapter.terminology.codesystem import CodeSystemIndex
from adapter.terminology.membership import Membership, Pair, intersect_all, union_all

CodeSystemLookup = Callable[[str, str | None], CodeSystemIndex | None]
ValueSetLookup = Callable[[str], Membership | None]
Displays = dict[Pair, tuple[str, ...]]


def _contains(items: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(items, list):
        return
    for item in items:
        if isinstance(item, dict):
            yield item
            yield from _contains(item.get("contains"))


def usable_expansion(valueset: dict[str, Any]) -> bool:
    """A carried expansion counts only when it is the whole list (not a page of it)."""
    expansion = valueset.get("expansion")
    if not isinstance(expansion, dict) or not isinstance(expansion.get("contains"), list):
        return False
    if expansion.get("offset"):
        return False
    total = expansion.get("total")
    count = sum(1 for c in _contains(expansion["contains"]) if c.get("code"))
    return not (isinstance(total, int) and total > count)


def from_expansion(valueset: dict[str, Any], displays: Displays) -> Membership:
    yes: set[Pair] = set()
    for item in _contains(valueset["expansion"]["contains"]):
        system, code = item.get("system"), item.get("code")
        if isinstance(system, str) and isinstance(code, str) and not item.get("abstract"):
            yes.add((system, code))
            if isinstance(item.get("display"), str):
                displays[(system, code)] = (*displays.get((system, code), ()), item["display"])
    return Membership(frozenset(yes))


def from_compose(
    valueset: dict[str, Any],
    code_system: CodeSystemLookup,
    value_set: ValueSetLookup,
    displays: Displays,
) -> Membership:
    compose = valueset.get("compose")
    if not isinstance(compose, dict):
        # No definition at all: nothing can be said about its content.
        return Membership(maybe_all=True)
    included = union_all(
        [_include(i, code_system, value_set, displays) for i in _items(compose.get("include"))]
    )
    excluded = [_include(i, code_system, value_set, None) for i in _items(compose.get("exclude"))]
    return included.minus(union_all(excluded)) if excluded else included


def _items(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _include(
    item: dict[str, Any],
    code_system: CodeSystemLookup,
    value_set: ValueSetLookup,
    displays: Displays | None,
) -> Membership:
    system = item.get("system") if isinstance(item.get("system"), str) else None
    parts: list[Membership] = []
    if system:
        parts.append(_system_part(item, system, code_system, displays))
    for url in item.get("valueSet") or ():
        imported = value_set(url) if isinstance(url, str) else None
        if imported is None:
            # An unknown imported value set: undecidable, limited to the system when one is named.
            imported = Membership(maybe_systems=frozenset({system})) if system else Membership(maybe_all=True)
        parts.append(imported)
    return intersect_all(parts)


def _system_part(
    item: dict[str, Any],
    system: str,
    code_system: CodeSystemLookup,
    displays: Displays | None,
) -> Membership:
    version = item.get("version") if isinstance(item.get("version"), str) else None
    index = code_system(system, version)
    concepts = _items(item.get("concept"))
    if concepts:
        # An enumerated list is decidable even when the code system itself is not available.
        yes: set[Pair] = set()
        for concept in concepts:
            code = concept.get("code")
            if not isinstance(code, str):
                continue
            if index is not None:
                code = index.lookup(code) or code
            yes.add((system, code))
            if displays is not None:
                names = [concept["display"]] if isinstance(concept.get("display"), str) else []
                names += [
                    d["value"]
                    for d in concept.get("designation") or ()
                    if isinstance(d, dict) and isinstance(d.get("value"), str)
                ]
                if names:
                    displays[(system, code)] = (*displays.get((system, code), ()), *names)
        return Membership(frozenset(yes))
    if index is None:
        return Membership(maybe_systems=frozenset({system}))
    codes: frozenset[str] = index.codes
    for flt in _items(item.get("filter")):
        matched = index.filter(flt.get("property"), flt.get("op"), flt.get("value"))
        if matched is None:
            return Membership(maybe_systems=frozenset({system}))
        codes = codes & matched
    found = frozenset((system, c) for c in codes)
    if not index.complete:
        # A fragment or example lists real codes, but not all of them: what it holds is in,
        # anything else cannot be decided.
        return Membership(found, maybe_systems=frozenset({system}))
    return Membership(found)

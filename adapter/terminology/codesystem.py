"""An index over one CodeSystem: codes, displays, hierarchy and properties.

Value set filters (is-a, descendent-of, =, regex...) and display checks all read the same
flattened view, built once per code system instead of walking nested ``concept`` trees per
check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

# Properties whose value is a code of the same system and that define the hierarchy.
_PARENT_PROPS = frozenset({"parent", "subsumedBy"})
_CHILD_PROPS = frozenset({"child"})
# Filter properties that mean "the concept itself" rather than one of its properties.
_CONCEPT_PROPS = frozenset({"concept", "code"})


def _value_text(prop: dict[str, Any]) -> str | None:
    """A property value as the text filters compare against."""
    for key, value in prop.items():
        if not key.startswith("value"):
            continue
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, dict):  # valueCoding
            code = value.get("code")
            return code if isinstance(code, str) else None
        return str(value)
    return None


def _walk(concepts: Any, parent: str | None) -> Iterator[tuple[dict[str, Any], str | None]]:
    if not isinstance(concepts, list):
        return
    for concept in concepts:
        if isinstance(concept, dict) and isinstance(concept.get("code"), str):
            yield concept, parent
            yield from _walk(concept.get("concept"), concept["code"])


class CodeSystemIndex:
    """Read-only once built; safe to share between threads."""

    __slots__ = (
        "_descendants",
        "case_sensitive",
        "children",
        "codes",
        "complete",
        "content",
        "displays",
        "folded",
        "parents",
        "properties",
        "url",
    )

    def __init__(self, resource: dict[str, Any]) -> None:
        self.url: str = resource.get("url") or ""
        self.content: str = resource.get("content") or "complete"
        self.complete: bool = self.content == "complete"
        cs = resource.get("caseSensitive")
        self.case_sensitive: bool | None = cs if isinstance(cs, bool) else None
        codes: list[str] = []
        displays: dict[str, tuple[str, ...]] = {}
        parents: dict[str, set[str]] = {}
        children: dict[str, set[str]] = {}
        properties: dict[str, dict[str, list[str]]] = {}
        for concept, parent in _walk(resource.get("concept"), None):
            code = concept["code"]
            if code not in displays:
                codes.append(code)
            names = [concept["display"]] if isinstance(concept.get("display"), str) else []
            for designation in concept.get("designation") or ():
                if isinstance(designation, dict) and isinstance(designation.get("value"), str):
                    names.append(designation["value"])
            displays[code] = tuple(dict.fromkeys(displays.get(code, ()) + tuple(names)))
            if parent is not None:
                parents.setdefault(code, set()).add(parent)
                children.setdefault(parent, set()).add(code)
            props = properties.setdefault(code, {})
            for prop in concept.get("property") or ():
                if not isinstance(prop, dict) or not isinstance(prop.get("code"), str):
                    continue
                value = _value_text(prop)
                if value is None:
                    continue
                props.setdefault(prop["code"], []).append(value)
                if prop["code"] in _PARENT_PROPS:
                    parents.setdefault(code, set()).add(value)
                    children.setdefault(value, set()).add(code)
                elif prop["code"] in _CHILD_PROPS:
                    children.setdefault(code, set()).add(value)
                    parents.setdefault(value, set()).add(code)
        self.codes: frozenset[str] = frozenset(codes)
        self.displays: dict[str, tuple[str, ...]] = displays
        self.parents = {k: frozenset(v) for k, v in parents.items()}
        self.children = {k: frozenset(v) for k, v in children.items()}
        self.properties = {k: {p: tuple(v) for p, v in d.items()} for k, d in properties.items() if d}
        # Matching ignores case unless the code system declares itself case sensitive.
        self.folded: dict[str, str] = (
            {} if self.case_sensitive else {c.casefold(): c for c in reversed(codes)}
        )
        self._descendants: dict[str, frozenset[str]] = {}

    # -- lookups ----------------------------------------------------------------------------
    def lookup(self, code: str) -> str | None:
        """The code as the code system spells it, or None when it is not a code of it."""
        if code in self.codes:
            return code
        if self.case_sensitive:
            return None
        return self.folded.get(code.casefold())

    def descendants(self, code: str) -> frozenset[str]:
        cached = self._descendants.get(code)
        if cached is None:
            cached = frozenset(_closure(code, self.children))
            self._descendants[code] = cached
        return cached

    def ancestors(self, code: str) -> frozenset[str]:
        return frozenset(_closure(code, self.parents))

    # -- filters ----------------------------------------------------------------------------
    def filter(self, prop: str, op: str, value: str) -> frozenset[str] | None:
        """Codes matching one compose filter; None when the filter is not understood (the
        caller then treats the include as undecidable rather than guessing)."""
        if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
            return None
        if op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
            if prop not in _CONCEPT_PROPS and prop not in _PARENT_PROPS:
                return None
            root = self.lookup(value)
            if root is None:
                return frozenset() if op != "is-not-a" else self.codes
            below = self.descendants(root)
            if op == "is-a":
                return below | {root}
            if op == "descendent-of":
                return below
            if op == "is-not-a":
                return self.codes - below - {root}
            return self.ancestors(root) | {root}
        if op in ("=", "in", "not-in"):
            wanted = {value} if op == "=" else {v.strip() for v in value.split(",") if v.strip()}
            matched = frozenset(c for c in self.codes if self._values(c, prop) & wanted)
            return self.codes - matched if op == "not-in" else matched
        if op == "regex":
            try:
                pattern = re.compile(value)
            except re.error:
                return None
            return frozenset(
                c for c in self.codes if any(pattern.fullmatch(v) for v in self._values(c, prop))
            )
        if op == "exists":
            want = value.strip().lower() == "true"
            return frozenset(c for c in self.codes if bool(self._values(c, prop)) == want)
        return None

    def _values(self, code: str, prop: str) -> set[str]:
        """The values of ``prop`` for ``code``, with the implicit ones (code, display, parent,
        child from the nesting) that the FHIR filter properties refer to."""
        if prop in _CONCEPT_PROPS:
            return {code}
        if prop == "display":
            names = self.displays.get(code, ())
            return {names[0]} if names else set()
        if prop in _PARENT_PROPS:
            return set(self.parents.get(code, ()))
        if prop in _CHILD_PROPS:
            return set(self.children.get(code, ()))
        return set(self.properties.get(code, {}).get(prop, ()))


def _closure(start: str, edges: dict[str, frozenset[str]]) -> Iterable[str]:
    seen: set[str] = set()
    stack = list(edges.get(start, ()))
    while stack:
        node = stack.pop()
        if node in seen or node == start:
            continue
        seen.add(node)
        stack.extend(edges.get(node, ()))
    return seen

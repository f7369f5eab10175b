"""One pass over a resource for what several checks look for anywhere in it.

The bundle check resolves every ``reference`` string of every entry, and the rulebook checks
every identifier (at the top level and inside References). Each used to scan the whole tree
on its own; for a bundle that passes, those scans were a tenth of the time spent outside the
structure walk. ``scan`` finds both in one depth-first pass, and ``Scans`` keeps the result
for the rest of one validation, keyed by the resource object.

What each finds is what its own scan found, in the same order:

- references: a string under a ``reference`` key, anywhere except under ``contained`` (its
  resources resolve against their container) and ``_`` primitive companions;
- identifiers: an object with a ``system`` under an ``identifier`` key, anywhere except under
  ``text``, ``contained`` and ``_`` companions.

Paths are FHIRPath with indexes (``Bundle.entry[2].resource.subject.identifier``), built only
for what is found: most of a resource holds neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Found:
    references: list[tuple[str, str]] = field(default_factory=list)  # (reference, its FHIRPath)
    identifiers: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (identifier, FHIRPath)


def scan(resource: Any, path: str) -> Found:
    """References and identifiers in ``resource`` (an object; anything else holds none)."""
    scanner = _Scanner(path)
    if type(resource) is dict:
        scanner.visit(resource, True, True, False)
    return scanner.found


_MAX_TRAIL = 2000  # path pieces: a key and an index per level of arrays


class _Scanner:
    """One scan's state. A class rather than a recursive closure: a closure that calls itself
    is a reference cycle, left for the garbage collector after every scan."""

    __slots__ = ("found", "trail")

    def __init__(self, path: str) -> None:
        self.found = Found()
        self.trail: list[Any] = [path]  # path pieces, array indexes as ints until joined on a hit

    def here(self) -> str:
        return "".join(p if type(p) is str else f"[{p}]" for p in self.trail)

    # refs / ids: whether references / identifiers are still looked for below this node
    # (``text`` holds no identifier worth checking; a non-string ``reference`` no reference)
    def visit(self, node: dict[str, Any], refs: bool, ids: bool, identifier: bool) -> None:
        trail = self.trail
        if len(trail) > _MAX_TRAIL:
            # the interpreter would stop at about this depth; compiled (adapter/native), this
            # recursion has no such limit and would overflow the C stack instead
            raise RecursionError(f"scan: the resource nests deeper than {_MAX_TRAIL // 2} levels")
        if identifier and "system" in node:
            self.found.identifiers.append((node, self.here()))
        for key, child in node.items():
            kind = type(child)
            if kind is dict:
                if key == "contained" or key[:1] == "_":
                    continue
                child_refs = refs and key != "reference"  # no reference inside a reference
                child_ids = ids and key != "text"
                if child_refs or child_ids:
                    trail.append("." + key)
                    self.visit(child, child_refs, child_ids, child_ids and key == "identifier")
                    trail.pop()
            elif kind is list:
                if key == "contained" or key[:1] == "_":
                    continue
                child_refs = refs and key != "reference"
                child_ids = ids and key != "text"
                if child_refs or child_ids:
                    trail.append("." + key)
                    inner = child_ids and key == "identifier"
                    for i, item in enumerate(child):
                        if type(item) is dict:
                            trail.append(i)
                            self.visit(item, child_refs, child_ids, inner)
                            trail.pop()
                    trail.pop()
            elif kind is str and refs and key == "reference":
                self.found.references.append((child, self.here() + ".reference"))


class Scans:
    """The scans of one validation, each resource scanned once whoever asks first."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done: dict[int, tuple[Any, str, Found]] = {}

    def of(self, resource: Any, path: str) -> Found:
        hit = self._done.get(id(resource))
        if hit is not None and hit[0] is resource and hit[1] == path:
            return hit[2]
        found = scan(resource, path)
        self._done[id(resource)] = (resource, path, found)  # holding it keeps the id unique
        return found

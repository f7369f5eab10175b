"""Compiled StructureDefinitions, looked up by canonical URL or type name, cached.

The walker asks "what is a Quantity", "what does profile X say" thousands of times per
bundle; this index answers from compiled trees built once per store.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from adapter.conformance import legacy
from adapter.validation.model import PRIMITIVE_TYPES, SD_BASE, CompiledStructure, compile_structure
from adapter.validation.primitives import regex_table


class StructureIndex:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._compiled: dict[str, CompiledStructure | None] = {}
        self._lock = threading.Lock()
        self._regexes: dict[str, re.Pattern[str]] | None = None
        self._resource_types: frozenset[str] | None = None
        self.broken: dict[str, str] = {}  # url -> why it cannot be used
        # legacy canonical (as declared) -> its row, for the canonicals resolved through the table
        self.mapped: dict[str, legacy.LegacyCanonical] = {}

    def get(self, url_or_type: str) -> CompiledStructure | None:
        try:
            return self._compiled[url_or_type]  # a URL, or a type name seen before
        except KeyError:
            pass
        # a bare type name means the core definition; any canonical (URL, urn:oid:/urn:uuid:,
        # "url|version") is looked up as it is
        key = url_or_type if "/" in url_or_type or ":" in url_or_type else SD_BASE + url_or_type
        if key != url_or_type and key in self._compiled:
            with self._lock:
                self._compiled[url_or_type] = self._compiled[key]
            return self._compiled[key]
        compiled: CompiledStructure | None = None
        try:
            sd = self.store.structure_definition(self.resolve(key))
        except ValueError as exc:  # a profile whose snapshot cannot be generated
            self.broken[key] = str(exc)
            sd = None
        if sd is not None and (sd.get("snapshot") or {}).get("element"):
            try:
                compiled = compile_structure(sd)
            except (ValueError, KeyError) as exc:  # known but unusable: never "unknown, not checked"
                self.broken[key] = f"it cannot be compiled ({type(exc).__name__}: {str(exc)[:200]})"
                compiled = None
        elif sd is not None:
            self.broken[key] = "its snapshot has no elements"
        if compiled is not None and compiled.is_profile:
            mark_constrained(compiled, self._touched(sd))
        with self._lock:
            self._compiled[key] = compiled
            self._compiled[url_or_type] = compiled
        return compiled

    def _touched(self, sd: Any) -> dict[str, set[str]] | None:
        """Element ids that this profile or one of the profiles it derives from states in its
        differential; None when that cannot be known (then every element counts as touched)."""
        touched: dict[str, set[str]] = {}
        seen: set[str] = set()
        while isinstance(sd, dict) and sd.get("derivation") == "constraint":
            url = sd.get("url", "")
            if url in seen:
                return None
            seen.add(url)
            elements = (sd.get("differential") or {}).get("element")
            if not elements or any(not isinstance(e, dict) or not e.get("id") for e in elements):
                return None
            for e in elements:
                touched.setdefault(e["id"], set()).update(e)
            base = sd.get("baseDefinition")
            if not isinstance(base, str):
                return None
            try:
                sd = self.store.structure_definition(base)
            except ValueError:
                return None
            if sd is None:
                return None
        return touched

    def raw(self, url: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.store.structure_definition(self.resolve(url))
        return result

    def resolve(self, url: str) -> str:
        """The canonical to load for ``url``: itself when the store has it (content loaded with
        ``--ig`` is honoured as it is), else the current canonical a legacy eHealth one maps to
        (adapter/conformance/legacy.py), noted in ``mapped`` for the report."""
        if "/" not in url or self.store.get(url) is not None:
            return url
        row = legacy.lookup(url)
        if row is None:
            return url
        self.mapped[url] = row
        return row.applied

    @property
    def regexes(self) -> dict[str, re.Pattern[str]]:
        if self._regexes is None:
            sds = []
            for name in sorted(PRIMITIVE_TYPES - {"xhtml"}):  # xhtml has no regex: checked as XHTML
                sd = self.store.structure_definition(SD_BASE + name)
                if sd is not None:
                    sds.append(sd)
            self._regexes = regex_table(sds)
        return self._regexes

    def is_resource_type(self, name: str) -> bool:
        return name in self.resource_types()

    def resource_types(self) -> frozenset[str]:
        """The resource type names the store defines (the walker asks at every element)."""
        if self._resource_types is None:
            types = set()
            # what the definitions' indexes say of them is enough: reading all ~700 is not needed
            listed = getattr(self.store, "summaries", self.store.all)
            for sd in listed("StructureDefinition"):
                if (
                    sd.get("kind") == "resource"
                    and sd.get("derivation") != "constraint"
                    and sd.get("url", "").startswith(SD_BASE)
                ):
                    types.add(sd.get("type") or sd.get("id"))
            self._resource_types = frozenset(t for t in types if t)
        return self._resource_types


_ID_STEP = re.compile(r"[.:]")


# Keys of a differential element that change nothing the walk of that element checks: its
# documentation, and its cardinality (which the walk of its parent checks).
_NOT_CHECKED_BELOW = frozenset(
    {
        "id", "path", "min", "max", "short", "definition", "comment", "requirements", "alias",
        "mustSupport", "isSummary", "isModifier", "isModifierReason", "label", "code", "mapping",
        "example", "extension", "base", "meaningWhenMissing", "orderMeaning", "condition",
    }
)  # fmt: skip


def _with_prefixes(ids: Any, *, strict: bool = False) -> set[str]:
    out: set[str] = set()
    for elem_id in ids:
        for m in _ID_STEP.finditer(elem_id):
            out.add(elem_id[: m.start()])
        if not strict:
            out.add(elem_id)
    return out


def mark_constrained(compiled: CompiledStructure, touched: dict[str, set[str]] | None) -> None:
    """Flag what a profile walk may skip. Why it is sound: an untouched element of a profile's
    snapshot is the base element, which the walk against the base definition has already
    checked item by item.

    ``constrained`` is False for elements with nothing touched at or below them: skipped
    outright. ``descend`` is False for elements touched only in their cardinality or
    documentation, with nothing touched below: their parent's walk counts them, and walking
    into them would only repeat the base walk."""
    if touched is None:
        return
    touched = {_snapshot_id(i, compiled.by_id): keys for i, keys in touched.items()}
    constrained = _with_prefixes(touched)
    parents = _with_prefixes(touched, strict=True)
    meaningful = _with_prefixes(i for i, keys in touched.items() if keys - _NOT_CHECKED_BELOW)
    for elem_id, rule in compiled.by_id.items():
        if rule is compiled.root:
            continue
        if elem_id not in constrained:
            rule.constrained = False
            rule.descend = False
        elif elem_id not in parents and elem_id not in meaningful:
            rule.descend = False


def _snapshot_id(elem_id: str, by_id: dict[str, Any]) -> str:
    """A differential may name a choice element by its type (``payload:file.contentAttachment``);
    the snapshot has it as ``content[x]``, or as its type slice ``content[x]:contentAttachment``."""
    if elem_id in by_id:
        return elem_id
    segments = elem_id.split(".")
    current = segments[0]
    for seg in segments[1:]:
        step = f"{current}.{seg}"
        if step not in by_id:
            name = seg.split(":", 1)[0]
            for i in range(1, len(name)):
                choice = f"{current}.{name[:i]}[x]"
                if name[i].isupper() and choice in by_id:
                    step = f"{choice}:{name}" if f"{choice}:{name}" in by_id else choice
                    break
        current = step
    return current


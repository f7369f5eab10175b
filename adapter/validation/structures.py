"""Compiled StructureDefinitions, looked up by canonical URL or type name, cached.

The walker asks "what is a Quantity", "what does profile X say" thousands of times per
bundle; this index answers from compiled trees built once per store.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from adapter.validation.model import SD_BASE, CompiledStructure, compile_structure
from adapter.validation.primitives import regex_table


class StructureIndex:
    def __init__(self, store: Any) -> None:
        self.store = store
        self._compiled: dict[str, CompiledStructure | None] = {}
        self._lock = threading.Lock()
        self._regexes: dict[str, re.Pattern[str]] | None = None
        self._resource_types: frozenset[str] | None = None
        self.broken: dict[str, str] = {}  # url -> why it cannot be used

    def get(self, url_or_type: str) -> CompiledStructure | None:
        key = url_or_type if "/" in url_or_type else SD_BASE + url_or_type
        try:
            return self._compiled[key]
        except KeyError:
            pass
        compiled: CompiledStructure | None = None
        try:
            sd = self.store.structure_definition(key)
        except ValueError as exc:  # a profile whose snapshot cannot be generated
            self.broken[key] = str(exc)
            sd = None
        if sd is not None and (sd.get("snapshot") or {}).get("element"):
            try:
                compiled = compile_structure(sd)
            except (ValueError, KeyError):
                compiled = None
        if compiled is not None and compiled.is_profile:
            mark_constrained(compiled, self._touched(sd))
        with self._lock:
            self._compiled[key] = compiled
        return compiled

    def _touched(self, sd: Any) -> set[str] | None:
        """Element ids that this profile or one of the profiles it derives from states in its
        differential; None when that cannot be known (then every element counts as touched)."""
        touched: set[str] = set()
        seen: set[str] = set()
        while isinstance(sd, dict) and sd.get("derivation") == "constraint":
            url = sd.get("url", "")
            if url in seen:
                return None
            seen.add(url)
            elements = (sd.get("differential") or {}).get("element")
            if not elements or any(not isinstance(e, dict) or not e.get("id") for e in elements):
                return None
            touched.update(e["id"] for e in elements)
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
        result: dict[str, Any] | None = self.store.structure_definition(url)
        return result

    @property
    def regexes(self) -> dict[str, re.Pattern[str]]:
        if self._regexes is None:
            sds = []
            for name in (
                "base64Binary",
                "boolean",
                "canonical",
                "code",
                "date",
                "dateTime",
                "decimal",
                "id",
                "instant",
                "integer",
                "markdown",
                "oid",
                "positiveInt",
                "string",
                "time",
                "unsignedInt",
                "uri",
                "url",
                "uuid",
            ):
                sd = self.store.structure_definition(SD_BASE + name)
                if sd is not None:
                    sds.append(sd)
            self._regexes = regex_table(sds)
        return self._regexes

    def is_resource_type(self, name: str) -> bool:
        if self._resource_types is None:
            types = set()
            for sd in self.store.all("StructureDefinition"):
                if (
                    sd.get("kind") == "resource"
                    and sd.get("derivation") != "constraint"
                    and sd.get("url", "").startswith(SD_BASE)
                ):
                    types.add(sd.get("type") or sd.get("id"))
            self._resource_types = frozenset(t for t in types if t)
        return name in self._resource_types


_ID_STEP = re.compile(r"[.:]")


def mark_constrained(compiled: CompiledStructure, touched: set[str] | None) -> None:
    """Flag the elements a profile walk may skip: those with no touched element at or below
    them. Why it is sound: an untouched element of a profile's snapshot is the base element,
    which the walk against the base definition has already checked item by item."""
    if touched is None:
        return
    prefixes: set[str] = set()
    for elem_id in touched:
        for m in _ID_STEP.finditer(elem_id):
            prefixes.add(elem_id[: m.start()])
        prefixes.add(elem_id)
    for elem_id, rule in compiled.by_id.items():
        if rule is not compiled.root and elem_id not in prefixes:
            rule.constrained = False

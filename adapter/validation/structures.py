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
        with self._lock:
            self._compiled[key] = compiled
        return compiled

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

"""The conformance store: StructureDefinitions, ValueSets, CodeSystems, NamingSystems by canonical URL.

Resources are indexed by canonical URL and version. An unversioned lookup returns the latest
version (semantic-version order; among equal versions the last one added). ``overlay()`` makes a
child store whose own content shadows the parent's: ``--ig`` content is loaded into a child so the
cached default store is never modified, and a profile re-published by the user under the same URL
wins over the vendored one.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.conformance.loader import CANONICAL_TYPES, ConformanceError, iter_resources, log
from adapter.conformance.snapshot import SnapshotError, generate_snapshot
from adapter.datafiles import data_dir

__all__ = [
    "CANONICAL_TYPES",
    "ConformanceError",
    "ConformanceStore",
    "SnapshotError",
    "build_default_store",
    "default_store",
    "split_canonical",
    "version_key",
]

CORE_SD_BASE = "http://hl7.org/fhir/StructureDefinition/"

_SEQ = itertools.count()  # global, so content added to a child is always "later" than its parent's


@dataclass
class _Entry:
    resource: dict
    version: str | None
    source: str | None
    seq: int


def version_key(version: str | None) -> tuple:
    """Order versions semantically: numeric parts as numbers, pre-release tags before the release."""
    if not version:
        return (((-1, -1, ""),), (0, ""))
    main, _, pre = version.partition("-")
    parts: list[tuple] = []
    for p in re.split(r"[.]", main):
        parts.append((0, int(p), "") if p.isdigit() else (1, 0, p))
    # a release (no pre-release tag) sorts after its pre-releases
    return (tuple(parts), (1,) if not pre else (0, pre))


def split_canonical(url: str, version: str | None = None) -> tuple[str, str | None]:
    """``url|version`` -> (url, version); a ``#fragment`` is dropped."""
    if "|" in url:
        url, _, v = url.partition("|")
        version = version or v or None
    url = url.split("#", 1)[0]
    return url, version


class ConformanceStore:
    """Canonical resources indexed by URL and version, with an optional parent to fall back to."""

    def __init__(self, parent: ConformanceStore | None = None) -> None:
        self._parent = parent
        self._by_url: dict[str, list[_Entry]] = {}
        self._by_type: dict[str, list[_Entry]] = {}
        self._naming: dict[str, _Entry] = {}
        self._lock = threading.RLock()
        self._generating: set[str] = set()
        self.skipped: list[str] = []  # what load() left out of folders and packages, and why

    # -- adding -----------------------------------------------------------------------------
    def add(self, resource: dict, source: str | None = None) -> None:
        """Index one conformance resource; other resource types are rejected with a clear error."""
        if not isinstance(resource, dict):
            raise ConformanceError(f"{source or 'resource'}: not a FHIR resource")
        rtype = resource.get("resourceType")
        if rtype not in CANONICAL_TYPES:
            raise ConformanceError(f"{source or 'resource'}: {rtype!r} is not a conformance resource")
        url = resource.get("url")
        if rtype != "NamingSystem" and (not isinstance(url, str) or not url):
            raise ConformanceError(f"{source or 'resource'}: {rtype} without a canonical url")
        entry = _Entry(resource, resource.get("version"), source, next(_SEQ))
        with self._lock:
            self._by_type.setdefault(rtype, []).append(entry)
            if isinstance(url, str) and url:
                self._by_url.setdefault(url, []).append(entry)
            if rtype == "NamingSystem":
                for uid in resource.get("uniqueId", []):
                    if isinstance(uid, dict) and isinstance(uid.get("value"), str):
                        self._naming[uid["value"]] = entry

    def load(self, path: str | Path) -> int:
        """Load a JSON/XML file, a folder or a FHIR package ``.tgz``; returns the count added.

        A single file that cannot be used is an error. From a folder or a package, what cannot
        be used (junk members, a definition without a canonical url) is skipped; ``skipped``
        says what and why."""
        single_file = Path(path).is_file() and not str(path).lower().endswith((".tgz", ".tar.gz"))
        skipped: list[str] = []
        count = 0
        try:
            for resource, source in iter_resources(path, skipped=skipped):
                try:
                    self.add(resource, source)
                except ConformanceError as exc:
                    if single_file:
                        raise
                    log.warning("skipped %s", exc)
                    skipped.append(str(exc))
                    continue
                count += 1
        finally:
            self.skipped.extend(skipped)
        return count

    def overlay(self) -> ConformanceStore:
        return ConformanceStore(parent=self)

    # -- lookups ----------------------------------------------------------------------------
    def _own_entry(self, url: str, version: str | None) -> _Entry | None:
        entries = self._by_url.get(url)
        if not entries:
            return None
        if version:
            exact = [e for e in entries if e.version == version]
            if not exact:  # "1.1" matches "1.1.0" (FHIR partial version matching)
                exact = [e for e in entries if e.version and e.version.startswith(version + ".")]
            entries = exact
        if not entries:
            return None
        return max(entries, key=lambda e: (version_key(e.version), e.seq))

    def _find(self, url: str, version: str | None) -> tuple[ConformanceStore, _Entry] | None:
        store: ConformanceStore | None = self
        while store is not None:
            entry = store._own_entry(url, version)
            if entry is not None:
                return store, entry
            store = store._parent
        return None

    def get(self, url: str, version: str | None = None) -> dict | None:
        """The resource with this canonical URL (``url|version`` accepted), or None."""
        if not isinstance(url, str) or not url:
            return None
        url, version = split_canonical(url, version)
        found = self._find(url, version)
        return found[1].resource if found else None

    def source(self, url: str, version: str | None = None) -> str | None:
        """Where a resource was loaded from (file name or package member), for messages."""
        url, version = split_canonical(url, version)
        found = self._find(url, version)
        return found[1].source if found else None

    def versions(self, url: str) -> list[str]:
        """The versions loaded under a canonical URL (any version suffix ignored), oldest first."""
        if not isinstance(url, str) or not url:
            return []
        url, _ = split_canonical(url)
        found: set[str] = set()
        store: ConformanceStore | None = self
        while store is not None:
            found.update(e.version for e in store._by_url.get(url, ()) if isinstance(e.version, str))
            store = store._parent
        return sorted(found, key=version_key)

    def _typed(self, url: str, rtype: str) -> dict | None:
        res = self.get(url)
        return res if res is not None and res.get("resourceType") == rtype else None

    def structure_definition(self, url: str) -> dict | None:
        """The StructureDefinition, always with a snapshot (generated from the differential if needed).

        A bare type name (``Patient``) means the core definition. Raises SnapshotError when the
        snapshot cannot be generated (unknown base, circular derivation, bad differential).
        """
        if not isinstance(url, str) or not url:
            return None
        if "/" not in url and ":" not in url:
            url = CORE_SD_BASE + url
        url, version = split_canonical(url)
        found = self._find(url, version)
        if found is None or found[1].resource.get("resourceType") != "StructureDefinition":
            return None
        owner, entry = found
        if "snapshot" in entry.resource:
            return entry.resource
        return owner._complete(entry)

    def _complete(self, entry: _Entry) -> dict:
        with self._lock:
            if "snapshot" in entry.resource:
                return entry.resource
            key = f"{entry.resource.get('url')}|{entry.version}"
            if key in self._generating:
                raise SnapshotError(f"{entry.resource.get('url')}: circular baseDefinition chain")
            self._generating.add(key)
            try:
                completed = generate_snapshot(entry.resource, self)
            finally:
                self._generating.discard(key)
            entry.resource = completed
            return completed

    def value_set(self, url: str) -> dict | None:
        return self._typed(url, "ValueSet")

    def code_system(self, url: str) -> dict | None:
        return self._typed(url, "CodeSystem")

    def naming_system(self, uri: str) -> dict | None:
        """The NamingSystem declaring ``uri`` as one of its uniqueIds."""
        store: ConformanceStore | None = self
        while store is not None:
            entry = store._naming.get(uri)
            if entry is not None:
                return entry.resource
            store = store._parent
        return None

    def all(self, resource_type: str) -> Iterator[dict]:
        """Every resource of that type, own content first; parent content shadowed by the same
        url and version in a child is skipped."""
        seen: set[tuple[Any, Any]] = set()
        store: ConformanceStore | None = self
        while store is not None:
            for entry in list(store._by_type.get(resource_type, ())):
                key = (entry.resource.get("url") or id(entry), entry.version)
                if key in seen:
                    continue
                seen.add(key)
                yield entry.resource
            store = store._parent

    def __len__(self) -> int:
        own = sum(len(v) for v in self._by_type.values())
        return own + (len(self._parent) if self._parent is not None else 0)


_DEFAULT: ConformanceStore | None = None
_DEFAULT_LOCK = threading.Lock()
# Not FHIR resources: the terminology module reads this file itself.
_SKIP_FILES = frozenset({"valuesets-expanded.json.gz"})
_FOLDER_ORDER = ("fhir-r4-core",)


def _profile_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    # core first, ours (becare) last, so a re-definition in becare wins among equal versions
    return sorted(folders, key=lambda p: (p.name not in _FOLDER_ORDER, p.name == "becare", p.name))


def build_default_store(root: Path | None = None) -> ConformanceStore:
    """A fresh store with every vendored folder under ``profiles/`` (uncached)."""
    root = root or data_dir("profiles")
    store = ConformanceStore()
    for folder in _profile_folders(root):
        for resource, source in iter_resources(folder, skip_names=_SKIP_FILES):
            store.add(resource, source)
    return store


def default_store() -> ConformanceStore:
    """FHIR R4 core + Belgian + becare profiles, loaded once per process. Never add to it:
    use ``default_store().overlay()`` for extra content."""
    global _DEFAULT
    if _DEFAULT is None:
        with _DEFAULT_LOCK:
            if _DEFAULT is None:
                _DEFAULT = build_default_store()
    return _DEFAULT

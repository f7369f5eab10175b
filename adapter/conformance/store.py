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
from pathlib import Path
from typing import Any

from adapter.conformance.loader import (
    CANONICAL_TYPES,
    ConformanceError,
    iter_resources,
    log,
    package_identity,
)
from adapter.conformance.snapshot import SnapshotError, generate_snapshot
from adapter.datafiles import data_dir
from adapter.dataindex import LazyResource

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


_LAZY_LOCK = threading.Lock()


class _Entry:
    """One resource of a store. A vendored resource read through an index (adapter/dataindex.py)
    is parsed when first read: its url and version, which the store indexes, come from the index."""

    __slots__ = ("_lazy", "_resource", "seq", "source", "url", "version")

    def __init__(
        self, resource: dict | None, version: str | None, source: str | None, seq: int, lazy: Any = None
    ) -> None:
        self._resource = resource
        self._lazy = lazy
        self.version = version
        self.source = source
        self.seq = seq
        self.url = lazy.url if lazy is not None else resource.get("url") if resource is not None else None

    @property
    def resource(self) -> dict:
        resource = self._resource
        if resource is None:
            with _LAZY_LOCK:  # one parse, and one dict every reader shares
                resource = self._resource
                if resource is None:
                    resource = self._resource = self._lazy.load()
                    self._lazy = None
        return resource  # type: ignore[return-value]

    @resource.setter
    def resource(self, value: dict) -> None:
        self._resource = value

    def summary(self) -> Any:
        """The resource, or (unread) what its index says of it (``dataindex.SD_SUMMARY``)."""
        lazy = self._lazy
        if lazy is not None and "summary" in lazy.extra:
            return lazy.extra["summary"]
        return self.resource


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
        # (id, version) of what was loaded here: packages by their package.json, other content by
        # its file or folder name with no version (report provenance)
        self.packages: list[tuple[str, str | None]] = []

    # -- adding -----------------------------------------------------------------------------
    def add(self, resource: dict, source: str | None = None) -> None:
        """Index one conformance resource; other resource types are rejected with a clear error.
        A ``LazyResource`` (the vendored data, read through its index) is indexed unread."""
        if isinstance(resource, LazyResource):
            self._add_lazy(resource, source)
            return
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

    def _add_lazy(self, lazy: LazyResource, source: str | None) -> None:
        """``add`` of a resource not read yet: the same checks and indexes, from its index."""
        rtype, url = lazy.rtype, lazy.url
        if rtype not in CANONICAL_TYPES:
            raise ConformanceError(f"{source or 'resource'}: {rtype!r} is not a conformance resource")
        if rtype != "NamingSystem" and (not isinstance(url, str) or not url):
            raise ConformanceError(f"{source or 'resource'}: {rtype} without a canonical url")
        entry = _Entry(None, lazy.version, source, next(_SEQ), lazy)
        with self._lock:
            self._by_type.setdefault(rtype, []).append(entry)
            if isinstance(url, str) and url:
                self._by_url.setdefault(url, []).append(entry)
            if rtype == "NamingSystem":
                for uid in lazy.extra.get("uniqueId") or []:
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
        self.packages.append(package_identity(path) or (Path(path).name, None))
        return count

    def overlay(self) -> ConformanceStore:
        return ConformanceStore(parent=self)

    def loaded_packages(self) -> list[tuple[str, str | None]]:
        """The packages of this store and its parents, the parents' first, each once."""
        chain: list[ConformanceStore] = []
        store: ConformanceStore | None = self
        while store is not None:
            chain.append(store)
            store = store._parent
        return list(dict.fromkeys(p for s in reversed(chain) for p in s.packages))

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
        for entry in self._all_entries(resource_type):
            yield entry.resource

    def summaries(self, resource_type: str) -> Iterator[dict]:
        """``all()``, where a vendored StructureDefinition not read yet is given by its index's
        summary (id, url, kind, derivation, type, abstract: ``dataindex.SD_SUMMARY``), unread.
        For callers that read nothing else, such as the list of resource types."""
        for entry in self._all_entries(resource_type):
            yield entry.summary()

    def _all_entries(self, resource_type: str) -> Iterator[_Entry]:
        seen: set[tuple[Any, Any]] = set()
        store: ConformanceStore | None = self
        while store is not None:
            for entry in list(store._by_type.get(resource_type, ())):
                url = entry.resource.get("url") if entry._lazy is None else entry.url
                key = (url or id(entry), entry.version)
                if key in seen:
                    continue
                seen.add(key)
                yield entry
            store = store._parent

    def __len__(self) -> int:
        own = sum(len(v) for v in self._by_type.values())
        return own + (len(self._parent) if self._parent is not None else 0)


_DEFAULT: ConformanceStore | None = None
_DEFAULT_LOCK = threading.Lock()
# Not FHIR resources: the terminology module reads this file itself.
_SKIP_FILES = frozenset({"valuesets-expanded.json.gz"})
_FOLDER_ORDER = ("fhir-r4-core",)
# The FHIR packages the vendored folders come from (profiles/SOURCES.md); they carry no package.json.
VENDORED_PACKAGES: dict[str, tuple[str, str | None]] = {
    "fhir-r4-core": ("hl7.fhir.r4.core", "4.0.1"),
    "be-core": ("hl7.fhir.be.core", "2.1.2"),
    "be-core-clinical": ("hl7.fhir.be.core-clinical", "1.1.0"),
    "be-core-relatedperson": ("hl7.fhir.be.core-relatedperson", "draft"),
    "be-patient-care": ("hl7.fhir.be.patient-care", "1.1.0"),
    "be-terminology": ("hl7.fhir.be.terminology", "1.0.0"),
    "becare": ("becare", "1.0.0"),
}


def _profile_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    # core first, ours (becare) last, so a re-definition in becare wins among equal versions
    return sorted(folders, key=lambda p: (p.name not in _FOLDER_ORDER, p.name == "becare", p.name))


def build_default_store(root: Path | None = None) -> ConformanceStore:
    """A fresh store with every vendored folder under ``profiles/`` (uncached)."""
    root = root or data_dir("profiles")
    store = ConformanceStore()
    for folder in _profile_folders(root):
        count = 0
        for resource, source in iter_resources(folder, skip_names=_SKIP_FILES, indexed=True):
            store.add(resource, source)
            count += 1
        if count:
            store.packages.append(VENDORED_PACKAGES.get(folder.name, (folder.name, None)))
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

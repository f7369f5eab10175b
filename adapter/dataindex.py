"""Reading the big vendored JSON files lazily, through an index of where each member is.

``becare validate`` of one bundle reads about 130 of the ~2,000 conformance resources vendored
under ``profiles/``, yet parsing all of them (10 MB of JSON) was the largest cost of starting the
command. Next to each big ``*.json.gz`` lies ``*.json.gz.index``: for a Bundle, each entry's
resource type, canonical url and version, the few fields the store looks at without reading the
resource (a NamingSystem's unique ids, a StructureDefinition's kind and type), and where the
resource's text starts and ends in the decompressed file; for an object (the expansions), where
each member's value is. A process then decompresses the file (fast, in C) and parses a resource
only when it is asked for, with the same parser as before (the stdlib's).

An index describes one exact file: it records the CRC-32 and size that the gzip trailer of that
file carries, and an index that does not match (the data was regenerated, the index was not) is
ignored, so the file is read in full as before. ``scripts/build_data_indexes.py`` writes the
indexes; ``tests/test_dataindex.py`` holds them equal to what it would write and holds what the
store reads through them equal to what it reads without them.
"""

from __future__ import annotations

import gzip
import json
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FORMAT = 1
SUFFIX = ".index"
# StructureDefinition fields the store gives without reading the resource (structures.py reads
# these of every definition to know the resource types)
SD_SUMMARY = ("id", "url", "kind", "derivation", "type", "abstract")

_SKIP = json.JSONDecoder().scan_once  # (value, end) of the JSON value at an offset
_WS = " \t\n\r"


def gzip_fingerprint(path: Path) -> tuple[int, int] | None:
    """(CRC-32, size mod 2**32) of the uncompressed data, from the gzip trailer."""
    try:
        with path.open("rb") as fh:
            fh.seek(-8, 2)
            crc, size = struct.unpack("<II", fh.read(8))
    except OSError:
        return None
    return crc, size


def index_path(path: Path) -> Path:
    return path.with_name(path.name + SUFFIX)


# -- building ---------------------------------------------------------------------------------------


def _ws(text: str, pos: int) -> int:
    while text[pos] in _WS:
        pos += 1
    return pos


def _members(text: str, pos: int) -> Iterator[tuple[int, int, int, int]]:
    """(key start, key end, value start, value end) of each member of the object at ``pos``."""
    pos = _ws(text, pos + 1)
    if text[pos] == "}":
        return
    while True:
        _key, key_end = _SKIP(text, pos)
        start = _ws(text, _ws(text, key_end) + 1)  # past the colon
        _value, end = _SKIP(text, start)
        yield pos, key_end, start, end
        pos = _ws(text, end)
        if text[pos] == "}":
            return
        pos = _ws(text, pos + 1)


def _items(text: str, pos: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each item of the array at ``pos``."""
    pos = _ws(text, pos + 1)
    if text[pos] == "]":
        return
    while True:
        _value, end = _SKIP(text, pos)
        yield pos, end
        pos = _ws(text, end)
        if text[pos] == "]":
            return
        pos = _ws(text, pos + 1)


def build_index(path: Path) -> dict[str, Any] | None:
    """The index of a gzipped JSON file, a Bundle of conformance resources or an object; None for
    anything else. Offsets are in bytes: the scan runs over the bytes read as Latin-1 (one
    character per byte), where the JSON structure is what it is in UTF-8, and every value the
    index keeps is parsed from its own bytes."""
    raw = gzip.decompress(path.read_bytes())
    text = raw.decode("latin-1")
    fingerprint = gzip_fingerprint(path)
    assert fingerprint is not None
    head: dict[str, Any] = {"format": FORMAT, "crc32": fingerprint[0], "isize": fingerprint[1]}
    top = _ws(text, 0)
    if text[top] != "{":
        return None
    members = [(json.loads(raw[ks:ke]), vs, ve) for ks, ke, vs, ve in _members(text, top)]
    keys = {k: (vs, ve) for k, vs, ve in members}
    rtype = json.loads(raw[slice(*keys["resourceType"])]) if "resourceType" in keys else None
    if rtype != "Bundle":
        return {**head, "kind": "object", "items": [[k, vs, ve] for k, vs, ve in members]}
    if "entry" not in keys or text[keys["entry"][0]] != "[":
        return None
    entries = []
    for i, (s, e) in enumerate(_items(text, keys["entry"][0])):
        entry = json.loads(raw[s:e])
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            entries.append([i, None, None, None, 0, 0, {}])
            continue
        where = [(vs, ve) for ks, ke, vs, ve in _members(text, s) if json.loads(raw[ks:ke]) == "resource"]
        rs, re_ = where[-1]  # as a dict keeps it: the last of duplicate keys
        extra: dict[str, Any] = {}
        if resource.get("resourceType") == "Bundle":
            return None  # nested bundles are read in full
        if resource.get("resourceType") == "NamingSystem":
            extra["uniqueId"] = resource.get("uniqueId")
        if resource.get("resourceType") == "StructureDefinition":
            extra["summary"] = {f: resource[f] for f in SD_SUMMARY if f in resource}
        entries.append(
            [i, resource.get("resourceType"), resource.get("url"), resource.get("version"), rs, re_, extra]
        )
    return {**head, "kind": "bundle", "items": entries}


def write_index(path: Path) -> Path | None:
    index = build_index(path)
    if index is None:
        return None
    target = index_path(path)
    text = json.dumps(index, separators=(",", ":"), ensure_ascii=True)
    target.write_text(text + "\n", encoding="ascii")
    return target


# -- reading ----------------------------------------------------------------------------------------


class IndexedFile:
    """A gzipped JSON file whose members are parsed one at a time, when first read."""

    def __init__(self, path: Path, index: dict[str, Any], data: bytes) -> None:
        self.path = path
        self.index = index
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> IndexedFile | None:
        """The file read through its index; None when there is no index, or not this file's."""
        ipath = index_path(path)
        try:
            index = json.loads(ipath.read_text(encoding="ascii"))
        except (OSError, ValueError):
            return None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            return None
        if gzip_fingerprint(path) != (index.get("crc32"), index.get("isize")):
            return None
        try:
            data = gzip.decompress(path.read_bytes())
        except (OSError, EOFError, gzip.BadGzipFile):
            return None
        if len(data) % 2**32 != index["isize"]:
            return None
        return cls(path, index, data)

    def load(self, start: int, end: int) -> Any:
        """The JSON value between two offsets, parsed as the loader parses whole files."""
        return json.loads(self.data[start:end])


class LazyObject(Mapping[str, Any]):
    """The members of an indexed JSON object, each parsed when first read."""

    def __init__(self, source: IndexedFile) -> None:
        self._source = source
        self._where = {k: (s, e) for k, s, e in source.index["items"]}
        self._parsed: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._parsed[key]
        except KeyError:
            pass
        start, end = self._where[key]
        value = self._parsed[key] = self._source.load(start, end)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where


class LazyResource:
    """A conformance resource of an indexed Bundle: what the store indexes it by, and the
    resource itself on ``load()``."""

    __slots__ = ("extra", "rtype", "source", "span", "url", "version")

    def __init__(
        self, source: IndexedFile, rtype: str, url: Any, version: Any, span: tuple[int, int], extra: Any
    ) -> None:
        self.source = source
        self.rtype = rtype
        self.url = url
        self.version = version
        self.span = span
        self.extra = extra if isinstance(extra, dict) else {}

    def load(self) -> Any:
        return self.source.load(*self.span)


def indexed_resources(path: Path, wanted: frozenset[str] | set[str]) -> list[tuple[LazyResource, int]] | None:
    """(resource, entry number) of each resource of type ``wanted`` in an indexed Bundle file, in
    file order; None when the file has no (matching) index or is not a Bundle."""
    source = IndexedFile.open(path)
    if source is None or source.index.get("kind") != "bundle":
        return None
    out = []
    for i, rtype, url, version, start, end, extra in source.index["items"]:
        if rtype in wanted:
            out.append((LazyResource(source, rtype, url, version, (start, end), extra), i))
    return out

"""The vendored data read through its indexes (adapter/dataindex.py) is the data read in full.

The indexes are generated files: they must be what ``scripts/build_data_indexes.py`` writes for
the data as it is now, and a stale one must be ignored, never trusted.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from adapter.conformance import store as store_mod
from adapter.conformance.loader import iter_resources
from adapter.dataindex import IndexedFile, LazyObject, build_index, index_path
from adapter.terminology.expansions import default_path, load_expansions
from scripts.build_data_indexes import indexed_files

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "profiles"


@pytest.mark.parametrize("path", indexed_files(PROFILES), ids=lambda p: str(p.relative_to(PROFILES)))
def test_committed_index_is_what_the_script_writes(path: Path) -> None:
    committed = json.loads(index_path(path).read_text(encoding="ascii"))
    assert committed == build_index(path), f"run scripts/build_data_indexes.py ({path.name} changed)"
    assert IndexedFile.open(path) is not None


def _eager_store() -> store_mod.ConformanceStore:
    store = store_mod.ConformanceStore()
    for folder in store_mod._profile_folders(PROFILES):
        for resource, source in iter_resources(folder, skip_names=store_mod._SKIP_FILES):
            store.add(resource, source)
    return store


def test_store_read_through_indexes_holds_the_same_resources() -> None:
    lazy, eager = store_mod.build_default_store(PROFILES), _eager_store()
    assert any(e._lazy is not None for es in lazy._by_url.values() for e in es), "no index was used"
    assert len(lazy) == len(eager)
    assert lazy._by_url.keys() == eager._by_url.keys()
    assert lazy._naming.keys() == eager._naming.keys()
    for url, entries in eager._by_url.items():
        mine = lazy._by_url[url]
        assert [(e.version, e.source) for e in mine] == [(e.version, e.source) for e in entries], url
        assert [e.resource for e in mine] == [e.resource for e in entries], url
    for rtype in ("StructureDefinition", "ValueSet", "CodeSystem", "NamingSystem", "ImplementationGuide"):
        assert list(lazy.all(rtype)) == list(eager.all(rtype))
    # the summaries carry every field the resource-type list reads
    fields = ("kind", "derivation", "url", "type", "id")
    summaries = [tuple(s.get(f) for f in fields) for s in store_mod.build_default_store(PROFILES).summaries(
        "StructureDefinition"
    )]
    assert summaries == [tuple(sd.get(f) for f in fields) for sd in eager.all("StructureDefinition")]


def test_a_resource_is_parsed_once_when_first_read() -> None:
    store = store_mod.build_default_store(PROFILES)
    entry = store._by_url["http://hl7.org/fhir/StructureDefinition/Patient"][0]
    assert entry._resource is None
    first = store.get("http://hl7.org/fhir/StructureDefinition/Patient")
    assert first is store.get("http://hl7.org/fhir/StructureDefinition/Patient")
    assert first is not None and first["type"] == "Patient" and entry._lazy is None


def test_expansions_read_through_their_index_are_the_file() -> None:
    lazy = load_expansions()
    assert isinstance(lazy, LazyObject)
    with gzip.open(default_path(), "rt", encoding="utf-8") as fh:
        full = json.load(fh)
    assert list(lazy) == list(full) and len(lazy) == len(full)
    for url in list(full)[::37]:
        assert lazy[url] == full[url] and lazy.get(url) == full[url]
    assert lazy.get("http://example.org/none") is None


def test_a_stale_index_is_ignored(tmp_path: Path) -> None:
    source = PROFILES / "fhir-r4-core" / "structuredefinitions.json.gz"
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    shutil.copy(index_path(source), index_path(copy))
    assert IndexedFile.open(copy) is not None
    data = json.loads(gzip.decompress(copy.read_bytes()))
    data["entry"] = data["entry"][1:]  # the data changes, the index does not
    copy.write_bytes(gzip.compress(json.dumps(data).encode()))
    assert IndexedFile.open(copy) is None
    read = list(iter_resources(copy, indexed=True))
    assert len(read) == len(data["entry"]) and all(isinstance(r, dict) for r, _ in read)
    index_path(copy).write_text("not json", encoding="ascii")
    assert IndexedFile.open(copy) is None

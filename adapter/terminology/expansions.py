"""The vendored R4 expansions (``profiles/fhir-r4-core/valuesets-expanded.json.gz``).

They were produced by a full terminology server, so they hold codes of systems we do not
vendor (HL7 v3, v2 tables) and spare us computing filters at start-up.
Shape: ``{url: {"systems": [{"uri": ..., "codes": [{"code": ..., "display": ...}]}]}}``.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXPANSIONS_FILE = ("fhir-r4-core", "valuesets-expanded.json.gz")
# The vendored expansions describe the R4 core value sets of this version only.
EXPANSIONS_VERSION = "4.0.1"


def default_path() -> Path:
    from adapter.datafiles import data_dir

    return data_dir("profiles").joinpath(*EXPANSIONS_FILE)


def load_expansions(path: Path | None = None) -> Mapping[str, Any]:
    """An empty mapping when the file is absent: everything is then computed from ``compose``.
    Read through its index when it has one (adapter/dataindex.py): a validation reads a handful
    of the ~600 expansions, each parsed when first asked for."""
    path = path or default_path()
    if not path.is_file():
        return {}
    from adapter.dataindex import IndexedFile, LazyObject

    indexed = IndexedFile.open(path)
    if indexed is not None and indexed.index.get("kind") == "object":
        return LazyObject(indexed)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    return data if isinstance(data, dict) else {}


def pairs_of(entry: Any) -> tuple[frozenset[tuple[str, str]], dict[tuple[str, str], tuple[str, ...]]]:
    """(members, displays) of one expansion entry; malformed parts are skipped."""
    members: set[tuple[str, str]] = set()
    displays: dict[tuple[str, str], tuple[str, ...]] = {}
    systems = entry.get("systems") if isinstance(entry, dict) else None
    for system in systems if isinstance(systems, list) else ():
        uri = system.get("uri") if isinstance(system, dict) else None
        if not isinstance(uri, str):
            continue
        for item in system.get("codes") or ():
            code = item.get("code") if isinstance(item, dict) else None
            if isinstance(code, str):
                members.add((uri, code))
                if isinstance(item.get("display"), str):
                    displays[(uri, code)] = (item["display"],)
    return frozenset(members), displays

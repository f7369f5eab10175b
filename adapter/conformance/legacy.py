"""Legacy eHealth profile canonicals mapped to the current BeCore / Patient Care ones.

Vendors still declare the first federal canonicals (``.../standards/fhir/StructureDefinition/
be-patient``, the 2020 and 2022 home-care profiles). No package publishes them any more, so
without a mapping such a resource could not be checked against any profile at all. The table is
data (``profiles/legacy-canonicals.yaml``, with a source and a reason per row) so that adding a
row needs no code; this module only reads it, checks it and answers lookups. The validator
applies a row only when the declared canonical is not loaded (adapter/validation/structures.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from adapter.datafiles import data_dir

TABLE_FILE = "legacy-canonicals.yaml"
_FIELDS = ("declared", "applied", "source", "reason")


class LegacyTableError(ValueError):
    """The legacy canonical table is malformed (a packaging fault: never silently ignored)."""


@dataclass(frozen=True)
class LegacyCanonical:
    """One row: ``declared`` (legacy, unversioned) is validated against ``applied`` (current)."""

    declared: str
    applied: str
    source: str
    reason: str


def parse_table(data: Any, origin: str = TABLE_FILE) -> dict[str, LegacyCanonical]:
    """Check and index the rows. Refuses what would make a lookup ambiguous or circular: a
    row without its four fields, a versioned canonical, a canonical declared twice, a row whose
    ``applied`` is itself a legacy canonical."""
    rows = data.get("legacy") if isinstance(data, Mapping) else None
    if not isinstance(rows, list):
        raise LegacyTableError(f"{origin}: expected a mapping with a 'legacy' list")
    table: dict[str, LegacyCanonical] = {}
    for n, row in enumerate(rows, start=1):
        fields = {k: row.get(k) for k in _FIELDS} if isinstance(row, Mapping) else {}
        missing = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if not fields or missing:
            raise LegacyTableError(f"{origin}: row {n} lacks {', '.join(missing) or 'its fields'}")
        entry = LegacyCanonical(**{k: v.strip() for k, v in fields.items()})
        for url in (entry.declared, entry.applied):
            if "|" in url or "#" in url or not url.startswith(("http://", "https://")):
                raise LegacyTableError(f"{origin}: row {n}: {url!r} is not an unversioned canonical URL")
        if entry.declared in table:
            raise LegacyTableError(f"{origin}: row {n}: {entry.declared} is declared twice")
        table[entry.declared] = entry
    for entry in table.values():
        if entry.applied in table:
            raise LegacyTableError(
                f"{origin}: {entry.declared} maps to {entry.applied}, itself a legacy canonical"
            )
    return table


def load_table(path: str | Path | None = None) -> dict[str, LegacyCanonical]:
    """Read the table from ``path`` (default: the one shipped under ``profiles/``)."""
    path = Path(path) if path is not None else data_dir("profiles") / TABLE_FILE
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LegacyTableError(f"{path}: cannot be read ({exc})") from exc
    return parse_table(data, str(path))


@lru_cache(maxsize=1)
def legacy_table() -> Mapping[str, LegacyCanonical]:
    """The shipped table, read once per process."""
    return load_table()


def lookup(canonical: str) -> LegacyCanonical | None:
    """The row for a declared canonical (``url``, ``url|version`` or ``url#fragment``), or None."""
    if not isinstance(canonical, str) or not canonical:
        return None
    url = canonical.split("|", 1)[0].split("#", 1)[0]
    return legacy_table().get(url)

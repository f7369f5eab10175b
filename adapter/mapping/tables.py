"""The mapping tables (``mappings/*.yaml``) as one immutable, cached value.

The vocabulary lives in data so that a new role alias, profession or instrument is a data change
reviewed on its own, not a code change; this module only loads and indexes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from adapter.datafiles import data_dir


@dataclass(frozen=True)
class Tables:
    """Indexed views of the YAML tables; every lookup of the mapper goes through here."""

    raw: dict[str, dict[str, Any]]

    # -- code systems -------------------------------------------------------------------
    def system(self, table: str) -> str:
        return str(self.raw[table]["system"])

    @property
    def roles(self) -> dict[str, dict[str, Any]]:
        return self.raw["roles"]["roles"]

    @property
    def professions(self) -> dict[str, dict[str, Any]]:
        return self.raw["professions"]["professions"]

    @property
    def regions(self) -> dict[str, dict[str, Any]]:
        return self.raw["regions"]["regions"]

    @property
    def triggers(self) -> dict[str, dict[str, Any]]:
        return self.raw["triggers"]["triggers"]

    @property
    def task_types(self) -> dict[str, dict[str, Any]]:
        return self.raw["tasks"]["task_types"]

    @property
    def task_statuses(self) -> dict[str, dict[str, Any]]:
        return self.raw["tasks"]["statuses"]

    @property
    def episode_types(self) -> dict[str, dict[str, Any]]:
        return self.raw["episodes"]["episode_types"]

    @property
    def goal_categories(self) -> dict[str, dict[str, Any]]:
        return self.raw["goals"]["categories"]

    @property
    def consent_categories(self) -> dict[str, dict[str, Any]]:
        return self.raw["consents"]["categories"]

    @property
    def relationships(self) -> dict[str, dict[str, Any]]:
        return self.raw["relationships"]["relationships"]

    @property
    def instruments(self) -> dict[str, dict[str, Any]]:
        return self.raw["assessments"]["instruments"]

    @property
    def fhir(self) -> dict[str, Any]:
        return self.raw["fhir"]

    def profile(self, resource_type: str) -> str:
        return str(self.fhir["profiles"][resource_type])

    def identifier_system(self, name: str) -> str:
        return str(self.fhir["identifier_systems"][name])

    def extension(self, name: str) -> str:
        return str(self.fhir["extensions"][name])

    # -- aliases --------------------------------------------------------------------------
    def alias(self, table: str, text: str) -> str | None:
        """The code a free-text value stands for, or None. Codes map to themselves."""
        key = " ".join(text.strip().lower().split())
        codes = self.codes(table)
        if key in codes:
            return key
        aliases = self._aliases(table)
        return aliases.get(key)

    def codes(self, table: str) -> dict[str, Any]:
        return {
            "roles": self.roles,
            "professions": self.professions,
            "regions": self.regions,
            "triggers": self.triggers,
        }[table]

    def _aliases(self, table: str) -> dict[str, str]:
        if table == "roles":
            out: dict[str, str] = {}
            for code, row in self.roles.items():
                for text in row.get("aliases", []):
                    out[" ".join(str(text).lower().split())] = code
            return out
        return {str(k).lower(): str(v) for k, v in (self.raw[table].get("aliases") or {}).items()}

    def role_for_snomed(self, code: str) -> str | None:
        for role, row in self.roles.items():
            if (row.get("snomed") or {}).get("code") == code:
                return role
        return None


TABLE_NAMES = (
    "roles",
    "professions",
    "regions",
    "triggers",
    "tasks",
    "episodes",
    "goals",
    "consents",
    "relationships",
    "assessments",
    "fhir",
)


def load_tables(folder: Path | None = None) -> Tables:
    base = folder or data_dir("mappings")
    raw: dict[str, dict[str, Any]] = {}
    for name in TABLE_NAMES:
        with (base / f"{name}.yaml").open(encoding="utf-8") as fh:
            raw[name] = yaml.safe_load(fh)
    return Tables(raw)


@cache
def tables() -> Tables:
    """The shipped tables, loaded once per process."""
    return load_tables()

"""The KMEHR mapping table (``mappings/kmehr.yaml``) as one immutable, cached value.

Which CD-ITEM a goal becomes, which lifecycle a task status becomes, the LOCAL schemes and the
summary labels are assumptions a hub may correct; keeping them in data lets that correction be a
reviewed data change. The writer and the reader both read this one table, so they cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from adapter.datafiles import data_dir

LANGUAGES = ("en", "fr", "nl", "de")


@dataclass(frozen=True)
class KmehrCodes:
    raw: dict[str, Any]

    @property
    def ns(self) -> str:
        return str(self.raw["namespace"])

    def sv(self, scheme: str) -> str:
        """The scheme version written with a code or an id of ``scheme``."""
        return str(self.raw["scheme_versions"][scheme])

    def transaction_code(self, version: str) -> str:
        return str(self.raw["transaction"]["code"][version])

    def item_code(self, kind: str) -> str:
        return str(self.raw["items"][kind])

    def lifecycle(self, kind: str) -> dict[str, str]:
        return dict(self.raw["lifecycle"][kind])

    def lifecycle_read(self, kind: str) -> dict[str, str]:
        return {v: k for k, v in self.raw["lifecycle"][kind].items()}

    def labels(self, lang: str) -> dict[str, Any]:
        return dict(self.raw["labels"][lang])

    @property
    def references(self) -> tuple[str, ...]:
        return tuple(self.raw["references"])

    @property
    def local_schemes(self) -> dict[str, str]:
        return dict(self.raw["local_schemes"])


def load_codes(path: Path | None = None) -> KmehrCodes:
    with (path or data_dir("mappings") / "kmehr.yaml").open(encoding="utf-8") as fh:
        return KmehrCodes(yaml.safe_load(fh))


@cache
def codes() -> KmehrCodes:
    """The shipped table, loaded once per process."""
    return load_codes()

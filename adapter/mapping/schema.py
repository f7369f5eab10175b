"""The published JSON Schema of the care situation document (``mappings/care-situation.schema.json``).

It is generated from the Pydantic models so the two cannot drift; a test fails when the
committed file is stale. Regenerate with ``python -m adapter.mapping.schema``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from adapter.datafiles import data_dir
from adapter.mapping.model import CareSituation

SCHEMA_FILE = "care-situation.schema.json"


def json_schema() -> dict[str, Any]:
    schema = CareSituation.model_json_schema(mode="validation")
    ordered = {"$schema": schema.pop("$schema"), "$id": schema.pop("$id")}
    ordered.update(schema)
    return ordered


def render() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def schema_path() -> Path:
    return data_dir("mappings") / SCHEMA_FILE


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else schema_path()
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

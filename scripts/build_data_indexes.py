"""Write the index next to each big vendored ``*.json.gz`` under ``profiles/`` (adapter/dataindex.py).

Run after the vendored data changes: ``.venv/bin/python scripts/build_data_indexes.py``. An index
that no longer matches its file is ignored at run time (the file is then read in full, slower),
and tests/test_dataindex.py fails until the indexes are written again.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from adapter.dataindex import write_index  # noqa: E402

# big enough that reading them whole shows at the start of a process
MIN_BYTES = 32 * 1024


def indexed_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json.gz") if p.stat().st_size >= MIN_BYTES)


def main() -> None:
    for path in indexed_files(ROOT / "profiles"):
        target = write_index(path)
        print(f"{path.relative_to(ROOT)}: {'indexed' if target else 'not indexable'}")


if __name__ == "__main__":
    main()

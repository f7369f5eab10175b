"""Where the read-only reference material (``../shared``) is, for tests only.

The product never reads it; tests do, from the checkout's sibling folder, or ``/work/shared``
when the clone lives elsewhere, or ``$BECARE_SHARED``.
"""

from __future__ import annotations

import os
from pathlib import Path


def shared_dir() -> Path:
    candidates = [
        os.environ.get("BECARE_SHARED", ""),
        str(Path(__file__).resolve().parents[2] / "shared"),
        "/work/shared",
    ]
    for c in candidates:
        if c and (Path(c) / "CONTRACT.md").is_file():
            return Path(c)
    raise FileNotFoundError("the shared reference folder was not found; set BECARE_SHARED to its path")


def reference_dir() -> Path:
    return shared_dir() / "reference"

"""``becare_files``: every FHIR file of a folder as ``pytest.param`` values, one test per file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DEFAULT_PATTERNS = ("*.json", "*.xml")


def find_files(folder: str | os.PathLike[str], patterns: Iterable[str] = DEFAULT_PATTERNS) -> list[Path]:
    """Files under ``folder`` (recursively) matching any pattern, in a stable sorted order."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"becare_files: {root} is not a folder")
    found = {p for pattern in patterns for p in root.rglob(pattern) if p.is_file()}
    return sorted(found)


def becare_files(
    folder: str | os.PathLike[str], patterns: str | Iterable[str] = DEFAULT_PATTERNS
) -> list[Any]:
    """For ``@pytest.mark.parametrize("path", becare_files("out/bundles"))``.

    Each param's id is the path relative to ``folder`` so the test report names the file. An
    empty folder is an error: a parametrized test over nothing would pass silently.
    """
    import pytest

    root = Path(folder)
    chosen = (patterns,) if isinstance(patterns, str) else tuple(patterns)
    files = find_files(root, chosen)
    if not files:
        raise FileNotFoundError(f"becare_files: no file matching {', '.join(chosen)} under {root}")
    return [pytest.param(p, id=p.relative_to(root).as_posix()) for p in files]

"""Files as test items: the ``becare_validate_paths`` ini option makes pytest report one test per
FHIR file it walks over, so a folder of generated bundles needs no test code at all."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from adapter.testing.assertions import BecareValidationError, assert_valid

FHIR_SUFFIXES = (".json", ".xml")
_GLOB_CHARS = frozenset("*?[")


def matches(path: Path, root: Path, entries: Sequence[str]) -> bool:
    """True when ``path`` is selected by an entry: a glob on the path relative to ``root``
    (``out/**/*.json``; ``*`` also crosses folders), or a plain file or folder name."""
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    rel_posix = rel.as_posix()
    for entry in entries:
        entry = entry.strip().rstrip("/")
        if not entry:
            continue
        if _GLOB_CHARS & set(entry):
            if fnmatch.fnmatchcase(rel_posix, entry) or fnmatch.fnmatchcase(
                rel_posix, entry.replace("**/", "")
            ):
                return True
            continue
        target = Path(entry)
        if path.suffix.lower() in FHIR_SUFFIXES and (rel == target or target in rel.parents):
            return True
    return False


class BecareFile(pytest.File):
    """One FHIR file; it yields a single item that validates it."""

    def collect(self) -> Iterator[pytest.Item]:
        yield BecareItem.from_parent(self, name="becare-valid")


class BecareItem(pytest.Item):
    def runtest(self) -> None:
        assert_valid(self.path)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        # The issue list is the whole story; a traceback into becare would only hide it.
        if isinstance(excinfo.value, BecareValidationError | OSError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"becare validate {self.path.name}"

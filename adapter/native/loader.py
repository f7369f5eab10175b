"""Use the compiled validation core, but only when it was built from the sources on disk.

``python -m adapter.native.build`` compiles the hot modules of the validator (the walker and the
checks it calls on every element) with mypyc into ``adapter/native/_built``. The compiled
modules are the same Python source, so every verdict and message is the same; they only run
faster. They are found by a finder of our own rather than placed next to the sources, because a
compiled module beside its ``.py`` would shadow it for good: edit the source, forget to rebuild,
and the old code runs. Here the build's manifest records a hash of every source the compiled
code was made from (the compiled modules and everything they import from ``adapter``, whose
types the compiler relied on), and the finder is installed only when every one still matches.
Otherwise the pure-Python modules load, as they always can: slower, never different.

All or nothing: the compiled modules call each other directly and share native classes, so a
mix of compiled and pure modules is never loaded. ``BECARE_NATIVE=0`` turns the compiled
modules off (tests compare both ways).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

BUILT = Path(__file__).resolve().parent / "_built"
MANIFEST = "manifest.json"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding ``adapter/``


@dataclass(frozen=True)
class Status:
    """Whether the compiled modules are in use, and if not, why not (shown by ``becare --version``
    and by the benchmarks, so that a figure says what it measured)."""

    active: bool
    reason: str
    modules: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        if self.active:
            return f"native: {len(self.modules)} compiled modules"
        return f"native: off ({self.reason})"


_status = Status(False, "not installed yet")


def status() -> Status:
    return _status


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def abi_tag() -> str:
    """The extension suffix of this interpreter: a build for another Python is not loaded."""
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def check(
    built: Path = BUILT, root: Path = PACKAGE_ROOT, *, honour_env: bool = True
) -> tuple[Status, dict[str, Path]]:
    """Whether the build in ``built`` may be used, and where each compiled module is."""
    if honour_env and os.environ.get("BECARE_NATIVE", "1").strip() in ("0", "false", "no", "off"):
        return Status(False, "turned off by BECARE_NATIVE=0"), {}
    try:
        manifest: dict[str, Any] = json.loads((built / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Status(False, "not built: run ./dev build-native"), {}
    except (OSError, ValueError) as exc:
        return Status(False, f"unreadable manifest: {exc}"), {}
    if manifest.get("abi") != abi_tag():
        return Status(False, f"built for {manifest.get('abi')}, this Python is {abi_tag()}"), {}
    sources = manifest.get("sources")
    files = manifest.get("files")
    compiled = manifest.get("compiled")
    if not isinstance(sources, dict) or not isinstance(files, dict) or not isinstance(compiled, list):
        return Status(False, "incomplete manifest: rebuild"), {}
    for rel, digest in sources.items():
        try:
            current = source_digest(root / rel)
        except OSError:
            return Status(False, f"stale: {rel} is gone; run ./dev build-native"), {}
        if current != digest:
            return Status(False, f"stale: {rel} changed since the build; run ./dev build-native"), {}
    paths = {name: built / rel for name, rel in files.items()}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        return Status(False, f"incomplete build: {missing[0]} is missing; rebuild"), {}
    return Status(True, "built from the current sources", tuple(compiled)), paths


class _Finder:
    """Finds the compiled modules (and the library they share) in the build folder. (A meta path
    finder by protocol: importlib.abc would cost the command line ~17 ms of imports.)"""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        where = self.paths.get(fullname)
        if where is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, str(where))
        spec = importlib.machinery.ModuleSpec(fullname, loader, origin=str(where))
        spec.has_location = True
        return spec


def install() -> Status:
    """Put the finder first on ``sys.meta_path`` if the build may be used; idempotent."""
    global _status
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return _status
    found, paths = check()
    if found.active:
        early = [name for name in found.modules if name in sys.modules]
        if early:  # a pure copy is already in use: mixing the two is not allowed
            found = Status(False, f"{early[0]} was imported before the compiled modules were set up")
        else:
            sys.meta_path.insert(0, _Finder(paths))
    _status = found
    return found

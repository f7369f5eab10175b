"""A validation leaves no reference cycles of ours behind: what it allocates is freed by
reference counting as soon as it is dropped, not left for the garbage collector. (Validation
runs with the collector paused, so cyclic garbage from every bundle would pile up until the
collector runs; a recursive closure was such a cycle, once per resource scanned.)"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from adapter.fhirio import parse
from adapter.output.render import render_json
from adapter.validation import Validator
from adapter.validation.api import ValidationOptions

ROOT = Path(__file__).resolve().parents[1]
INPUTS = [
    ROOT / "samples" / "valid" / "flanders-care-coordination.json",
    ROOT / "samples" / "valid" / "brussels-case-management.json",
    ROOT / "samples" / "rules" / "IC-ID-1" / "breaks-ssin.json",
    ROOT / "tests" / "data" / "fhirio" / "bundle-twin.json",
]


def _ours(obj: Any) -> bool:
    """Part of becare: a function or an instance of a class defined in the adapter package."""
    module = getattr(obj, "__module__", None) if callable(obj) else type(obj).__module__
    return isinstance(module, str) and module.startswith("adapter")


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_validation_leaves_no_cycles_of_ours(validator: Validator, path: Path) -> None:
    data = path.read_bytes()
    render_json([validator.validate(parse(data, "json"), ValidationOptions())])  # warm the caches
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        render_json([validator.validate(parse(data, "json"), ValidationOptions())])
        gc.collect()
        left = [o for o in gc.garbage if _ours(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
    assert left == [], sorted({getattr(o, "__qualname__", type(o).__qualname__) for o in left})

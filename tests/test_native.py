"""The compiled validation core (adapter/native): in use, identical to the pure modules, and never
used when it was built from other sources than those on disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import adapter.validation.walker as walker_module
from adapter.native import loader, status
from tests.shared_ref import reference_dir

ROOT = Path(__file__).resolve().parents[1]
SUITE = reference_dir() / "fhir-test-cases"

# Validates every sample and test file, and the cases of the official validator suite (base and
# profile steps), and prints what a user would get for each: the issues of the OperationOutcome
# (with line and column), the parse error, or the exception.
_CORPUS_SCRIPT = r"""
import datetime as dt
import json
import sys
from pathlib import Path

from adapter.conformance import default_store
from adapter.fhirio import ParseError, parse, parse_file
from adapter.native import status
from adapter.output.render import report_outcome
from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator

root, suite = Path(sys.argv[1]), Path(sys.argv[2])
today = dt.date(2026, 6, 1)


def outcome(validator, path, options):
    try:
        document = parse(path.read_bytes())
    except ParseError as exc:
        return ["parse error", exc.message, exc.line, exc.col]
    try:
        return report_outcome(validator.validate(document, options))["issue"]
    except Exception as exc:  # the same failure, compiled or not
        return ["exception", type(exc).__name__, str(exc)]


out = {"native": status().active, "files": {}}
validator = Validator()
for d in ("samples", "tests/data"):
    for path in sorted((root / d).rglob("*")):
        if path.suffix in (".json", ".xml"):
            options = ValidationOptions(today=today)
            out["files"][str(path.relative_to(root))] = outcome(validator, path, options)
base = default_store()
for case in json.loads((suite / "r4-candidate-subset.json").read_text()):
    if case.get("tier") != "A" or case.get("format") != "json":  # as tests/suite_runner.py
        continue
    store = base.overlay()
    for rel in case.get("supporting") or ():
        store.load(suite / rel)
    plain = ValidationOptions(rulebook=False, today=today)
    out["files"]["suite:" + case["name"]] = outcome(Validator(store), suite / case["file"], plain)
    if (case.get("profile") or "").endswith(".json"):
        pstore = store.overlay()
        pstore.load(suite / case["profile"])
        url = parse_file(suite / case["profile"]).resource["url"]
        profiled = ValidationOptions(profiles=(url,), rulebook=False, today=today)
        profile_step = outcome(Validator(pstore), suite / case["file"], profiled)
        out["files"]["suite-profile:" + case["name"]] = profile_step
print(json.dumps(out, sort_keys=True, default=str))
"""


def _corpus(native: bool) -> dict[str, Any]:
    env = {**os.environ, "BECARE_NATIVE": "1" if native else "0"}
    done = subprocess.run(
        [sys.executable, "-c", _CORPUS_SCRIPT, str(ROOT), str(SUITE)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_the_compiled_core_is_in_use() -> None:
    """./dev builds it before testing; a missing or stale build fails here with the reason."""
    now = status()
    assert now.active, now.describe()
    assert walker_module.__file__ is not None
    assert walker_module.__file__.endswith(loader.abi_tag())
    assert "adapter.validation.walker" in now.modules


def test_compiled_and_pure_modules_give_the_same_outcomes() -> None:
    compiled, pure = _corpus(native=True), _corpus(native=False)
    assert compiled["native"] is True, status().describe()
    assert pure["native"] is False
    assert len(compiled["files"]) > 300  # samples, test data and the suite, valid and broken
    differ = [name for name in compiled["files"] if compiled["files"][name] != pure["files"].get(name)]
    assert differ == [], differ[:5]
    assert compiled["files"].keys() == pure["files"].keys()


# -- the loader: a build is used only when made from the sources on disk -----------------------


@pytest.fixture
def copy_of_build(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the current build and of the sources it was made from, to damage at will."""
    assert status().active, status().describe()
    built = tmp_path / "built"
    shutil.copytree(loader.BUILT, built)
    root = tmp_path / "root"
    manifest = json.loads((built / loader.MANIFEST).read_text(encoding="utf-8"))
    for rel in manifest["sources"]:
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / rel, target)
    return built, root


def test_a_build_from_the_same_sources_is_used(copy_of_build: tuple[Path, Path]) -> None:
    built, root = copy_of_build
    found, paths = loader.check(built, root)
    assert found.active and paths["adapter.validation.walker"].is_file()


def test_a_source_changed_since_the_build_turns_it_off(copy_of_build: tuple[Path, Path]) -> None:
    built, root = copy_of_build
    edited = root / "adapter" / "validation" / "model.py"  # not compiled, but its types were relied on
    edited.write_text(edited.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    found, paths = loader.check(built, root)
    assert not found.active and paths == {}
    assert "stale: adapter/validation/model.py changed" in found.reason


def test_a_missing_source_turns_it_off(copy_of_build: tuple[Path, Path]) -> None:
    built, root = copy_of_build
    (root / "adapter" / "validation" / "walker.py").unlink()
    found, _ = loader.check(built, root)
    assert not found.active and "adapter/validation/walker.py is gone" in found.reason


def test_a_build_for_another_python_is_not_loaded(copy_of_build: tuple[Path, Path]) -> None:
    built, root = copy_of_build
    manifest = json.loads((built / loader.MANIFEST).read_text(encoding="utf-8"))
    manifest["abi"] = ".cpython-399-x86_64-linux-gnu.so"
    (built / loader.MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    found, _ = loader.check(built, root)
    assert not found.active and "built for .cpython-399" in found.reason


def test_a_missing_compiled_file_turns_it_off(copy_of_build: tuple[Path, Path]) -> None:
    built, root = copy_of_build
    manifest = json.loads((built / loader.MANIFEST).read_text(encoding="utf-8"))
    (built / manifest["files"]["adapter.validation.slicing"]).unlink()
    found, _ = loader.check(built, root)
    assert not found.active and "adapter.validation.slicing is missing" in found.reason


def test_no_build_and_turned_off(
    tmp_path: Path, copy_of_build: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    found, _ = loader.check(tmp_path / "nothing", ROOT)
    assert not found.active and "not built" in found.reason
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / loader.MANIFEST).write_text("{not json", encoding="utf-8")
    assert "unreadable manifest" in loader.check(tmp_path / "garbled", ROOT)[0].reason
    built, root = copy_of_build
    monkeypatch.setenv("BECARE_NATIVE", "0")
    assert loader.check(built, root)[0].reason == "turned off by BECARE_NATIVE=0"
    assert loader.check(built, root, honour_env=False)[0].active


def test_dependencies_follow_imports_through_the_package(tmp_path: Path) -> None:
    """What the compiled code relied on: imported modules (also under TYPE_CHECKING and inside
    functions, relative or absolute), the packages above them, transitively."""
    from adapter.native.build import dependencies

    pkg = tmp_path / "adapter"
    (pkg / "a").mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a" / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "a" / "hot.py").write_text(
        "from typing import TYPE_CHECKING\nimport json\nfrom . import sibling\n"
        "if TYPE_CHECKING:\n    from adapter.b.typed import T\n"
        "def f():\n    import adapter.c\n",
        encoding="utf-8",
    )
    (pkg / "a" / "sibling.py").write_text("from adapter.a.deeper import x\n", encoding="utf-8")
    (pkg / "a" / "deeper.py").write_text("x = 1\n", encoding="utf-8")
    (pkg / "a" / "unrelated.py").write_text("", encoding="utf-8")
    (pkg / "b").mkdir()
    (pkg / "b" / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "b" / "typed.py").write_text("T = int\n", encoding="utf-8")
    (pkg / "c.py").write_text("", encoding="utf-8")
    found = {p.relative_to(tmp_path).as_posix() for p in dependencies(["adapter.a.hot"], tmp_path)}
    assert found == {
        "adapter/__init__.py",
        "adapter/a/__init__.py",
        "adapter/a/hot.py",
        "adapter/a/sibling.py",
        "adapter/a/deeper.py",
        "adapter/b/__init__.py",
        "adapter/b/typed.py",
        "adapter/c.py",
    }


def test_a_build_for_other_modules_or_another_compiler_is_made_again(
    copy_of_build: tuple[Path, Path],
) -> None:
    """What only the build reads (pyproject's module list, the compiler) also makes it stale for
    ``./dev``'s ``--if-stale``; the loader still uses such a build (its sources are current)."""
    from adapter.native.build import stale_reason

    built, _root = copy_of_build
    current = status()
    assert stale_reason(current, built, ROOT) is None
    manifest = json.loads((built / loader.MANIFEST).read_text(encoding="utf-8"))
    (built / loader.MANIFEST).write_text(
        json.dumps({**manifest, "compiled": manifest["compiled"][:-1]}), encoding="utf-8"
    )
    assert stale_reason(current, built, ROOT) == "the modules to compile changed (pyproject.toml)"
    (built / loader.MANIFEST).write_text(json.dumps({**manifest, "compiler": "mypy 0.1"}), encoding="utf-8")
    assert "built by mypy 0.1" in (stale_reason(current, built, ROOT) or "")
    assert stale_reason(loader.Status(False, "stale: x changed"), built, ROOT) == "stale: x changed"

"""Compile the validator's hot modules with mypyc into ``adapter/native/_built`` (see loader.py).

Run ``python -m adapter.native.build`` (``./dev build-native``; ``./dev`` runs it with
``--if-stale`` before serving or testing). Which modules are compiled is data: the ``modules``
list under ``[tool.becare.native]`` in pyproject.toml. A build that fails leaves the previous
state in place and says why; becare then runs on the pure-Python modules, with the same results.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from adapter.native.loader import BUILT, MANIFEST, PACKAGE_ROOT, Status, abi_tag, check, source_digest

GROUP = "becare_native"  # the name of the library the compiled modules share

_SETUP = """\
import sys
from setuptools import setup
from mypyc.build import mypycify

paths = {paths!r}
flags = ["--ignore-missing-imports", "--follow-imports=silent", "--cache-dir", {cache!r}]
setup(
    name="becare-native",
    packages=[],
    py_modules=[],
    ext_modules=mypycify(flags + paths, opt_level="3", target_dir={target!r}, group_name={group!r}),
)
"""


def configured_modules(root: Path = PACKAGE_ROOT) -> list[str]:
    with (root / "pyproject.toml").open("rb") as fh:
        config = tomllib.load(fh)
    modules = config.get("tool", {}).get("becare", {}).get("native", {}).get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise SystemExit("pyproject.toml: [tool.becare.native] modules must be a list of module names")
    return modules


def module_file(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def dependencies(modules: list[str], root: Path = PACKAGE_ROOT) -> list[Path]:
    """The sources the compiled code was made from: the modules, every ``adapter`` module they
    import (anywhere, type-checking imports included: the compiler relied on their types), and
    the packages on the way, transitively."""
    seen: dict[str, Path] = {}
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = module_file(name, root)
        if path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # the packages above
        package = name if path.name == "__init__.py" else ".".join(parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.split(".")[0] == "adapter")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join([*anchor, *([node.module] if node.module else [])])
                else:
                    target = node.module or ""
                if target.split(".")[0] != "adapter":
                    continue
                todo.append(target)
                todo.extend(f"{target}.{a.name}" for a in node.names)  # names that are submodules
    return sorted(seen.values())


def _relative(path: Path, root: Path) -> str:
    return path.resolve().relative_to(root.resolve()).as_posix()


def build(root: Path = PACKAGE_ROOT, out: Path = BUILT, jobs: int = 2) -> None:
    modules = configured_modules(root)
    files = [module_file(m, root) for m in modules]
    if any(f is None for f in files):
        missing = [m for m, f in zip(modules, files, strict=True) if f is None]
        raise SystemExit(f"native build: no source for {', '.join(missing)}")
    sources = {_relative(p, root): source_digest(p) for p in dependencies(modules, root)}
    with tempfile.TemporaryDirectory(prefix="becare-native-") as tmp:
        work = Path(tmp)
        setup = work / "setup.py"
        setup.write_text(
            _SETUP.format(
                paths=[_relative(f, root) for f in files if f is not None],
                cache=str(work / "mypy-cache"),
                target=str(work / "c"),
                group=GROUP,
            ),
            encoding="utf-8",
        )
        lib = work / "lib"
        command = [sys.executable, str(setup), "build_ext", "--build-lib", str(lib)]
        command += ["--build-temp", str(work / "temp"), "--parallel", str(jobs)]
        done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
            raise SystemExit(f"native build failed (becare runs on the pure-Python modules):\n{tail}")
        now = {rel: source_digest(root / rel) for rel in sources}
        if now != sources:
            raise SystemExit("native build: sources changed during the build; run it again")
        suffix = abi_tag()
        built = {}
        for so in sorted(lib.rglob(f"*{suffix}")):
            rel = so.relative_to(lib).as_posix()
            built[rel[: -len(suffix)].replace("/", ".")] = rel
        absent = [m for m in modules if m not in built]
        if absent:
            raise SystemExit(f"native build: {absent[0]} was not compiled")
        manifest = {
            "abi": suffix,
            "python": sys.version.split()[0],
            "compiler": compiler_version(),
            "compiled": modules,
            "files": built,
            "sources": sources,
        }
        (lib / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        staging = out.with_name(out.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(lib, staging)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)


def compiler_version() -> str:
    """mypyc's version (mypy's): code compiled by another one is rebuilt, not reused."""
    from importlib.metadata import version

    return f"mypy {version('mypy')}"


def stale_reason(before: Status, built: Path = BUILT, root: Path = PACKAGE_ROOT) -> str | None:
    """Why the build must be made again, or None: the loader's reason (``before``: a source
    changed...), or what only the build reads: the modules to compile and the compiler."""
    if not before.active:
        return before.reason
    try:
        manifest = json.loads((built / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"unreadable manifest: {exc}"
    if manifest.get("compiled") != configured_modules(root):
        return "the modules to compile changed (pyproject.toml)"
    if manifest.get("compiler") != compiler_version():
        return f"built by {manifest.get('compiler') or 'another compiler'}, this is {compiler_version()}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapter.native.build", description=__doc__)
    parser.add_argument("--if-stale", action="store_true", help="build only if the build is missing or stale")
    parser.add_argument("--jobs", type=int, default=2, help="C files compiled at once")
    args = parser.parse_args(argv)
    before, _ = check(honour_env=False)
    reason = stale_reason(before)
    if args.if_stale and reason is None:
        return 0
    why = reason or "asked to"
    print(f"native: compiling the validation core with mypyc ({why})...", file=sys.stderr)
    build(jobs=args.jobs)
    after, _ = check(honour_env=False)
    print(after.describe(), file=sys.stderr)
    return 0 if after.active else 1


if __name__ == "__main__":
    sys.exit(main())

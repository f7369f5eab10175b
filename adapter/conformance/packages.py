"""IG dependencies as declared: ``--ig sushi-config.yaml`` or ``--ig package.json``.

An IG names the packages it builds on (``dependencies`` in SUSHI's config or the package
manifest); its profiles cannot be checked without them. This module reads those declarations,
finds each package in a local FHIR package cache (the standard layout: ``<cache>/<id>#<version>/
package/...``, by default ``~/.fhir/packages``, where SUSHI, the IG publisher and the HL7 validator
put what they download), loads them and their own dependencies into a store, then the IG's own
resources. It never downloads: becare runs offline, and a CI job that wants a package puts it in
the cache first.

A dependency that cannot be found is not fatal: it is named (``IgLoad.missing``, one line each on
the command line) and validation goes on, because what it would have defined then shows up as
unresolved profiles, which the validator reports as errors at each resource that declares them.
Content that becare ships (FHIR R4 core, BeCore, Patient Care...) satisfies a dependency of the
same version without a cache.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapter.conformance.loader import CANONICAL_TYPES, ConformanceError, iter_resources
from adapter.conformance.store import ConformanceStore, version_key

SUSHI_CONFIGS = frozenset({"sushi-config.yaml", "sushi-config.yml"})
PACKAGE_MANIFEST = "package.json"
FHIR_CORE = "hl7.fhir.r4.core"
FHIR_VERSION = "4.0.1"
# SUSHI's predefined-resource folders (under input/), examples left out: they hold instances
_SUSHI_INPUT = ("capabilities", "extensions", "models", "operations", "profiles", "resources", "vocabulary")
# folders of a package that hold no definitions (as in loader.py)
_NOT_DEFINITIONS = frozenset({"example", "examples", "other", "openapi", "xml", "tests", "testing"})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,213}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+*-]{0,63}")
_MOVING = ("current", "dev", "latest")
_OTHER_CORE = re.compile(r"hl7\.fhir\.r\d+b?\.core")  # another FHIR version's core package


class ManifestError(ValueError):
    """The sushi-config.yaml or package.json cannot be read (the message names the file)."""


@dataclass(frozen=True)
class Dependency:
    id: str
    version: str  # as declared: exact, "1.1.x", "current", "dev", "latest"
    needed_by: str | None = None  # "id#version" of the package that declares it, when transitive

    def label(self) -> str:
        return f"{self.id}#{self.version}"


@dataclass
class Manifest:
    """What an IG declares: its identity, its dependencies, where its own resources are."""

    path: Path
    id: str | None
    version: str | None
    dependencies: list[Dependency]
    content: list[Path]  # files and folders with the IG's own conformance resources
    notes: list[str] = field(default_factory=list)


@dataclass
class IgLoad:
    """What loading an IG did, for the caller to say (stderr, report provenance)."""

    loaded: list[tuple[str, str]] = field(default_factory=list)  # (id, version) from the cache
    builtin: list[tuple[str, str]] = field(default_factory=list)  # satisfied by becare's content
    missing: list[str] = field(default_factory=list)  # one sentence per dependency not found
    notes: list[str] = field(default_factory=list)  # other things the user should know
    resources: int = 0  # the IG's own conformance resources loaded


def is_manifest(path: str | Path) -> bool:
    """Is this ``--ig`` argument an IG declaration rather than content?"""
    name = Path(path).name.lower()
    return name in SUSHI_CONFIGS or name == PACKAGE_MANIFEST


def default_cache() -> Path:
    """The FHIR package cache of the HL7 tooling (SUSHI, IG publisher, validator)."""
    return Path.home() / ".fhir" / "packages"


# -- reading the declarations ------------------------------------------------------------------------
def read_manifest(path: str | Path) -> Manifest:
    path = Path(path)
    if path.name.lower() in SUSHI_CONFIGS:
        return read_sushi_config(path)
    if path.name.lower() == PACKAGE_MANIFEST:
        return read_package_json(path)
    raise ManifestError(f"{path}: expected a sushi-config.yaml or a package.json")


def read_sushi_config(path: str | Path) -> Manifest:
    """SUSHI's ``dependencies:`` maps a package id to a version, or to ``{version: ...}`` (with
    ``id``/``uri``/``reason``). Read with the YAML base loader so that ``2.0`` stays the string
    ``"2.0"``, never the number 2.0."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: cannot be read ({_reason(exc)})") from exc
    if not isinstance(data, Mapping):
        raise ManifestError(f"{path}: not a SUSHI configuration (expected a YAML mapping)")
    deps = _dependencies(data.get("dependencies"), path)
    root = path.parent
    content = [root / "fsh-generated" / "resources"] + [root / "input" / name for name in _SUSHI_INPUT]
    content = [p for p in content if p.is_dir()]
    notes: list[str] = []
    if not (root / "fsh-generated" / "resources").is_dir():
        tgz = root / "output" / "package.tgz"
        if tgz.is_file():
            content.append(tgz)
        else:
            notes.append(
                f"{path}: no fsh-generated/resources/ (run sushi first) nor output/package.tgz; "
                "the IG's own profiles are not loaded"
            )
    return Manifest(path, _text(data.get("packageId")) or _text(data.get("id")), _text(data.get("version")),
                    deps, content, notes)  # fmt: skip


def read_package_json(path: str | Path) -> Manifest:
    """A FHIR package manifest: ``name``, ``version``, ``dependencies`` {id: version}. The
    package's own resources are the folder it sits in (``package/``), examples left out."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ManifestError(f"{path}: cannot be read ({_reason(exc)})") from exc
    if not isinstance(data, Mapping):
        raise ManifestError(f"{path}: not a package manifest (expected a JSON object)")
    deps = _dependencies(data.get("dependencies"), path)
    return Manifest(path, _text(data.get("name")), _text(data.get("version")), deps, [path.parent])


def _dependencies(raw: Any, path: Path, needed_by: str | None = None) -> list[Dependency]:
    if raw is None or raw == "":
        return []
    if not isinstance(raw, Mapping):
        raise ManifestError(f"{path}: 'dependencies' must map package ids to versions")
    out: list[Dependency] = []
    for pid, spec in raw.items():
        version = spec.get("version") if isinstance(spec, Mapping) else spec
        if isinstance(version, int | float) and not isinstance(version, bool):
            version = str(version)
        if not isinstance(pid, str) or not isinstance(version, str) or not version.strip():
            raise ManifestError(f"{path}: dependency {pid!r} has no version")
        out.append(Dependency(pid.strip(), version.strip(), needed_by))
    return out


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc).splitlines()[0][:200]


# -- finding packages in the cache ------------------------------------------------------------------
def cached_versions(cache: Path, package_id: str) -> list[str]:
    """The versions of ``package_id`` in the cache (folders ``<id>#<version>`` with a ``package/``)."""
    if not cache.is_dir() or not _ID.fullmatch(package_id):
        return []
    found = []
    for entry in cache.glob(f"{package_id}#*"):
        version = entry.name.partition("#")[2]
        if version and (entry / "package").is_dir():
            found.append(version)
    return sorted(found, key=version_key)


def pick_version(declared: str, available: Iterable[str]) -> str | None:
    """The version a declaration means among those available: exact; ``1.1.x`` / ``1.x`` (or
    ``*``) the highest with that prefix; ``latest`` the highest release; ``current`` the CI build
    if there, else the highest; ``dev`` the local build, else ``current``, else the highest."""
    versions = list(available)
    released = [v for v in versions if v not in _MOVING]
    if declared in versions:
        return declared
    if declared in _MOVING:
        for moving in {"dev": ("dev", "current"), "current": ("current",)}.get(declared, ()):
            if moving in versions:
                return moving
        return max(released, key=version_key) if released else None
    parts = declared.split(".")
    if parts[-1] in ("x", "X", "*"):
        prefix = ".".join(parts[:-1]) + "."
        matching = [v for v in released if v.startswith(prefix)]
        return max(matching, key=version_key) if matching else None
    return None


# -- loading -----------------------------------------------------------------------------------------
def load_ig(store: ConformanceStore, path: str | Path, cache: str | Path | None = None) -> IgLoad:
    """Load the dependencies an IG declares (and theirs) from ``cache``, then the IG's own
    resources, into ``store`` (an overlay: the shared default store is never changed).

    Raises ``ManifestError`` when the declaration itself cannot be read; everything else (a
    dependency not found, a damaged package) is described in the returned ``IgLoad``."""
    manifest = read_manifest(path)
    cache_dir = Path(cache) if cache is not None else default_cache()
    result = IgLoad(notes=list(manifest.notes))
    builtin = _builtin_packages(store)
    queue = list(manifest.dependencies)
    done: set[str] = set()
    while queue:
        dep = queue.pop(0)
        if dep.id in done or dep.id == manifest.id:
            continue
        done.add(dep.id)
        found = _resolve(dep, cache_dir, builtin, result)
        if found is None:
            continue
        version, folder = found
        _load_into(store, [folder], (dep.id, version), result)
        result.loaded.append((dep.id, version))
        own = folder / "package" / PACKAGE_MANIFEST
        queue.extend(_package_dependencies(own, f"{dep.id}#{version}", result))
    identity = (manifest.id or manifest.path.parent.name, manifest.version)
    result.resources = _load_into(store, manifest.content, identity, result)
    return result


def _resolve(
    dep: Dependency, cache: Path, builtin: Mapping[str, str | None], result: IgLoad
) -> tuple[str, Path] | None:
    """(version, cache folder) to load, or None when there is nothing to load (built in, or
    missing: then ``result`` says why)."""
    needed = f" (needed by {dep.needed_by})" if dep.needed_by else ""
    if not _ID.fullmatch(dep.id) or not _VERSION.fullmatch(dep.version):
        result.missing.append(f"dependency {dep.id}#{dep.version}{needed}: not a package id and version")
        return None
    if dep.id == FHIR_CORE or _OTHER_CORE.fullmatch(dep.id):
        if dep.id != FHIR_CORE or pick_version(dep.version, [FHIR_VERSION]) is None:
            result.missing.append(
                f"dependency {dep.label()}{needed}: becare validates FHIR R4 {FHIR_VERSION} only"
            )
        else:
            result.builtin.append((dep.id, FHIR_VERSION))
        return None
    available = cached_versions(cache, dep.id)
    version = pick_version(dep.version, available)
    if version is not None:
        return version, cache / f"{dep.id}#{version}"
    shipped = builtin.get(dep.id)
    if shipped is not None and pick_version(dep.version, [shipped]) is not None:
        result.builtin.append((dep.id, shipped))
        return None
    have = [f"{v} in the cache" for v in available]
    if shipped:
        have.append(f"{shipped} shipped with becare")
    result.missing.append(
        f"dependency {dep.label()}{needed} not found in {cache}"
        + (f" (have: {', '.join(have)})" if have else "")
        + "; profiles it defines will be reported as unknown"
    )
    return None


def _builtin_packages(store: ConformanceStore) -> dict[str, str | None]:
    """Package id -> version of what the store already holds (becare's vendored packages)."""
    loaded = getattr(store, "loaded_packages", None)
    return {pid: version for pid, version in loaded()} if callable(loaded) else {}


def _package_dependencies(manifest: Path, label: str, result: IgLoad) -> list[Dependency]:
    """The dependencies a cached package declares in its own package.json (loaded in turn)."""
    if not manifest.is_file():
        return []
    try:
        data = json.loads(manifest.read_bytes())
        return _dependencies(data.get("dependencies") if isinstance(data, Mapping) else None, manifest, label)
    except (OSError, ValueError) as exc:
        result.notes.append(f"{manifest}: dependencies not read ({_reason(exc)})")
        return []


def _load_into(
    store: ConformanceStore, paths: list[Path], identity: tuple[str, str | None], result: IgLoad
) -> int:
    """Add the conformance resources found under ``paths``; what cannot be used is skipped and
    noted (as ``store.load`` does for folders). The content is recorded once, as ``identity``."""
    skipped: list[str] = []
    count = 0
    for path in paths:
        try:
            for resource, source in _definitions(path, skipped):
                try:
                    store.add(resource, source)
                    count += 1
                except ConformanceError as exc:
                    skipped.append(str(exc))
        except ConformanceError as exc:  # a damaged package: the rest still loads
            skipped.append(str(exc))
    store.skipped.extend(skipped)
    result.notes.extend(f"skipped {s}" for s in skipped[:5])
    if len(skipped) > 5:
        result.notes.append(f"skipped {len(skipped) - 5} more item(s) of {identity[0]}")
    packages = getattr(store, "packages", None)
    if count and isinstance(packages, list):  # report provenance: which packages judged
        packages.append(identity)
    return count


def _definitions(path: Path, skipped: list[str]) -> Iterator[tuple[dict, str]]:
    """Conformance resources under ``path``: a cache folder ``<id>#<version>`` (its ``package/``),
    a package folder (its files and definition folders, not ``example/`` and the like), a
    folder of resources, or a package ``.tgz``."""
    if path.is_dir() and (path / "package").is_dir() and not (path / PACKAGE_MANIFEST).is_file():
        path = path / "package"
    if not path.is_dir():
        yield from iter_resources(path, skipped=skipped)
        return
    for child in sorted(path.iterdir()):
        if child.name.startswith(".") or child.name == PACKAGE_MANIFEST:
            continue
        if child.is_dir() and child.name.lower() in _NOT_DEFINITIONS:
            continue
        if child.is_dir() or child.name.lower().endswith((".json", ".xml", ".json.gz", ".tgz", ".tar.gz")):
            try:
                for resource, source in iter_resources(child, skipped=skipped):
                    if resource.get("resourceType") in CANONICAL_TYPES:
                        yield resource, source
            except ConformanceError as exc:
                skipped.append(str(exc))

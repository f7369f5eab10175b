"""Read conformance resources from files, folders and FHIR packages.

Accepts what ``--ig`` users have at hand: single JSON or XML resources, Bundles of them, folders
(searched recursively), gzipped JSON Bundles, and FHIR NPM packages (``.tgz`` with a ``package/``
folder). Anything that is not a conformance resource (examples, package.json) is skipped
silently. A single file that cannot be parsed is an error naming the file; in a folder or a
package, what cannot be read is skipped with a warning (``skipped``), never refusing the rest:
published packages carry macOS ``._*`` AppleDouble members, ``package/other/`` and
``package/example/`` content, and files of other kinds. Hidden files and folders (``.*``,
``__MACOSX``) and the non-definition folders of the NPM package layout are not read at all.
"""

from __future__ import annotations

import gzip
import json
import logging
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

MAX_MEMBER_BYTES = 64 * 1024 * 1024  # a package member larger than this is not a definition file
_PACKAGE_SUFFIXES = (".tgz", ".tar.gz")
_DEFINITION_SUFFIXES = (".json", ".xml", ".json.gz")
# folders of the FHIR NPM package layout that hold no definitions: examples, other files
# (e.g. spec.internals), OpenAPI documents, the XML copies of the resources, tests
_NOT_DEFINITIONS = frozenset({"example", "examples", "other", "openapi", "xml", "tests", "testing"})
_PACKAGE_META = frozenset({"package.json", ".index.json"})

log = logging.getLogger(__name__)

# The resource types a conformance store holds: what the loader picks out of files and Bundles.
CANONICAL_TYPES = frozenset({
    "StructureDefinition", "ValueSet", "CodeSystem", "NamingSystem", "ConceptMap",
    "SearchParameter", "OperationDefinition", "ImplementationGuide",
})


class ConformanceError(ValueError):
    """A conformance resource cannot be loaded or used (the message names the source)."""


def _is_junk(parts: tuple[str, ...]) -> bool:
    """Hidden files and folders (``.git``, macOS ``._name`` AppleDouble companions, ``.DS_Store``)
    and macOS archive debris (``__MACOSX``) are never FHIR content."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _outside_definitions(parts: tuple[str, ...]) -> bool:
    """Under ``package/example/``, ``package/other/``...: not conformance resources."""
    for i, part in enumerate(parts[:-1]):
        if part == "package" and i + 1 < len(parts) - 1 and parts[i + 1].lower() in _NOT_DEFINITIONS:
            return True
    return False


def _skip(skipped: list[str] | None, message: str) -> None:
    log.warning("skipped %s", message)
    if skipped is not None:
        skipped.append(message)


def _conformance_resources(resource: object, source: str) -> Iterator[tuple[dict, str]]:
    """The conformance resources in a resource: itself, or the entries of a Bundle."""
    if not isinstance(resource, dict):
        return
    rtype = resource.get("resourceType")
    if rtype == "Bundle":
        for i, entry in enumerate(resource.get("entry") or []):
            if isinstance(entry, dict):
                yield from _conformance_resources(entry.get("resource"), f"{source}#entry[{i}]")
    elif rtype in CANONICAL_TYPES:
        yield resource, source


def parse_bytes(data: bytes, name: str) -> object | None:
    """Parse the bytes of a file by its name: JSON, gzipped JSON or XML. None = not a FHIR file."""
    lower = name.lower()
    if lower.endswith(".gz"):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ConformanceError(f"{name}: not a valid gzip file ({exc})") from exc
        lower = lower[:-3]
    if lower.endswith(".json"):
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConformanceError(f"{name}: invalid JSON ({exc})") from exc
    if lower.endswith(".xml"):
        if b"http://hl7.org/fhir" not in data[:65536]:  # past a long licence comment, if any
            return None  # not FHIR XML (e.g. a build file)
        try:  # lazy: the conformance store must not need the XML stack to start
            from adapter.fhirio import ParseError, parse
        except ImportError as exc:
            raise ConformanceError(f"{name}: FHIR XML support is not available ({exc})") from exc

        try:
            return parse(data, "xml").resource
        except ParseError as exc:
            raise ConformanceError(f"{name}: invalid FHIR XML ({exc})") from exc
    return None


def _from_file(
    path: Path, skipped: list[str] | None = None, indexed: bool = False
) -> Iterator[tuple[Any, str]]:
    """One file; errors raise unless ``skipped`` collects them (a file inside a folder). With
    ``indexed``, a gzipped Bundle that has an index (adapter/dataindex.py) gives its resources
    unread, as ``LazyResource``s, for the store to parse when they are first asked for."""
    if indexed and path.name.lower().endswith(".json.gz"):
        from adapter.dataindex import indexed_resources

        lazy = indexed_resources(path, CANONICAL_TYPES)
        if lazy is not None:
            yield from ((resource, f"{path}#entry[{i}]") for resource, i in lazy)
            return
    try:
        data = path.read_bytes()
        parsed = parse_bytes(data, path.name)
    except OSError as exc:
        if skipped is None:
            raise ConformanceError(f"{path}: cannot read ({exc.strerror})") from exc
        _skip(skipped, f"{path}: cannot read ({exc.strerror})")
        return
    except ConformanceError as exc:
        if skipped is None:
            raise
        _skip(skipped, f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
        return
    yield from _conformance_resources(parsed, str(path))


def _from_package(path: Path, skipped: list[str] | None = None) -> Iterator[tuple[dict, str]]:
    """A FHIR package: the resources under ``package/`` (not its example/other/... folders).

    A member that cannot be read (junk such as AppleDouble ``._*`` files, a file that is not
    what its name says) is skipped with a warning: one bad member never refuses the package."""
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below; open errors reported
    except (tarfile.TarError, OSError) as exc:
        raise ConformanceError(f"{path}: not a readable package ({exc})") from exc
    with tar:
        try:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ConformanceError(f"{path}: damaged package ({exc})") from exc
        named = [(PurePosixPath(m.name.lstrip("/")).parts, m) for m in members]
        named = [(parts[1:] if parts[:1] == (".",) else parts, m) for parts, m in named]
        if not any(parts[:1] == ("package",) and len(parts) > 1 for parts, _ in named):
            raise ConformanceError(f"{path}: not a FHIR package (no package/ folder)")
        for parts, member in named:
            name = "/".join(parts)
            if parts[:1] != ("package",) or len(parts) < 2 or _is_junk(parts) or _outside_definitions(parts):
                continue
            base = parts[-1]
            if base in _PACKAGE_META or not base.lower().endswith(_DEFINITION_SUFFIXES):
                continue
            if member.size > MAX_MEMBER_BYTES:
                _skip(skipped, f"{path}:{name}: larger than {MAX_MEMBER_BYTES} bytes")
                continue
            try:
                fh = tar.extractfile(member)
                parsed = parse_bytes(fh.read(), name) if fh is not None else None
            except (tarfile.TarError, OSError, EOFError) as exc:
                _skip(skipped, f"{path}:{name}: cannot read ({exc})")
                continue
            except ConformanceError as exc:
                _skip(skipped, f"{path}:{exc}")
                continue
            yield from _conformance_resources(parsed, f"{path}:{name}")


def iter_resources(
    path: str | Path,
    *,
    skip_names: Iterable[str] = (),
    skipped: list[str] | None = None,
    indexed: bool = False,
) -> Iterator[tuple[Any, str]]:
    """Yield (resource, source) for every conformance resource found at ``path``.

    A single file that cannot be read is an error. In a folder or package, what cannot be read
    is skipped, and described in ``skipped`` when given (and logged as a warning). ``indexed``:
    see ``_from_file`` (the vendored folders only; what users load is read as it is)."""
    path = Path(path)
    skip = set(skip_names)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            parts = f.relative_to(path).parts
            if f.name in skip or _is_junk(parts) or _outside_definitions(parts):
                continue
            if f.name.lower().endswith(_PACKAGE_SUFFIXES):
                try:
                    yield from _from_package(f, skipped)
                except ConformanceError as exc:
                    _skip(skipped, str(exc))
            elif f.name.lower().endswith(_DEFINITION_SUFFIXES) and f.name not in _PACKAGE_META:
                yield from _from_file(f, skipped if skipped is not None else [], indexed)
        return
    if not path.exists():
        raise ConformanceError(f"{path}: no such file or folder")
    if path.name.lower().endswith(_PACKAGE_SUFFIXES):
        yield from _from_package(path, skipped)
    elif path.name.lower().endswith(_DEFINITION_SUFFIXES):
        yield from _from_file(path)
    else:
        raise ConformanceError(f"{path}: expected a .json, .xml, .json.gz file, a folder or a package .tgz")


def package_identity(path: str | Path) -> tuple[str, str | None] | None:
    """(name, version) from the ``package.json`` of a FHIR package (``.tgz``, or a folder holding
    ``package.json`` or ``package/package.json``), None when ``path`` is not one. For provenance:
    which packages judged a report."""
    path = Path(path)
    raw: bytes | None = None
    try:
        if path.is_dir():
            for candidate in (path / "package.json", path / "package" / "package.json"):
                if candidate.is_file():
                    raw = candidate.read_bytes()
                    break
        elif path.name.lower().endswith(_PACKAGE_SUFFIXES):
            with tarfile.open(path, "r:*") as tar:
                for member in tar.getmembers():
                    if member.isfile() and member.name.lstrip("./") == "package/package.json":
                        fh = tar.extractfile(member)
                        raw = fh.read(1024 * 1024) if fh is not None else None
                        break
    except (OSError, tarfile.TarError, EOFError):
        return None
    if raw is None:
        return None
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        return None
    version = meta.get("version")
    return name, version if isinstance(version, str) and version else None

"""Read conformance resources from files, folders and FHIR packages.

Accepts what ``--ig`` users have at hand: single JSON or XML resources, Bundles of them, folders
(searched recursively), gzipped JSON Bundles, and FHIR NPM packages (``.tgz`` with a ``package/``
folder). Anything that is not a conformance resource (examples, package.json)
is skipped silently; a file that cannot be parsed is an error naming the file.
"""

from __future__ import annotations

import gzip
import json
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from adapter.conformance.store import CANONICAL_TYPES, ConformanceError

MAX_MEMBER_BYTES = 64 * 1024 * 1024  # a package member larger than this is not a definition file
_PACKAGE_SUFFIXES = (".tgz", ".tar.gz")


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
        if b"http://hl7.org/fhir" not in data[:4096]:
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


def _from_file(path: Path) -> Iterator[tuple[dict, str]]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConformanceError(f"{path}: cannot read ({exc.strerror})") from exc
    yield from _conformance_resources(parse_bytes(data, path.name), str(path))


def _from_package(path: Path) -> Iterator[tuple[dict, str]]:
    """A FHIR package: the resources under ``package/`` (examples in sub-folders are skipped by type)."""
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the with below; open errors reported
    except (tarfile.TarError, OSError) as exc:
        raise ConformanceError(f"{path}: not a readable package ({exc})") from exc
    with tar:
        try:
            members = sorted((m for m in tar.getmembers() if m.isfile()), key=lambda m: m.name)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise ConformanceError(f"{path}: damaged package ({exc})") from exc
        if not any(m.name.startswith("package/") for m in members):
            raise ConformanceError(f"{path}: not a FHIR package (no package/ folder)")
        for member in members:
            name = member.name
            if not name.startswith("package/") or member.size > MAX_MEMBER_BYTES:
                continue
            base = name.rsplit("/", 1)[-1]
            if base in ("package.json", ".index.json") or not base.lower().endswith((".json", ".xml")):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            yield from _conformance_resources(parse_bytes(fh.read(), name), f"{path}:{name}")


def iter_resources(path: str | Path, *, skip_names: Iterable[str] = ()) -> Iterator[tuple[dict, str]]:
    """Yield (resource, source) for every conformance resource found at ``path``."""
    path = Path(path)
    skip = set(skip_names)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            if f.name in skip or f.name.startswith("."):
                continue
            if f.name.lower().endswith(_PACKAGE_SUFFIXES):
                yield from _from_package(f)
            elif f.name.lower().endswith((".json", ".xml", ".json.gz")):
                yield from _from_file(f)
        return
    if not path.exists():
        raise ConformanceError(f"{path}: no such file or folder")
    if path.name.lower().endswith(_PACKAGE_SUFFIXES):
        yield from _from_package(path)
    elif path.name.lower().endswith((".json", ".xml", ".json.gz")):
        yield from _from_file(path)
    else:
        raise ConformanceError(f"{path}: expected a .json, .xml, .json.gz file, a folder or a package .tgz")

"""``becare profiles [--format text|json] [--verbose] [--ig PATH]...``: what the validator has loaded.

Answers "which version of BeCore / Patient Care am I validating against, and did my --ig load?"
without opening the package. Resources are grouped by where they came from (the vendored folder
under ``profiles/``, or the ``--ig`` path), because that is the unit users reason about.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
from collections import Counter
from pathlib import Path
from typing import Any

from adapter.cli.main import EXIT_OK, EXIT_UNUSABLE

# Display names of the vendored folders; the package id/version come from profiles/SOURCES.md.
_FOLDER_LABELS = {
    "fhir-r4-core": ("FHIR R4 core", "hl7.fhir.r4.core"),
    "be-core": ("BeCore", None),
    "be-core-clinical": ("BeCore clinical", None),
    "be-core-relatedperson": ("BeCore RelatedPerson (draft)", None),
    "be-patient-care": ("Patient Care", None),
    "be-terminology": ("Belgian terminology", None),
    "becare": ("becare", "becare"),
}
_ROW = re.compile(r"^\|\s*`([\w.-]+)/[^`]*`\s*\|[^|]*\|[^|]*\|\s*([^|]*?)\s*\|")
_PACKAGE_VERSION = re.compile(r"^(?:FHIR|([a-z][\w.-]+))\s+(\d[\w.-]*)$")
_TYPES = ("StructureDefinition", "CodeSystem", "ValueSet")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "profiles",
        help="list the loaded conformance resources (profiles, code systems, value sets) and versions",
        description="What the validator has loaded, grouped by package, with versions.",
    )
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--verbose", "-v", action="store_true", help="list every resource, not only counts")
    p.add_argument(
        "--ig",
        action="append",
        default=[],
        metavar="PATH",
        help="also load conformance resources (file, folder or package .tgz), as validate does",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from adapter.conformance import default_store

    store = default_store()
    if args.ig:
        store = store.overlay()
        for ig in args.ig:
            try:
                if not Path(ig).exists():
                    raise ValueError(f"{ig}: no such file or folder")
                store.load(ig)
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"becare: cannot load --ig: {exc}\n")
                return EXIT_UNUSABLE
    data = inventory(store, args.ig)
    if args.format == "json":
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(data, verbose=args.verbose))
    return EXIT_OK


# --- where things come from ------------------------------------------------------------------


def vendored_packages(root: Path) -> dict[str, tuple[str | None, str | None]]:
    """folder -> (package id, version) from the version column of ``profiles/SOURCES.md``."""
    out: dict[str, tuple[str | None, str | None]] = {}
    try:
        text = (root / "SOURCES.md").read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        m = _ROW.match(line)
        if not m or m.group(1) in out:
            continue
        v = _PACKAGE_VERSION.match(m.group(2))
        out[m.group(1)] = (v.group(1), v.group(2)) if v else (None, None)
    return out


def ig_package(path: str) -> tuple[str | None, str | None]:
    """Name and version from a FHIR package's ``package.json`` (a .tgz or an unpacked folder)."""
    meta: Any = None
    p = Path(path)
    try:
        if p.is_dir() and (p / "package.json").is_file():
            meta = json.loads((p / "package.json").read_text(encoding="utf-8"))
        elif p.name.endswith((".tgz", ".tar.gz")):
            with tarfile.open(p, "r:*") as tar:
                fh = tar.extractfile("package/package.json")
                meta = json.loads(fh.read()) if fh else None
    except (OSError, KeyError, ValueError, tarfile.TarError):
        return None, None
    if not isinstance(meta, dict):
        return None, None
    name, version = meta.get("name"), meta.get("version")
    return (name if isinstance(name, str) else None, version if isinstance(version, str) else None)


def _group_of(source: str | None, root: str, igs: list[tuple[str, str]]) -> str:
    if source:
        for key, prefix in igs:
            if source == prefix or source.startswith((prefix + "/", prefix + ":", prefix + "#")):
                return key
        if source.startswith(root):
            return source[len(root) :].lstrip("/").split("/", 1)[0]
    return "other"


def _category(sd: dict[str, Any]) -> str:
    if sd.get("kind") == "logical":
        return "logical"
    if sd.get("derivation") == "constraint":
        return "extension" if sd.get("type") == "Extension" else "profile"
    return "base"


# --- the inventory ---------------------------------------------------------------------------


def inventory(store: Any, igs: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything ``becare profiles`` shows, as plain data (also the JSON output)."""
    from adapter import __version__
    from adapter.datafiles import data_dir
    from adapter.rules import load_catalog

    root = data_dir("profiles")
    packages = vendored_packages(root)
    ig_keys = [(f"--ig {ig}", str(Path(ig))) for ig in igs]
    groups: dict[str, dict[str, Any]] = {}

    def group(key: str) -> dict[str, Any]:
        if key not in groups:
            if key.startswith("--ig "):
                label, (package, version) = key, ig_package(key[5:])
            else:
                label, package = _FOLDER_LABELS.get(key, (key, None))
                found = packages.get(key, (None, None))
                package, version = package or found[0], found[1]
            groups[key] = {
                "key": key,
                "label": label,
                "package": package,
                "version": version,
                **{t: [] for t in _TYPES},
            }
        return groups[key]

    for rtype in _TYPES:
        for res in store.all(rtype):
            url, version = res.get("url"), res.get("version")
            row: dict[str, Any] = {"url": url, "version": version}
            if rtype == "StructureDefinition":
                row.update(
                    name=res.get("name"),
                    type=res.get("type"),
                    kind=res.get("kind"),
                    derivation=res.get("derivation"),
                    category=_category(res),
                )
            group(_group_of(store.source(url, version), str(root), ig_keys))[rtype].append(row)

    ordered = sorted(groups.values(), key=lambda g: (g["key"].startswith("--ig"), _order(g["key"])))
    for g in ordered:
        for rtype in _TYPES:
            g[rtype].sort(key=lambda r: (str(r["url"]), str(r["version"])))
        if g["version"] is None:  # no package version known: the versions the resources declare
            declared = Counter(
                r["version"] for r in g["StructureDefinition"] + g["CodeSystem"] if r["version"]
            )
            g["resource_versions"] = [v for v, _ in declared.most_common()]
        g["counts"] = {t: len(g[t]) for t in _TYPES}
        g["counts"]["by_category"] = dict(Counter(r["category"] for r in g["StructureDefinition"]))
    return {
        "becare_version": __version__,
        "rulebook_version": load_catalog().version,
        "groups": ordered,
        "totals": {
            **{t: sum(len(g[t]) for g in ordered) for t in _TYPES},
            "NamingSystem": sum(1 for _ in store.all("NamingSystem")),
        },
    }


def _order(key: str) -> int:
    keys = list(_FOLDER_LABELS)
    return keys.index(key) if key in keys else len(keys)


# --- text ------------------------------------------------------------------------------------

_COLUMNS = ("profile", "extension", "base", "logical")
_HEADER = ("source", "package", "version", "SDs", "profiles", "extensions", "base", "logical", "CS", "VS")


def _version_text(g: dict[str, Any]) -> str:
    if g["version"]:
        return g["version"]
    declared = g.get("resource_versions") or []
    return f"resources {', '.join(declared[:3])}" if declared else "unversioned"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = []
    for row in rows:
        cells = [
            c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        text.append("  ".join(cells).rstrip())
    return text


def render_text(data: dict[str, Any], *, verbose: bool = False) -> str:
    """A one-line-per-package table by default; ``verbose`` adds every resource's url|version."""
    out = [f"becare {data['becare_version']}, interfederal rulebook version {data['rulebook_version']}", ""]
    rows: list[tuple[str, ...]] = [_HEADER]
    for g in data["groups"]:
        cats = g["counts"]["by_category"]
        rows.append(
            (
                g["label"],
                g["package"] or "-",
                _version_text(g),
                str(g["counts"]["StructureDefinition"]),
                *(str(cats.get(c, 0)) for c in _COLUMNS),
                str(g["counts"]["CodeSystem"]),
                str(g["counts"]["ValueSet"]),
            )
        )
    out += _table(rows)
    t = data["totals"]
    out += [
        "",
        f"Total: {t['StructureDefinition']} StructureDefinitions (SDs), {t['CodeSystem']} CodeSystems (CS), "
        f"{t['ValueSet']} ValueSets (VS), {t['NamingSystem']} NamingSystems",
    ]
    if not verbose:
        out.append("Use --verbose (or --format json) to list every resource.")
        return "\n".join(out) + "\n"
    for g in data["groups"]:
        out += ["", f"{g['label']} ({g['package'] or '-'} {_version_text(g)})"]
        for sd in g["StructureDefinition"]:
            kind = sd["kind"] if sd["category"] == "base" else f"{sd['kind']}, {sd['category']}"
            out.append(f"  {sd['url']}|{sd['version'] or '-'}  {sd['type']} ({kind})")
        for rtype in ("CodeSystem", "ValueSet"):
            out += [f"  {rtype} {r['url']}|{r['version'] or '-'}" for r in g[rtype]]
    return "\n".join(out) + "\n"

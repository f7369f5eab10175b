#!/usr/bin/env python3
"""Build ``profiles/`` (everything except ``profiles/becare/``) from the reference material.

The product must never read the reference folder at run time, so the conformance resources it
needs are copied here once, compacted: narrative, mappings and long documentation texts are
dropped because no validation step reads them, and they make the default store slow to load.
The output is deterministic (sorted entries, compact JSON, gzip without timestamp) so a re-run
on the same sources gives byte-identical files and the diff of a source update is meaningful.

Usage: ``python scripts/vendor_profiles.py [--reference /work/shared/reference] [--out profiles]``
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE = Path("/work/shared/reference")

# Resource-level keys that no validation step reads.
_DROP_RESOURCE_KEYS = {
    "text", "mapping", "contact", "publisher", "description", "purpose", "copyright", "meta",
    "jurisdiction", "useContext", "identifier", "keyword",
}
# Extensions that only document maturity or ownership.
_NOISE_EXTENSIONS = {
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-wg",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fmm",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fmm-no-warnings",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-standards-status",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-category",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-security-category",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-summary",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-display-hint",
    "http://hl7.org/fhir/StructureDefinition/elementdefinition-translatable",
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-template-status",
    "http://hl7.org/fhir/StructureDefinition/elementdefinition-bindingName",
    "http://hl7.org/fhir/StructureDefinition/elementdefinition-isCommonBinding",
}
# ElementDefinition keys kept verbatim (fixed*, pattern*, minValue*, maxValue*, defaultValue*
# are kept by prefix below).
_ELEMENT_KEYS = (
    "id", "extension", "path", "representation", "sliceName", "sliceIsConstraining", "short",
    "min", "max", "base", "contentReference", "type", "condition", "constraint", "maxLength",
    "mustSupport", "isModifier", "isSummary", "binding", "slicing", "label",
)
_ELEMENT_PREFIXES = ("fixed", "pattern", "minValue", "maxValue", "defaultValue")
_CONSTRAINT_KEYS = ("key", "severity", "human", "expression", "source")
_BINDING_KEYS = ("strength", "valueSet")


def _extensions(exts: list[dict] | None) -> list[dict] | None:
    kept = [e for e in exts or [] if e.get("url") not in _NOISE_EXTENSIONS]
    return kept or None


def compact_element(el: dict) -> dict:
    """Keep what a validator needs from one ElementDefinition."""
    out: dict[str, Any] = {}
    for key, value in el.items():
        if key in _ELEMENT_KEYS or key.startswith(_ELEMENT_PREFIXES):
            out[key] = value
    if "extension" in out:
        exts = _extensions(out.pop("extension"))
        if exts:
            out = {"extension": exts, **out}
    if "constraint" in out:
        out["constraint"] = [{k: c[k] for k in _CONSTRAINT_KEYS if k in c} for c in out["constraint"]]
    if "binding" in out:
        out["binding"] = {k: out["binding"][k] for k in _BINDING_KEYS if k in out["binding"]}
    return out


def _compact_concepts(concepts: list[dict]) -> list[dict]:
    out = []
    for c in concepts:
        item = {k: v for k, v in c.items() if k not in ("definition", "concept")}
        if "concept" in c:
            item["concept"] = _compact_concepts(c["concept"])
        out.append(item)
    return out


def compact_resource(res: dict, *, keep_differential: bool = True) -> dict:
    """Compact one conformance resource (StructureDefinition, ValueSet, CodeSystem, NamingSystem)."""
    out: dict[str, Any] = {}
    for key, value in res.items():
        if key in _DROP_RESOURCE_KEYS:
            continue
        if key == "extension":
            exts = _extensions(value)
            if exts:
                out[key] = exts
            continue
        out[key] = value
    rtype = res.get("resourceType")
    if rtype == "StructureDefinition":
        for part in ("snapshot", "differential"):
            if part in out:
                out[part] = {"element": [compact_element(e) for e in out[part]["element"]]}
        if not keep_differential and "snapshot" in out:
            out.pop("differential", None)
    elif rtype == "CodeSystem" and "concept" in out:
        out["concept"] = _compact_concepts(out["concept"])
    elif rtype == "ValueSet" and "compose" in out:
        compose = json.loads(json.dumps(out["compose"]))
        for part in ("include", "exclude"):
            for inc in compose.get(part, []):
                if "concept" in inc:
                    inc["concept"] = [{k: v for k, v in c.items() if k != "definition"}
                                      for c in inc["concept"]]
        out["compose"] = compose
    return out


CONFORMANCE_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem", "NamingSystem")


def _sort_key(res: dict) -> tuple[str, str, str, str]:
    return (res["resourceType"], res.get("url", ""), res.get("version", ""), res.get("id", ""))


def write_gz_json(path: Path, data: Any) -> None:
    """gzip with mtime=0 and no file name, so the bytes depend only on the data."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(0o644)
    path.write_bytes(buf.getvalue())


def write_bundle(path: Path, resources: Iterable[dict]) -> int:
    entries = [{"resource": r} for r in sorted(resources, key=_sort_key)]
    write_gz_json(path, {"resourceType": "Bundle", "type": "collection", "entry": entries})
    return len(entries)


def _read_bundle(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [e["resource"] for e in json.load(fh)["entry"]]


def _read_json_files(folder: Path, types: tuple[str, ...] = CONFORMANCE_TYPES) -> list[dict]:
    out = []
    for f in sorted(folder.glob("*.json")):
        res = json.loads(f.read_text(encoding="utf-8"))
        if res.get("resourceType") in types:
            out.append(res)
    return out


def _copy_licence(src: Path, dest_dir: Path, name: str = "LICENSE") -> None:
    dest = dest_dir / name
    if dest.exists():
        dest.chmod(0o644)
    shutil.copyfile(src, dest)
    dest.chmod(0o644)


def build(reference: Path, out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    core = reference / "fhir-r4-core"
    dest = out / "fhir-r4-core"
    dest.mkdir(parents=True, exist_ok=True)
    sds = [compact_resource(r, keep_differential=False)
           for r in _read_bundle(core / "structuredefinitions-r4.json.gz")]
    counts["fhir-r4-core/structuredefinitions"] = write_bundle(dest / "structuredefinitions.json.gz", sds)
    term = [compact_resource(r, keep_differential=False)
            for r in _read_bundle(core / "terminology-and-extensions-r4.json.gz")
            if r.get("resourceType") in CONFORMANCE_TYPES]
    counts["fhir-r4-core/terminology"] = write_bundle(dest / "terminology.json.gz", term)
    with gzip.open(core / "valuesets-r4-expanded.json.gz", "rt", encoding="utf-8") as fh:
        expansions = json.load(fh)
    write_gz_json(dest / "valuesets-expanded.json.gz", {k: expansions[k] for k in sorted(expansions)})
    counts["fhir-r4-core/valuesets-expanded"] = len(expansions)
    _copy_licence(core / "LICENSE-structuredefinitions-MIT.txt", dest, "LICENSE-structuredefinitions-MIT.txt")
    _copy_licence(core / "LICENSE-valuesets-Apache-2.0.txt", dest, "LICENSE-valuesets-Apache-2.0.txt")

    be = reference / "belgian-profiles"
    # BeCore: SUSHI snapshots for the StructureDefinitions, the rest from the differential build.
    becore = _read_json_files(be / "core-json-snapshot", ("StructureDefinition",))
    becore += _read_json_files(be / "core-json", ("ValueSet", "CodeSystem", "NamingSystem"))
    folders: dict[str, tuple[list[dict], Path]] = {
        "be-core": (becore, be / "core-json" / "LICENSE"),
        "be-patient-care": (_read_json_files(be / "patient-care"), be / "patient-care" / "LICENSE"),
        "be-terminology": (_read_json_files(be / "terminology"), be / "terminology" / "LICENSE"),
        "be-core-clinical": (_read_json_files(be / "core-clinical"), be / "core-clinical" / "LICENSE"),
        "be-core-relatedperson": (_read_json_files(be / "core-json-relatedperson"),
                                  be / "core-json-relatedperson" / "LICENSE"),
    }
    for name, (resources, licence) in folders.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        counts[name] = write_bundle(folder / "resources.json.gz", [compact_resource(r) for r in resources])
        _copy_licence(licence, folder)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=DEFAULT_REFERENCE)
    parser.add_argument("--out", type=Path, default=REPO / "profiles")
    args = parser.parse_args(argv)
    if not (args.reference / "fhir-r4-core").is_dir():
        print(f"error: {args.reference} does not hold fhir-r4-core/", file=sys.stderr)
        return 2
    for name, count in build(args.reference, args.out).items():
        print(f"{name}: {count}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

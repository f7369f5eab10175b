"""What judged a report: validator, rulebook, packages, profiles applied, region, date, duration.

A verdict without its provenance cannot be reproduced or compared: a CI owner who sees a bundle
pass today and fail tomorrow needs to know whether the bundle, the validator, the rulebook or the
packages changed. The engine fills ``Report.provenance`` with :func:`build` (cheap: the store
keeps the list of packages it loaded, the walker notes each profile as it applies it), and every
output renders it: the OperationOutcome with :func:`provenance_extensions`, JUnit as properties,
the text output as one line, the GITB TAR as its context.

Kept free of imports from the rest of ``adapter.validation`` so that ``issues.py`` can use it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from adapter import __version__

VALIDATOR_NAME = "becare"
# The HL7 tooling IG's extension: the Java validator (6.10.5 on) and matchbox put it on every
# OperationOutcome they produce, as a string naming the tool and its version.
VALIDATOR_VERSION_URL = "http://hl7.org/fhir/tools/StructureDefinition/validator-version"
# Ours, for the rest (no HL7 extension carries it): one complex extension, sub-extensions below.
PROVENANCE_URL = "https://becare.dev/fhir/StructureDefinition/ext-validation-provenance"
UCUM = "http://unitsofmeasure.org"


def build(
    *,
    rulebook_version: str | None,
    packages: list[dict[str, str | None]],
    profiles: Mapping[str, list[str]],
    region: str | None,
    date: dt.date,
    duration_ms: float,
) -> dict[str, Any]:
    """The ``Report.provenance`` mapping (keys documented on ``Report``)."""
    out: dict[str, Any] = {"validator": {"name": VALIDATOR_NAME, "version": __version__}}
    if rulebook_version:
        out["rulebook"] = {"version": rulebook_version}
    out["packages"] = packages
    out["profiles"] = {path: list(dict.fromkeys(urls)) for path, urls in profiles.items()}
    out["canonicals"] = []  # declared -> applied canonical mappings, filled by the canonical step
    out["region"] = region
    out["date"] = date.isoformat()
    out["duration_ms"] = round(duration_ms, 3)
    return out


def packages_of(store: Any) -> list[dict[str, str | None]]:
    """The conformance packages loaded in ``store`` and its parents, as ``{id, version}``."""
    loaded = getattr(store, "loaded_packages", None)
    if loaded is None:
        return []
    return [{"id": pid, "version": version} for pid, version in loaded()]


# -- the OperationOutcome form -------------------------------------------------------------------
def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _sub(url: str, kind: str, value: Any) -> dict[str, Any]:
    return {"url": url, f"value{kind}": value}


def _package_ref(item: Any) -> str | None:
    """``id#version``: how FHIR package references are written (and how matchbox names its IG)."""
    if not isinstance(item, Mapping) or not _text(item.get("id")):
        return None
    version = _text(item.get("version"))
    return f"{item['id']}#{version}" if version else str(item["id"])


def provenance_extensions(provenance: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OperationOutcome extensions for a provenance mapping; whatever is missing is left out.

    ``validator-version`` (HL7 tooling IG) says which tool judged; ``ext-validation-provenance``
    holds the rest as sub-extensions: ``validator``, ``validatorVersion``, ``rulebookVersion``,
    ``package`` (``id#version``, repeated), ``profile`` (``resource`` FHIRPath + ``applied``
    canonicals, repeated), ``canonical`` (``declared``, ``applied``, ``at``), ``region``,
    ``date``, ``duration`` (ms)."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    validator = provenance.get("validator")
    if isinstance(validator, Mapping) and _text(validator.get("name")):
        version = _text(validator.get("version"))
        label = f"{validator['name']} {version}" if version else str(validator["name"])
        out.append(_sub(VALIDATOR_VERSION_URL, "String", label))
        parts.append(_sub("validator", "String", validator["name"]))
        if version:
            parts.append(_sub("validatorVersion", "String", version))
    rulebook = provenance.get("rulebook")
    if isinstance(rulebook, Mapping) and _text(rulebook.get("version")):
        parts.append(_sub("rulebookVersion", "String", rulebook["version"]))
    packages = provenance.get("packages")
    for item in packages if isinstance(packages, list) else ():
        ref = _package_ref(item)
        if ref:
            parts.append(_sub("package", "String", ref))
    profiles = provenance.get("profiles")
    for path, urls in profiles.items() if isinstance(profiles, Mapping) else ():
        urls = urls if isinstance(urls, list) else []
        applied = [_sub("applied", "Canonical", u) for u in urls if _text(u)]
        if _text(path) and applied:
            parts.append({"url": "profile", "extension": [_sub("resource", "String", path), *applied]})
    canonicals = provenance.get("canonicals")
    for item in canonicals if isinstance(canonicals, list) else ():
        if not isinstance(item, Mapping):
            continue
        kinds = (("declared", "Canonical"), ("applied", "Canonical"), ("at", "String"))
        sub = [_sub(key, kind, item[key]) for key, kind in kinds if _text(item.get(key))]
        if sub:
            parts.append({"url": "canonical", "extension": sub})
    if _text(provenance.get("region")):
        parts.append(_sub("region", "Code", provenance["region"]))
    if _text(provenance.get("date")):
        parts.append(_sub("date", "Date", provenance["date"]))
    duration = provenance.get("duration_ms")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        quantity = {"value": duration, "unit": "ms", "system": UCUM, "code": "ms"}
        parts.append(_sub("duration", "Duration", quantity))
    if parts:
        out.append({"url": PROVENANCE_URL, "extension": parts})
    return out


def junit_properties(provenance: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, value) pairs for JUnit ``<property>`` elements, flat and stable: ``becare.validator``,
    ``becare.rulebook``, ``becare.package`` (repeated), ``becare.profile`` (``path = canonical``,
    repeated), ``becare.canonical``, ``becare.region``, ``becare.date``, ``becare.duration_ms``."""
    props: list[tuple[str, str]] = []
    validator = provenance.get("validator")
    if isinstance(validator, Mapping) and _text(validator.get("name")):
        version = _text(validator.get("version")) or ""
        props.append(("becare.validator", f"{validator['name']} {version}".strip()))
    rulebook = provenance.get("rulebook")
    if isinstance(rulebook, Mapping) and _text(rulebook.get("version")):
        props.append(("becare.rulebook", str(rulebook["version"])))
    packages = provenance.get("packages")
    for item in packages if isinstance(packages, list) else ():
        ref = _package_ref(item)
        if ref:
            props.append(("becare.package", ref))
    profiles = provenance.get("profiles")
    for path, urls in profiles.items() if isinstance(profiles, Mapping) else ():
        for url in urls if isinstance(urls, list) else ():
            if _text(path) and _text(url):
                props.append(("becare.profile", f"{path} = {url}"))
    canonicals = provenance.get("canonicals")
    for item in canonicals if isinstance(canonicals, list) else ():
        if isinstance(item, Mapping) and _text(item.get("declared")) and _text(item.get("applied")):
            at = f" at {item['at']}" if _text(item.get("at")) else ""
            props.append(("becare.canonical", f"{item['declared']} -> {item['applied']}{at}"))
    for key in ("region", "date"):
        if _text(provenance.get(key)):
            props.append((f"becare.{key}", str(provenance[key])))
    duration = provenance.get("duration_ms")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        props.append(("becare.duration_ms", f"{duration:g}"))
    return props

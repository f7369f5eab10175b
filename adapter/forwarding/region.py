"""Which region a bundle belongs to, and whose bundle it is: what routing needs to know.

Follows CONTRACT section 4 exactly: the explicit region, else ``ext-region`` on the episode, else
the person's postal code. The postal ranges are the rulebook's data, so routing and the rules
can never disagree on a person's region.
"""

from __future__ import annotations

import re
from typing import Any

REGIONS = ("flanders", "wallonia", "brussels", "german-speaking")
REGION_EXTENSION = "https://becare.dev/fhir/StructureDefinition/ext-region"
SSIN_SYSTEMS = (
    "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin",
    "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/ssin",  # legacy, accepted
)


def region_for_postal_code(postal_code: str | None) -> str | None:
    """The region of a Belgian postal code (``B-`` prefix tolerated), from the rulebook's postal
    ranges (rules/regions.yaml, CONTRACT section 4): one table for routing and rules alike.
    Anything else (foreign, malformed) has no region."""
    if not isinstance(postal_code, str):
        return None
    code = postal_code.strip()
    if code.upper().startswith("B-"):
        code = code[2:]
    if not re.fullmatch(r"\d{4}", code):
        return None
    from adapter.rules.catalog import load_catalog

    return load_catalog().region_for_postal_code(int(code))


def _resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    out = []
    for entry in bundle.get("entry") or []:
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == resource_type:
            out.append(res)
    return out


def _full_url_index(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    index: dict[str, dict[str, Any]] = {}
    for entry in bundle.get("entry") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            continue
        res = entry["resource"]
        if isinstance(entry.get("fullUrl"), str):
            index[entry["fullUrl"]] = res
        if isinstance(res.get("id"), str) and isinstance(res.get("resourceType"), str):
            index[f"{res['resourceType']}/{res['id']}"] = res
    return index


def person(bundle: dict[str, Any]) -> dict[str, Any] | None:
    """The person of the bundle: the episode's patient when it resolves, else the first Patient."""
    if not isinstance(bundle, dict):
        return None
    index = _full_url_index(bundle)
    for episode in _resources(bundle, "EpisodeOfCare"):
        ref = (episode.get("patient") or {}).get("reference")
        target = index.get(ref) if isinstance(ref, str) else None
        if target is None and isinstance(ref, str):
            target = next((v for k, v in index.items() if k.endswith("/" + ref)), None)
        if isinstance(target, dict) and target.get("resourceType") == "Patient":
            return target
    patients = _resources(bundle, "Patient")
    return patients[0] if patients else None


def person_ssin(bundle: dict[str, Any]) -> str | None:
    patient = person(bundle)
    for ident in (patient or {}).get("identifier") or []:
        if not isinstance(ident, dict) or not isinstance(ident.get("value"), str):
            continue
        if ident.get("system") in SSIN_SYSTEMS:
            return re.sub(r"\D", "", ident["value"]) or None
    return None


def _postal_code(patient: dict[str, Any] | None) -> str | None:
    addresses = [
        a for a in (patient or {}).get("address") or [] if isinstance(a, dict) and a.get("postalCode")
    ]
    addresses.sort(key=lambda a: 0 if a.get("use") == "home" else 1)
    return addresses[0]["postalCode"] if addresses else None


def _episode_region(bundle: dict[str, Any]) -> str | None:
    for episode in _resources(bundle, "EpisodeOfCare"):
        for ext in episode.get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == REGION_EXTENSION:
                code = (ext.get("valueCoding") or {}).get("code")
                if code in REGIONS:
                    return code
    return None


def bundle_region(bundle: dict[str, Any], explicit: str | None = None) -> str | None:
    if explicit:
        return explicit if explicit in REGIONS else None
    return _episode_region(bundle) or region_for_postal_code(_postal_code(person(bundle)))

"""Normaliser for what vendors send today (pure; the input is never modified).

Real bundles use BeCore 1.x identifier systems (without ``/core/``), give care roles only as
text (the 2020 eHealth examples used ``role.text = "care-coordinator"``) and send BeCore parties
without declaring the profiles. Each fix is recorded as a ``Change`` (where, what, why) so the
sender sees exactly what was assumed on their behalf.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from adapter.mapping.tables import Tables, tables

Resource = dict[str, Any]


@dataclass(frozen=True)
class Change:
    path: str  # FHIRPath with indexes from the root of the input
    what: str
    why: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "what": self.what, "why": self.why}


@dataclass
class Normalised:
    resource: Resource
    changes: list[Change]


def normalise(resource: Resource, *, table: Tables | None = None) -> Normalised:
    """Return a corrected copy of a Bundle (or a single resource) and the list of changes."""
    t = table or tables()
    out = copy.deepcopy(resource)
    changes: list[Change] = []
    root = str(out.get("resourceType") or "Resource")
    if root == "Bundle":
        _profile(out, root, t, changes)
        by_url = {e.get("fullUrl"): e.get("resource") for e in out.get("entry") or [] if isinstance(e, dict)}
        for i, entry in enumerate(out.get("entry") or []):
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                _resource(entry["resource"], f"Bundle.entry[{i}].resource", t, changes, by_url)
    else:
        _resource(out, root, t, changes, {})
    return Normalised(out, changes)


def _resource(res: Resource, path: str, t: Tables, changes: list[Change], by_url: dict[Any, Any]) -> None:
    rtype = res.get("resourceType")
    _identifiers(res, path, t, changes)
    _profile(res, path, t, changes)
    if rtype == "CareTeam":
        for i, part in enumerate(res.get("participant") or []):
            for j, role in enumerate(part.get("role") or []):
                _role(role, f"{path}.participant[{i}].role[{j}]", t, changes)
    elif rtype == "PractitionerRole":
        for i, concept in enumerate(res.get("code") or []):
            _coded_text(concept, f"{path}.code[{i}]", "professions", t, changes, "profession")
    elif rtype == "EpisodeOfCare":
        for i, ext in enumerate(res.get("extension") or []):
            if ext.get("url") == t.extension("case_management_trigger") and isinstance(
                ext.get("valueCodeableConcept"), dict
            ):
                _coded_text(
                    ext["valueCodeableConcept"],
                    f"{path}.extension[{i}].valueCodeableConcept",
                    "triggers",
                    t,
                    changes,
                    "case-management trigger",
                )
    elif rtype == "Task":
        _candidates(res, path, t, changes, by_url)


def _identifiers(node: Any, path: str, t: Tables, changes: list[Change]) -> None:
    """Rewrite legacy identifier systems anywhere (resource identifiers and Reference.identifier)."""
    legacy: dict[str, str] = t.fhir["legacy_identifier_systems"]
    if isinstance(node, dict):
        system = node.get("system")
        if isinstance(system, str) and "value" in node and system in legacy:
            node["system"] = legacy[system]
            changes.append(
                Change(
                    f"{path}.system",
                    f"identifier system {system} replaced by {legacy[system]}",
                    "legacy BeCore 1.x system without /core/; BeCore 2.x NamingSystems are under /core/",
                )
            )
        for key, value in node.items():
            if key == "resource":
                continue  # contained/entry resources are walked on their own
            _identifiers(value, f"{path}.{key}", t, changes)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _identifiers(item, f"{path}[{i}]", t, changes)


def _profile(res: Resource, path: str, t: Tables, changes: list[Change]) -> None:
    rtype = res.get("resourceType")
    profiles: dict[str, str] = t.fhir["profiles"]
    wanted = profiles.get(str(rtype))
    if not wanted or wanted.startswith("http://hl7.org/fhir/StructureDefinition/"):
        return  # no Belgian or becare profile for this type
    meta = res.setdefault("meta", {})
    declared = meta.setdefault("profile", [])
    if wanted in declared:
        return
    declared.append(wanted)
    owner = "BeCore" if "/core/" in wanted else "becare"
    changes.append(
        Change(
            f"{path}.meta.profile",
            f"profile {wanted} declared",
            f"a {rtype} in a becare bundle conforms to the {owner} profile; declaring it makes the "
            "validator check it",
        )
    )


def _role(role: Resource, path: str, t: Tables, changes: list[Change]) -> None:
    system = t.system("roles")
    codings = role.get("coding") or []
    if any(c.get("system") == system for c in codings):
        return
    code = None
    source = ""
    for c in codings:
        if c.get("system") == "http://snomed.info/sct" and c.get("code"):
            code = t.role_for_snomed(str(c["code"]))
            source = f"SNOMED CT {c['code']}"
        if code is None:
            for text in (c.get("code"), c.get("display")):
                if isinstance(text, str) and (code := t.alias("roles", text)):
                    source = f"coding {text!r} of {c.get('system')}"
                    break
        if code:
            break
    if code is None and isinstance(role.get("text"), str):
        code = t.alias("roles", role["text"])
        source = f"text {role['text']!r}"
    if code is None:
        return
    role["coding"] = [
        {"system": system, "code": code, "display": t.roles[code]["display"]},
        *codings,
    ]
    changes.append(
        Change(
            f"{path}.coding",
            f"care role {code} coded from the {source}",
            "care roles are coded with the becare care-role CodeSystem (CONTRACT section 3); the rulebook "
            "reads the code, not the text",
        )
    )


def _coded_text(
    concept: Resource, path: str, table: str, t: Tables, changes: list[Change], label: str
) -> None:
    system = t.system(table)
    codings = concept.get("coding") or []
    if any(c.get("system") == system for c in codings):
        return
    text = concept.get("text")
    candidates = [text] + [c.get("code") for c in codings] + [c.get("display") for c in codings]
    for cand in candidates:
        if isinstance(cand, str) and (code := t.alias(table, cand)):
            display = t.codes(table)[code].get("display")
            coding = {"system": system, "code": code}
            if display:
                coding["display"] = display
            concept["coding"] = [coding, *codings]
            changes.append(
                Change(
                    f"{path}.coding",
                    f"{label} {code} coded from {cand!r}",
                    f"a {label} is coded with {system} so that it can be checked",
                )
            )
            return


def _candidates(task: Resource, path: str, t: Tables, changes: list[Change], by_url: dict[Any, Any]) -> None:
    """be-task requires a task-candidateList; a task with an owner has an obvious candidate."""
    url = t.extension("task_candidate_list")
    if any(e.get("url") == url for e in task.get("extension") or []):
        return
    owner = task.get("owner")
    if not isinstance(owner, dict) or not isinstance(owner.get("reference"), str):
        return
    target = by_url.get(owner["reference"])
    candidate = owner
    if isinstance(target, dict) and target.get("resourceType") == "PractitionerRole":
        candidate = target.get("practitioner") or {}  # the list admits people, not roles
    elif isinstance(target, dict) and target.get("resourceType") == "CareTeam":
        return
    if not candidate.get("reference"):
        return
    task.setdefault("extension", []).append(
        {"url": url, "valueReference": {"reference": candidate["reference"]}}
    )
    changes.append(
        Change(
            f"{path}.extension",
            f"task-candidateList added with the owner ({candidate['reference']})",
            "the Belgian be-task profile requires at least one task-candidateList extension",
        )
    )

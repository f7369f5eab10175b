#!/usr/bin/env python3
"""Build ``profiles/becare/``: our StructureDefinitions, extensions, CodeSystems and ValueSets.

The source is the data in this file (CONTRACT sections 2-3) plus ``rules/rulebook.yaml`` for the
``rule`` code system, so the rule codes and their titles can never drift from the catalog. The
output is deterministic (sorted keys, one resource per file); a test regenerates it in memory and
fails when the committed files differ.

Usage: ``python scripts/build_becare_profiles.py [--out profiles/becare] [--check]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
BASE = "https://becare.dev/fhir"
VERSION = "1.0.0"
FHIR = "http://hl7.org/fhir/StructureDefinition/"
BE_CORE = "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/"
BE_PC = "https://www.ehealth.fgov.be/standards/fhir/patient-care/StructureDefinition/"
LANGS = ("en", "fr", "nl", "de")

# code -> (en, fr, nl, de), definition (en)
Concepts = dict[str, tuple[tuple[str, str, str, str], str]]

CODE_SYSTEMS: dict[str, tuple[str, str, Concepts]] = {
    "care-role": (
        "CareRole",
        "Roles in a coordinated care situation",
        {
            "patient": (
                ("Person receiving care", "Personne accompagnée", "Zorgvrager", "Betreute Person"),
                "The person with a care and support need, at the centre of the team.",
            ),
            "informal-caregiver": (
                ("Informal caregiver", "Aidant proche", "Mantelzorger", "Pflegender Angehöriger"),
                "A relative or friend who gives care without being a professional.",
            ),
            "representative": (
                ("Representative", "Représentant", "Vertegenwoordiger", "Vertreter"),
                "Someone who legally represents the person.",
            ),
            "care-coordinator": (
                ("Care coordinator", "Coordinateur de soins", "Zorgcoördinator", "Versorgungskoordinator"),
                "Coordinates care and support of the person (the person, an informal caregiver "
                "or a professional of the team).",
            ),
            "case-manager": (
                ("Case manager", "Case manager", "Casemanager", "Case Manager"),
                "Supports a complex situation from outside the care team, for a limited time.",
            ),
            "team-member": (
                (
                    "Care team member",
                    "Membre de l'équipe de soins",
                    "Lid van het zorgteam",
                    "Mitglied des Versorgungsteams",
                ),
                "A professional of the interdisciplinary care team.",
            ),
            "pathway-expert": (
                ("Pathway expert", "Expert du parcours de soins", "Zorgpadexpert", "Pfadexperte"),
                "An expert of one care pathway; not a care coordinator nor a case manager.",
            ),
        },
    ),
    "episode-type": (
        "EpisodeType",
        "Types of coordinated care episodes",
        {
            "care-coordination": (
                (
                    "Care coordination (not remunerated)",
                    "Coordination de soins (non rémunérée)",
                    "Zorgcoördinatie (niet vergoed)",
                    "Versorgungskoordination (nicht vergütet)",
                ),
                "Care coordination by the person, an informal caregiver or a professional, unpaid.",
            ),
            "care-coordination-remunerated": (
                (
                    "Remunerated care coordination",
                    "Coordination de soins rémunérée",
                    "Vergoede zorgcoördinatie",
                    "Vergütete Versorgungskoordination",
                ),
                "Care coordination by a paid professional coordinator.",
            ),
            "case-management": (
                ("Case management", "Case management", "Casemanagement", "Case Management"),
                "Time-limited support of a complex situation by a case manager outside the team.",
            ),
        },
    ),
    "case-management-trigger": (
        "CaseManagementTrigger",
        "Start situations of case management",
        {
            "unstable-complex-situation": (
                (
                    "Unstable or complex situation",
                    "Situation instable ou complexe",
                    "Onstabiele of complexe situatie",
                    "Instabile oder komplexe Situation",
                ),
                "Medical, social or mixed situation that is unstable or complex.",
            ),
            "person-not-represented": (
                (
                    "Person not represented in the team",
                    "Personne non représentée dans l'équipe",
                    "Persoon niet vertegenwoordigd in het team",
                    "Person im Team nicht vertreten",
                ),
                "The person is not represented in the care team.",
            ),
            "no-care-coordination": (
                (
                    "No care coordination in place",
                    "Pas de coordination de soins en place",
                    "Geen zorgcoördinatie aanwezig",
                    "Keine Versorgungskoordination vorhanden",
                ),
                "There is no care coordination.",
            ),
            "failed-care-coordination": (
                (
                    "Failed care coordination",
                    "Échec de la coordination de soins",
                    "Mislukte zorgcoördinatie",
                    "Gescheiterte Versorgungskoordination",
                ),
                "Care coordination did not succeed.",
            ),
            "self-endangerment": (
                (
                    "Self-endangerment by refusing care",
                    "Mise en danger par refus de soins",
                    "Zelfverwaarlozing door zorgweigering",
                    "Selbstgefährdung durch Ablehnung von Hilfe",
                ),
                "The person endangers themselves by refusing care.",
            ),
            "person-request": (
                (
                    "Request of the person",
                    "Demande de la personne",
                    "Vraag van de persoon",
                    "Wunsch der Person",
                ),
                "The person asks for case management.",
            ),
        },
    ),
    "goal-category": (
        "GoalCategory",
        "Categories of goals in a care plan",
        {
            "life-goal": (
                ("Life goal", "Objectif de vie", "Levensdoel", "Lebensziel"),
                "What matters to the person in life, expressed by the person or their representative.",
            ),
            "care-goal": (
                ("Care goal", "Objectif de soins", "Zorgdoel", "Versorgungsziel"),
                "A goal of care and support derived from the person's needs.",
            ),
        },
    ),
    "task-type": (
        "TaskType",
        "Types of tasks in a coordinated care situation",
        {
            "concertation": (
                ("Concertation", "Concertation", "Overleg", "Fallbesprechung"),
                "A meeting of the team with the person and the informal caregivers.",
            ),
            "reassessment": (
                ("Reassessment", "Réévaluation", "Herbeoordeling", "Neubewertung"),
                "A periodic reassessment of the situation and the plan.",
            ),
            "intervention-evaluation": (
                (
                    "Evaluation of the intervention",
                    "Évaluation de l'intervention",
                    "Evaluatie van de interventie",
                    "Bewertung der Intervention",
                ),
                "The evaluation of the results at the end of an intervention period.",
            ),
            "handover": (
                ("Handover", "Transmission", "Overdracht", "Übergabe"),
                "Handing the coordination tasks over to another person.",
            ),
            "follow-up": (
                ("Follow-up", "Suivi", "Opvolging", "Nachsorge"),
                "A follow-up contact after an intervention.",
            ),
            "care-activity": (
                ("Care activity", "Activité de soins", "Zorgactiviteit", "Versorgungstätigkeit"),
                "A concrete care or support activity of the plan.",
            ),
        },
    ),
    "consent-category": (
        "ConsentCategory",
        "Categories of the person's consent",
        {
            "care-coordinator-agreement": (
                (
                    "Agreement to the care coordinator",
                    "Accord sur le coordinateur de soins",
                    "Akkoord met de zorgcoördinator",
                    "Zustimmung zum Versorgungskoordinator",
                ),
                "The person agrees to the designated coordinator.",
            ),
            "case-management": (
                (
                    "Consent to case management",
                    "Consentement au case management",
                    "Toestemming voor casemanagement",
                    "Einwilligung in das Case Management",
                ),
                "The person consents to case management.",
            ),
            "data-sharing": (
                (
                    "Consent to data sharing",
                    "Consentement au partage de données",
                    "Toestemming voor gegevensdeling",
                    "Einwilligung in den Datenaustausch",
                ),
                "The person consents to sharing their data within the care team.",
            ),
        },
    ),
    "region": (
        "Region",
        "Federated entities applying the interfederal plan",
        {
            "flanders": (
                ("Flanders", "Flandre", "Vlaanderen", "Flandern"),
                "The Flemish Community and Region.",
            ),
            "wallonia": (("Wallonia", "Wallonie", "Wallonië", "Wallonien"), "The Walloon Region."),
            "brussels": (("Brussels", "Bruxelles", "Brussel", "Brüssel"), "The Brussels-Capital Region."),
            "german-speaking": (
                (
                    "German-speaking Community",
                    "Communauté germanophone",
                    "Duitstalige Gemeenschap",
                    "Deutschsprachige Gemeinschaft",
                ),
                "The German-speaking Community.",
            ),
        },
    ),
}


def _meta(kind: str, rid: str, name: str, title: str) -> dict[str, Any]:
    return {
        "resourceType": kind,
        "id": rid,
        "url": f"{BASE}/{kind}/{rid}",
        "version": VERSION,
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": "becare",
    }


def code_system(rid: str, name: str, title: str, concepts: Concepts) -> dict[str, Any]:
    cs = _meta("CodeSystem", rid, name, title)
    cs.update(
        {
            "caseSensitive": True,
            "valueSet": f"{BASE}/ValueSet/{rid}",
            "content": "complete",
            "count": len(concepts),
            "concept": [
                {
                    "code": code,
                    "display": labels[0],
                    "definition": definition,
                    "designation": [
                        {"language": lang, "value": text} for lang, text in zip(LANGS, labels, strict=True)
                    ],
                }
                for code, (labels, definition) in concepts.items()
            ],
        }
    )
    return cs


def value_set(rid: str, name: str, title: str) -> dict[str, Any]:
    vs = _meta("ValueSet", rid, name, title)
    vs["immutable"] = False
    vs["compose"] = {"include": [{"system": f"{BASE}/CodeSystem/{rid}"}]}
    return vs


def rule_concepts(rulebook: dict[str, Any]) -> Concepts:
    out: Concepts = {}
    for rule in rulebook["rules"]:
        title = rule["title"]
        out[rule["id"]] = ((title["en"], title["fr"], title["nl"], title["de"]), title["en"])
    return out


def _el(path: str, **kw: Any) -> dict[str, Any]:
    return {"id": kw.pop("id", path), "path": path, **kw}


def _ref(*targets: str) -> list[dict[str, Any]]:
    return [{"code": "Reference", "targetProfile": list(targets)}]


def _vs(rid: str) -> str:
    return f"{BASE}/ValueSet/{rid}"


def _ext_slice(root: str, name: str, ext_id: str, lo: int, hi: str) -> dict[str, Any]:
    return _el(
        f"{root}.extension",
        id=f"{root}.extension:{name}",
        sliceName=name,
        min=lo,
        max=hi,
        type=[{"code": "Extension", "profile": [f"{BASE}/StructureDefinition/{ext_id}"]}],
    )


def structure_definition(
    rid: str, name: str, title: str, rtype: str, base: str, elements: list[dict[str, Any]], description: str
) -> dict[str, Any]:
    sd = _meta("StructureDefinition", rid, name, title)
    sd.update(
        {
            "description": description,
            "fhirVersion": "4.0.1",
            "kind": "resource",
            "abstract": False,
            "type": rtype,
            "baseDefinition": base,
            "derivation": "constraint",
            "differential": {"element": [_el(rtype), *elements]},
        }
    )
    return sd


def _extension_sd(
    rid: str, name: str, title: str, context: str, description: str, elements: list[dict[str, Any]]
) -> dict[str, Any]:
    """An extension's StructureDefinition; ``elements`` are its differential below the root."""
    sd = _meta("StructureDefinition", rid, name, title)
    sd.update(
        {
            "description": description,
            "fhirVersion": "4.0.1",
            "kind": "complex-type",
            "abstract": False,
            "context": [{"type": "element", "expression": context}],
            "type": "Extension",
            "baseDefinition": FHIR + "Extension",
            "derivation": "constraint",
            "differential": {"element": [_el("Extension", short=title), *elements]},
        }
    )
    return sd


def extension(
    rid: str, name: str, title: str, context: str, value_type: str, binding: str, description: str
) -> dict[str, Any]:
    """A simple extension: one coded value, bound to one of our value sets."""
    return _extension_sd(
        rid,
        name,
        title,
        context,
        description,
        [
            _el("Extension.extension", max="0"),
            _el("Extension.url", fixedUri=f"{BASE}/StructureDefinition/{rid}"),
            _el(
                "Extension.value[x]",
                min=1,
                type=[{"code": value_type}],
                binding={"strength": "required", "valueSet": _vs(binding)},
            ),
        ],
    )


URL_SLICING = {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}


# A sub-extension of a complex extension: (name, min, max, value type or nested parts, short)
Part = tuple[str, int, str, "str | list[Any]", str]


def _parts(root_id: str, root_path: str, parts: list[Part]) -> list[dict[str, Any]]:
    """Differential elements for the sub-extensions of a complex extension (nested ones too)."""
    out: list[dict[str, Any]] = [
        _el(f"{root_path}.extension", id=f"{root_id}.extension", slicing=URL_SLICING),
    ]
    for name, lo, hi, kind, short in parts:
        sid = f"{root_id}.extension:{name}"
        out.append(_el(f"{root_path}.extension", id=sid, sliceName=name, min=lo, max=hi, short=short))
        if isinstance(kind, list):
            out.extend(_parts(sid, f"{root_path}.extension", kind))
            out.append(_el(f"{root_path}.extension.url", id=f"{sid}.url", fixedUri=name))
            out.append(_el(f"{root_path}.extension.value[x]", id=f"{sid}.value[x]", max="0"))
        else:
            out.append(_el(f"{root_path}.extension.extension", id=f"{sid}.extension", max="0"))
            out.append(_el(f"{root_path}.extension.url", id=f"{sid}.url", fixedUri=name))
            out.append(
                _el(f"{root_path}.extension.value[x]", id=f"{sid}.value[x]", min=1, type=[{"code": kind}])
            )
    return out


def complex_extension(
    rid: str, name: str, title: str, context: str, parts: list[Part], description: str
) -> dict[str, Any]:
    """An extension made of sub-extensions only (no value of its own)."""
    return _extension_sd(
        rid,
        name,
        title,
        context,
        description,
        [
            *_parts("Extension", "Extension", parts),
            _el("Extension.url", fixedUri=f"{BASE}/StructureDefinition/{rid}"),
            _el("Extension.value[x]", max="0"),
        ],
    )


def report_extensions() -> list[dict[str, Any]]:
    """The extensions becare puts on the OperationOutcomes it writes (adapter/validation/provenance.py
    and issues.py), defined so that a report validated by becare, or by any FHIR validator that
    loads this package, is not an error of its own."""
    return [
        complex_extension(
            "ext-validation-provenance",
            "ExtValidationProvenance",
            "What judged this validation report",
            "OperationOutcome",
            [
                ("validator", 0, "1", "string", "Name of the validator"),
                ("validatorVersion", 0, "1", "string", "Version of the validator"),
                ("rulebookVersion", 0, "1", "string", "Version of the interfederal rulebook"),
                ("package", 0, "*", "string", "A FHIR package loaded, as id#version"),
                (
                    "profile",
                    0,
                    "*",
                    [
                        ("resource", 1, "1", "string", "FHIRPath of the resource"),
                        ("applied", 1, "*", "canonical", "A profile applied to it"),
                    ],
                    "Profiles applied to one resource",
                ),
                (
                    "canonical",
                    0,
                    "*",
                    [
                        ("declared", 1, "1", "canonical", "The canonical the content declared"),
                        ("applied", 1, "1", "canonical", "The canonical becare applied instead"),
                        ("at", 0, "1", "string", "FHIRPath of the declaration"),
                    ],
                    "A declared canonical mapped to the one applied",
                ),
                ("region", 0, "1", "code", "Federated entity whose rules applied"),
                ("date", 0, "1", "date", "The validation date rules judged against"),
                ("duration", 0, "1", "Duration", "Time the validation took"),
            ],
            "Provenance of a validation report: validator and rulebook versions, packages loaded, "
            "profiles applied per resource, canonicals mapped, region, validation date and duration.",
        ),
        complex_extension(
            "ext-suppressed",
            "ExtSuppressed",
            "Issue suppressed by a suppression file",
            "OperationOutcome.issue",
            [
                ("severity", 1, "1", "code", "The severity the issue had before it was suppressed"),
                ("reason", 1, "1", "string", "Why it is suppressed (from the suppression file)"),
                ("entry", 1, "1", "integer", "Number of the suppression in its file (1-based)"),
                ("until", 0, "1", "date", "Last day the suppression applies"),
            ],
            "Marks an issue that a suppression file turned into information, keeping what it was.",
        ),
    ]


PATIENT = BE_CORE + "be-patient"
PRACTITIONER = BE_CORE + "be-practitioner"
ROLE = BE_CORE + "be-practitionerrole"
ORG = BE_CORE + "be-organization"
RELATED = FHIR + "RelatedPerson"


def profiles() -> list[dict[str, Any]]:
    sd = f"{BASE}/StructureDefinition/"
    return [
        structure_definition(
            "becare-episodeofcare",
            "BecareEpisodeOfCare",
            "becare EpisodeOfCare",
            "EpisodeOfCare",
            FHIR + "EpisodeOfCare",
            [
                _el("EpisodeOfCare.extension", slicing=URL_SLICING),
                _ext_slice("EpisodeOfCare", "caseManagementTrigger", "ext-case-management-trigger", 0, "*"),
                _ext_slice("EpisodeOfCare", "region", "ext-region", 0, "1"),
                _el(
                    "EpisodeOfCare.type",
                    min=1,
                    binding={"strength": "extensible", "valueSet": _vs("episode-type")},
                ),
                _el("EpisodeOfCare.patient", type=_ref(PATIENT)),
                _el("EpisodeOfCare.managingOrganization", type=_ref(ORG)),
                _el("EpisodeOfCare.careManager", type=_ref(ROLE, PRACTITIONER)),
                _el("EpisodeOfCare.team", type=_ref(sd + "becare-careteam")),
            ],
            "One coordinated situation: care coordination or case management for one person.",
        ),
        structure_definition(
            "becare-careteam",
            "BecareCareTeam",
            "becare CareTeam",
            "CareTeam",
            BE_PC + "be-careteam",
            [
                _el("CareTeam.subject", min=1),
                _el("CareTeam.participant", min=1),
                _el(
                    "CareTeam.participant.role",
                    min=1,
                    binding={"strength": "extensible", "valueSet": _vs("care-role")},
                ),
                _el("CareTeam.participant.member", min=1),
            ],
            "The person, the informal network and the professionals around the person.",
        ),
        structure_definition(
            "becare-careplan",
            "BecareCarePlan",
            "becare CarePlan",
            "CarePlan",
            BE_PC + "be-care-plan",
            [
                _el("CarePlan.subject", type=_ref(PATIENT)),
                _el("CarePlan.careTeam", type=_ref(sd + "becare-careteam")),
                _el("CarePlan.goal", type=_ref(sd + "becare-goal")),
            ],
            "The shared care and support plan of the person.",
        ),
        structure_definition(
            "becare-goal",
            "BecareGoal",
            "becare Goal",
            "Goal",
            BE_PC + "be-goal",
            [
                _el(
                    "Goal.category",
                    min=1,
                    binding={"strength": "extensible", "valueSet": _vs("goal-category")},
                ),
                _el("Goal.subject", type=_ref(PATIENT)),
                _el("Goal.expressedBy", type=_ref(PATIENT, RELATED, PRACTITIONER, ROLE)),
            ],
            "A life goal or a care goal of the person.",
        ),
        structure_definition(
            "becare-task",
            "BecareTask",
            "becare Task",
            "Task",
            BE_PC + "be-task",
            [
                _el("Task.code", min=1, binding={"strength": "extensible", "valueSet": _vs("task-type")}),
                _el("Task.for", min=1, type=_ref(PATIENT)),
            ],
            "Concertation, reassessment, evaluation, handover, follow-up or care activity.",
        ),
        structure_definition(
            "becare-consent",
            "BecareConsent",
            "becare Consent",
            "Consent",
            FHIR + "Consent",
            [
                _el(
                    "Consent.scope",
                    patternCodeableConcept={
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                "code": "treatment",
                            }
                        ]
                    },
                ),
                _el(
                    "Consent.category",
                    binding={"strength": "extensible", "valueSet": _vs("consent-category")},
                ),
                _el("Consent.patient", min=1, type=_ref(PATIENT)),
            ],
            "The person's agreement: to a coordinator, to case management, to sharing.",
        ),
        structure_definition(
            "becare-bundle",
            "BecareBundle",
            "becare Bundle",
            "Bundle",
            FHIR + "Bundle",
            [
                _el(
                    "Bundle.type",
                    short="transaction | collection",
                    constraint=[
                        {
                            "key": "becare-bdl-1",
                            "severity": "error",
                            "human": "A becare bundle is a transaction or a collection",
                            "expression": "$this = 'transaction' or $this = 'collection'",
                            "source": sd + "becare-bundle",
                        }
                    ],
                ),
                _el("Bundle.entry.fullUrl", min=1),
                _el("Bundle.entry.resource", min=1),
            ],
            "A transaction or collection carrying one person's coordinated situation.",
        ),
        extension(
            "ext-case-management-trigger",
            "ExtCaseManagementTrigger",
            "Case management start trigger",
            "EpisodeOfCare",
            "CodeableConcept",
            "case-management-trigger",
            "Why case management started (one of the six start situations); repeat for several.",
        ),
        extension(
            "ext-region",
            "ExtRegion",
            "Region of the coordinated situation",
            "EpisodeOfCare",
            "Coding",
            "region",
            "The federated entity whose rules apply to the episode.",
        ),
    ]


def build(rulebook: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """All resources, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    systems = dict(CODE_SYSTEMS)
    systems["rule"] = ("Rule", "Rules of the interfederal rulebook", rule_concepts(rulebook))
    for rid, (name, title, concepts) in systems.items():
        out[f"CodeSystem-{rid}.json"] = code_system(rid, name, title, concepts)
        out[f"ValueSet-{rid}.json"] = value_set(rid, name, title)
    for sd in [*profiles(), *report_extensions()]:
        out[f"StructureDefinition-{sd['id']}.json"] = sd
    return out


def render(resource: dict[str, Any]) -> str:
    return json.dumps(resource, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "profiles" / "becare"))
    parser.add_argument("--rulebook", default=str(REPO / "rules" / "rulebook.yaml"))
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are out of date")
    args = parser.parse_args(argv)
    rulebook = yaml.safe_load(Path(args.rulebook).read_text(encoding="utf-8"))
    out = Path(args.out)
    files = {name: render(res) for name, res in build(rulebook).items()}
    if args.check:
        stale = [
            n for n, text in files.items() if not (out / n).is_file() or (out / n).read_text("utf-8") != text
        ]
        extra = sorted(p.name for p in out.glob("*.json") if p.name not in files)
        if stale or extra:
            print("out of date: " + ", ".join(stale + extra), file=sys.stderr)
            return 1
        return 0
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} resources to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

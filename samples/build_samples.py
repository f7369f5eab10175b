#!/usr/bin/env python3
"""Generate the sample bundles, their care situation documents and ``samples/manifest.yaml``.

A valid sample is the mapper's output of a care situation document: the document is written
next to it (``samples/valid/<name>.yaml``) and ``becare map`` of that file gives the JSON byte
for byte, so Bundle -> document -> Bundle gives back an equal bundle. Each rule sample starts
from the same documents and changes the one thing its rule is about, in the document when the
document can say it, else in the mapped bundle (resources found by type and document id), so a
breaking sample raises exactly the rule it is named after. People, numbers and organisations
are fictional; SSIN, NIHDI and CBE numbers carry valid check digits. Deterministic: re-running
gives byte-identical files.

Usage: ``python samples/build_samples.py``
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from adapter.mapping import load_document, to_bundle, validate  # noqa: E402
from adapter.rules.identifiers import make_cbe, make_nihdi, make_ssin  # noqa: E402

Doc = dict[str, Any]
Res = dict[str, Any]

REGIONS: dict[str, dict[str, Any]] = {
    "flanders": {
        "city": "Gent",
        "postal": "9000",
        "street": "Kortrijksesteenweg 112",
        "lang": "nl",
        "patient": ("Verhaegen", "Maria", "female", "1941-04-17"),
        "carer": ("Verhaegen", "Els"),
        "nurse": ("Claeys", "Annelies"),
        "gp": ("De Smet", "Pieter"),
        "physio": ("Maes", "Jonas"),
        "social": ("Wouters", "Sofie"),
        "cm": ("Peeters", "Lotte"),
        "org": "Thuisverpleging Gent-Zuid",
        "meso": "Zorgraad Gent",
        "goal": "Zo lang mogelijk thuis blijven wonen en in de tuin werken",
        "team": "Zorgteam",
        "plan": "Zorg- en ondersteuningsplan",
    },
    "wallonia": {
        "city": "Namur",
        "postal": "5000",
        "street": "Rue de Fer 21",
        "lang": "fr",
        "patient": ("Lambert", "Jeanne", "female", "1938-11-02"),
        "carer": ("Lambert", "Luc"),
        "nurse": ("Dubois", "Camille"),
        "gp": ("Renard", "Olivier"),
        "physio": ("Leclercq", "Julien"),
        "social": ("Martin", "Aurélie"),
        "cm": ("Simon", "Nathalie"),
        "org": "Soins à domicile Namur",
        "meso": "OLS Namur",
        "goal": "Rester à la maison et continuer à voir mes petits-enfants",
        "team": "Équipe de soins",
        "plan": "Plan de soins et d'assistance",
    },
    "brussels": {
        "city": "Ixelles",
        "postal": "1050",
        "street": "Chaussée de Boondael 300",
        "lang": "fr",
        "patient": ("El Amrani", "Fatima", "female", "1950-01-23"),
        "carer": ("El Amrani", "Youssef"),
        "nurse": ("Janssens", "Sarah"),
        "gp": ("Vandenberghe", "Marc"),
        "physio": ("Rousseau", "Hugo"),
        "social": ("Mertens", "Inès"),
        "cm": ("Lemaire", "Chloé"),
        "org": "Maison médicale Ixelles",
        "meso": "Brusano",
        "goal": "Retrouver assez de mobilité pour aller au marché",
        "team": "Équipe de soins",
        "plan": "Plan de soins et d'assistance",
    },
    "german-speaking": {
        "city": "Eupen",
        "postal": "4700",
        "street": "Gospertstraße 44",
        "lang": "de",
        "patient": ("Schröder", "Hubert", "male", "1944-08-09"),
        "carer": ("Schröder", "Anna"),
        "nurse": ("Kessler", "Monika"),
        "gp": ("Heinen", "Thomas"),
        "physio": ("Meyer", "Lukas"),
        "social": ("Lentz", "Julia"),
        "cm": ("Cremer", "Sabine"),
        "org": "Häusliche Pflege Eupen",
        "meso": "Netzwerk Integrierte Versorgung Ostbelgien",
        "goal": "Weiter zu Hause leben und im Chor singen",
        "team": "Versorgungsteam",
        "plan": "Pflege- und Unterstützungsplan",
    },
}
_SERIAL = {"flanders": 101, "wallonia": 202, "brussels": 303, "german-speaking": 404}


# --- the care situation documents --------------------------------------------------------------


def name(who: tuple[str, ...]) -> Doc:
    return {"family": who[0], "given": [who[1]]}


def professional(key: str, who: tuple[str, str], profession: str, org: str, nihdi: str | None) -> Doc:
    out: Doc = {"id": key}
    if nihdi:
        out["nihdi"] = nihdi
    out.update(name=name(who), profession=profession, organisation=org)
    return out


def base_document(region: str, *, with_cm: bool) -> Doc:
    """The person, their informal caregiver, the organisations and professionals of a region."""
    d = REGIONS[region]
    n = _SERIAL[region]
    family, given, gender, birth = d["patient"]
    pros = [
        professional("nurse", d["nurse"], "persnurse", "org", make_nihdi(400_000 + n, "401")),
        professional("gp", d["gp"], "persphysician", "org", make_nihdi(100_000 + n, "004")),
        professional("physio", d["physio"], "persphysiotherapist", "org", make_nihdi(500_000 + n, "528")),
    ]
    orgs = [{"id": "org", "name": d["org"], "cbe": make_cbe(4_000_000 + n * 1_000 + 17)}]
    if with_cm:
        orgs.append({"id": "meso", "name": d["meso"], "cbe": make_cbe(5_000_000 + n * 1_000 + 29)})
        pros.append(professional("cm", d["cm"], "perssocialworker", "meso", None))
    else:
        pros.append(professional("social", d["social"], "perssocialworker", "org", None))
    return {
        "version": 1,
        "identifier_system": f"https://{region}.care.example/id",
        "region": region,
        "person": {
            "ssin": make_ssin(birth, n % 997 + 1),
            "name": name((family, given)),
            "gender": gender,
            "birth_date": birth,
            "address": {"lines": [d["street"]], "postal_code": d["postal"], "city": d["city"]},
            "language": d["lang"],
        },
        "informal_caregivers": [
            {"id": "carer", "name": name(d["carer"]), "relationship": "child", "phone": f"+32 470 {n} 456"}
        ],
        "organisations": orgs,
        "professionals": pros,
    }


def team(region: str, members: list[tuple[str, str]]) -> Doc:
    return {
        "id": "team",
        "name": REGIONS[region]["team"],
        "members": [{"party": party, "roles": [role]} for party, role in members],
    }


def cc_document(
    region: str,
    *,
    start: str = "2024-03-01",
    end: str | None = None,
    status: str = "active",
    doc: Doc | None = None,
) -> Doc:
    """Remunerated care coordination: episode, team, plan with goals, assessment, tasks, consents."""
    d = REGIONS[region]
    n = _SERIAL[region]
    doc = doc or base_document(region, with_cm=False)
    doc["care_team"] = team(
        region,
        [
            ("person", "patient"),
            ("carer", "informal-caregiver"),
            ("nurse", "care-coordinator"),
            ("gp", "team-member"),
            ("physio", "team-member"),
            ("social", "team-member"),
        ],
    )
    period = {"start": start} | ({"end": end} if end else {})
    doc["episodes"] = [
        {
            "id": f"CC-{n}-1",
            "type": "care-coordination-remunerated",
            "status": status,
            "coordinator": "nurse",
            "period": period,
            "managing_organisation": "org",
        }
    ]
    doc["care_plan"] = {
        "id": "plan",
        "title": d["plan"],
        "period": {"start": start},
        "author": "nurse",
        "goals": [
            {"id": "goal-life", "category": "life-goal", "description": d["goal"], "expressed_by": "person"},
            {
                "id": "goal-mobility",
                "category": "care-goal",
                "description": "Safe transfers and walking indoors with a frame",
                "expressed_by": "physio",
                "target_date": "2024-12-31",
            },
            {
                "id": "goal-meds",
                "category": "care-goal",
                "description": "Correct daily medication intake",
                "expressed_by": "gp",
            },
        ],
    }
    doc["tasks"] = [
        {
            "id": "t-concertation",
            "type": "concertation",
            "owner": "nurse",
            "due": "2024-09-16",
            "description": "Team concertation with the person and the informal caregiver",
        },
        {
            "id": "t-reassessment",
            "type": "reassessment",
            "owner": "nurse",
            "due": "2025-03-01",
            "description": "Periodic reassessment (BelRAI)",
        },
        {
            "id": "t-care-1",
            "type": "care-activity",
            "status": "in-progress",
            "owner": "physio",
            "description": "Physiotherapy twice a week",
            "goal": "goal-mobility",
        },
        {
            "id": "t-care-2",
            "type": "care-activity",
            "status": "in-progress",
            "owner": "carer",
            "description": "Weekly pill organiser filled by the informal caregiver",
            "goal": "goal-meds",
        },
        {
            "id": "t-care-3",
            "type": "care-activity",
            "owner": "social",
            "due": "2024-10-01",
            "description": "Application for home help",
        },
    ]
    doc["consents"] = [
        {
            "id": "consent-cc",
            "category": "care-coordinator-agreement",
            "date": "2024-02-28",
            "given_by": "person",
            "grantee": "nurse",
        },
        {"id": "consent-share", "category": "data-sharing", "date": "2024-02-28", "given_by": "person"},
    ]
    doc["assessments"] = [
        {
            "id": "belrai-hc",
            "instrument": "belrai-home-care",
            "date": "2024-02-20",
            "evaluation_id": f"EV-2024-{n:06d}",
            "performer": "nurse",
        },
    ]
    return doc


def cm_parts(
    region: str,
    *,
    start: str = "2024-05-01",
    end: str | None = None,
    status: str = "active",
    eval_status: str = "planned",
    follow_ups: bool = False,
    manager: str = "cm",
) -> Doc:
    """Case management: episode with triggers and referral, consent, evaluation (and follow-ups)."""
    period = {"start": start} | ({"end": end} if end else {})
    tasks = [
        {
            "id": "t-evaluation",
            "type": "intervention-evaluation",
            "status": eval_status,
            "owner": manager,
            "due": end or "2024-11-01",
            "description": "Evaluation of the results",
        }
    ]
    if follow_ups and end:
        last = dt.date.fromisoformat(end)
        for months, days in ((1, 30), (6, 182)):
            tasks.append(
                {
                    "id": f"t-follow-up-{months}",
                    "type": "follow-up",
                    "owner": manager,
                    "due": (last + dt.timedelta(days=days)).isoformat(),
                    "description": f"Follow-up call {months} month(s) after case management",
                }
            )
    return {
        "episode": {
            "id": f"CM-{_SERIAL[region]}-1",
            "type": "case-management",
            "status": status,
            "case_manager": manager,
            "triggers": ["unstable-complex-situation", "no-care-coordination"],
            "period": period,
            "requested_by": "gp",
            "managing_organisation": "meso",
        },
        "tasks": tasks,
        "consent": {
            "id": "consent-cm",
            "category": "case-management",
            "date": start,
            "given_by": "person",
            "grantee": manager,
        },
    }


def cm_document(region: str, **kw: Any) -> Doc:
    doc = base_document(region, with_cm=True)
    parts = cm_parts(region, **kw)
    doc["care_team"] = team(
        region,
        [
            ("person", "patient"),
            ("carer", "informal-caregiver"),
            ("nurse", "team-member"),
            ("gp", "team-member"),
        ],
    )
    doc["episodes"] = [parts["episode"]]
    doc["care_plan"] = {
        "id": "plan",
        "title": REGIONS[region]["plan"],
        "author": kw.get("manager", "cm"),
        "goals": [
            {
                "id": "goal-life",
                "category": "life-goal",
                "description": REGIONS[region]["goal"],
                "expressed_by": "person",
            }
        ],
    }
    doc["tasks"] = parts["tasks"]
    doc["consents"] = [parts["consent"]]
    return doc


def both_document(region: str, **kw: Any) -> Doc:
    """Care coordination and case management for one person in one document, one care team."""
    cc_kw = {k[3:]: v for k, v in kw.items() if k.startswith("cc_")}
    cm_kw = {k: v for k, v in kw.items() if not k.startswith("cc_")}
    with_cm = base_document(region, with_cm=True)
    doc = base_document(region, with_cm=False)
    doc["organisations"] += [o for o in with_cm["organisations"] if o["id"] == "meso"]
    doc["professionals"] += [p for p in with_cm["professionals"] if p["id"] == "cm"]
    doc = cc_document(region, doc=doc, **cc_kw)
    parts = cm_parts(region, **cm_kw)
    doc["episodes"].append(parts["episode"])
    doc["tasks"] += parts["tasks"]
    doc["consents"].append(parts["consent"])
    return doc


MAKERS: dict[str, Callable[..., Doc]] = {"cc": cc_document, "cm": cm_document, "both": both_document}


# --- finding things in a document and in a bundle -------------------------------------------------


def member(doc: Doc, party: str) -> Doc:
    return next(m for m in doc["care_team"]["members"] if m["party"] == party)


def remove_member(doc: Doc, party: str) -> None:
    doc["care_team"]["members"] = [m for m in doc["care_team"]["members"] if m["party"] != party]


def item(doc: Doc, kind: str, key: str) -> Doc:
    """The entry of a document list (``tasks``, ``consents``, ``episodes``...) with that id."""
    return next(x for x in doc[kind] if x["id"] == key)


def drop_item(doc: Doc, kind: str, key: str) -> None:
    doc[kind] = [x for x in doc[kind] if x["id"] != key]


def resource(bundle: Res, rtype: str, key: str | None = None) -> Res:
    """The resource of that type (and, given a key, whose local identifier is that document id)."""
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["resourceType"] != rtype:
            continue
        if key is None or any(i.get("value") == key for i in res.get("identifier", [])):
            return res
    raise LookupError(f"no {rtype} {key or ''} in the bundle")


def bundle_of(doc: Doc) -> Res:
    return to_bundle(validate(doc))


# --- rule samples ------------------------------------------------------------------------------------

EXT_TRIGGER = "https://becare.dev/fhir/StructureDefinition/ext-case-management-trigger"
CARE_ROLE = "https://becare.dev/fhir/CodeSystem/care-role"
Sample = tuple[str, str, list[str], Res, list[str]]  # (file, region, expected rule ids, bundle, preload)
DocChange = Callable[[Doc], Any]
BundleChange = Callable[[Res], Any]


def rule_samples() -> list[Sample]:
    out: list[Sample] = []

    def variant(
        rule_id: str,
        fname: str,
        region: str,
        expect: list[str],
        change: DocChange | None = None,
        kind: str = "cc",
        preload: list[str] | None = None,
        after: BundleChange | None = None,
        **kw: Any,
    ) -> None:
        doc = MAKERS[kind](region, **kw)
        if change:
            change(doc)
        bundle = bundle_of(doc)
        if after:
            after(bundle)
        out.append((f"rules/{rule_id}/{fname}.json", region, sorted(expect), bundle, preload or []))

    def roles(party: str, *codes: str) -> DocChange:
        return lambda doc: member(doc, party).update(roles=list(codes))

    # IC-TEAM
    variant("IC-TEAM-1", "breaks", "flanders", ["IC-TEAM-1"], lambda doc: remove_member(doc, "person"))
    variant("IC-TEAM-1", "keeps", "wallonia", [])
    variant(
        "IC-TEAM-2",
        "breaks",
        "brussels",
        ["IC-TEAM-2"],
        lambda doc: [remove_member(doc, p) for p in ("gp", "physio", "social")],
    )
    variant("IC-TEAM-2", "keeps", "brussels", [], kind="cm")

    def outside_member(reference: str) -> BundleChange:
        """A participant whose member is not in the bundle: only its discipline is unknown."""

        def change(bundle: Res) -> None:
            role = {"system": CARE_ROLE, "code": "team-member", "display": "Care team member"}
            resource(bundle, "CareTeam")["participant"].append(
                {"role": [{"coding": [role]}], "member": {"reference": reference}}
            )

        return change

    variant(
        "IC-TEAM-2",
        "breaks-unresolved",
        "brussels",
        ["IC-TEAM-2"],
        lambda doc: [remove_member(doc, p) for p in ("gp", "physio", "social")],
        after=outside_member("https://other-ehr.example/fhir/PractitionerRole/pr-77"),
    )
    variant(
        "IC-TEAM-2",
        "keeps-unresolved",
        "brussels",
        [],
        kind="cm",
        after=outside_member("https://other-ehr.example/fhir/PractitionerRole/pr-77"),
    )
    variant("IC-TEAM-3", "breaks", "wallonia", ["IC-TEAM-3"], lambda doc: remove_member(doc, "carer"))
    variant("IC-TEAM-3", "keeps", "wallonia", [])

    # IC-CC
    def no_coordinator(doc: Doc) -> None:
        episode = doc["episodes"][0]
        episode.update(type="care-coordination")
        del episode["coordinator"]
        member(doc, "nurse")["roles"] = ["team-member"]

    variant("IC-CC-1", "breaks-two", "flanders", ["IC-CC-1"], roles("gp", "care-coordinator"))
    variant("IC-CC-1", "breaks-none", "german-speaking", ["IC-CC-1"], no_coordinator)
    variant("IC-CC-1", "keeps", "german-speaking", [])
    variant("IC-CC-2", "breaks", "flanders", ["IC-CC-2"], lambda doc: remove_member(doc, "nurse"))
    variant("IC-CC-2", "breaks-wallonia", "wallonia", ["IC-CC-2"], lambda doc: remove_member(doc, "nurse"))
    variant("IC-CC-2", "breaks-brussels", "brussels", ["IC-CC-2"], lambda doc: remove_member(doc, "nurse"))

    def external_coordinator_dg(doc: Doc) -> None:
        remove_member(doc, "nurse")
        del doc["region"]  # the region comes from the person's postal code (4700 Eupen)

    variant("IC-CC-2", "keeps-german-speaking", "german-speaking", [], external_coordinator_dg)
    variant(
        "IC-CC-3", "breaks", "brussels", ["IC-CC-3"], lambda doc: drop_item(doc, "consents", "consent-cc")
    )
    variant("IC-CC-3", "keeps", "brussels", [])

    def consent_period(key: str, **period: str) -> BundleChange:
        return lambda bundle: resource(bundle, "Consent", key)["provision"].update(period=period)

    # the agreement ran out the day before the episode began (2024-03-01)
    expired = consent_period("consent-cc", start="2023-03-01", end="2024-02-29")
    variant("IC-CC-3", "breaks-expired", "brussels", ["IC-CC-3"], after=expired)

    def someone_elses(key: str) -> BundleChange:
        return lambda bundle: resource(bundle, "Consent", key).update(
            patient={"reference": "https://other-ehr.example/fhir/Patient/p-12"}
        )

    variant("IC-CC-3", "breaks-other-person", "brussels", ["IC-CC-3"], after=someone_elses("consent-cc"))
    variant(
        "IC-CC-3",
        "keeps-until-episode-end",
        "brussels",
        [],
        start="2023-03-01",
        end="2023-12-31",
        status="finished",
        after=consent_period("consent-cc", start="2023-02-01", end="2023-12-31"),
    )

    def informal_coordinator(remunerated: bool) -> DocChange:
        def change(doc: Doc) -> None:
            episode = doc["episodes"][0]
            episode["coordinator"] = "carer"
            if not remunerated:
                episode["type"] = "care-coordination"
            member(doc, "nurse")["roles"] = ["team-member"]
            member(doc, "carer")["roles"] = ["care-coordinator"]

        return change

    variant("IC-CC-4", "breaks", "flanders", ["IC-CC-4"], informal_coordinator(True))
    variant("IC-CC-4", "keeps-not-remunerated", "flanders", [], informal_coordinator(False))
    variant("IC-CC-5", "breaks", "wallonia", ["IC-CC-5"], lambda doc: doc.update(assessments=[]))
    variant("IC-CC-5", "keeps", "wallonia", [])

    def supporting(rtype: str, key: str) -> BundleChange:
        def change(bundle: Res) -> None:
            url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is resource(bundle, rtype, key))
            resource(bundle, "CarePlan")["supportingInfo"] = [{"reference": url}]

        return change

    variant(
        "IC-CC-5", "breaks-not-an-assessment", "wallonia", ["IC-CC-5"], after=supporting("Goal", "goal-life")
    )

    def questionnaire_response(bundle: Res) -> None:
        """The assessment sent as a QuestionnaireResponse instead of an Observation."""
        entry = next(e for e in bundle["entry"] if e["resource"] is resource(bundle, "Observation"))
        obs = entry["resource"]
        entry["resource"] = {
            "resourceType": "QuestionnaireResponse",
            "identifier": obs["identifier"][0],
            "status": "completed",
            "subject": obs["subject"],
            "authored": obs["effectiveDateTime"],
            "author": obs["performer"][0],
            "item": [{"linkId": "instrument", "text": obs["code"]["text"]}],
        }
        entry["request"] = {"method": "POST", "url": "QuestionnaireResponse"}

    variant("IC-CC-5", "keeps-questionnaire-response", "wallonia", [], after=questionnaire_response)
    variant(
        "IC-CC-6",
        "breaks",
        "german-speaking",
        ["IC-CC-6"],
        lambda doc: item(doc, "tasks", "t-reassessment").update(status="completed"),
    )
    variant(
        "IC-CC-6",
        "breaks-no-date",
        "german-speaking",
        ["IC-CC-6"],
        lambda doc: item(doc, "tasks", "t-reassessment").pop("due"),
    )
    variant("IC-CC-6", "keeps", "german-speaking", [])

    # IC-PLAN: a plan without goals is not a document the mapper makes, so the bundle loses them
    variant(
        "IC-PLAN-1", "breaks", "flanders", ["IC-PLAN-1"], after=lambda b: resource(b, "CarePlan").pop("goal")
    )
    variant("IC-PLAN-1", "keeps", "flanders", [])
    variant(
        "IC-PLAN-2",
        "breaks",
        "brussels",
        ["IC-PLAN-2"],
        lambda doc: item(doc["care_plan"], "goals", "goal-life").update(expressed_by="gp"),
    )

    def representative(doc: Doc) -> None:
        member(doc, "carer")["roles"] = ["informal-caregiver", "representative"]
        item(doc["care_plan"], "goals", "goal-life")["expressed_by"] = "carer"

    variant("IC-PLAN-2", "keeps-representative", "brussels", [], representative)
    variant(
        "IC-PLAN-3",
        "breaks",
        "wallonia",
        ["IC-PLAN-3"],
        lambda doc: item(doc, "tasks", "t-care-3").pop("owner"),
    )

    def cancelled_without_owner(doc: Doc) -> None:
        task = item(doc, "tasks", "t-care-3")
        task.pop("owner")
        task["status"] = "cancelled"

    variant("IC-PLAN-3", "keeps-cancelled", "wallonia", [], cancelled_without_owner)

    # IC-CM
    def cm_in_team(doc: Doc) -> None:
        doc["care_team"]["members"].append({"party": "cm", "roles": ["team-member"]})

    variant("IC-CM-1", "breaks", "flanders", ["IC-CM-1"], cm_in_team, kind="cm")
    variant("IC-CM-1", "keeps", "flanders", [], kind="cm")
    variant(
        "IC-CM-2",
        "breaks",
        "wallonia",
        ["IC-CM-2"],
        lambda doc: drop_item(doc, "consents", "consent-cm"),
        kind="cm",
    )
    variant(
        "IC-CM-2",
        "breaks-expired",
        "wallonia",
        ["IC-CM-2"],
        kind="cm",
        after=consent_period("consent-cm", start="2023-05-01", end="2024-04-30"),
    )
    variant("IC-CM-2", "keeps", "wallonia", [], kind="cm")
    variant(
        "IC-CM-3",
        "breaks",
        "brussels",
        ["IC-CM-3"],
        lambda doc: doc["episodes"][0].update(triggers=[]),
        kind="cm",
    )

    def empty_triggers(bundle: Res) -> None:
        """Trigger extensions without a code of case-management-trigger are no trigger."""
        episode = resource(bundle, "EpisodeOfCare")
        others = [x for x in episode["extension"] if x["url"] != EXT_TRIGGER]
        episode["extension"] = [
            *others,
            {"url": EXT_TRIGGER},
            {"url": EXT_TRIGGER, "valueCodeableConcept": {"text": "complex situation"}},
        ]

    variant("IC-CM-3", "breaks-empty", "brussels", ["IC-CM-3"], kind="cm", after=empty_triggers)
    variant("IC-CM-3", "keeps", "brussels", [], kind="cm")
    variant(
        "IC-CM-4",
        "breaks",
        "german-speaking",
        ["IC-CM-4"],
        lambda doc: item(doc, "tasks", "t-evaluation").pop("due"),
        kind="cm",
    )
    variant("IC-CM-4", "keeps", "german-speaking", [], kind="cm")
    finished = {"start": "2024-01-15", "end": "2024-06-30", "status": "finished", "follow_ups": True}
    variant("IC-CM-5", "breaks", "flanders", ["IC-CM-5"], kind="cm", **finished)
    variant("IC-CM-5", "keeps", "flanders", [], kind="cm", **finished, eval_status="completed")
    variant(
        "IC-CM-6",
        "breaks",
        "wallonia",
        ["IC-CM-6"],
        lambda doc: doc["episodes"][0].pop("requested_by"),
        kind="cm",
    )
    variant("IC-CM-6", "keeps", "wallonia", [], kind="cm")
    no_follow = dict(finished, follow_ups=False, eval_status="completed")
    variant("IC-CM-7", "breaks", "brussels", ["IC-CM-7"], kind="cm", **no_follow)
    variant("IC-CM-7", "keeps", "brussels", [], kind="cm", **finished, eval_status="completed")

    # IC-ROLE-1
    variant(
        "IC-ROLE-1", "breaks", "flanders", ["IC-ROLE-1"], roles("nurse", "care-coordinator", "pathway-expert")
    )
    variant("IC-ROLE-1", "keeps", "flanders", [], roles("gp", "team-member", "pathway-expert"))

    # IC-REG-1: CC and CM at once
    variant("IC-REG-1", "breaks", "german-speaking", ["IC-REG-1"], kind="both")
    variant("IC-REG-1", "keeps-flanders", "flanders", [], kind="both")
    variant("IC-REG-1", "keeps-wallonia", "wallonia", [], kind="both")
    variant("IC-REG-1", "keeps-brussels", "brussels", [], kind="both")

    # IC-REG-2: the case manager later becomes the coordinator (or both at once)
    switch = {
        "manager": "nurse",
        "start": "2023-01-10",
        "end": "2023-12-15",
        "status": "finished",
        "eval_status": "completed",
        "follow_ups": True,
        "cc_start": "2024-03-01",
    }
    overlap = dict(switch, end="2024-06-30")
    variant("IC-REG-2", "breaks", "flanders", ["IC-REG-2"], kind="both", **switch)
    variant("IC-REG-2", "breaks-wallonia-overlap", "wallonia", ["IC-REG-2"], kind="both", **overlap)
    variant("IC-REG-2", "keeps-wallonia-after", "wallonia", [], kind="both", **switch)
    variant("IC-REG-2", "keeps-brussels-switch", "brussels", [], kind="both", **switch)
    variant("IC-REG-2", "breaks-brussels-overlap", "brussels", ["IC-REG-2"], kind="both", **overlap)
    variant("IC-REG-2", "keeps-german-speaking", "german-speaking", [], kind="both", **overlap)

    # IC-ONE: across submissions (the prior bundle is recorded in the registry first)
    def other_coordinator(doc: Doc) -> None:
        doc["episodes"][0].update(id="CC-OTHER-7", coordinator="gp")
        member(doc, "nurse")["roles"] = ["team-member"]
        member(doc, "gp")["roles"] = ["care-coordinator"]

    def other_case_manager(doc: Doc) -> None:
        doc["episodes"][0].update(id="CM-OTHER-7", case_manager="physio")
        item(doc, "tasks", "t-evaluation")["owner"] = "physio"

    variant("IC-ONE-1", "prior", "flanders", [], other_coordinator)
    variant("IC-ONE-1", "breaks", "flanders", ["IC-ONE-1"], preload=["rules/IC-ONE-1/prior.json"])
    variant(
        "IC-ONE-1", "keeps-resubmitted", "flanders", [], preload=["rules/IC-ONE-1/keeps-resubmitted.json"]
    )
    variant("IC-ONE-2", "prior", "wallonia", [], other_case_manager, kind="cm")
    variant("IC-ONE-2", "breaks", "wallonia", ["IC-ONE-2"], kind="cm", preload=["rules/IC-ONE-2/prior.json"])
    variant("IC-ONE-2", "keeps", "wallonia", [], kind="cm")

    # IC-ID-1
    def bad_ssin(doc: Doc) -> None:
        ssin = doc["person"]["ssin"]
        doc["person"]["ssin"] = ssin[:9] + f"{(int(ssin[9:]) + 1) % 100:02d}"

    def legacy(bundle: Res) -> None:  # a system the document cannot name: changed in the bundle
        ident = resource(bundle, "Patient")["identifier"][0]
        ident["system"] = "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/ssin"

    def short_nihdi(doc: Doc) -> None:
        gp = item(doc, "professionals", "gp")
        gp["nihdi"] = gp["nihdi"][:8]

    def bad_cbe(doc: Doc) -> None:
        org = item(doc, "organisations", "org")
        org["cbe"] = org["cbe"][:8] + ("01" if org["cbe"].endswith("00") else "00")

    def born_2003(doc: Doc) -> None:
        doc["person"].update(birth_date="2003-06-05", ssin=make_ssin("2003-06-05", 17))

    variant("IC-ID-1", "breaks-ssin", "flanders", ["IC-ID-1"], bad_ssin)
    variant("IC-ID-1", "breaks-legacy-system", "wallonia", ["IC-ID-1"], after=legacy)
    variant("IC-ID-1", "breaks-nihdi-8", "brussels", ["IC-ID-1"], short_nihdi)
    variant("IC-ID-1", "breaks-cbe", "german-speaking", ["IC-ID-1"], bad_cbe)
    variant("IC-ID-1", "keeps-born-2003", "flanders", [], born_2003)
    return out


# --- valid samples: documents and their bundles ---------------------------------------------------

KINDS = {"care-coordination": "cc", "case-management": "cm"}
DOC_HEADER = """\
# Generated by samples/build_samples.py: a care situation document (mappings/care-situation.schema.json).
# `becare map` of this file gives {json} byte for byte.
"""


class _Dumper(yaml.SafeDumper):
    """Quotes every value that starts like a number (SSIN, CBE, dates, phones): a YAML 1.2 reader
    would otherwise read ``0510102907`` as an integer."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = '"' if value[:1].isdigit() or value[:1] == "+" else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def document_text(doc: Doc, json_name: str) -> str:
    body = yaml.dump(
        doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
    return DOC_HEADER.format(json=json_name) + body


def valid_samples() -> tuple[list[Sample], dict[str, str]]:
    """The valid samples, and the text of the document each one is the mapping of."""
    out: list[Sample] = []
    documents: dict[str, str] = {}
    for region in REGIONS:
        for kind, maker in KINDS.items():
            name = f"valid/{region}-{kind}"
            text = document_text(MAKERS[maker](region), f"{name}.json")
            documents[f"{name}.yaml"] = text
            out.append((f"{name}.json", region, [], to_bundle(load_document(text)), []))
    return out, documents


def manifest(samples: list[Sample]) -> str:
    lines = [
        "# Generated by samples/build_samples.py. Each sample: file, region, the exact rule ids",
        "# check_rulebook raises on it (any severity, with an empty episode registry into which the",
        "# `registry` files were recorded first). A valid sample is the mapping of its `document`;",
        "# `benchmark` marks the 25-entry bundle used by bench/.",
        'version: "1"',
        "samples:",
    ]
    for file, region, expect, bundle, preload in samples:
        lines.append(f"  - file: {file}")
        if file.startswith("valid/"):
            lines.append(f"    document: {file.removesuffix('.json')}.yaml")
        lines.append(f"    region: {region}")
        lines.append(f"    entries: {len(bundle['entry'])}")
        lines.append(f"    expect: [{', '.join(expect)}]")
        if preload:
            lines.append(f"    registry: [{', '.join(preload)}]")
        if file == "valid/flanders-care-coordination.json":
            lines.append("    benchmark: true")
    return "\n".join(lines) + "\n"


def main() -> int:
    valid, documents = valid_samples()
    samples = valid + rule_samples()
    for pattern in ("valid/*.json", "valid/*.yaml", "rules/**/*.json"):
        for old in HERE.glob(pattern):
            old.unlink()
    for rel, text in documents.items():
        (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
        (HERE / rel).write_text(text, encoding="utf-8")
    for file, _region, _expect, bundle, _pre in samples:
        path = HERE / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (HERE / "manifest.yaml").write_text(manifest(samples), encoding="utf-8")
    print(f"wrote {len(samples)} samples and {len(documents)} documents")
    return 0


if __name__ == "__main__":
    sys.exit(main())

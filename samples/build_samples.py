#!/usr/bin/env python3
"""Generate the sample bundles and ``samples/manifest.yaml``.

Every sample starts from one complete, valid coordinated situation per region and changes the
one thing a rule is about, so a breaking sample raises exactly the rule it is named after.
People, numbers and organisations are fictional; SSIN, NIHDI and CBE numbers carry valid check
digits. Deterministic: re-running gives byte-identical files.

Usage: ``python samples/build_samples.py``
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from adapter.rules.identifiers import make_cbe, make_nihdi, make_ssin  # noqa: E402

BASE = "https://becare.dev/fhir"
SD = BASE + "/StructureDefinition/"
CS = BASE + "/CodeSystem/"
BE_CORE = "https://www.ehealth.fgov.be/standards/fhir/core/"
HCPARTY = BE_CORE + "CodeSystem/cd-hcparty"
SSIN = BE_CORE + "NamingSystem/ssin"
NIHDI = BE_CORE + "NamingSystem/nihdi"
CBE = BE_CORE + "NamingSystem/cbe"
NS = uuid.UUID("6f1c7a52-8f0e-4a57-9a43-3f3b9f5f1d10")

Res = dict[str, Any]

REGIONS: dict[str, dict[str, Any]] = {
    "flanders": {
        "city": "Gent", "postal": "9000", "street": "Kortrijksesteenweg 112", "lang": "nl",
        "patient": ("Verhaegen", "Maria", "female", "1941-04-17"), "carer": ("Verhaegen", "Els"),
        "nurse": ("Claeys", "Annelies"), "gp": ("De Smet", "Pieter"), "physio": ("Maes", "Jonas"),
        "social": ("Wouters", "Sofie"), "cm": ("Peeters", "Lotte"), "org": "Thuisverpleging Gent-Zuid",
        "meso": "Zorgraad Gent", "goal": "Zo lang mogelijk thuis blijven wonen en in de tuin werken",
    },
    "wallonia": {
        "city": "Namur", "postal": "5000", "street": "Rue de Fer 21", "lang": "fr",
        "patient": ("Lambert", "Jeanne", "female", "1938-11-02"), "carer": ("Lambert", "Luc"),
        "nurse": ("Dubois", "Camille"), "gp": ("Renard", "Olivier"), "physio": ("Leclercq", "Julien"),
        "social": ("Martin", "Aurélie"), "cm": ("Simon", "Nathalie"), "org": "Soins à domicile Namur",
        "meso": "OLS Namur", "goal": "Rester à la maison et continuer à voir mes petits-enfants",
    },
    "brussels": {
        "city": "Ixelles", "postal": "1050", "street": "Chaussée de Boondael 300", "lang": "fr",
        "patient": ("El Amrani", "Fatima", "female", "1950-01-23"), "carer": ("El Amrani", "Youssef"),
        "nurse": ("Janssens", "Sarah"), "gp": ("Vandenberghe", "Marc"), "physio": ("Rousseau", "Hugo"),
        "social": ("Mertens", "Inès"), "cm": ("Lemaire", "Chloé"), "org": "Maison médicale Ixelles",
        "meso": "Brusano", "goal": "Retrouver assez de mobilité pour aller au marché",
    },
    "german-speaking": {
        "city": "Eupen", "postal": "4700", "street": "Gospertstraße 44", "lang": "de",
        "patient": ("Schröder", "Hubert", "male", "1944-08-09"), "carer": ("Schröder", "Anna"),
        "nurse": ("Kessler", "Monika"), "gp": ("Heinen", "Thomas"), "physio": ("Meyer", "Lukas"),
        "social": ("Lentz", "Julia"), "cm": ("Cremer", "Sabine"), "org": "Häusliche Pflege Eupen",
        "meso": "Netzwerk Integrierte Versorgung Ostbelgien", "goal": "Weiter zu Hause leben und im Chor singen",
    },
}
_SERIAL = {"flanders": 101, "wallonia": 202, "brussels": 303, "german-speaking": 404}


def coding(system: str, code: str, display: str | None = None) -> Res:
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def cc(system: str, code: str, display: str | None = None) -> Res:
    return {"coding": [coding(system, code, display)]}


def narrative(resource: Res) -> Res:
    """A short generated narrative (dom-6 asks every resource for one), placed after resourceType."""
    label = resource.get("title") or resource.get("description") or resource["resourceType"]
    if isinstance(label, dict):
        label = label.get("text", resource["resourceType"])
    label = str(label).replace("&", "&amp;").replace("<", "&lt;")
    div = f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{resource["resourceType"]}: {label}</p></div>'
    rest = {k: v for k, v in resource.items() if k != "resourceType"}
    return {"resourceType": resource["resourceType"], "text": {"status": "generated", "div": div}, **rest}


class Builder:
    """A transaction Bundle with urn:uuid fullUrls; ``add`` returns the reference."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: list[Res] = []
        self.keys: dict[str, str] = {}

    def add(self, key: str, resource: Res) -> str:
        resource = narrative(resource)
        full = f"urn:uuid:{uuid.uuid5(NS, f'{self.name}/{key}')}"
        self.keys[key] = full
        self.entries.append({"fullUrl": full, "resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"]}})
        return full

    def bundle(self) -> Res:
        return {"resourceType": "Bundle", "meta": {"profile": [SD + "becare-bundle"]}, "type": "transaction",
                "timestamp": "2024-09-02T10:00:00+02:00", "entry": self.entries}


def ref(target: str) -> Res:
    return {"reference": target}


def person_name(family: str, given: str) -> list[Res]:
    return [{"use": "official", "family": family, "given": [given]}]


def practitioner(b: Builder, key: str, who: tuple[str, str], nihdi: str | None) -> str:
    res: Res = {"resourceType": "Practitioner", "meta": {"profile": [BE_CORE + "StructureDefinition/be-practitioner"]},
                "active": True, "name": person_name(*who)}
    if nihdi:
        res["identifier"] = [{"system": NIHDI, "value": nihdi}]
    return b.add(key, res)


def role(b: Builder, key: str, prac: str, org: str, code: str, display: str) -> str:
    return b.add(key, {
        "resourceType": "PractitionerRole", "meta": {"profile": [BE_CORE + "StructureDefinition/be-practitionerrole"]},
        "active": True, "practitioner": ref(prac), "organization": ref(org), "code": [cc(HCPARTY, code, display)],
    })


def care_role(code: str) -> list[Res]:
    return [cc(CS + "care-role", code)]


def task(b: Builder, key: str, r: dict[str, str], code: str, *, status: str = "requested", owner: str | None,
         based_on: str, date: str | None, candidate: str, text: str) -> str:
    res: Res = {
        "resourceType": "Task", "meta": {"profile": [SD + "becare-task"]},
        "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/task-candidateList",
                       "valueReference": ref(candidate)}],
        "status": status, "intent": "plan", "code": cc(CS + "task-type", code), "description": text,
        "for": ref(r["patient"]), "basedOn": [ref(based_on)], "authoredOn": "2024-09-01",
    }
    if owner:
        res["owner"] = ref(owner)
    if date:
        res["restriction"] = {"period": {"start": date, "end": date}}
    return b.add(key, res)


def consent(b: Builder, key: str, r: dict[str, str], category: str, actor: str | None, date: str) -> str:
    res: Res = {
        "resourceType": "Consent", "meta": {"profile": [SD + "becare-consent"]}, "status": "active",
        "scope": cc("http://terminology.hl7.org/CodeSystem/consentscope", "treatment"),
        "category": [cc(CS + "consent-category", category)], "patient": ref(r["patient"]),
        "dateTime": date, "performer": [ref(r["patient"])],
        "policy": [{"authority": "https://www.ehealth.fgov.be"}],
    }
    if actor:
        res["organization"] = [ref(r["org"] if category != "case-management" else r.get("meso", r["org"]))]
    return b.add(key, res)


def people(b: Builder, region: str, with_cm: bool) -> dict[str, str]:
    """Patient, informal caregiver, organisations and professionals of one region."""
    d = REGIONS[region]
    n = _SERIAL[region]
    r: dict[str, str] = {}
    family, given, gender, birth = d["patient"]
    r["patient"] = b.add("patient", {
        "resourceType": "Patient", "meta": {"profile": [BE_CORE + "StructureDefinition/be-patient"]},
        "identifier": [{"system": SSIN, "value": make_ssin(birth, n % 997 + 1)}], "active": True,
        "name": person_name(family, given), "gender": gender, "birthDate": birth,
        "address": [{"use": "home", "line": [d["street"]], "city": d["city"], "postalCode": d["postal"],
                     "country": "BE"}],
        "communication": [{"language": cc("urn:ietf:bcp:47", d["lang"]), "preferred": True}],
    })
    r["carer"] = b.add("carer", {
        "resourceType": "RelatedPerson", "active": True, "patient": ref(r["patient"]),
        "relationship": [cc("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "CHILD", "child")],
        "name": person_name(*d["carer"]),
    })
    r["org"] = b.add("org", {
        "resourceType": "Organization", "meta": {"profile": [BE_CORE + "StructureDefinition/be-organization"]},
        "identifier": [{"system": CBE, "value": make_cbe(4_000_000 + n * 1_000 + 17)}], "active": True,
        "type": [cc(HCPARTY, "groupofnurses", "group of nurses")], "name": d["org"],
    })
    r["nurse_p"] = practitioner(b, "nurse", d["nurse"], make_nihdi(400_000 + n, "401"))
    r["nurse"] = role(b, "nurse-role", r["nurse_p"], r["org"], "persnurse", "nurse")
    r["gp_p"] = practitioner(b, "gp", d["gp"], make_nihdi(100_000 + n, "004"))
    r["gp"] = role(b, "gp-role", r["gp_p"], r["org"], "persphysician", "physician")
    r["physio_p"] = practitioner(b, "physio", d["physio"], make_nihdi(500_000 + n, "528"))
    r["physio"] = role(b, "physio-role", r["physio_p"], r["org"], "persphysiotherapist", "physiotherapist")
    if with_cm:
        r["meso"] = b.add("meso", {
            "resourceType": "Organization", "meta": {"profile": [BE_CORE + "StructureDefinition/be-organization"]},
            "identifier": [{"system": CBE, "value": make_cbe(5_000_000 + n * 1_000 + 29)}], "active": True,
            "name": d["meso"],
        })
        r["cm_p"] = practitioner(b, "cm", d["cm"], None)
        r["cm"] = role(b, "cm-role", r["cm_p"], r["meso"], "perssocialworker", "social worker")
    else:
        r["social_p"] = practitioner(b, "social", d["social"], None)
        r["social"] = role(b, "social-role", r["social_p"], r["org"], "perssocialworker", "social worker")
    return r


def region_ext(region: str) -> Res:
    return {"url": SD + "ext-region", "valueCoding": coding(CS + "region", region)}


def care_team(b: Builder, r: dict[str, str], members: list[tuple[str, str]], key: str = "team") -> str:
    return b.add(key, {
        "resourceType": "CareTeam", "meta": {"profile": [SD + "becare-careteam"]}, "status": "active",
        "name": "Care team", "subject": ref(r["patient"]),
        "participant": [{"role": care_role(rl), "member": ref(r[m])} for m, rl in members],
    })


def add_cc(b: Builder, region: str, r: dict[str, str], *, start: str = "2024-03-01", end: str | None = None,
           status: str = "active") -> None:
    """Remunerated care coordination: episode, team, plan with goals, assessment, tasks, consents."""
    d = REGIONS[region]
    r["team"] = care_team(b, r, [("patient", "patient"), ("carer", "informal-caregiver"),
                                 ("nurse", "care-coordinator"), ("gp", "team-member"),
                                 ("physio", "team-member"), ("social", "team-member")])
    period: Res = {"start": start}
    if end:
        period["end"] = end
    r["episode"] = b.add("episode", {
        "resourceType": "EpisodeOfCare", "meta": {"profile": [SD + "becare-episodeofcare"]},
        "extension": [region_ext(region)],
        "identifier": [{"system": f"https://{region}.care.example/episode", "value": f"CC-{_SERIAL[region]}-1"}],
        "status": status, "type": [cc(CS + "episode-type", "care-coordination-remunerated")],
        "patient": ref(r["patient"]), "managingOrganization": ref(r["org"]), "period": period,
        "careManager": ref(r["nurse"]), "team": [ref(r["team"])],
    })
    r["assessment"] = b.add("belrai", {
        "resourceType": "QuestionnaireResponse", "status": "completed", "subject": ref(r["patient"]),
        "authored": "2024-02-20", "author": ref(r["nurse"]),
        "item": [{"linkId": "instrument", "text": "BelRAI Home Care",
                  "answer": [{"valueString": "BelRAI Home Care assessment (interRAI HC)"}]}],
    })
    goals = []
    for key, cat, text, by in (
        ("goal-life", "life-goal", d["goal"], "patient"),
        ("goal-mobility", "care-goal", "Safe transfers and walking indoors with a frame", "physio"),
        ("goal-meds", "care-goal", "Correct daily medication intake", "gp"),
    ):
        goals.append(b.add(key, {
            "resourceType": "Goal", "meta": {"profile": [SD + "becare-goal"]}, "lifecycleStatus": "active",
            "category": [cc(CS + "goal-category", cat)], "description": {"text": text},
            "subject": ref(r["patient"]), "expressedBy": ref(r[by]),
        }))
    r["plan"] = plan = f"urn:uuid:{uuid.uuid5(NS, f'{b.name}/plan')}"
    tasks = [
        task(b, "t-concertation", r, "concertation", owner=r["nurse"], based_on=plan, date="2024-09-16",
             candidate=r["nurse_p"], text="Team concertation with the person and the informal caregiver"),
        task(b, "t-reassessment", r, "reassessment", owner=r["nurse"], based_on=plan, date="2025-03-01",
             candidate=r["nurse_p"], text="Periodic reassessment (BelRAI)"),
        task(b, "t-care-1", r, "care-activity", owner=r["physio"], based_on=plan, date=None,
             candidate=r["physio_p"], text="Physiotherapy twice a week"),
        task(b, "t-care-2", r, "care-activity", owner=r["carer"], based_on=plan, date=None,
             candidate=r["gp_p"], text="Weekly pill organiser filled by the informal caregiver"),
        task(b, "t-care-3", r, "care-activity", owner=r["social"], based_on=plan, date="2024-10-01",
             candidate=r["social_p"], text="Application for home help"),
    ]
    b.add("plan", {
        "resourceType": "CarePlan", "meta": {"profile": [SD + "becare-careplan"]}, "status": "active",
        "intent": "plan", "title": "Care and support plan", "subject": ref(r["patient"]),
        "period": {"start": start}, "author": ref(r["nurse"]), "careTeam": [ref(r["team"])],
        "goal": [ref(g) for g in goals], "supportingInfo": [ref(r["assessment"])],
        "activity": [{"reference": ref(t)} for t in tasks],
    })
    consent(b, "consent-cc", r, "care-coordinator-agreement", r["nurse"], "2024-02-28")
    consent(b, "consent-share", r, "data-sharing", None, "2024-02-28")


def add_cm(b: Builder, region: str, r: dict[str, str], *, team: str | None = None, start: str = "2024-05-01",
           end: str | None = None, status: str = "active", eval_status: str = "requested",
           follow_ups: bool = False, manager: str = "cm", key: str = "cm-episode") -> None:
    """Case management: episode with triggers and referral, consent, evaluation task."""
    if team is None:
        team = r["team"] = care_team(b, r, [("patient", "patient"), ("carer", "informal-caregiver"),
                                            ("nurse", "team-member"), ("gp", "team-member")])
    r["referral"] = b.add("referral", {
        "resourceType": "ServiceRequest", "status": "completed", "intent": "order",
        "code": {"text": "Case management"}, "subject": ref(r["patient"]), "requester": ref(r["gp"]),
        "authoredOn": "2024-04-20",
    })
    period: Res = {"start": start}
    if end:
        period["end"] = end
    r["cm_episode"] = episode = b.add(key, {
        "resourceType": "EpisodeOfCare", "meta": {"profile": [SD + "becare-episodeofcare"]},
        "extension": [
            {"url": SD + "ext-case-management-trigger",
             "valueCodeableConcept": cc(CS + "case-management-trigger", "unstable-complex-situation")},
            {"url": SD + "ext-case-management-trigger",
             "valueCodeableConcept": cc(CS + "case-management-trigger", "no-care-coordination")},
            region_ext(region),
        ],
        "identifier": [{"system": f"https://{region}.care.example/episode", "value": f"CM-{_SERIAL[region]}-1"}],
        "status": status, "type": [cc(CS + "episode-type", "case-management")],
        "patient": ref(r["patient"]), "managingOrganization": ref(r["meso"]), "period": period,
        "referralRequest": [ref(r["referral"])], "careManager": ref(r[manager]), "team": [ref(team)],
    })
    consent(b, "consent-cm", r, "case-management", r[manager], start)
    eval_date = end or "2024-11-01"
    task(b, "t-evaluation", r, "intervention-evaluation", status=eval_status, owner=r[manager],
         based_on=episode, date=eval_date, candidate=r[f"{manager}_p"], text="Evaluation of the results")
    if follow_ups and end:
        import datetime as dt

        e = dt.date.fromisoformat(end)
        for months, days in ((1, 30), (6, 182)):
            task(b, f"t-follow-up-{months}", r, "follow-up", owner=r[manager], based_on=episode,
                 date=(e + dt.timedelta(days=days)).isoformat(), candidate=r[f"{manager}_p"],
                 text=f"Follow-up call {months} month(s) after case management")


# --- the situations --------------------------------------------------------------------------------


def cc_bundle(region: str, name: str) -> tuple[Builder, dict[str, str]]:
    b = Builder(name)
    r = people(b, region, with_cm=False)
    add_cc(b, region, r)
    return b, r


def cm_bundle(region: str, name: str, **kw: Any) -> tuple[Builder, dict[str, str]]:
    b = Builder(name)
    r = people(b, region, with_cm=True)
    add_cm(b, region, r, **kw)
    return b, r


def both_bundle(region: str, name: str, **kw: Any) -> tuple[Builder, dict[str, str]]:
    """Care coordination and case management for one person in one bundle."""
    b = Builder(name)
    r = people(b, region, with_cm=False)
    meso = REGIONS[region]["meso"]
    n = _SERIAL[region]
    r["meso"] = b.add("meso", {
        "resourceType": "Organization", "meta": {"profile": [BE_CORE + "StructureDefinition/be-organization"]},
        "identifier": [{"system": CBE, "value": make_cbe(5_000_000 + n * 1_000 + 29)}], "active": True,
        "name": meso,
    })
    r["cm_p"] = practitioner(b, "cm", REGIONS[region]["cm"], None)
    r["cm"] = role(b, "cm-role", r["cm_p"], r["meso"], "perssocialworker", "social worker")
    cc_kw = {k[3:]: v for k, v in kw.items() if k.startswith("cc_")}
    cm_kw = {k: v for k, v in kw.items() if not k.startswith("cc_")}
    add_cc(b, region, r, **cc_kw)
    add_cm(b, region, r, team=r["team"], **cm_kw)
    return b, r


def res(b: Builder, key: str) -> Res:
    full = b.keys[key]
    return next(e["resource"] for e in b.entries if e["fullUrl"] == full)


def drop(b: Builder, key: str) -> None:
    full = b.keys.pop(key)
    b.entries = [e for e in b.entries if e["fullUrl"] != full]


def participants(b: Builder, member: str) -> list[Res]:
    return [p for p in res(b, "team")["participant"] if p["member"]["reference"] == member]


def remove_participant(b: Builder, member: str) -> None:
    team = res(b, "team")
    team["participant"] = [p for p in team["participant"] if p["member"]["reference"] != member]


# --- rule samples ------------------------------------------------------------------------------------

Sample = tuple[str, str, list[str], Res, list[str]]  # (file, region, expected rule ids, bundle, preload)


def rule_samples() -> list[Sample]:
    out: list[Sample] = []

    def add(rule_id: str, fname: str, region: str, expect: list[str], b: Builder,
            preload: list[str] | None = None) -> None:
        out.append((f"rules/{rule_id}/{fname}.json", region, sorted(expect), b.bundle(), preload or []))

    def variant(rule_id: str, fname: str, region: str, expect: list[str],
                change: Callable[[Builder, dict[str, str]], None], kind: str = "cc",
                preload: list[str] | None = None, **kw: Any) -> None:
        maker = {"cc": cc_bundle, "cm": cm_bundle, "both": both_bundle}[kind]
        b, r = maker(region, f"{rule_id}/{fname}", **kw)
        change(b, r)
        add(rule_id, fname, region, expect, b, preload)

    def same(_b: Builder, _r: dict[str, str]) -> None:
        return None

    # IC-TEAM
    variant("IC-TEAM-1", "breaks", "flanders", ["IC-TEAM-1"], lambda b, r: remove_participant(b, r["patient"]))
    variant("IC-TEAM-1", "keeps", "wallonia", [], same)
    variant("IC-TEAM-2", "breaks", "brussels", ["IC-TEAM-2"], lambda b, r: [
        remove_participant(b, r[k]) for k in ("gp", "physio", "social")])
    variant("IC-TEAM-2", "keeps", "brussels", [], same, kind="cm")
    variant("IC-TEAM-3", "breaks", "wallonia", ["IC-TEAM-3"], lambda b, r: remove_participant(b, r["carer"]))
    variant("IC-TEAM-3", "keeps", "wallonia", [], same)

    # IC-CC
    def second_coordinator(b: Builder, r: dict[str, str]) -> None:
        participants(b, r["gp"])[0]["role"] = care_role("care-coordinator")

    def no_coordinator(b: Builder, r: dict[str, str]) -> None:
        ep = res(b, "episode")
        ep["type"] = [cc(CS + "episode-type", "care-coordination")]
        del ep["careManager"]
        participants(b, r["nurse"])[0]["role"] = care_role("team-member")

    variant("IC-CC-1", "breaks-two", "flanders", ["IC-CC-1"], second_coordinator)
    variant("IC-CC-1", "breaks-none", "german-speaking", ["IC-CC-1"], no_coordinator)
    variant("IC-CC-1", "keeps", "german-speaking", [], same)
    variant("IC-CC-2", "breaks", "flanders", ["IC-CC-2"], lambda b, r: remove_participant(b, r["nurse"]))
    variant("IC-CC-2", "breaks-wallonia", "wallonia", ["IC-CC-2"], lambda b, r: remove_participant(b, r["nurse"]))

    def external_coordinator_dg(b: Builder, r: dict[str, str]) -> None:
        remove_participant(b, r["nurse"])
        res(b, "episode").pop("extension")  # region from the person's postal code (4700 Eupen)

    variant("IC-CC-2", "keeps-german-speaking", "german-speaking", [], external_coordinator_dg)
    variant("IC-CC-3", "breaks", "brussels", ["IC-CC-3"], lambda b, r: drop(b, "consent-cc"))
    variant("IC-CC-3", "keeps", "brussels", [], same)

    def informal_coordinator(remunerated: bool) -> Callable[[Builder, dict[str, str]], None]:
        def change(b: Builder, r: dict[str, str]) -> None:
            ep = res(b, "episode")
            del ep["careManager"]
            if not remunerated:
                ep["type"] = [cc(CS + "episode-type", "care-coordination")]
            participants(b, r["nurse"])[0]["role"] = care_role("team-member")
            participants(b, r["carer"])[0]["role"] = care_role("care-coordinator")
        return change

    variant("IC-CC-4", "breaks", "flanders", ["IC-CC-4"], informal_coordinator(True))
    variant("IC-CC-4", "keeps-not-remunerated", "flanders", [], informal_coordinator(False))
    variant("IC-CC-5", "breaks", "wallonia", ["IC-CC-5"], lambda b, r: res(b, "plan").pop("supportingInfo"))
    variant("IC-CC-5", "keeps", "wallonia", [], same)
    variant("IC-CC-6", "breaks", "german-speaking", ["IC-CC-6"],
            lambda b, r: res(b, "t-reassessment").update(status="completed"))
    variant("IC-CC-6", "keeps", "german-speaking", [], same)

    # IC-PLAN
    variant("IC-PLAN-1", "breaks", "flanders", ["IC-PLAN-1"], lambda b, r: res(b, "plan").pop("goal"))
    variant("IC-PLAN-1", "keeps", "flanders", [], same)
    variant("IC-PLAN-2", "breaks", "brussels", ["IC-PLAN-2"],
            lambda b, r: res(b, "goal-life").update(expressedBy=ref(r["gp"])))

    def representative(b: Builder, r: dict[str, str]) -> None:
        participants(b, r["carer"])[0]["role"] = care_role("informal-caregiver") + care_role("representative")
        res(b, "goal-life")["expressedBy"] = ref(r["carer"])

    variant("IC-PLAN-2", "keeps-representative", "brussels", [], representative)
    variant("IC-PLAN-3", "breaks", "wallonia", ["IC-PLAN-3"], lambda b, r: res(b, "t-care-3").pop("owner"))

    def cancelled_without_owner(b: Builder, r: dict[str, str]) -> None:
        res(b, "t-care-3").pop("owner")
        res(b, "t-care-3")["status"] = "cancelled"

    variant("IC-PLAN-3", "keeps-cancelled", "wallonia", [], cancelled_without_owner)

    # IC-CM
    def cm_in_team(b: Builder, r: dict[str, str]) -> None:
        res(b, "team")["participant"].append({"role": care_role("team-member"), "member": ref(r["cm"])})

    variant("IC-CM-1", "breaks", "flanders", ["IC-CM-1"], cm_in_team, kind="cm")
    variant("IC-CM-1", "keeps", "flanders", [], same, kind="cm")
    variant("IC-CM-2", "breaks", "wallonia", ["IC-CM-2"], lambda b, r: drop(b, "consent-cm"), kind="cm")
    variant("IC-CM-2", "keeps", "wallonia", [], same, kind="cm")

    def no_trigger(b: Builder, r: dict[str, str]) -> None:
        ep = res(b, "cm-episode")
        ep["extension"] = [e for e in ep["extension"] if not e["url"].endswith("ext-case-management-trigger")]

    variant("IC-CM-3", "breaks", "brussels", ["IC-CM-3"], no_trigger, kind="cm")
    variant("IC-CM-3", "keeps", "brussels", [], same, kind="cm")
    variant("IC-CM-4", "breaks", "german-speaking", ["IC-CM-4"],
            lambda b, r: res(b, "t-evaluation").pop("restriction"), kind="cm")
    variant("IC-CM-4", "keeps", "german-speaking", [], same, kind="cm")
    finished = {"start": "2024-01-15", "end": "2024-06-30", "status": "finished", "follow_ups": True}
    variant("IC-CM-5", "breaks", "flanders", ["IC-CM-5"], same, kind="cm", **finished)
    variant("IC-CM-5", "keeps", "flanders", [], same, kind="cm", **finished, eval_status="completed")
    variant("IC-CM-6", "breaks", "wallonia", ["IC-CM-6"], lambda b, r: res(b, "cm-episode").pop("referralRequest"),
            kind="cm")
    variant("IC-CM-6", "keeps", "wallonia", [], same, kind="cm")
    no_follow = dict(finished, follow_ups=False, eval_status="completed")
    variant("IC-CM-7", "breaks", "brussels", ["IC-CM-7"], same, kind="cm", **no_follow)
    variant("IC-CM-7", "keeps", "brussels", [], same, kind="cm", **finished, eval_status="completed")

    # IC-ROLE-1
    variant("IC-ROLE-1", "breaks", "flanders", ["IC-ROLE-1"], lambda b, r: participants(b, r["nurse"])[0].update(
        role=care_role("care-coordinator") + care_role("pathway-expert")))
    variant("IC-ROLE-1", "keeps", "flanders", [], lambda b, r: participants(b, r["gp"])[0].update(
        role=care_role("team-member") + care_role("pathway-expert")))

    # IC-REG-1: CC and CM at once
    variant("IC-REG-1", "breaks", "german-speaking", ["IC-REG-1"], same, kind="both")
    variant("IC-REG-1", "keeps-flanders", "flanders", [], same, kind="both")

    # IC-REG-2: the case manager later becomes the coordinator (or both at once)
    switch = {"manager": "nurse", "start": "2023-01-10", "end": "2023-12-15", "status": "finished",
              "eval_status": "completed", "follow_ups": True, "cc_start": "2024-03-01"}
    overlap = dict(switch, end="2024-06-30")
    variant("IC-REG-2", "breaks", "flanders", ["IC-REG-2"], same, kind="both", **switch)
    variant("IC-REG-2", "breaks-wallonia-overlap", "wallonia", ["IC-REG-2"], same, kind="both", **overlap)
    variant("IC-REG-2", "keeps-wallonia-after", "wallonia", [], same, kind="both", **switch)
    variant("IC-REG-2", "keeps-brussels-switch", "brussels", [], same, kind="both", **switch)
    variant("IC-REG-2", "breaks-brussels-overlap", "brussels", ["IC-REG-2"], same, kind="both", **overlap)
    variant("IC-REG-2", "keeps-german-speaking", "german-speaking", [], same, kind="both", **overlap)

    # IC-ONE: across submissions (the prior bundle is recorded in the registry first)
    def other_episode(prefix: str) -> Callable[[Builder, dict[str, str]], None]:
        def change(b: Builder, r: dict[str, str]) -> None:
            key = "episode" if prefix == "CC" else "cm-episode"
            res(b, key)["identifier"][0]["value"] = f"{prefix}-OTHER-7"
            if prefix == "CC":
                res(b, key)["careManager"] = ref(r["gp"])
                participants(b, r["nurse"])[0]["role"] = care_role("team-member")
                participants(b, r["gp"])[0]["role"] = care_role("care-coordinator")
            else:
                res(b, key)["careManager"] = ref(r["physio"])
                res(b, "t-evaluation")["owner"] = ref(r["physio"])
        return change

    variant("IC-ONE-1", "prior", "flanders", [], other_episode("CC"))
    variant("IC-ONE-1", "breaks", "flanders", ["IC-ONE-1"], same, preload=["rules/IC-ONE-1/prior.json"])
    variant("IC-ONE-1", "keeps-resubmitted", "flanders", [], same, preload=["rules/IC-ONE-1/keeps-resubmitted.json"])
    variant("IC-ONE-2", "prior", "wallonia", [], other_episode("CM"), kind="cm")
    variant("IC-ONE-2", "breaks", "wallonia", ["IC-ONE-2"], same, kind="cm", preload=["rules/IC-ONE-2/prior.json"])
    variant("IC-ONE-2", "keeps", "wallonia", [], same, kind="cm")

    # IC-ID-1
    def bad_ssin(b: Builder, r: dict[str, str]) -> None:
        ident = res(b, "patient")["identifier"][0]
        ident["value"] = ident["value"][:9] + f"{(int(ident['value'][9:]) + 1) % 100:02d}"

    def legacy(b: Builder, r: dict[str, str]) -> None:
        res(b, "patient")["identifier"][0]["system"] = "https://www.ehealth.fgov.be/standards/fhir/NamingSystem/ssin"

    def short_nihdi(b: Builder, r: dict[str, str]) -> None:
        res(b, "gp")["identifier"][0]["value"] = res(b, "gp")["identifier"][0]["value"][:8]

    def bad_cbe(b: Builder, r: dict[str, str]) -> None:
        ident = res(b, "org")["identifier"][0]
        ident["value"] = ident["value"][:8] + "00" if not ident["value"].endswith("00") else ident["value"][:8] + "01"

    def born_2003(b: Builder, r: dict[str, str]) -> None:
        res(b, "patient")["birthDate"] = "2003-06-05"
        res(b, "patient")["identifier"][0]["value"] = make_ssin("2003-06-05", 17)

    variant("IC-ID-1", "breaks-ssin", "flanders", ["IC-ID-1"], bad_ssin)
    variant("IC-ID-1", "breaks-legacy-system", "wallonia", ["IC-ID-1"], legacy)
    variant("IC-ID-1", "breaks-nihdi-8", "brussels", ["IC-ID-1"], short_nihdi)
    variant("IC-ID-1", "breaks-cbe", "german-speaking", ["IC-ID-1"], bad_cbe)
    variant("IC-ID-1", "keeps-born-2003", "flanders", [], born_2003)
    return out


def valid_samples() -> list[Sample]:
    out: list[Sample] = []
    for region in REGIONS:
        b, _ = cc_bundle(region, f"valid/{region}-cc")
        out.append((f"valid/{region}-care-coordination.json", region, [], b.bundle(), []))
        b, _ = cm_bundle(region, f"valid/{region}-cm")
        out.append((f"valid/{region}-case-management.json", region, [], b.bundle(), []))
    return out


def manifest(samples: list[Sample]) -> str:
    lines = [
        "# Generated by samples/build_samples.py. Each sample: file, region, the exact rule ids",
        "# check_rulebook raises on it (any severity, with an empty episode registry into which the",
        "# `registry` files were recorded first). `benchmark` marks the 25-entry bundle used by bench/.",
        'version: "1"',
        "samples:",
    ]
    for file, region, expect, bundle, preload in samples:
        lines.append(f"  - file: {file}")
        lines.append(f"    region: {region}")
        lines.append(f"    entries: {len(bundle['entry'])}")
        lines.append(f"    expect: [{', '.join(expect)}]")
        if preload:
            lines.append(f"    registry: [{', '.join(preload)}]")
        if file == "valid/flanders-care-coordination.json":
            lines.append("    benchmark: true")
    return "\n".join(lines) + "\n"


def main() -> int:
    samples = valid_samples() + rule_samples()
    for sub in ("valid", "rules"):
        for old in (HERE / sub).rglob("*.json") if (HERE / sub).exists() else ():
            old.unlink()
    for file, _region, _expect, bundle, _pre in samples:
        path = HERE / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(bundle, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (HERE / "manifest.yaml").write_text(manifest(samples), encoding="utf-8")
    print(f"wrote {len(samples)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())


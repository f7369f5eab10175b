"""Care situation document -> becare transaction Bundle (pure).

Where each concept sits follows CONTRACT sections 2-3: the episode type in EpisodeOfCare.type,
the professional coordinator or case manager in EpisodeOfCare.careManager, care roles in
CareTeam.participant.role, goal categories in Goal.category, task types in Task.code, consent
categories in Consent.category. Every reference is a ``urn:uuid:`` fullUrl of another entry, and
each resource with a business identifier is sent as a conditional update on it, so sending the
same document twice updates rather than duplicates. Every resource carries a short generated
narrative (``adapter.mapping.narrative``) built from the same document fields.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from adapter.mapping.ids import document_namespace, full_url
from adapter.mapping.model import (
    PERSON,
    Address,
    Assessment,
    CarePlan,
    CareSituation,
    Consent,
    Episode,
    Goal,
    Name,
    Organisation,
    Professional,
    RelatedParty,
    Task,
)
from adapter.mapping.narrative import full_name, sentence, span, with_text
from adapter.mapping.tables import Tables, tables

Resource = dict[str, Any]


def to_bundle(doc: CareSituation, *, table: Tables | None = None) -> Resource:
    """Map a checked document (see ``adapter.mapping.document``) to a transaction Bundle."""
    return _Mapper(doc, table or tables()).bundle()


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def conditional_url(resource_type: str, system: str, value: str) -> str:
    return f"{resource_type}?identifier={quote(f'{system}|{value}', safe=':/')}"


class _Mapper:
    def __init__(self, doc: CareSituation, table: Tables) -> None:
        self.doc = doc
        self.t = table
        self.ns: uuid.UUID = document_namespace(doc.model_dump(mode="json"))
        self.entries: list[Resource] = []
        self._urls: dict[tuple[str, str], str] = {}
        self.kinds: dict[str, tuple[str, str]] = {PERSON: ("Patient", PERSON)}
        if doc.representative:
            self.kinds[doc.representative.id] = ("RelatedPerson", doc.representative.id)
        for ic in doc.informal_caregivers:
            self.kinds[ic.id] = ("RelatedPerson", ic.id)
        for org in doc.organisations:
            self.kinds[org.id] = ("Organization", org.id)
        for pro in doc.professionals:
            self.kinds[pro.id] = ("PractitionerRole", pro.id)
        self.professionals = {p.id: p for p in doc.professionals}

    # -- helpers ---------------------------------------------------------------------------
    def url(self, resource_type: str, key: str) -> str:
        found = self._urls.get((resource_type, key))
        if found is None:
            found = self._urls[(resource_type, key)] = full_url(self.ns, resource_type, key)
        return found

    def ref(self, party: str) -> dict[str, str]:
        resource_type, key = self.kinds[party]
        return {"reference": self.url(resource_type, key)}

    def person_ref(self, party: str) -> dict[str, str]:
        """The party as a person, not in a role: PractitionerRole -> its Practitioner (the
        task candidate list only admits people and organisations)."""
        pro = self.professionals.get(party)
        if pro is not None:
            return {"reference": self.url("Practitioner", practitioner_key(pro))}
        return self.ref(party)

    def local_id(self, key: str) -> dict[str, str]:
        return {"system": self.doc.identifier_system, "value": key}

    def meta(self, resource_type: str) -> dict[str, list[str]]:
        return {"profile": [self.t.profile(resource_type)]}

    def add(self, resource: Resource, key: str, text: str, request: dict[str, str] | None = None) -> None:
        """Append the entry; ``text`` is the one-sentence narrative of the resource."""
        rtype = resource["resourceType"]
        resource = with_text(resource, text)
        if request is None:
            ident = resource.get("identifier", [{}])[0]
            if ident.get("system") and ident.get("value"):
                request = {"method": "PUT", "url": conditional_url(rtype, ident["system"], ident["value"])}
            else:
                request = {"method": "POST", "url": rtype}
        self.entries.append({"fullUrl": self.url(rtype, key), "resource": resource, "request": request})

    # -- the bundle --------------------------------------------------------------------------
    def bundle(self) -> Resource:
        doc = self.doc
        self.patient()
        for party in ([doc.representative] if doc.representative else []) + list(doc.informal_caregivers):
            self.related(party, representative=party is doc.representative)
        for org in doc.organisations:
            self.organisation(org)
        seen: set[str] = set()
        for pro in doc.professionals:
            if practitioner_key(pro) not in seen:
                seen.add(practitioner_key(pro))
                self.practitioner(pro)
        for pro in doc.professionals:
            self.practitioner_role(pro)
        self.care_team()
        for episode in doc.episodes:
            self.episode(episode)
        for consent in doc.consents:
            self.consent(consent)
        for assessment in doc.assessments:
            self.assessment(assessment)
        if doc.care_plan:
            self.care_plan(doc.care_plan)
            for goal in doc.care_plan.goals:
                self.goal(goal)
        for task in doc.tasks:
            self.task(task)
        return {
            "resourceType": "Bundle",
            "meta": self.meta("Bundle"),
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{self.ns}"},
            "type": "transaction",
            "entry": self.entries,
        }

    # -- parties -------------------------------------------------------------------------------
    def patient(self) -> None:
        person = self.doc.person
        ssin_system = self.t.identifier_system("ssin")
        res: Resource = {
            "resourceType": "Patient",
            "meta": self.meta("Patient"),
            "identifier": [{"system": ssin_system, "value": person.ssin}],
            "name": [human_name(person.name)],
        }
        if person.phone:
            res["telecom"] = [{"system": "phone", "value": person.phone}]
        if person.gender:
            res["gender"] = person.gender
        if person.birth_date:
            res["birthDate"] = person.birth_date.isoformat()
        if person.address:
            res["address"] = [address(person.address)]
        if person.language:
            res["communication"] = [
                {
                    "language": {"coding": [coding("urn:ietf:bcp:47", person.language)]},
                    "preferred": True,
                }
            ]
        self.add(res, PERSON, sentence(f"Person receiving care: {full_name(person.name)}"))

    def related(self, party: RelatedParty, *, representative: bool) -> None:
        role = "representative" if representative else "informal-caregiver"
        rel = self.t.relationships[party.relationship]
        identifiers = [self.local_id(party.id)]
        if party.ssin:
            identifiers.append({"system": self.t.identifier_system("ssin"), "value": party.ssin})
        res: Resource = {
            "resourceType": "RelatedPerson",
            "meta": self.meta("RelatedPerson"),
            "identifier": identifiers,
            "patient": self.ref(PERSON),
            "relationship": [
                {"coding": [coding(self.t.system("roles"), role, self.t.roles[role]["display"])]},
                {"coding": [coding(self.t.system("relationships"), rel["code"], rel["display"])]},
            ],
            "name": [human_name(party.name)],
        }
        if party.phone:
            res["telecom"] = [{"system": "phone", "value": party.phone}]
        label = self.t.roles[role]["display"]
        self.add(res, party.id, f"{label} of the person: {full_name(party.name)} ({rel['display']})")

    def organisation(self, org: Organisation) -> None:
        identifiers = [self.local_id(org.id)]
        if org.cbe:
            identifiers.append({"system": self.t.identifier_system("cbe"), "value": org.cbe})
        if org.nihdi:
            identifiers.append({"system": self.t.identifier_system("nihdi"), "value": org.nihdi})
        res = {
            "resourceType": "Organization",
            "meta": self.meta("Organization"),
            "identifier": identifiers,
            "name": org.name,
        }
        self.add(res, org.id, f"Organisation: {org.name}")

    def practitioner(self, pro: Professional) -> None:
        res: Resource = {"resourceType": "Practitioner", "meta": self.meta("Practitioner")}
        if pro.nihdi:
            res["identifier"] = [{"system": self.t.identifier_system("nihdi"), "value": pro.nihdi}]
        res["name"] = [human_name(pro.name)]
        self.add(res, practitioner_key(pro), f"Practitioner: {full_name(pro.name)}")

    def practitioner_role(self, pro: Professional) -> None:
        prof = self.t.professions[pro.profession]
        res: Resource = {
            "resourceType": "PractitionerRole",
            "meta": self.meta("PractitionerRole"),
            "identifier": [self.local_id(pro.id)],
            "practitioner": {"reference": self.url("Practitioner", practitioner_key(pro))},
        }
        if pro.organisation:
            res["organization"] = self.ref(pro.organisation)
        res["code"] = [{"coding": [coding(self.t.system("professions"), pro.profession, prof["display"])]}]
        telecom = []
        if pro.phone:
            telecom.append({"system": "phone", "value": pro.phone})
        if pro.email:
            telecom.append({"system": "email", "value": pro.email})
        if telecom:
            res["telecom"] = telecom
        org = next((o.name for o in self.doc.organisations if o.id == pro.organisation), None)
        self.add(
            res, pro.id, sentence(f"{full_name(pro.name)}, {prof['display']}", f"at {org}" if org else None)
        )

    # -- coordination ----------------------------------------------------------------------------
    def role_concept(self, role: str) -> dict[str, Any]:
        return {"coding": [coding(self.t.system("roles"), role, self.t.roles[role]["display"])]}

    def care_team(self) -> None:
        team = self.doc.care_team
        res: Resource = {
            "resourceType": "CareTeam",
            "meta": self.meta("CareTeam"),
            "identifier": [self.local_id(team.id)],
            "status": "active",
        }
        if team.name:
            res["name"] = team.name
        res["subject"] = self.ref(PERSON)
        if team.members:
            res["participant"] = [
                {"role": [self.role_concept(r) for r in m.roles], "member": self.ref(m.party)}
                for m in team.members
            ]
        self.add(res, team.id, f"Care team: {team.name}" if team.name else "Care team of the person")

    def episode(self, ep: Episode) -> None:
        etype = self.t.episode_types[ep.type]
        extensions: list[Resource] = []
        if self.doc.region:
            region = self.t.regions[self.doc.region]
            extensions.append(
                {
                    "url": self.t.extension("region"),
                    "valueCoding": coding(self.t.system("regions"), self.doc.region, region["display"]),
                }
            )
        for trig in ep.triggers:
            extensions.append(
                {
                    "url": self.t.extension("case_management_trigger"),
                    "valueCodeableConcept": {
                        "coding": [coding(self.t.system("triggers"), trig, self.t.triggers[trig]["display"])]
                    },
                }
            )
        res: Resource = {"resourceType": "EpisodeOfCare", "meta": self.meta("EpisodeOfCare")}
        if extensions:
            res["extension"] = extensions
        res["identifier"] = [self.local_id(ep.id)]
        res["status"] = ep.status
        res["type"] = [{"coding": [coding(self.t.system("episodes"), ep.type, etype["display"])]}]
        res["patient"] = self.ref(PERSON)
        if ep.managing_organisation:
            res["managingOrganization"] = self.ref(ep.managing_organisation)
        period = {"start": ep.period.start.isoformat()}
        if ep.period.end:
            period["end"] = ep.period.end.isoformat()
        res["period"] = period
        if ep.requested_by:
            res["referralRequest"] = [{"reference": self.url("ServiceRequest", ep.id)}]
        lead = ep.case_manager or ep.coordinator
        if lead is not None and lead in self.professionals:
            res["careManager"] = self.ref(lead)
        res["team"] = [self.ref_team()]
        end = ep.period.end.isoformat() if ep.period.end else None
        self.add(res, ep.id, sentence(etype["display"], ep.status, span(period["start"], end)))
        if ep.requested_by:
            self.referral(ep)

    def ref_team(self) -> dict[str, str]:
        return {"reference": self.url("CareTeam", self.doc.care_team.id)}

    def referral(self, ep: Episode) -> None:
        """Who asked for the episode: EpisodeOfCare.referralRequest is a ServiceRequest."""
        assert ep.requested_by is not None
        etype = self.t.episode_types[ep.type]
        res = {
            "resourceType": "ServiceRequest",
            "meta": self.meta("ServiceRequest"),
            "status": "active" if ep.status in ("planned", "waitlist", "active", "onhold") else "completed",
            "intent": "order",
            "code": {"coding": [coding(self.t.system("episodes"), ep.type, etype["display"])]},
            "subject": self.ref(PERSON),
            "authoredOn": ep.period.start.isoformat(),
            "requester": self.ref(ep.requested_by),
        }
        self.add(
            res, ep.id, f"Request for {etype['display'].lower()}", {"method": "POST", "url": "ServiceRequest"}
        )

    def consent(self, consent: Consent) -> None:
        table = self.t.raw["consents"]
        cat = self.t.consent_categories[consent.category]
        res: Resource = {
            "resourceType": "Consent",
            "meta": self.meta("Consent"),
            "identifier": [self.local_id(consent.id)],
            "status": consent.status,
            "scope": {"coding": [dict(table["scope"])]},
            "category": [{"coding": [coding(self.t.system("consents"), consent.category, cat["display"])]}],
            "patient": self.ref(PERSON),
            "dateTime": consent.date.isoformat(),
            "performer": [self.ref(consent.given_by)],
            "policy": [{"uri": table["policy_uri"]}],
        }
        provision: Resource = {"type": "permit", "period": {"start": consent.date.isoformat()}}
        if consent.grantee:
            provision["actor"] = [
                {
                    "role": {
                        "coding": [
                            coding(
                                "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "IRCP",
                                "information recipient",
                            )
                        ]
                    },
                    "reference": self.ref(consent.grantee),
                }
            ]
        res["provision"] = provision
        self.add(res, consent.id, sentence(cat["display"], consent.status, f"given on {res['dateTime']}"))

    def assessment(self, a: Assessment) -> None:
        inst = self.t.instruments[a.instrument]
        code: Resource = {}
        if inst.get("code"):
            code["coding"] = [coding(inst["system"], inst["code"], inst["text"])]
        code["text"] = inst["text"]
        identifiers = [self.local_id(a.id)]
        if a.evaluation_id:
            identifiers.append(
                {"system": self.t.raw["assessments"]["belrai_evaluation_system"], "value": a.evaluation_id}
            )
        res: Resource = {
            "resourceType": "Observation",
            "meta": self.meta("Observation"),
            "identifier": identifiers,
            "status": "final",
            "code": code,
            "subject": self.ref(PERSON),
            "effectiveDateTime": a.date.isoformat(),
        }
        if a.performer:
            res["performer"] = [self.ref(a.performer)]
        if a.score is not None:
            res["valueQuantity"] = {
                "value": int(a.score) if a.score.is_integer() and abs(a.score) < 1e15 else a.score
            }
        score = f"score {res['valueQuantity']['value']}" if a.score is not None else None
        self.add(res, a.id, sentence(inst["text"], f"on {res['effectiveDateTime']}", score))

    def care_plan(self, plan: CarePlan) -> None:
        res: Resource = {
            "resourceType": "CarePlan",
            "meta": self.meta("CarePlan"),
            "identifier": [self.local_id(plan.id)],
            "status": plan.status,
            "intent": "plan",
        }
        if plan.title:
            res["title"] = plan.title
        res["subject"] = self.ref(PERSON)
        if plan.period:
            period = {"start": plan.period.start.isoformat()}
            if plan.period.end:
                period["end"] = plan.period.end.isoformat()
            res["period"] = period
        if plan.author:
            res["author"] = self.ref(plan.author)
        res["careTeam"] = [self.ref_team()]
        if self.doc.assessments:
            res["supportingInfo"] = [
                {"reference": self.url("Observation", a.id)} for a in self.doc.assessments
            ]
        if plan.goals:
            res["goal"] = [{"reference": self.url("Goal", g.id)} for g in plan.goals]
        if self.doc.tasks:
            res["activity"] = [{"reference": {"reference": self.url("Task", t.id)}} for t in self.doc.tasks]
        self.add(res, plan.id, f"Care plan: {plan.title}" if plan.title else "Care and support plan")

    def goal(self, goal: Goal) -> None:
        cat = self.t.goal_categories[goal.category]
        res: Resource = {
            "resourceType": "Goal",
            "meta": self.meta("Goal"),
            "identifier": [self.local_id(goal.id)],
            "lifecycleStatus": goal.status,
            "category": [{"coding": [coding(self.t.system("goals"), goal.category, cat["display"])]}],
            "description": {"text": goal.description},
            "subject": self.ref(PERSON),
        }
        if goal.target_date:
            res["target"] = [{"dueDate": goal.target_date.isoformat()}]
        if goal.expressed_by:
            res["expressedBy"] = self.ref(goal.expressed_by)
        self.add(res, goal.id, f"{cat['display']}: {goal.description}")

    def task(self, task: Task) -> None:
        ttype = self.t.task_types[task.type]
        if task.owner:
            candidates = [self.person_ref(task.owner)]
        else:
            candidates = []
            for member in self.doc.care_team.members:
                ref = self.person_ref(member.party)
                if ref not in candidates:
                    candidates.append(ref)
            candidates = candidates or [self.ref(PERSON)]
        res: Resource = {
            "resourceType": "Task",
            "meta": self.meta("Task"),
            "extension": [
                {"url": self.t.extension("task_candidate_list"), "valueReference": c} for c in candidates
            ],
            "identifier": [self.local_id(task.id)],
        }
        if self.doc.care_plan:
            res["basedOn"] = [{"reference": self.url("CarePlan", self.doc.care_plan.id)}]
        res["status"] = self.t.task_statuses[task.status]["fhir"]
        res["intent"] = "plan"
        res["code"] = {"coding": [coding(self.t.system("tasks"), task.type, ttype["display"])]}
        if task.description:
            res["description"] = task.description
        if task.goal:
            res["focus"] = {"reference": self.url("Goal", task.goal)}
        res["for"] = self.ref(PERSON)
        if task.owner:
            res["owner"] = self.ref(task.owner)
        if task.due:
            res["restriction"] = {"period": {"end": task.due.isoformat()}}
        due = f"due {task.due.isoformat()}" if task.due else None
        self.add(res, task.id, sentence(f"{ttype['display']}: {task.description or task.status}", due))


def practitioner_key(pro: Professional) -> str:
    """One Practitioner per NIHDI number (a person in two roles is one person); without one,
    the professional is their own person."""
    return pro.nihdi or f"id:{pro.id}"


def human_name(name: Name) -> dict[str, Any]:
    out: dict[str, Any] = {"family": name.family}
    if name.given:
        out["given"] = list(name.given)
    if name.prefix:
        out["prefix"] = list(name.prefix)
    return out


def address(addr: Address) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if addr.lines:
        out["line"] = list(addr.lines)
    if addr.city:
        out["city"] = addr.city
    out["postalCode"] = addr.postal_code
    out["country"] = addr.country
    return out

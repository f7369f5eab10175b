"""becare Bundle -> care situation document (pure).

The inverse of ``forward``: a system that does not speak FHIR can read what it is sent. It
reads the concepts where CONTRACT sections 2-3 put them and ignores what it does not know, so it
also reads bundles made by other tools. Run ``normalise`` first on vendor input: this module
expects current identifier systems and coded roles. On what ``forward`` emits it is a complete
inverse: mapping the document read back gives an equal bundle (the narrative and the fullUrls
are functions of the document, so they need no reading).
"""

from __future__ import annotations

from typing import Any

from adapter.mapping.document import DocumentError, DocumentProblem, validate
from adapter.mapping.model import PERSON, CareSituation
from adapter.mapping.tables import Tables, tables

Resource = dict[str, Any]

FALLBACK_SYSTEM = "urn:becare:local-id"


def to_document(bundle: Resource, *, table: Tables | None = None) -> CareSituation:
    """Map a Bundle back; DocumentError when it does not describe one coordinated situation."""
    return validate(_Reader(bundle, table or tables()).document())


class _Reader:
    def __init__(self, bundle: Resource, table: Tables) -> None:
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise DocumentError([DocumentProblem("", "the input is not a FHIR Bundle")])
        self.t = table
        self.resources: list[tuple[str | None, Resource]] = []
        self.by_ref: dict[str, Resource] = {}
        for entry in bundle.get("entry") or []:
            res = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(res, dict) or "resourceType" not in res:
                continue
            url = entry.get("fullUrl")
            self.resources.append((url, res))
            if url:
                self.by_ref[url] = res
            if res.get("id"):
                self.by_ref[f"{res['resourceType']}/{res['id']}"] = res
                if url and "/" in url and not url.startswith("urn:"):
                    self.by_ref[url] = res
        self.fullurl = {id(res): url for url, res in self.resources}
        self.system = self._identifier_system()
        self.keys: dict[int, str] = {}

    # -- lookups ------------------------------------------------------------------------------
    def all(self, resource_type: str) -> list[Resource]:
        return [r for _, r in self.resources if r["resourceType"] == resource_type]

    def resolve(self, ref: Any) -> Resource | None:
        if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
            return None
        target = ref["reference"]
        if target in self.by_ref:
            return self.by_ref[target]
        tail = "/".join(target.rstrip("/").split("/")[-2:])
        return self.by_ref.get(tail)

    def _identifier_system(self) -> str:
        for rtype in ("EpisodeOfCare", "CareTeam", "CarePlan", "Task", "Goal"):
            for res in self.all(rtype):
                for ident in res.get("identifier") or []:
                    if ident.get("system") and ident.get("value"):
                        return str(ident["system"])
        return FALLBACK_SYSTEM

    def key(self, res: Resource) -> str:
        """The document id of a resource: its identifier in the sending system, else its id."""
        if id(res) in self.keys:
            return self.keys[id(res)]
        if res["resourceType"] == "Patient":
            return PERSON
        key = None
        for ident in res.get("identifier") or []:
            if ident.get("system") == self.system and ident.get("value"):
                key = str(ident["value"])
                break
        if key is None:
            url = self.fullurl.get(id(res)) or ""
            key = res.get("id") or url.rsplit(":", 1)[-1].rsplit("/", 1)[-1] or "unnamed"
        self.keys[id(res)] = key
        return key

    def party(self, ref: Any) -> str | None:
        res = self.resolve(ref)
        if res is None:
            return None
        if res["resourceType"] == "Practitioner":
            # a party named as a Practitioner: the professional with that NIHDI number
            nihdi = _identifier(res, self.t.identifier_system("nihdi"))
            for role in self.all("PractitionerRole"):
                if self.resolve(role.get("practitioner")) is res or (
                    nihdi
                    and _identifier(
                        self.resolve(role.get("practitioner")) or {}, self.t.identifier_system("nihdi")
                    )
                    == nihdi
                ):
                    return self.key(role)
        return self.key(res)

    def code(self, concept: Any, table: str) -> str | None:
        system = self.t.system(table)
        concepts = concept if isinstance(concept, list) else [concept]
        for cc in concepts:
            for c in (cc or {}).get("coding") or []:
                if c.get("system") == system and c.get("code"):
                    return str(c["code"])
        return None

    # -- the document ------------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        patients = self.all("Patient")
        if len(patients) != 1:
            raise DocumentError(
                [DocumentProblem("", f"the bundle must hold exactly one Patient, not {len(patients)}")]
            )
        doc: dict[str, Any] = {"version": 1, "identifier_system": self.system}
        episodes = self.all("EpisodeOfCare")
        for ep in episodes:
            region = _extension(ep, self.t.extension("region"))
            if region and region.get("valueCoding", {}).get("code"):
                doc["region"] = region["valueCoding"]["code"]
                break
        doc["person"] = self.person(patients[0])
        rep, informal = self.related()
        if rep is not None:
            doc["representative"] = rep
        doc["informal_caregivers"] = informal
        doc["organisations"] = [self.organisation(o) for o in self.all("Organization")]
        doc["professionals"] = [self.professional(r) for r in self.all("PractitionerRole")]
        teams = self.all("CareTeam")
        team = self._main_team(episodes, teams)
        doc["care_team"] = self.care_team(team)
        doc["episodes"] = [self.episode(e, team) for e in episodes]
        plans = self.all("CarePlan")
        if plans:
            doc["care_plan"] = self.care_plan(plans[0])
        doc["tasks"] = [self.task(t) for t in self.all("Task")]
        doc["consents"] = [self.consent(c) for c in self.all("Consent")]
        doc["assessments"] = [self.assessment(o) for o in self.all("Observation")] + [
            self.questionnaire(q) for q in self.all("QuestionnaireResponse")
        ]
        return doc

    def _main_team(self, episodes: list[Resource], teams: list[Resource]) -> Resource | None:
        for ep in episodes:
            for ref in ep.get("team") or []:
                res = self.resolve(ref)
                if res is not None:
                    return res
        return teams[0] if teams else None

    def person(self, res: Resource) -> dict[str, Any]:
        out: dict[str, Any] = {}
        ssin = _identifier(res, self.t.identifier_system("ssin"))
        if ssin is not None:
            out["ssin"] = ssin
        out["name"] = _name(res)
        for key, field in (("gender", "gender"), ("birth_date", "birthDate")):
            if res.get(field):
                out[key] = res[field]
        if res.get("address"):
            out["address"] = _address(res["address"][0])
        for comm in res.get("communication") or []:
            for c in (comm.get("language") or {}).get("coding") or []:
                if c.get("code"):
                    out["language"] = str(c["code"]).split("-")[0].lower()
                    break
            if "language" in out:
                break
        phone = _telecom(res, "phone")
        if phone:
            out["phone"] = phone
        return out

    def related(self) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        rep = None
        informal = []
        reverse_rel = {row["code"]: key for key, row in self.t.relationships.items()}
        for res in self.all("RelatedPerson"):
            role = self.code(res.get("relationship") or [], "roles")
            out: dict[str, Any] = {"id": self.key(res), "name": _name(res)}
            for cc in res.get("relationship") or []:
                for c in cc.get("coding") or []:
                    if c.get("system") == self.t.system("relationships") and c.get("code") in reverse_rel:
                        out["relationship"] = reverse_rel[c["code"]]
            ssin = _identifier(res, self.t.identifier_system("ssin"))
            if ssin:
                out["ssin"] = ssin
            phone = _telecom(res, "phone")
            if phone:
                out["phone"] = phone
            if role == "representative" and rep is None:
                rep = out
            else:
                informal.append(out)
        return rep, informal

    def organisation(self, res: Resource) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(res), "name": res.get("name", "")}
        for field in ("cbe", "nihdi"):
            value = _identifier(res, self.t.identifier_system(field))
            if value:
                out[field] = value
        return out

    def professional(self, res: Resource) -> dict[str, Any]:
        prac = self.resolve(res.get("practitioner")) or {}
        out: dict[str, Any] = {"id": self.key(res)}
        nihdi = _identifier(prac, self.t.identifier_system("nihdi"))
        if nihdi:
            out["nihdi"] = nihdi
        out["name"] = _name(prac)
        profession = self.code(res.get("code") or [], "professions")
        if profession:
            out["profession"] = profession
        org = self.resolve(res.get("organization"))
        if org is not None:
            out["organisation"] = self.key(org)
        for kind in ("phone", "email"):
            value = _telecom(res, kind)
            if value:
                out[kind] = value
        return out

    def care_team(self, team: Resource | None) -> dict[str, Any]:
        if team is None:
            raise DocumentError([DocumentProblem("/care_team", "the bundle has no CareTeam")])
        out: dict[str, Any] = {"id": self.key(team)}
        if team.get("name"):
            out["name"] = team["name"]
        members = []
        for part in team.get("participant") or []:
            party = self.party(part.get("member"))
            if party is None:
                continue
            roles = []
            for role in part.get("role") or []:
                code = self.code(role, "roles")
                if code and code not in roles:
                    roles.append(code)
            members.append({"party": party, "roles": roles})
        out["members"] = members
        return out

    def episode(self, res: Resource, team: Resource | None) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(res)}
        etype = self.code(res.get("type") or [], "episodes")
        if etype:
            out["type"] = etype
        out["status"] = res.get("status")
        lead = self.party(res.get("careManager"))
        if etype == "case-management":
            if lead:
                out["case_manager"] = lead
            triggers = []
            for ext in res.get("extension") or []:
                if ext.get("url") == self.t.extension("case_management_trigger"):
                    code = self.code(ext.get("valueCodeableConcept"), "triggers")
                    if code:
                        triggers.append(code)
            out["triggers"] = triggers
        else:
            if lead is None and team is not None:
                lead = self._lay_coordinator(team)
            if lead:
                out["coordinator"] = lead
        period = res.get("period") or {}
        out["period"] = {k: str(v)[:10] for k, v in period.items() if k in ("start", "end")}
        for ref in res.get("referralRequest") or []:
            req = self.resolve(ref)
            if req is not None and req.get("requester"):
                out["requested_by"] = self.party(req["requester"])
                break
        org = self.resolve(res.get("managingOrganization"))
        if org is not None:
            out["managing_organisation"] = self.key(org)
        return out

    def _lay_coordinator(self, team: Resource) -> str | None:
        """A coordinator who is the person or an informal caregiver is only a team role."""
        for part in team.get("participant") or []:
            member = self.resolve(part.get("member"))
            if member is None or member["resourceType"] not in ("Patient", "RelatedPerson"):
                continue
            if any(self.code(role, "roles") == "care-coordinator" for role in part.get("role") or []):
                return self.key(member)
        return None

    def care_plan(self, res: Resource) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(res)}
        if res.get("title"):
            out["title"] = res["title"]
        out["status"] = res.get("status")
        if res.get("period"):
            out["period"] = {k: str(v)[:10] for k, v in res["period"].items() if k in ("start", "end")}
        author = self.party(res.get("author"))
        if author:
            out["author"] = author
        goals = [g for g in (self.resolve(ref) for ref in res.get("goal") or []) if g is not None]
        for goal in self.all("Goal"):
            if not any(goal is g for g in goals):
                goals.append(goal)
        out["goals"] = [self.goal(g) for g in goals]
        return out

    def goal(self, res: Resource) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(res)}
        category = self.code(res.get("category") or [], "goals")
        if category:
            out["category"] = category
        out["description"] = (res.get("description") or {}).get("text", "")
        out["status"] = res.get("lifecycleStatus")
        expressed = self.party(res.get("expressedBy"))
        if expressed:
            out["expressed_by"] = expressed
        for target in res.get("target") or []:
            if target.get("dueDate"):
                out["target_date"] = target["dueDate"]
                break
        return out

    def task(self, res: Resource) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(res)}
        ttype = self.code(res.get("code"), "tasks")
        if ttype:
            out["type"] = ttype
        status = res.get("status")
        for key, row in self.t.task_statuses.items():
            if status == row["fhir"] or status in (row.get("reverse") or []):
                out["status"] = key
                break
        owner = self.party(res.get("owner"))
        if owner:
            out["owner"] = owner
        due = ((res.get("restriction") or {}).get("period") or {}).get("end")
        if due:
            out["due"] = str(due)[:10]
        if res.get("description"):
            out["description"] = res["description"]
        focus = self.resolve(res.get("focus"))
        if focus is not None and focus["resourceType"] == "Goal":
            out["goal"] = self.key(focus)
        return out

    def consent(self, res: Resource) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(res)}
        category = self.code(res.get("category") or [], "consents")
        if category:
            out["category"] = category
        out["status"] = res.get("status")
        if res.get("dateTime"):
            out["date"] = str(res["dateTime"])[:10]
        performers = [self.party(p) for p in res.get("performer") or []]
        if performers and performers[0]:
            out["given_by"] = performers[0]
        for actor in (res.get("provision") or {}).get("actor") or []:
            grantee = self.party(actor.get("reference"))
            if grantee:
                out["grantee"] = grantee
                break
        return out

    def questionnaire(self, res: Resource) -> dict[str, Any]:
        """An assessment sent as a QuestionnaireResponse: a reference, read back by its instrument."""
        out: dict[str, Any] = {"id": self.key(res), "instrument": "other"}
        texts = _texts(res.get("item") or [])
        for key, inst in self.t.instruments.items():
            if inst["text"] in texts:
                out["instrument"] = key
                break
        if res.get("authored"):
            out["date"] = str(res["authored"])[:10]
        evaluation = _identifier(
            {"identifier": [res["identifier"]]} if isinstance(res.get("identifier"), dict) else {},
            self.t.raw["assessments"]["belrai_evaluation_system"],
        )
        if evaluation and out["instrument"].startswith("belrai-"):
            out["evaluation_id"] = evaluation
        performer = self.party(res.get("author"))
        if performer:
            out["performer"] = performer
        return out

    def assessment(self, res: Resource) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(res)}
        code = res.get("code") or {}
        codes = {(c.get("system"), c.get("code")) for c in code.get("coding") or []}
        for key, inst in self.t.instruments.items():
            if (inst.get("system"), inst.get("code")) in codes or (
                not inst.get("code") and inst["text"] == code.get("text")
            ):
                out["instrument"] = key
                break
        else:
            out["instrument"] = "other"
        if res.get("effectiveDateTime"):
            out["date"] = str(res["effectiveDateTime"])[:10]
        evaluation = _identifier(res, self.t.raw["assessments"]["belrai_evaluation_system"])
        if evaluation:
            out["evaluation_id"] = evaluation
        value = (res.get("valueQuantity") or {}).get("value")
        if value is not None:
            out["score"] = value
        performers = [self.party(p) for p in res.get("performer") or []]
        if performers and performers[0]:
            out["performer"] = performers[0]
        return out


def _texts(items: list[Any]) -> list[str]:
    out: list[str] = []
    for item in items or []:
        if isinstance(item, dict):
            out.extend(str(v) for k, v in item.items() if k in ("text", "valueString") and v)
            out.extend(_texts(item.get("answer") or []))
            out.extend(_texts(item.get("item") or []))
    return out


def _identifier(res: Resource, system: str) -> str | None:
    for ident in res.get("identifier") or []:
        if ident.get("system") == system and ident.get("value"):
            return str(ident["value"])
    return None


def _extension(res: Resource, url: str) -> Resource | None:
    for ext in res.get("extension") or []:
        if ext.get("url") == url:
            return ext
    return None


def _telecom(res: Resource, system: str) -> str | None:
    for t in res.get("telecom") or []:
        if t.get("system") == system and t.get("value"):
            return str(t["value"])
    return None


def _name(res: Resource) -> dict[str, Any]:
    names = res.get("name") or [{}]
    name = names[0] if isinstance(names, list) else {}
    out: dict[str, Any] = {"family": name.get("family") or name.get("text") or ""}
    if name.get("given"):
        out["given"] = list(name["given"])
    if name.get("prefix"):
        out["prefix"] = list(name["prefix"])
    return out


def _address(addr: Resource) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if addr.get("line"):
        out["lines"] = list(addr["line"])
    out["postal_code"] = addr.get("postalCode")
    if addr.get("city"):
        out["city"] = addr["city"]
    if addr.get("country"):
        out["country"] = addr["country"]
    return out

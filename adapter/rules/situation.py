"""One person's coordinated situation, indexed once per check.

Every rule looks at the same few links (episode -> patient, team, care manager; plan -> goals,
tasks; consents of the person). Resolving them once here, with the FHIRPath location of every
resource, keeps each rule a few lines and the whole rulebook cheap on a 25-entry bundle.
It is also the one reader of "whose situation, in which region" (CONTRACT section 4) for the
rulebook, the registry and forwarding, so that routing and the rules never disagree.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from typing import Any

from adapter.fhirio.shapes import as_dict, as_list, member, objects, text
from adapter.rules.catalog import Catalog, load_catalog
from adapter.rules.identifiers import classify_system

BECARE = "https://becare.dev/fhir"
CS = BECARE + "/CodeSystem/"
CARE_ROLE = CS + "care-role"
EPISODE_TYPE = CS + "episode-type"
TASK_TYPE = CS + "task-type"
GOAL_CATEGORY = CS + "goal-category"
CONSENT_CATEGORY = CS + "consent-category"
REGION_CS = CS + "region"
EXT_REGION = BECARE + "/StructureDefinition/ext-region"
EXT_TRIGGER = BECARE + "/StructureDefinition/ext-case-management-trigger"

CC_KINDS = frozenset({"care-coordination", "care-coordination-remunerated"})
CM_KIND = "case-management"
ACTIVE_EPISODE = frozenset({"active", "onhold"})
ENDED_EPISODE = frozenset({"finished", "cancelled", "entered-in-error"})
CLOSED_TASK = frozenset({"cancelled", "entered-in-error"})
OPEN_TASK = frozenset({"draft", "requested", "received", "accepted", "ready", "in-progress", "on-hold"})
PROFESSIONAL_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization"})
BELGIUM = frozenset({"BE", "BEL", "BELGIUM", "BELGIQUE", "BELGIË", "BELGIEN"})
_POSTAL = re.compile(r"(?:B-)?([0-9]{4})", re.IGNORECASE)


@dataclass(eq=False)
class Node:
    """A resource of the input and where it sits (``Bundle.entry[3].resource``)."""

    resource: dict[str, Any]
    path: str
    index: int

    @property
    def type(self) -> str:
        return str(self.resource.get("resourceType", ""))


@dataclass(eq=False)
class Participant:
    team: Node
    index: int
    member: Node | None
    member_ref: str | None
    roles: frozenset[str]  # care-role codes

    @property
    def path(self) -> str:
        return f"{self.team.path}.participant[{self.index}]"


@dataclass(eq=False)
class Episode:
    node: Node
    kind: str | None  # episode-type code
    status: str
    patient: Node | None
    patient_key: str | None
    care_manager: Node | None
    care_manager_ref: str | None
    teams: list[Node]
    start: dt.date | None
    end: dt.date | None
    plans: list[Node] = field(default_factory=list)
    tasks: list[Node] = field(default_factory=list)

    @property
    def is_cc(self) -> bool:
        return self.kind in CC_KINDS

    @property
    def is_cm(self) -> bool:
        return self.kind == CM_KIND

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_EPISODE


def codes(concepts: Any, system: str) -> set[str]:
    """Codes of ``system`` in a CodeableConcept or a list of them (of the right shape only)."""
    out: set[str] = set()
    items = concepts if isinstance(concepts, list) else [concepts]
    for cc in items:
        for coding in objects(member(cc, "coding")):
            code = coding.get("code")
            if coding.get("system") == system and isinstance(code, str) and code:
                out.add(code)
    return out


def parse_date(value: Any) -> dt.date | None:
    """The date part of a FHIR date or dateTime (a partial date counts from its first day)."""
    if not isinstance(value, str) or len(value) < 4:
        return None
    try:
        year = int(value[:4])
        month = int(value[5:7]) if len(value) >= 7 else 1
        day = int(value[8:10]) if len(value) >= 10 else 1
        return dt.date(year, month, day)
    except ValueError:
        return None


def parse_end_date(value: Any) -> dt.date | None:
    """The last day a FHIR date or dateTime used as a period end covers: ``2025`` runs to
    31 December, ``2025-06`` to 30 June."""
    first = parse_date(value)
    if first is None or len(value) >= 10:
        return first
    if len(value) < 7:
        return dt.date(first.year, 12, 31)
    following = dt.date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return following - dt.timedelta(days=1)


def overlaps(
    a_start: dt.date | None, a_end: dt.date | None, b_start: dt.date | None, b_end: dt.date | None
) -> bool:
    """Closed periods; a missing bound is open."""
    lo = dt.date.min
    hi = dt.date.max
    return (a_start or lo) <= (b_end or hi) and (b_start or lo) <= (a_end or hi)


def _ref_string(ref: Any) -> str | None:
    if isinstance(ref, dict):
        value = ref.get("reference")
        return value if isinstance(value, str) and value else None
    return ref if isinstance(ref, str) and ref else None


class Situation:
    """The index of one input: a Bundle (its entries) or a single resource."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.is_bundle = root.get("resourceType") == "Bundle"
        self.nodes: list[Node] = []
        self._keys: dict[str, Node] = {}
        if self.is_bundle:
            for i, entry in enumerate(as_list(root.get("entry"))):
                res = member(entry, "resource")
                if isinstance(res, dict) and text(res.get("resourceType")):
                    self._add(Node(res, f"Bundle.entry[{i}].resource", i), entry.get("fullUrl"))
        else:
            self._add(Node(root, str(root.get("resourceType", "")), 0), None)
        self.by_type: dict[str, list[Node]] = {}
        for node in self.nodes:
            self.by_type.setdefault(node.type, []).append(node)
        self._person_keys: dict[int, str] = {}
        # participants, episodes and their plans and tasks are read on demand: routing needs
        # only the person and the region, and pays for nothing more

    @functools.cached_property
    def _parts(self) -> dict[int, list[Participant]]:
        return self._build_participants()

    @functools.cached_property
    def _bare_episodes(self) -> list[Episode]:
        """The episodes without their plans and tasks linked (enough for person and region)."""
        return [self._episode(n) for n in self.of("EpisodeOfCare")]

    @functools.cached_property
    def episodes(self) -> list[Episode]:
        episodes = self._bare_episodes
        self._link_plans_and_tasks(episodes)
        return episodes

    # --- indexing ------------------------------------------------------------------------
    def _add(self, node: Node, full_url: Any) -> None:
        self.nodes.append(node)
        res = node.resource
        if isinstance(full_url, str) and full_url:
            self._keys.setdefault(full_url, node)
        rid = res.get("id")
        if isinstance(rid, str) and rid:
            self._keys.setdefault(f"{node.type}/{rid}", node)

    def of(self, rtype: str) -> list[Node]:
        return self.by_type.get(rtype, [])

    def resolve(self, ref: Any) -> Node | None:
        """Resolve a Reference (or reference string) inside the input: fullUrl, Type/id, or an
        absolute URL ending in Type/id. Contained and external references give None."""
        text = _ref_string(ref)
        if not text or text.startswith("#"):
            return None
        node = self._keys.get(text)
        if node is not None:
            return node
        if "/_history/" in text:
            text = text.split("/_history/")[0]
        parts = text.rstrip("/").split("/")
        if len(parts) >= 2:
            return self._keys.get(f"{parts[-2]}/{parts[-1]}")
        return None

    def ref_key(self, ref: Any) -> str | None:
        """A key for the target of a reference: the resolved node, else the reference text."""
        node = self.resolve(ref)
        if node is not None:
            return f"node:{node.index}"
        text = _ref_string(ref)
        return f"ref:{text}" if text else None

    # --- persons -------------------------------------------------------------------------
    def person_key(self, ref: Any) -> str | None:
        """Who a reference designates as a person: a PractitionerRole counts as its
        practitioner, and resources with the same NIHDI or SSIN are the same person."""
        node = self.resolve(ref)
        if node is None:
            text = _ref_string(ref)
            ident = ref.get("identifier") if isinstance(ref, dict) else None
            key = _identifier_key(ident) if isinstance(ident, dict) else None
            return key or (f"ref:{text}" if text else None)
        return self.node_person_key(node)

    def node_person_key(self, node: Node) -> str:
        cached = self._person_keys.get(node.index)
        if cached is not None:
            return cached
        res = node.resource
        key: str | None = None
        if node.type == "PractitionerRole" and res.get("practitioner"):
            key = self.person_key(res["practitioner"])
        if key is None:
            for ident in as_list(res.get("identifier")):
                key = _identifier_key(ident)
                if key:
                    break
        key = key or f"node:{node.index}"
        self._person_keys[node.index] = key
        return key

    def holder(self, node: Node | None, ref: str | None) -> str | None:
        """A stable, non-sensitive label of who holds a role (for the registry and messages)."""
        if node is None:
            return f"ref:{ref}" if ref else None
        if node.type == "Patient":
            return "patient"
        key = self.node_person_key(node)
        if key.startswith("nihdi:"):
            return key
        rid = text(node.resource.get("id"))
        return f"{node.type}/{rid}" if rid else f"{node.type}#{node.index}"

    # --- care teams ----------------------------------------------------------------------
    def _build_participants(self) -> dict[int, list[Participant]]:
        out: dict[int, list[Participant]] = {}
        for team in self.of("CareTeam"):
            items = []
            for i, part in enumerate(as_list(team.resource.get("participant"))):
                if not isinstance(part, dict):
                    continue
                member = part.get("member")
                items.append(
                    Participant(
                        team=team,
                        index=i,
                        member=self.resolve(member),
                        member_ref=_ref_string(member),
                        roles=frozenset(codes(part.get("role") or [], CARE_ROLE)),
                    )
                )
            out[team.index] = items
        return out

    def team_participants(self, team: Node) -> list[Participant]:
        return self._parts.get(team.index, [])

    def participant_key(self, part: Participant) -> str | None:
        if part.member is not None:
            return self.node_person_key(part.member)
        return f"ref:{part.member_ref}" if part.member_ref else None

    # --- episodes, plans, tasks ----------------------------------------------------------
    def _episode(self, node: Node) -> Episode:
        res = node.resource
        kinds = codes(res.get("type") or [], EPISODE_TYPE)
        kind = next(iter(sorted(kinds)), None)
        patient = self.resolve(res.get("patient"))
        cm_ref = res.get("careManager")
        period = as_dict(res.get("period"))
        teams = [t for t in (self.resolve(r) for r in as_list(res.get("team"))) if t and t.type == "CareTeam"]
        return Episode(
            node=node,
            kind=kind,
            status=text(res.get("status")) or "",
            patient=patient,
            patient_key=self.person_key(res.get("patient")),
            care_manager=self.resolve(cm_ref),
            care_manager_ref=_ref_string(cm_ref),
            teams=teams,
            start=parse_date(period.get("start")),
            end=parse_date(period.get("end")),
        )

    def _link_plans_and_tasks(self, episodes: list[Episode]) -> None:
        """A CarePlan belongs to the episodes whose team it names (or, without careTeam, to the
        episodes of its subject); a Task to the episodes it is basedOn directly or through a
        plan, or listed in a plan's activity; an unlinked Task to the episodes of its ``for``.

        Each plan and task looks its episodes up in indexes (by team, by patient, by the keys
        of the episode and of its plans) instead of trying every episode: a bundle carrying many
        situations stays linear. The episodes are still taken in their order."""
        order = {id(ep): i for i, ep in enumerate(episodes)}
        by_team: dict[str, list[Episode]] = {}
        by_patient: dict[str, list[Episode]] = {}
        for ep in episodes:
            for key in {f"node:{t.index}" for t in ep.teams}:
                by_team.setdefault(key, []).append(ep)
            if ep.patient_key:
                by_patient.setdefault(ep.patient_key, []).append(ep)
        for plan in self.of("CarePlan"):
            team_keys = {self.ref_key(r) for r in as_list(plan.resource.get("careTeam"))}
            subject = self.person_key(plan.resource.get("subject"))
            if team_keys:
                found = {id(ep): ep for k in team_keys if k is not None for ep in by_team.get(k, ())}
                chosen = sorted(found.values(), key=lambda ep: order[id(ep)])
            else:
                chosen = by_patient.get(subject, []) if subject else []
            for ep in chosen:
                ep.plans.append(plan)
        # the episodes each key names: the episode itself, and each of its plans
        by_key: dict[str, list[Episode]] = {}
        by_plan: dict[int, list[Episode]] = {}
        for ep in episodes:
            for key in {f"node:{ep.node.index}"} | {f"node:{p.index}" for p in ep.plans}:
                by_key.setdefault(key, []).append(ep)
            for p in {p.index for p in ep.plans}:
                by_plan.setdefault(p, []).append(ep)
        in_plans: dict[int, set[int]] = {}  # task -> the plans listing it in their activity
        for p in self.of("CarePlan"):
            for t in self.plan_tasks(p, activity_only=True):
                in_plans.setdefault(t.index, set()).add(p.index)
        for task in self.of("Task"):
            based = {self.ref_key(r) for r in as_list(task.resource.get("basedOn"))}
            found = {id(ep): ep for k in based if k is not None for ep in by_key.get(k, ())}
            for p in in_plans.get(task.index, ()):
                found.update((id(ep), ep) for ep in by_plan.get(p, ()))
            linked = sorted(found.values(), key=lambda ep: order[id(ep)])
            if not linked and not based:
                target = self.person_key(task.resource.get("for"))
                linked = list(by_patient.get(target, ())) if target else []
            for ep in linked:
                ep.tasks.append(task)

    @functools.cached_property
    def _tasks_based_on(self) -> dict[str | None, list[Node]]:
        """Reference key -> the Tasks (in input order, once each) whose ``basedOn`` names it."""
        out: dict[str | None, list[Node]] = {}
        for task in self.of("Task"):
            for key in dict.fromkeys(self.ref_key(r) for r in as_list(task.resource.get("basedOn"))):
                out.setdefault(key, []).append(task)
        return out

    def plan_tasks(self, plan: Node, *, activity_only: bool = False) -> list[Node]:
        """Tasks of a plan: in ``activity.reference``, or (unless activity_only) basedOn the plan."""
        out: list[Node] = []
        for act in as_list(plan.resource.get("activity")):
            node = self.resolve(member(act, "reference"))
            if node is not None and node.type == "Task" and node not in out:
                out.append(node)
        if not activity_only:
            for task in self._tasks_based_on.get(f"node:{plan.index}", ()):
                if task not in out:
                    out.append(task)
        return out

    def consents_of(self, patient_key: str | None, category: str) -> Iterator[Node]:
        """The active consents of ``category`` whose ``Consent.patient`` is that person. An
        unknown person (``None``) has none: another person's consent never stands in for theirs."""
        if patient_key is None:
            return
        index = self._consents.get(category)
        if index is None:
            index = {}
            for node in self.of("Consent"):
                res = node.resource
                if res.get("status") != "active" or category not in codes(
                    res.get("category") or [], CONSENT_CATEGORY
                ):
                    continue
                key = self.person_key(res.get("patient"))
                index.setdefault(key, []).append(node)
            self._consents[category] = index
        yield from index.get(patient_key, ())

    @functools.cached_property
    def _consents(self) -> dict[str, dict[str | None, list[Node]]]:
        """category -> person key -> that person's active consents of the category, in order."""
        return {}

    def teams_of_person(self, patient_key: str | None) -> list[Node]:
        """The care teams around a person: the teams of their episodes and teams about them."""
        out: list[Node] = []
        for ep in self._episodes_by_patient.get(patient_key, ()):
            out += [t for t in ep.teams if t not in out]
        for team in self._teams_by_subject.get(patient_key, ()):
            if team not in out:
                out.append(team)
        return out

    @functools.cached_property
    def _episodes_by_patient(self) -> dict[str | None, list[Episode]]:
        out: dict[str | None, list[Episode]] = {}
        for ep in self.episodes:
            out.setdefault(ep.patient_key, []).append(ep)
        return out

    @functools.cached_property
    def _teams_by_subject(self) -> dict[str | None, list[Node]]:
        out: dict[str | None, list[Node]] = {}
        for team in self.of("CareTeam"):
            out.setdefault(self.person_key(team.resource.get("subject")), []).append(team)
        return out

    def team_patient_key(self, team: Node) -> str | None:
        """The patient of the first episode (in input order) that has this care team, if any."""
        return self._team_patients.get(team.index)

    @functools.cached_property
    def _team_patients(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for ep in self.episodes:
            if ep.patient_key:
                for team in ep.teams:
                    out.setdefault(team.index, ep.patient_key)
        return out

    # --- whose situation, in which region (CONTRACT section 4) -----------------------------
    @functools.cached_property
    def person(self) -> Node | None:
        """The person the input is about: the patient of the first episode whose patient
        resolves to a Patient, else the first Patient. Other Patients (a relative recorded as a
        Patient, say) never lend the person their SSIN or their postal code."""
        for ep in self._bare_episodes:
            if ep.patient is not None and ep.patient.type == "Patient":
                return ep.patient
        patients = self.of("Patient")
        return patients[0] if patients else None

    def person_ssin(self) -> str | None:
        """The person's SSIN, digits only (as the metahub and the registry key it)."""
        value = self.ssin_of(self.person)
        digits = re.sub(r"\D", "", value) if value else ""
        return digits or None

    def region_extension(self, known: Container[str]) -> str | None:
        """The first ``ext-region`` code of an episode that is one of ``known`` regions."""
        for ep in self._bare_episodes:
            for ext in as_list(ep.node.resource.get("extension")):
                if not isinstance(ext, dict) or ext.get("url") != EXT_REGION:
                    continue
                coding = ext.get("valueCoding")
                if not isinstance(coding, dict):
                    continue
                code = coding.get("code")
                if coding.get("system", REGION_CS) == REGION_CS and isinstance(code, str) and code in known:
                    return code
        return None

    def person_postal_codes(self) -> list[str]:
        """The person's Belgian postal codes, home address first; ``old`` addresses and
        addresses abroad (an explicit non-Belgian country) are not where the person lives."""
        addresses = [
            a
            for a in (as_list(self.person.resource.get("address")) if self.person else ())
            if isinstance(a, dict) and a.get("use") != "old"
        ]
        addresses.sort(key=lambda a: 0 if a.get("use") == "home" else 1)
        out = []
        for addr in addresses:
            country = str(addr.get("country") or "BE").strip().upper()
            if country in BELGIUM and isinstance(addr.get("postalCode"), str):
                out.append(addr["postalCode"])
        return out

    def ssin_of(self, node: Node | None) -> str | None:
        if node is None:
            return None
        for ident in as_list(node.resource.get("identifier")):
            kind = classify_system(ident.get("system")) if isinstance(ident, dict) else None
            if kind and kind[0] == "ssin" and isinstance(ident.get("value"), str):
                return ident["value"]
        return None


def postal_code_region(postal_code: Any, catalog: Catalog | None = None) -> str | None:
    """The region of a Belgian postal code (``B-`` prefix tolerated) from the rulebook's postal
    ranges; anything else (foreign, malformed, out of range) has none."""
    match = _POSTAL.fullmatch(postal_code.strip()) if isinstance(postal_code, str) else None
    if match is None:
        return None
    return (catalog or load_catalog()).region_for_postal_code(int(match.group(1)))


def resolve_region(
    situation: Situation, option: str | None, catalog: Catalog | None = None
) -> tuple[str | None, str]:
    """CONTRACT section 4: the option, else ``ext-region``, else the person's postal code.
    Returns (region, how) with how in option | ext-region | postal-code | unknown. An unknown
    option raises ``UnknownRegionError``: bad usage, never silently "no region"."""
    cat = catalog or load_catalog()
    if option:
        return cat.normalize_region(option), "option"
    region = situation.region_extension(cat.regions)
    if region:
        return region, "ext-region"
    for code in situation.person_postal_codes():
        region = postal_code_region(code, cat)
        if region:
            return region, "postal-code"
    return None, "unknown"


def _identifier_key(ident: Any) -> str | None:
    if not isinstance(ident, dict):
        return None
    kind = classify_system(ident.get("system"))
    value = ident.get("value")
    if kind and kind[0] in ("nihdi", "ssin") and isinstance(value, str) and value:
        return f"{kind[0]}:{value}"
    return None


def status_of(node: Node) -> str | None:
    """The ``status`` code of a resource, or None when absent or not a string."""
    return text(node.resource.get("status"))


def task_code(task: Node) -> set[str]:
    return codes(task.resource.get("code"), TASK_TYPE)


def task_dates(task: Node) -> list[dt.date]:
    res = task.resource
    out = []
    for period in (res.get("executionPeriod"), member(res.get("restriction"), "period")):
        if isinstance(period, dict):
            for key in ("start", "end"):
                d = parse_date(period.get(key))
                if d:
                    out.append(d)
    return out

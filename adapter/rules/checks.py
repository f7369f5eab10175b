"""The rules whose logic is a function: pure functions of the indexed situation.

Each function is registered under its rule id with ``@rule``; ``rules/rulebook.yaml`` names it,
and the engine checks that the two agree when the catalog is compiled. A function yields
``Finding``s (where, which message variant, placeholder values); severity, language and the
Issue itself are the engine's business, so the functions stay small and testable.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from adapter.fhirio.scan import Scans
from adapter.fhirio.shapes import as_list, member, objects
from adapter.fhirio.shapes import text as _str
from adapter.rules.identifiers import CORE_NS, LEGACY_NS, check_identifier, classify_system
from adapter.rules.situation import (
    CLOSED_TASK,
    ENDED_EPISODE,
    GOAL_CATEGORY,
    OPEN_TASK,
    PROFESSIONAL_TYPES,
    Episode,
    Node,
    Participant,
    Situation,
    codes,
    overlaps,
    parse_date,
    parse_end_date,
    status_of,
    task_code,
    task_dates,
)


@dataclass(frozen=True)
class Finding:
    expression: str
    variant: str = "default"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RuleContext:
    situation: Situation
    region: str | None
    region_label: str | None
    table1: dict[str, str]
    registry: Any | None = None
    today: dt.date = field(default_factory=dt.date.today)
    # the scans of this validation: the bundle check may have scanned each entry already
    scans: Scans = field(default_factory=Scans)


class RegistryUnavailable(Exception):
    """The episode registry a rule consults cannot be queried (database gone, unreachable).

    Not a fault of the rule nor of the data: the input cannot be judged right now. The rule
    engine lets it through, so the service answers 503 and the command line exit code 2, rather
    than judging IC-ONE-1/2 without the registry."""


RuleFunction = Callable[[RuleContext], Iterable[Finding]]
RULE_FUNCTIONS: dict[str, RuleFunction] = {}


def rule(rule_id: str) -> Callable[[RuleFunction], RuleFunction]:
    """Register the decorated function as the logic of ``rule_id``."""

    def wrap(fn: RuleFunction) -> RuleFunction:
        if rule_id in RULE_FUNCTIONS:
            raise ValueError(f"rule {rule_id} registered twice")
        RULE_FUNCTIONS[rule_id] = fn
        return fn

    return wrap


# --- helpers ---------------------------------------------------------------------------------


def _team_person(s: Situation, team: Node) -> str | None:
    """The patient of the first episode with this team, else the team's subject."""
    return s.team_patient_key(team) or s.person_key(team.resource.get("subject"))


def coordinators(s: Situation, ep: Episode) -> dict[str, tuple[Node | None, str]]:
    """Distinct coordinators of a care-coordination episode: person key -> (node, path)."""
    out: dict[str, tuple[Node | None, str]] = {}
    if ep.care_manager_ref:
        key = s.person_key(ep.node.resource.get("careManager"))
        if key:
            out[key] = (ep.care_manager, f"{ep.node.path}.careManager")
    for team in ep.teams:
        for part in s.team_participants(team):
            if "care-coordinator" in part.roles:
                key = s.participant_key(part)
                if key and key not in out:
                    out[key] = (part.member, part.path)
    return out


def _case_managers(s: Situation, ep: Episode) -> set[str]:
    key = s.person_key(ep.node.resource.get("careManager")) if ep.care_manager_ref else None
    return {key} if key else set()


def _remunerated(s: Situation) -> Iterator[Episode]:
    return (ep for ep in s.episodes if ep.kind == "care-coordination-remunerated")


def _cm(s: Situation) -> Iterator[Episode]:
    return (ep for ep in s.episodes if ep.is_cm)


# --- care team -------------------------------------------------------------------------------


@rule("IC-TEAM-1")
def team_includes_person(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for team in s.of("CareTeam"):
        person = _team_person(s, team)
        if person is None:
            continue
        if not any(s.participant_key(p) == person for p in s.team_participants(team)):
            yield Finding(team.path)


def _discipline(node: Node) -> str | None:
    res = node.resource
    if node.type == "PractitionerRole":
        concepts = as_list(res.get("code"))
    elif node.type == "Practitioner":
        concepts = [q.get("code") for q in objects(res.get("qualification"))]
    else:
        concepts = as_list(res.get("type"))
    for cc in concepts:
        for coding in objects(member(cc, "coding")):
            code = _str(coding.get("code"))
            if code and not str(coding.get("system", "")).startswith("https://becare.dev/"):
                return f"{coding.get('system')}|{code}"
    return None


NON_PROFESSIONAL_ROLES = frozenset({"patient", "informal-caregiver", "representative"})
_REF_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}$")


def _member_raw(part: Participant) -> dict[str, Any]:
    """The ``CareTeam.participant.member`` Reference as written."""
    items = part.team.resource.get("participant")
    item = items[part.index] if isinstance(items, list) and part.index < len(items) else None
    ref = item.get("member") if isinstance(item, dict) else None
    return ref if isinstance(ref, dict) else {}


def _unresolved_professional(part: Participant) -> str | None:
    """A key for a participant whose member is not in the input and may be a professional (its
    discipline is unknown); None when the member is known not to be one (a Patient or
    RelatedPerson reference, or only the roles of the person and their informal network) or
    names no one at all."""
    raw = _member_raw(part)
    declared = raw.get("type")  # a resource type, or its StructureDefinition URL
    rtype = declared.rsplit("/", 1)[-1] if isinstance(declared, str) and declared else None
    if rtype is None and part.member_ref:
        match = _REF_TYPE.search(part.member_ref.split("/_history/")[0].rstrip("/"))
        rtype = match.group(1) if match else None
    if rtype is not None:
        if rtype not in PROFESSIONAL_TYPES and rtype != "CareTeam":
            return None
    elif part.roles and part.roles <= NON_PROFESSIONAL_ROLES:
        return None
    if part.member_ref:
        return f"ref:{part.member_ref}"
    ident = raw.get("identifier")
    if isinstance(ident, dict) and ident.get("value"):
        return f"id:{ident.get('system')}|{ident.get('value')}"
    return None


@rule("IC-TEAM-2")
def team_disciplines(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for team in s.of("CareTeam"):
        disciplines: set[str] = set()
        unknown: set[str] = set()
        for part in s.team_participants(team):
            if part.member is None:
                # Only this participant is unknown (a member outside the input): the rule still
                # judges the rest of the team, and says how many it could not see.
                key = _unresolved_professional(part)
                if key:
                    unknown.add(key)
                continue
            if part.member.type in PROFESSIONAL_TYPES:
                d = _discipline(part.member)
                if d:
                    disciplines.add(d)
        if len(disciplines) >= 2:
            continue
        if unknown:
            yield Finding(team.path, "unresolved", {"count": len(disciplines), "unresolved": len(unknown)})
        else:
            yield Finding(team.path, params={"count": len(disciplines)})


@rule("IC-TEAM-3")
def team_informal_caregiver(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for team in s.of("CareTeam"):
        parts = s.team_participants(team)
        if not any(
            "informal-caregiver" in p.roles or (p.member and p.member.type == "RelatedPerson") for p in parts
        ):
            yield Finding(team.path)


# --- care coordination -----------------------------------------------------------------------


@rule("IC-CC-1")
def one_coordinator(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in s.episodes:
        if not ep.is_cc:
            continue
        count = len(coordinators(s, ep))
        if count == 0:
            yield Finding(ep.node.path, "none")
        elif count > 1:
            yield Finding(ep.node.path, "many", {"count": count})


@rule("IC-CC-2")
def coordinator_in_team(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in s.episodes:
        if not ep.is_cc or not ep.care_manager_ref or not ep.teams:
            continue
        key = s.person_key(ep.node.resource.get("careManager"))
        members = {s.participant_key(p) for t in ep.teams for p in s.team_participants(t)}
        if key not in members:
            yield Finding(f"{ep.node.path}.careManager", params={"region": ctx.region_label or ""})


def consent_covers(consent: Node, ep: Episode, today: dt.date) -> bool:
    """Does the consent's ``provision.period`` (when it has one) cover the episode's period up
    to ``today`` (the validation date)? It must run from the episode's start to its end, or to
    today while the episode goes on; a consent that ran out before the episode began, or
    that starts only later, does not count. An episode that starts after today needs a
    consent in force at its start."""
    provision = consent.resource.get("provision")
    period = provision.get("period") if isinstance(provision, dict) else None
    if not isinstance(period, dict):
        return True
    start, end = parse_date(period.get("start")), parse_end_date(period.get("end"))
    until = min(ep.end, today) if ep.end is not None else today
    since = ep.start or until
    until = max(until, since)
    return (start is None or start <= since) and (end is None or end >= until)


def _without_consent(ctx: RuleContext, episodes: Iterable[Episode], category: str) -> Iterator[Finding]:
    """The episodes without a consent of ``category`` that counts (IC-CC-3, IC-CM-2): the
    person's own (``Consent.patient`` is the episode's patient), active, and in force over the
    episode up to the validation date."""
    s = ctx.situation
    for ep in episodes:
        if not any(consent_covers(c, ep, ctx.today) for c in s.consents_of(ep.patient_key, category)):
            yield Finding(ep.node.path)


@rule("IC-CC-3")
def coordinator_consent(ctx: RuleContext) -> Iterator[Finding]:
    return _without_consent(ctx, _remunerated(ctx.situation), "care-coordinator-agreement")


@rule("IC-CC-4")
def remunerated_coordinator_professional(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in _remunerated(s):
        for node, path in coordinators(s, ep).values():
            if node is not None and node.type in ("Patient", "RelatedPerson"):
                yield Finding(path)


@dataclass(frozen=True)
class AssessmentTable:
    """What counts as an assessment (``mappings/assessments.yaml``, the table the mapper uses):
    an instrument's coding, the text of an instrument that has no code, a BelRAI evaluation id."""

    codings: frozenset[tuple[str, str]]
    texts: frozenset[str]
    evaluation_system: str


@functools.cache
def assessment_table() -> AssessmentTable:
    from adapter.datafiles import data_dir

    raw = yaml.safe_load((data_dir("mappings") / "assessments.yaml").read_text(encoding="utf-8"))
    instruments = [i for i in (raw.get("instruments") or {}).values() if isinstance(i, dict)]
    return AssessmentTable(
        codings=frozenset((str(i["system"]), str(i["code"])) for i in instruments if i.get("code")),
        texts=frozenset(str(i["text"]) for i in instruments if not i.get("code") and i.get("text")),
        evaluation_system=str(raw.get("belrai_evaluation_system") or ""),
    )


def _assessment_code(concept: Any, table: AssessmentTable) -> bool:
    if not isinstance(concept, dict):
        return False
    for coding in objects(concept.get("coding")):
        if (_str(coding.get("system")), _str(coding.get("code"))) in table.codings:
            return True
    return _str(concept.get("text")) in table.texts


def _evaluation_id(identifiers: Any, table: AssessmentTable) -> bool:
    items = identifiers if isinstance(identifiers, list) else [identifiers]
    return any(
        isinstance(i, dict) and i.get("system") == table.evaluation_system and i.get("value") for i in items
    )


def _contained(owner: Node, ref: Any) -> dict[str, Any] | None:
    text = ref.get("reference") if isinstance(ref, dict) else None
    if not isinstance(text, str) or not text.startswith("#"):
        return None
    for res in objects(owner.resource.get("contained")):
        if res.get("id") == text[1:]:
            return res
    return None


def is_assessment(s: Situation, owner: Node, ref: Any, *, depth: int = 0) -> bool:
    """IC-CC-5: does ``ref`` (a Reference of ``owner``) point to an assessment? A
    QuestionnaireResponse, or an Observation / DiagnosticReport of an instrument of
    ``mappings/assessments.yaml`` (or carrying a BelRAI evaluation id; a DiagnosticReport may also
    hold such Observations as results). A reference outside the input counts when it says it is
    a QuestionnaireResponse or names a BelRAI evaluation; any other reference is not enough."""
    table = assessment_table()
    node = s.resolve(ref)
    res = node.resource if node is not None else _contained(owner, ref)
    if res is None:
        if not isinstance(ref, dict):
            return False
        text = ref.get("reference") if isinstance(ref.get("reference"), str) else ""
        declared = ref.get("type")  # a resource type, or its StructureDefinition URL
        if isinstance(declared, str):
            rtype = declared.rsplit("/", 1)[-1]
        else:
            match = _REF_TYPE.search(text.split("/_history/")[0].rstrip("/"))
            rtype = match.group(1) if match else None
        return rtype == "QuestionnaireResponse" or _evaluation_id(ref.get("identifier"), table)
    rtype = res.get("resourceType")
    if res.get("status") in ("entered-in-error", "cancelled"):
        return False
    if rtype == "QuestionnaireResponse":
        return True
    if rtype not in ("Observation", "DiagnosticReport"):
        return False
    if _assessment_code(res.get("code"), table) or _evaluation_id(res.get("identifier"), table):
        return True
    if rtype == "DiagnosticReport" and depth == 0:
        return any(is_assessment(s, node or owner, r, depth=1) for r in as_list(res.get("result")))
    return False


@rule("IC-CC-5")
def plan_global_assessment(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in _remunerated(s):
        infos = [(p, ref) for p in ep.plans for ref in as_list(p.resource.get("supportingInfo"))]
        if any(is_assessment(s, p, ref) for p, ref in infos):
            continue
        yield Finding(ep.plans[0].path if ep.plans else ep.node.path)


def planned(task: Node) -> bool:
    """A planned task: open (not yet done, cancelled or failed) and with a date
    (``executionPeriod`` or ``restriction.period``)."""
    return status_of(task) in OPEN_TASK and bool(task_dates(task))


@rule("IC-CC-6")
def planned_reassessment(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in _remunerated(s):
        if not any("reassessment" in task_code(t) and planned(t) for t in ep.tasks):
            yield Finding(ep.node.path)


# --- care plan -------------------------------------------------------------------------------


def _expressed_by_person(s: Situation, goal: Node, plan: Node) -> bool:
    subject = s.person_key(plan.resource.get("subject"))
    by = goal.resource.get("expressedBy")
    if not by:
        return False
    if s.person_key(by) == subject:
        return True
    node = s.resolve(by)
    if node is None or node.type != "RelatedPerson":
        return False
    # A representative: the team says so, or the relationship is a legal representation.
    for team in s.of("CareTeam"):
        for part in s.team_participants(team):
            if part.member is node and "representative" in part.roles:
                return True
    rel = {
        c.get("code")
        for cc in as_list(node.resource.get("relationship"))
        for c in objects(member(cc, "coding"))
        if isinstance(c.get("code"), str)
    }
    return bool(rel & {"representative", "GUARD", "POWATT", "DPOWATT", "HPOWATT", "SPOWATT"})


@rule("IC-PLAN-2")
def life_goal(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for plan in s.of("CarePlan"):
        targets = (s.resolve(r) for r in as_list(plan.resource.get("goal")))
        goals = [g for g in targets if g and g.type == "Goal"]
        if not goals:
            continue  # no goal at all is IC-PLAN-1; goals outside the input cannot be judged
        if not any(
            "life-goal" in codes(g.resource.get("category") or [], GOAL_CATEGORY)
            and _expressed_by_person(s, g, plan)
            for g in goals
        ):
            yield Finding(f"{plan.path}.goal")


@rule("IC-PLAN-3")
def task_owner(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    seen: set[int] = set()
    for plan in s.of("CarePlan"):
        for task in s.plan_tasks(plan):
            if task.index in seen:
                continue
            seen.add(task.index)
            res = task.resource
            if status_of(task) not in CLOSED_TASK and not res.get("owner"):
                rid = _str(res.get("id")) or task.index
                label = next(iter(sorted(task_code(task))), None) or f"Task/{rid}"
                yield Finding(task.path, params={"task": label})


# --- case management -------------------------------------------------------------------------


@rule("IC-CM-1")
def case_manager_outside_team(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    reported: set[str] = set()
    for ep in _cm(s):
        if ep.status in ENDED_EPISODE:
            continue  # a former case manager may join the team (e.g. the Brussels switch to coordinator)
        managers = _case_managers(s, ep)
        for team in s.teams_of_person(ep.patient_key):
            for part in s.team_participants(team):
                if part.path in reported:
                    continue
                if s.participant_key(part) in managers or "case-manager" in part.roles:
                    reported.add(part.path)
                    yield Finding(part.path)


@rule("IC-CM-2")
def case_management_consent(ctx: RuleContext) -> Iterator[Finding]:
    return _without_consent(ctx, _cm(ctx.situation), "case-management")


def _evaluation_tasks(ep: Episode) -> list[Node]:
    return [t for t in ep.tasks if "intervention-evaluation" in task_code(t)]


@rule("IC-CM-4")
def case_management_time_limited(ctx: RuleContext) -> Iterator[Finding]:
    for ep in _cm(ctx.situation):
        if ep.end is not None:
            continue
        if any(
            status_of(t) not in CLOSED_TASK | {"failed"} and task_dates(t)
            for t in _evaluation_tasks(ep)
        ):
            continue
        yield Finding(ep.node.path)


@rule("IC-CM-5")
def case_management_evaluated(ctx: RuleContext) -> Iterator[Finding]:
    for ep in _cm(ctx.situation):
        if ep.status != "finished":
            continue
        if not any(t.resource.get("status") == "completed" for t in _evaluation_tasks(ep)):
            yield Finding(ep.node.path)


FOLLOW_UP_WINDOWS: tuple[tuple[int, int, int], ...] = ((1, 21, 45), (6, 150, 215))


@rule("IC-CM-7")
def case_management_follow_up(ctx: RuleContext) -> Iterator[Finding]:
    for ep in _cm(ctx.situation):
        if ep.end is None:
            continue  # the follow-up dates are relative to the end
        offsets = [
            (d - ep.end).days
            for t in ep.tasks
            if "follow-up" in task_code(t) and status_of(t) not in CLOSED_TASK
            for d in task_dates(t)
        ]
        for months, low, high in FOLLOW_UP_WINDOWS:
            if not any(low <= off <= high for off in offsets):
                yield Finding(ep.node.path, params={"months": months})


# --- roles and regions -----------------------------------------------------------------------


@rule("IC-ROLE-1")
def pathway_expert_roles(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    holders: dict[str, str] = {}
    for ep in s.episodes:
        role = "care-coordinator" if ep.is_cc else "case-manager" if ep.is_cm else None
        if role and ep.care_manager_ref:
            key = s.person_key(ep.node.resource.get("careManager"))
            if key:
                holders.setdefault(key, role)
    experts: list[tuple[str, str]] = []
    for team in s.of("CareTeam"):
        for part in s.team_participants(team):
            key = s.participant_key(part)
            if key is None:
                continue
            for role in ("care-coordinator", "case-manager"):
                if role in part.roles:
                    holders.setdefault(key, role)
            if "pathway-expert" in part.roles:
                experts.append((key, part.path))
    for key, path in experts:
        if key in holders:
            yield Finding(path, params={"role": holders[key]})


def _pairs(s: Situation) -> Iterator[tuple[Episode, Episode]]:
    """(care coordination, case management) episode pairs of one person, in input order (each
    care coordination episode meets only the case management episodes of its own person)."""
    cms: dict[str, list[Episode]] = {}
    for cm in s.episodes:
        if cm.is_cm and cm.patient_key:
            cms.setdefault(cm.patient_key, []).append(cm)
    for cc in s.episodes:
        if cc.is_cc and cc.patient_key:
            for cm in cms.get(cc.patient_key, ()):
                yield cc, cm


@rule("IC-REG-1")
def simultaneous_cc_cm(ctx: RuleContext) -> Iterator[Finding]:
    if ctx.table1.get("cc_cm_simultaneous") != "not-allowed":
        return
    for cc, cm in _pairs(ctx.situation):
        if cc.active and cm.active and overlaps(cc.start, cc.end, cm.start, cm.end):
            yield Finding(cm.node.path, params={"region": ctx.region_label or ""})


@rule("IC-REG-2")
def same_person_cc_cm(ctx: RuleContext) -> Iterator[Finding]:
    mode = ctx.table1.get("cc_cm_same_person", "allowed")
    if mode == "allowed":
        return
    s = ctx.situation
    for cc, cm in _pairs(s):
        if not (set(coordinators(s, cc)) & _case_managers(s, cm)):
            continue
        where = f"{cm.node.path}.careManager"
        params = {"region": ctx.region_label or ""}
        if mode == "never":
            yield Finding(where, "never", params)
        elif mode == "not-at-the-same-time":
            if overlaps(cc.start, cc.end, cm.start, cm.end):
                yield Finding(where, "overlap", params)
        elif mode == "one-way-switch":
            switched = cm.end is not None and cc.start is not None and cc.start > cm.end
            if not switched:
                yield Finding(where, "switch", params)


# --- across submissions ----------------------------------------------------------------------


def _one_active(ctx: RuleContext, kind: str) -> Iterator[Finding]:
    s = ctx.situation
    role = "care-coordinator" if kind == "cc" else "case-manager"
    episodes = [ep for ep in s.episodes if (ep.is_cc if kind == "cc" else ep.is_cm)]
    if not episodes:
        return

    holders: dict[int, str | None] = {}

    def holder_of(ep: Episode) -> str | None:
        key = id(ep)
        if key not in holders:
            holders[key] = _holder(s, ep, kind)
        return holders[key]

    active = [ep for ep in episodes if ep.active]
    # Within the input: two active episodes of one person with different holders. Each episode
    # meets only the later ones of its own person, and none at all when they share one holder.
    same_person: dict[str, list[Episode]] = {}
    place: dict[int, int] = {}  # episode -> its place among its person's active episodes
    for ep in active:
        if ep.patient_key:
            group = same_person.setdefault(ep.patient_key, [])
            place[id(ep)] = len(group)
            group.append(ep)
    mixed: dict[str, bool] = {}  # person -> their active episodes have more than one holder
    for a in active:
        group = same_person.get(a.patient_key, []) if a.patient_key else []
        if len(group) < 2:
            continue
        if a.patient_key not in mixed:
            mixed[a.patient_key] = len({holder_of(ep) for ep in group}) > 1
        if not mixed[a.patient_key]:
            continue
        for b in group[place[id(a)] + 1 :]:
            if holder_of(a) != holder_of(b) and overlaps(a.start, a.end, b.start, b.end):
                yield Finding(b.node.path, params={"episode": episode_key(s, a)})
    if ctx.registry is None:
        yield Finding(episodes[0].node.path, "not-checked")
        return
    for ep in active:
        mine = ctx.registry.role_of(s, ep)  # keyed as stored: hashed, however the person is named
        if mine is None:
            yield Finding(ep.node.path, "no-ssin")
            continue
        for other in ctx.registry.active_roles(mine.person_key, role):
            if other.episode_key == mine.episode_key or other.holder == mine.holder:
                continue
            if overlaps(ep.start, ep.end, other.start, other.end):
                yield Finding(ep.node.path, params={"episode": other.episode_key})
                break


def _holder(s: Situation, ep: Episode, kind: str) -> str | None:
    """Who holds the role of an episode: its care manager, else (care coordination) its first
    coordinator."""
    if ep.care_manager_ref:
        return s.holder(ep.care_manager, ep.care_manager_ref)
    found = coordinators(s, ep) if kind == "cc" else {}
    for key, (node, _path) in found.items():
        return s.holder(node, None) if node is not None else key
    return None


@rule("IC-ONE-1")
def one_active_coordinator(ctx: RuleContext) -> Iterator[Finding]:
    return _one_active(ctx, "cc")


@rule("IC-ONE-2")
def one_active_case_manager(ctx: RuleContext) -> Iterator[Finding]:
    return _one_active(ctx, "cm")


def episode_key(s: Situation, ep: Episode) -> str:
    """A stable name of an episode across submissions: its identifier, else Type/id, else fullUrl."""
    res = ep.node.resource
    for ident in objects(res.get("identifier")):
        if _str(ident.get("value")):
            return f"{ident.get('system', '')}|{ident['value']}"
    if _str(res.get("id")):
        return f"EpisodeOfCare/{res['id']}"
    if s.is_bundle:
        entry = as_list(s.root.get("entry"))[ep.node.index]
        if isinstance(entry, dict) and _str(entry.get("fullUrl")):
            return str(entry["fullUrl"])
    return f"EpisodeOfCare#{ep.node.index}"


# --- identifiers -----------------------------------------------------------------------------


@rule("IC-ID-1")
def belgian_identifiers(ctx: RuleContext) -> Iterator[Finding]:
    for node in ctx.situation.nodes:
        for ident, path in ctx.scans.of(node.resource, node.path).identifiers:
            kind = classify_system(ident.get("system"))
            if kind is None:
                continue
            id_kind, legacy = kind
            system = str(ident["system"])
            if legacy:
                current = CORE_NS + system[len(LEGACY_NS) :]
                yield Finding(f"{path}.system", "legacy-system", {"system": system, "current": current})
            value = ident.get("value")
            if not isinstance(value, str):
                continue  # a missing value is the structure validator's finding
            verdict = check_identifier(id_kind, value)
            if verdict == "nihdi-8":
                yield Finding(f"{path}.value", "nihdi-8")
            elif verdict == "invalid":
                yield Finding(f"{path}.value", id_kind)

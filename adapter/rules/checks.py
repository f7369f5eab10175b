"""The rules whose logic is a function: pure functions of the indexed situation.

Each function is registered under its rule id with ``@rule``; ``rules/rulebook.yaml`` names it,
and the engine checks that the two agree when the catalog is compiled. A function yields
``Finding``s (where, which message variant, placeholder values); severity, language and the
Issue itself are the engine's business, so the functions stay small and testable.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from adapter.rules.identifiers import CORE_NS, LEGACY_NS, check_identifier, classify_system
from adapter.rules.situation import (
    CLOSED_TASK,
    ENDED_EPISODE,
    GOAL_CATEGORY,
    OPEN_TASK,
    PROFESSIONAL_TYPES,
    Episode,
    Node,
    Situation,
    codes,
    overlaps,
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
    for ep in s.episodes:
        if team in ep.teams and ep.patient_key:
            return ep.patient_key
    return s.person_key(team.resource.get("subject"))


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
        concepts = res.get("code") or []
    elif node.type == "Practitioner":
        concepts = [q.get("code") for q in res.get("qualification") or () if isinstance(q, dict)]
    else:
        concepts = res.get("type") or []
    for cc in concepts:
        for coding in (cc or {}).get("coding") or ():
            if coding.get("code") and not str(coding.get("system", "")).startswith("https://becare.dev/"):
                return f"{coding.get('system')}|{coding['code']}"
    return None


@rule("IC-TEAM-2")
def team_disciplines(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for team in s.of("CareTeam"):
        disciplines: set[str] = set()
        undecidable = False
        for part in s.team_participants(team):
            if part.member is None:
                # A member we cannot see (outside the input) might be the second discipline.
                undecidable |= part.member_ref is not None
                continue
            if part.member.type in PROFESSIONAL_TYPES:
                d = _discipline(part.member)
                if d:
                    disciplines.add(d)
        if len(disciplines) < 2 and not undecidable:
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


def _without_consent(s: Situation, episodes: Iterable[Episode], category: str) -> Iterator[Finding]:
    """The episodes whose person has no consent of ``category`` (IC-CC-3, IC-CM-2)."""
    for ep in episodes:
        if next(s.consents_of(ep.patient_key, category), None) is None:
            yield Finding(ep.node.path)


@rule("IC-CC-3")
def coordinator_consent(ctx: RuleContext) -> Iterator[Finding]:
    return _without_consent(ctx.situation, _remunerated(ctx.situation), "care-coordinator-agreement")


@rule("IC-CC-4")
def remunerated_coordinator_professional(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in _remunerated(s):
        for node, path in coordinators(s, ep).values():
            if node is not None and node.type in ("Patient", "RelatedPerson"):
                yield Finding(path)


@rule("IC-CC-5")
def plan_global_assessment(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in _remunerated(s):
        if any(p.resource.get("supportingInfo") for p in ep.plans):
            continue
        yield Finding(ep.plans[0].path if ep.plans else ep.node.path)


@rule("IC-CC-6")
def planned_reassessment(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for ep in _remunerated(s):
        if not any(
            "reassessment" in task_code(t) and t.resource.get("status") in OPEN_TASK for t in ep.tasks
        ):
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
        for cc in node.resource.get("relationship") or ()
        for c in (cc or {}).get("coding") or ()
    }
    return bool(rel & {"representative", "GUARD", "POWATT", "DPOWATT", "HPOWATT", "SPOWATT"})


@rule("IC-PLAN-2")
def life_goal(ctx: RuleContext) -> Iterator[Finding]:
    s = ctx.situation
    for plan in s.of("CarePlan"):
        goals = [g for g in (s.resolve(r) for r in plan.resource.get("goal") or ()) if g and g.type == "Goal"]
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
            if res.get("status") not in CLOSED_TASK and not res.get("owner"):
                label = next(iter(sorted(task_code(task))), None) or f"Task/{res.get('id', task.index)}"
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
    return _without_consent(ctx.situation, _cm(ctx.situation), "case-management")


def _evaluation_tasks(ep: Episode) -> list[Node]:
    return [t for t in ep.tasks if "intervention-evaluation" in task_code(t)]


@rule("IC-CM-4")
def case_management_time_limited(ctx: RuleContext) -> Iterator[Finding]:
    for ep in _cm(ctx.situation):
        if ep.end is not None:
            continue
        if any(
            t.resource.get("status") not in CLOSED_TASK | {"failed"} and task_dates(t)
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
            if "follow-up" in task_code(t) and t.resource.get("status") not in CLOSED_TASK
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
    """(care coordination, case management) episode pairs of one person."""
    for cc in s.episodes:
        if cc.is_cc:
            for cm in s.episodes:
                if cm.is_cm and cc.patient_key and cc.patient_key == cm.patient_key:
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

    def holder_of(ep: Episode) -> str | None:
        if ep.care_manager_ref:
            return s.holder(ep.care_manager, ep.care_manager_ref)
        found = coordinators(s, ep) if kind == "cc" else {}
        for key, (node, _path) in found.items():
            return s.holder(node, None) if node is not None else key
        return None

    active = [ep for ep in episodes if ep.active]
    # Within the input: two active episodes of one person with different holders.
    for i, a in enumerate(active):
        for b in active[i + 1 :]:
            if (
                a.patient_key
                and a.patient_key == b.patient_key
                and holder_of(a) != holder_of(b)
                and overlaps(a.start, a.end, b.start, b.end)
            ):
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


@rule("IC-ONE-1")
def one_active_coordinator(ctx: RuleContext) -> Iterator[Finding]:
    return _one_active(ctx, "cc")


@rule("IC-ONE-2")
def one_active_case_manager(ctx: RuleContext) -> Iterator[Finding]:
    return _one_active(ctx, "cm")


def episode_key(s: Situation, ep: Episode) -> str:
    """A stable name of an episode across submissions: its identifier, else Type/id, else fullUrl."""
    res = ep.node.resource
    for ident in res.get("identifier") or ():
        if isinstance(ident, dict) and ident.get("value"):
            return f"{ident.get('system', '')}|{ident['value']}"
    if res.get("id"):
        return f"EpisodeOfCare/{res['id']}"
    if s.is_bundle:
        entry = (s.root.get("entry") or [])[ep.node.index]
        if isinstance(entry, dict) and entry.get("fullUrl"):
            return str(entry["fullUrl"])
    return f"EpisodeOfCare#{ep.node.index}"


# --- identifiers -----------------------------------------------------------------------------


def _identifiers(value: Any, path: list[str], under_identifier: bool = False) -> Iterator[tuple[dict, str]]:
    """Identifiers anywhere in a resource (top level and inside References). The path is a
    stack of segments joined only on a hit: this walk visits every element of every entry."""
    if isinstance(value, dict):
        if under_identifier and "system" in value:
            yield value, "".join(path)
        for key, child in value.items():
            if (
                (type(child) is dict or type(child) is list)
                and key not in ("text", "contained")
                and key[0] != "_"
            ):
                path.append("." + key)
                yield from _identifiers(child, path, key == "identifier")
                path.pop()
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if type(item) is dict:
                path.append(f"[{i}]")
                yield from _identifiers(item, path, under_identifier)
                path.pop()


@rule("IC-ID-1")
def belgian_identifiers(ctx: RuleContext) -> Iterator[Finding]:
    for node in ctx.situation.nodes:
        for ident, path in _identifiers(node.resource, [node.path]):
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

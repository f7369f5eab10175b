"""The rulebook's situation index scales with the input, and says what the plain definitions say.

A bundle carrying many situations (here: every sample at once, and the same with one person in
all of them) is where indexes differ from "try every episode": the links each plan and task gets,
the tasks of each plan, the consents and care teams of each person, and every finding of the
rulebook must be those of the brute-force definitions, which are written out below.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from adapter.fhirio.shapes import as_list, member
from adapter.rules import check_rulebook
from adapter.rules.situation import CONSENT_CATEGORY, Episode, Node, Situation, codes

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
_UUID = re.compile(r"urn:uuid:([0-9a-f-]{36})")
_SSIN = re.compile(r'("system": "[^"]*/core/NamingSystem/ssin", "value": ")\d+')


def _renamed(entries: list[Any], tag: str) -> list[Any]:
    def new(m: re.Match[str]) -> str:
        return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, tag + m.group(1))}"

    return json.loads(_UUID.sub(new, json.dumps(entries)))


def _mega() -> dict[str, Any]:
    files = sorted(SAMPLES.rglob("*.json"))
    entries: list[Any] = []
    for k, f in enumerate(files):
        entries += _renamed(json.loads(f.read_text(encoding="utf-8")).get("entry", []), f"{k}:")
    head = {k: v for k, v in json.loads(files[0].read_text(encoding="utf-8")).items() if k != "entry"}
    return {**head, "entry": entries}


MEGA = _mega()
SHUFFLED = {**MEGA, "entry": random.Random(7).sample(MEGA["entry"], len(MEGA["entry"]))}
ONE_PERSON = json.loads(_SSIN.sub(r"\g<1>41041710283", json.dumps(MEGA)))
INPUTS = {"all samples": MEGA, "shuffled": SHUFFLED, "one person": ONE_PERSON}


# -- the definitions, tried on every episode ------------------------------------------------------


def _links(s: Situation, episodes: list[Episode]) -> dict[int, tuple[list[int], list[int]]]:
    plans: dict[int, list[int]] = {id(ep): [] for ep in episodes}
    tasks: dict[int, list[int]] = {id(ep): [] for ep in episodes}
    for plan in s.of("CarePlan"):
        team_keys = {s.ref_key(r) for r in as_list(plan.resource.get("careTeam"))}
        subject = s.person_key(plan.resource.get("subject"))
        for ep in episodes:
            ep_teams = {f"node:{t.index}" for t in ep.teams}
            if (team_keys & ep_teams) or (not team_keys and subject and subject == ep.patient_key):
                plans[id(ep)].append(plan.index)
    activity = {
        p.index: {t.index for t in s.plan_tasks(p, activity_only=True)} for p in s.of("CarePlan")
    }
    for task in s.of("Task"):
        linked = []
        based = {s.ref_key(r) for r in as_list(task.resource.get("basedOn"))}
        for ep in episodes:
            keys = {f"node:{ep.node.index}"} | {f"node:{p}" for p in plans[id(ep)]}
            if based & keys or any(task.index in activity[p] for p in plans[id(ep)]):
                linked.append(ep)
        if not linked and not based:
            target = s.person_key(task.resource.get("for"))
            linked = [ep for ep in episodes if target and target == ep.patient_key]
        for ep in linked:
            tasks[id(ep)].append(task.index)
    return {id(ep): (plans[id(ep)], tasks[id(ep)]) for ep in episodes}


def _plan_tasks(s: Situation, plan: Node) -> list[int]:
    out = [t.index for t in s.plan_tasks(plan, activity_only=True)]
    for task in s.of("Task"):
        if task.index not in out and any(
            s.ref_key(r) == f"node:{plan.index}" for r in as_list(task.resource.get("basedOn"))
        ):
            out.append(task.index)
    return out


def _consents(s: Situation, key: str | None, category: str) -> list[int]:
    if key is None:
        return []
    return [
        n.index
        for n in s.of("Consent")
        if n.resource.get("status") == "active"
        and category in codes(n.resource.get("category") or [], CONSENT_CATEGORY)
        and s.person_key(n.resource.get("patient")) == key
    ]


def _teams(s: Situation, key: str | None) -> list[int]:
    out: list[Node] = []
    for ep in s.episodes:
        if ep.patient_key == key:
            out += [t for t in ep.teams if t not in out]
    for team in s.of("CareTeam"):
        if team not in out and s.person_key(team.resource.get("subject")) == key:
            out.append(team)
    return [t.index for t in out]


@pytest.mark.parametrize("name", list(INPUTS))
def test_indexed_situation_is_the_brute_force_one(name: str) -> None:
    s = Situation(INPUTS[name])
    episodes = s.episodes
    assert len(episodes) > 20 and len(s.of("Task")) > 50
    expected = _links(Situation(INPUTS[name]), Situation(INPUTS[name])._bare_episodes)
    got = [([p.index for p in ep.plans], [t.index for t in ep.tasks]) for ep in episodes]
    assert got == list(expected.values())
    for plan in s.of("CarePlan"):
        assert [t.index for t in s.plan_tasks(plan)] == _plan_tasks(s, plan)
    keys = {ep.patient_key for ep in episodes} | {None, "ref:nobody"}
    for key in keys:
        assert [t.index for t in s.teams_of_person(key)] == _teams(s, key)
        for category in ("care-coordinator-agreement", "case-management", "data-sharing"):
            assert [c.index for c in s.consents_of(key, category)] == _consents(s, key, category)
    for team in s.of("CareTeam"):
        first = next((ep.patient_key for ep in episodes if team in ep.teams and ep.patient_key), None)
        assert s.team_patient_key(team) == first


def _findings(bundle: dict[str, Any], region: str | None) -> list[tuple[Any, ...]]:
    result = check_rulebook(bundle, region=region, lang="en", today=dt.date(2025, 6, 1))
    return [(i.severity, i.expression, i.rule, i.message) for i in result.issues]


def test_the_rulebook_takes_linear_time() -> None:
    """Ten times the situations, about ten times the time (the brute force took ~100x)."""
    small = {**MEGA, "entry": MEGA["entry"][:300]}
    large = {**MEGA, "entry": [e for k in range(10) for e in _renamed(small["entry"], f"x{k}:")]}
    for bundle in (small, large):  # warm
        _findings(bundle, None)

    def best(bundle: dict[str, Any]) -> float:
        times = []
        for _ in range(3):
            t = time.process_time()
            _findings(bundle, None)
            times.append(time.process_time() - t)
        return min(times)

    assert best(large) / best(small) < 25
    assert member(large, "entry") and len(large["entry"]) == 3000

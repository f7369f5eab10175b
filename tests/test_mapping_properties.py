"""Property tests over generated care situation documents (hypothesis)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.mapping import to_bundle, to_document, validate
from adapter.mapping.tables import tables
from tests.test_mapping import assert_well_formed

T = tables()

letters = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzéèëïöüßçABCDEFGHIJKLMNOPQRSTUVWXYZ '-&<>"),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip())
dates = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2035, 12, 31))
digits = lambda n: st.text(alphabet="0123456789", min_size=n, max_size=n)  # noqa: E731


def names() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"family": letters},
        optional={
            "given": st.lists(letters, max_size=2),
            "prefix": st.lists(st.sampled_from(["Dr.", "Prof."]), max_size=1),
        },
    )


def period(draw: Any) -> dict[str, str]:
    start = draw(dates)
    out = {"start": start.isoformat()}
    if draw(st.booleans()):
        out["end"] = (start + dt.timedelta(days=draw(st.integers(0, 900)))).isoformat()
    return out


def maybe(draw: Any, strategy: st.SearchStrategy[Any]) -> Any:
    return draw(strategy) if draw(st.booleans()) else None


def put(target: dict[str, Any], key: str, value: Any) -> None:
    if value is not None:
        target[key] = value


@st.composite
def documents(draw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "identifier_system": draw(st.sampled_from(["https://vendor.example/ids", "urn:example:ids"])),
        "person": {"ssin": draw(digits(11)), "name": draw(names())},
    }
    put(doc, "region", maybe(draw, st.sampled_from(sorted(T.regions))))
    person = doc["person"]
    put(person, "gender", maybe(draw, st.sampled_from(["male", "female", "other", "unknown"])))
    put(person, "birth_date", maybe(draw, dates.map(dt.date.isoformat)))
    put(person, "language", maybe(draw, st.sampled_from(["nl", "fr", "de", "en"])))
    if draw(st.booleans()):
        person["address"] = {"postal_code": draw(digits(4)), "lines": draw(st.lists(letters, max_size=2))}
        put(person["address"], "city", maybe(draw, letters))

    related = []
    if draw(st.booleans()):
        doc["representative"] = {
            "id": "rep",
            "name": draw(names()),
            "relationship": draw(st.sampled_from(sorted(T.relationships))),
        }
        put(doc["representative"], "ssin", maybe(draw, digits(11)))
        related.append("rep")
    doc["informal_caregivers"] = []
    for i in range(draw(st.integers(0, 3))):
        doc["informal_caregivers"].append(
            {
                "id": f"ic-{i}",
                "name": draw(names()),
                "relationship": draw(st.sampled_from(sorted(T.relationships))),
            }
        )
        related.append(f"ic-{i}")
    orgs = [f"org-{i}" for i in range(draw(st.integers(0, 2)))]
    doc["organisations"] = [{"id": o, "name": draw(letters)} for o in orgs]
    for org in doc["organisations"]:
        if draw(st.booleans()):
            org["cbe"] = draw(st.sampled_from("01")) + draw(digits(9))
    nihdis = draw(st.lists(digits(11), max_size=4, unique=True))
    pros = [f"pro-{i}" for i in range(len(nihdis))]
    doc["professionals"] = []
    for pro, nihdi in zip(pros, nihdis, strict=True):
        item = {
            "id": pro,
            "nihdi": nihdi,
            "name": draw(names()),
            "profession": draw(st.sampled_from(sorted(T.professions))),
        }
        put(item, "organisation", maybe(draw, st.sampled_from(orgs)) if orgs else None)
        doc["professionals"].append(item)
    pool = ["person", *related, *orgs, *pros]

    members: dict[str, list[str]] = {}
    for party in draw(st.lists(st.sampled_from(pool), min_size=1, unique=True)):
        members[party] = draw(st.lists(st.sampled_from(sorted(T.roles)), min_size=1, max_size=3, unique=True))

    doc["episodes"] = []
    for i in range(draw(st.integers(1, 2))):
        etype = draw(st.sampled_from(sorted(T.episode_types)))
        ep: dict[str, Any] = {"id": f"ep-{i}", "type": etype, "period": period(draw)}
        ep["status"] = draw(st.sampled_from(T.raw["episodes"]["statuses"]))
        if etype == "case-management":
            put(ep, "case_manager", maybe(draw, st.sampled_from(pros)) if pros else None)
            ep["triggers"] = draw(st.lists(st.sampled_from(sorted(T.triggers)), max_size=3, unique=True))
        else:
            lead = maybe(draw, st.sampled_from(["person", *related, *pros]))
            if lead is not None and not lead.startswith("pro-"):
                roles = members.setdefault(lead, [])
                if "care-coordinator" not in roles:
                    roles.append("care-coordinator")
            put(ep, "coordinator", lead)
        put(ep, "requested_by", maybe(draw, st.sampled_from(pool)))
        put(ep, "managing_organisation", maybe(draw, st.sampled_from(orgs)) if orgs else None)
        doc["episodes"].append(ep)
    doc["care_team"] = {"id": "team", "members": [{"party": p, "roles": r} for p, r in members.items()]}
    # a lay coordinator is only a team role in FHIR: the first lay member holding it
    lay = next(
        (p for p, r in members.items() if "care-coordinator" in r and not p.startswith(("pro-", "org-"))),
        None,
    )
    for ep in doc["episodes"]:
        if ep["type"] != "case-management" and not str(ep.get("coordinator", "")).startswith("pro-"):
            ep.pop("coordinator", None)
            put(ep, "coordinator", lay)
    put(doc["care_team"], "name", maybe(draw, letters))

    goal_ids: list[str] = []
    if draw(st.booleans()):
        plan: dict[str, Any] = {"id": "plan", "goals": []}
        put(plan, "title", maybe(draw, letters))
        put(plan, "author", maybe(draw, st.sampled_from(pool)))
        if draw(st.booleans()):
            plan["period"] = period(draw)
        for i in range(draw(st.integers(0, 3))):
            goal = {
                "id": f"goal-{i}",
                "category": draw(st.sampled_from(sorted(T.goal_categories))),
                "description": draw(letters),
                "status": draw(st.sampled_from(T.raw["goals"]["statuses"])),
            }
            put(goal, "expressed_by", maybe(draw, st.sampled_from(["person", *related, *pros])))
            put(goal, "target_date", maybe(draw, dates.map(dt.date.isoformat)))
            plan["goals"].append(goal)
            goal_ids.append(goal["id"])
        doc["care_plan"] = plan
    doc["tasks"] = []
    for i in range(draw(st.integers(0, 4))):
        task = {
            "id": f"task-{i}",
            "type": draw(st.sampled_from(sorted(T.task_types))),
            "status": draw(st.sampled_from(sorted(T.task_statuses))),
        }
        put(task, "owner", maybe(draw, st.sampled_from(pool)))
        put(task, "due", maybe(draw, dates.map(dt.date.isoformat)))
        put(task, "description", maybe(draw, letters))
        put(task, "goal", maybe(draw, st.sampled_from(goal_ids)) if goal_ids else None)
        doc["tasks"].append(task)
    doc["consents"] = []
    for i in range(draw(st.integers(0, 2))):
        consent = {
            "id": f"consent-{i}",
            "category": draw(st.sampled_from(sorted(T.consent_categories))),
            "status": draw(st.sampled_from(T.raw["consents"]["statuses"])),
            "date": draw(dates).isoformat(),
            "given_by": draw(st.sampled_from(["person", *related])),
        }
        put(consent, "grantee", maybe(draw, st.sampled_from(pool)))
        doc["consents"].append(consent)
    doc["assessments"] = []
    for i in range(draw(st.integers(0, 2))):
        instrument = draw(st.sampled_from(sorted(T.instruments)))
        item: dict[str, Any] = {
            "id": f"assess-{i}",
            "instrument": instrument,
            "date": draw(dates).isoformat(),
        }
        score = st.one_of(st.integers(0, 100), st.floats(0, 100, allow_nan=False).map(lambda f: round(f, 2)))
        if instrument.startswith("belrai-") and draw(st.booleans()):
            item["evaluation_id"] = draw(st.from_regex(r"EV-[0-9]{4}-[0-9]{6}", fullmatch=True))
            put(item, "score", maybe(draw, score))
        else:
            item["score"] = draw(score)
        put(item, "performer", maybe(draw, st.sampled_from(pool)))
        doc["assessments"].append(item)
    return doc


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_mapper_never_crashes_and_its_bundle_is_well_formed(data: dict[str, Any]) -> None:
    doc = validate(data)  # the generator only makes documents the checks accept
    bundle = to_bundle(doc)
    assert_well_formed(bundle)
    assert json.dumps(to_bundle(validate(data))) == json.dumps(bundle)
    assert to_document(bundle) == doc
    # the reverse mapper is a complete inverse on what the mapper emits
    assert to_bundle(to_document(bundle)) == bundle
    for entry in bundle["entry"]:
        text = entry["resource"]["text"]
        assert text["status"] == "generated"
        assert text["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml"><p>')

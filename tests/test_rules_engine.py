"""check_rulebook: scope, region resolution, languages, locations, registry fallbacks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.rules import UnknownRegionError, check_rulebook
from adapter.rules.situation import Situation
from adapter.validation.issues import RULE_SYSTEM, issue_to_fhir, operation_outcome

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def load(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / name).read_text(encoding="utf-8"))


def rule_ids(result: Any, *severities: str) -> list[str]:
    return sorted({i.rule for i in result.issues if i.rule and (not severities or i.severity in severities)})


def entry(bundle: dict[str, Any], rtype: str, n: int = 0) -> dict[str, Any]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype][n]


def test_valid_bundle_without_registry_says_not_checked() -> None:
    result = check_rulebook(load("valid/flanders-care-coordination.json"), region=None, lang="en")
    assert result.version == "1" and result.region == "flanders"
    assert rule_ids(result, "error", "warning") == []
    infos = [i for i in result.issues if i.severity == "information"]
    assert [i.rule for i in infos] == ["IC-ONE-1"]  # no case management here, so IC-ONE-2 does not apply
    assert "no episode registry" in infos[0].message
    cm = check_rulebook(load("valid/wallonia-case-management.json"), region=None, lang="fr")
    assert [i.rule for i in cm.issues] == ["IC-ONE-2"]
    assert cm.issues[0].message.startswith("Non vérifié")


def test_issue_shape_and_location() -> None:
    bundle = load("rules/IC-TEAM-1/breaks.json")
    result = check_rulebook(bundle, region=None, lang="nl", registry=None)
    issue = next(i for i in result.issues if i.rule == "IC-TEAM-1")
    assert issue.severity == "error" and issue.code == "business-rule" and issue.source == "rulebook"
    index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "CareTeam")
    assert issue.expression == f"Bundle.entry[{index}].resource"
    assert issue.message == "Het zorgteam bevat de persoon voor wie het zorgt niet als deelnemer."
    fhir = issue_to_fhir(issue)
    assert fhir["details"]["coding"] == [{"system": RULE_SYSTEM, "code": "IC-TEAM-1"}]
    oo = operation_outcome(result.issues, rulebook_version=result.version)
    assert oo["meta"]["tag"][0]["code"] == "1"


@pytest.mark.parametrize(
    "lang,start",
    [
        ("en", "The care"),
        ("fr", "L'équipe"),
        ("de", "Das Versorgungsteam"),
        ("nl-BE", "Het zorgteam"),
        ("es", "The care"),
    ],
)
def test_language_and_fallback(lang: str, start: str) -> None:
    result = check_rulebook(load("rules/IC-TEAM-1/breaks.json"), region=None, lang=lang)
    assert next(i for i in result.issues if i.rule == "IC-TEAM-1").message.startswith(start)


def test_region_option_beats_ext_region_and_postal_code() -> None:
    bundle = load("rules/IC-CC-2/breaks.json")  # ext-region flanders, postal code 9000
    assert "IC-CC-2" in rule_ids(check_rulebook(bundle, region=None, lang="en"), "error")
    assert rule_ids(check_rulebook(bundle, region="german-speaking", lang="en"), "error", "warning") == []
    wal = check_rulebook(bundle, region="Wallonie", lang="en")  # names in our languages are accepted
    assert wal.region == "wallonia" and rule_ids(wal, "warning") == ["IC-CC-2"]
    with pytest.raises(UnknownRegionError, match="unknown region 'atlantis'"):
        check_rulebook(bundle, region="atlantis", lang="en")


@pytest.mark.parametrize(
    "postal,region",
    [
        ("1000", "brussels"),
        ("1299", "brussels"),
        ("1300", "wallonia"),
        ("4700", "german-speaking"),
        ("4791", "german-speaking"),
        ("4792", "wallonia"),
        ("3999", "flanders"),
        ("8000", "flanders"),
        ("7999", "wallonia"),
        ("1500", "flanders"),
    ],
)
def test_region_from_postal_code(postal: str, region: str) -> None:
    bundle = load("valid/flanders-care-coordination.json")
    entry(bundle, "EpisodeOfCare")["extension"] = []
    entry(bundle, "Patient")["address"][0]["postalCode"] = postal
    assert check_rulebook(bundle, region=None, lang="en").region == region


def test_unknown_region_skips_regional_rules_with_a_notice() -> None:
    bundle = load("rules/IC-CC-2/breaks.json")
    entry(bundle, "EpisodeOfCare")["extension"] = []
    entry(bundle, "Patient")["address"] = []
    result = check_rulebook(bundle, region=None, lang="en")
    assert result.region is None
    assert "IC-CC-2" not in rule_ids(result)
    notice = [i for i in result.issues if i.message_id == "becare-rulebook-region-unknown"]
    assert len(notice) == 1 and "IC-CC-2, IC-REG-1, IC-REG-2" in notice[0].message


def test_not_our_content_is_not_judged() -> None:
    bundle = load("rules/IC-TEAM-1/breaks.json")
    plain = copy.deepcopy(bundle)
    plain.pop("meta")
    for e in plain["entry"]:
        e["resource"].pop("meta", None)
        if e["resource"]["resourceType"] == "EpisodeOfCare":
            e["resource"]["type"] = [{"text": "home care"}]
    assert check_rulebook(plain, region=None, lang="en").issues == []
    assert check_rulebook({"resourceType": "Patient"}, region=None, lang="en").issues == []
    assert check_rulebook("not a resource", region=None, lang="en").issues == []  # type: ignore[arg-type]


def test_single_resource_is_judged_alone() -> None:
    team = entry(load("rules/IC-TEAM-2/breaks.json"), "CareTeam")
    result = check_rulebook(team, region="brussels", lang="en")
    # Alone, the members do not resolve: the person is recognised by the reference, and the one
    # possible professional (the coordinator) is unknown, which cannot make two disciplines.
    assert rule_ids(result) == ["IC-TEAM-2"]
    assert [i.message_id for i in result.issues] == ["IC-TEAM-2.unresolved"]
    team["participant"] = [p for p in team["participant"] if "patient" not in json.dumps(p["role"])]
    result = check_rulebook(team, region="brussels", lang="en")
    assert rule_ids(result) == ["IC-TEAM-1", "IC-TEAM-2"]
    assert {i.expression for i in result.issues} == {"CareTeam"}


def test_references_by_type_and_id() -> None:
    """Resolution also works with server ids (PUT style bundles), not only urn:uuid."""
    bundle = load("valid/brussels-care-coordination.json")
    ids = {}
    for n, e in enumerate(bundle["entry"]):
        rid = f"r{n}"
        e["resource"]["id"] = rid
        ids[e["fullUrl"]] = f"{e['resource']['resourceType']}/{rid}"
        e["fullUrl"] = f"https://ehr.example/fhir/{ids[e['fullUrl']]}"
    text = json.dumps(bundle)
    for old, new in ids.items():
        text = text.replace(f'"{old}"', f'"{new}"')
    result = check_rulebook(json.loads(text), region=None, lang="en")
    assert rule_ids(result, "error", "warning") == []


def test_garbage_inside_a_bundle_does_not_crash() -> None:
    bundle = load("valid/flanders-care-coordination.json")
    team = entry(bundle, "CareTeam")
    team["participant"] = [*team["participant"], "junk", {"member": 42, "role": "x"}]
    entry(bundle, "EpisodeOfCare")["period"] = {"start": "not a date"}
    bundle["entry"].append({"resource": None})
    result = check_rulebook(bundle, region=None, lang="en")
    assert all(i.message_id != "becare-rule-failed" for i in result.issues), result.issues


def test_situation_links() -> None:
    s = Situation(load("rules/IC-REG-1/breaks.json"))
    cc, cm = sorted(s.episodes, key=lambda e: e.kind or "")
    assert cc.kind == "care-coordination-remunerated" and cm.kind == "case-management"
    assert len(cc.plans) == 1 and len(cm.plans) == 1  # the shared team links the plan to both
    assert {t.resource["code"]["coding"][0]["code"] for t in cm.tasks} >= {"intervention-evaluation"}
    assert cc.patient_key == cm.patient_key and cc.patient_key.startswith("ssin:")

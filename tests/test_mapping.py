"""The care situation document <-> becare Bundle mapping, its schema, normaliser and CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from adapter.cli.main import main
from adapter.fhirio import parse, to_xml
from adapter.mapping import DocumentError, load_document, normalise, to_bundle, to_document
from adapter.mapping.schema import render, schema_path
from adapter.mapping.tables import tables

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "mappings" / "examples").iterdir())
EXAMPLE_IDS = [p.name for p in EXAMPLES]


def example_data(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def references(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if isinstance(node.get("reference"), str):
            found.append(node["reference"])
        for value in node.values():
            found.extend(references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(references(item))
    return found


def assert_well_formed(bundle: dict[str, Any]) -> None:
    """Every reference resolves inside the bundle; every entry has a profile and a request."""
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    assert bundle["meta"]["profile"] == ["https://becare.dev/fhir/StructureDefinition/becare-bundle"]
    urls = [e["fullUrl"] for e in bundle["entry"]]
    assert len(urls) == len(set(urls)), "fullUrls are unique"
    assert all(u.startswith("urn:uuid:") for u in urls)
    for entry in bundle["entry"]:
        res = entry["resource"]
        assert res["meta"]["profile"], f"{res['resourceType']} has meta.profile"
        assert entry["request"]["method"] in ("POST", "PUT")
        assert entry["request"]["url"].startswith(res["resourceType"])
        for ref in references(res):
            assert ref in urls, f"{ref} in {res['resourceType']} resolves inside the bundle"


def test_there_is_an_example_per_episode_type_and_per_region() -> None:
    docs = [load_document(p.read_bytes()) for p in EXAMPLES]
    assert {e.type for d in docs for e in d.episodes} == set(tables().episode_types)
    assert {d.region for d in docs} == set(tables().regions)


@pytest.mark.parametrize("path", EXAMPLES, ids=EXAMPLE_IDS)
def test_example_round_trips(path: Path) -> None:
    doc = load_document(path.read_bytes())
    bundle = to_bundle(doc)
    assert_well_formed(bundle)
    back = to_document(bundle)
    assert back == doc
    assert back.model_dump(mode="json") == doc.model_dump(mode="json")
    # and the bundle of the document read back is the same bundle
    assert to_bundle(back) == bundle


@pytest.mark.parametrize("path", EXAMPLES, ids=EXAMPLE_IDS)
def test_mapping_is_deterministic(path: Path) -> None:
    first = json.dumps(to_bundle(load_document(path.read_bytes())))
    again = json.dumps(to_bundle(load_document(path.read_bytes())))
    assert first == again
    # the same content as JSON instead of YAML gives the same bytes
    as_json = json.dumps(load_document(path.read_bytes()).model_dump(mode="json"))
    assert json.dumps(to_bundle(load_document(as_json))) == first


def test_changing_the_document_changes_the_ids() -> None:
    data = example_data(ROOT / "mappings/examples/care-coordination-flanders.yaml")
    a = to_bundle(load_document(json.dumps(data, default=str)))
    data["care_plan"]["title"] = "Another title"
    b = to_bundle(load_document(json.dumps(data, default=str)))
    assert a["entry"][0]["fullUrl"] != b["entry"][0]["fullUrl"]


def test_where_the_concepts_sit() -> None:
    """CONTRACT section 3 placement, on the case-management example."""
    bundle = to_bundle(load_document((ROOT / "mappings/examples/case-management-brussels.yaml").read_bytes()))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in bundle["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], []).append(e)
    url_of = {id(e["resource"]): e["fullUrl"] for e in bundle["entry"]}
    (ep,) = [e["resource"] for e in by_type["EpisodeOfCare"]]
    assert ep["type"][0]["coding"][0] == {
        "system": "https://becare.dev/fhir/CodeSystem/episode-type",
        "code": "case-management",
        "display": "Case management",
    }
    (team,) = [e["resource"] for e in by_type["CareTeam"]]
    assert ep["team"] == [{"reference": url_of[id(team)]}]
    # the case manager is the careManager and not a member of the team
    cm_role = next(
        e for e in by_type["PractitionerRole"] if e["resource"]["identifier"][0]["value"] == "pro-cm"
    )
    assert ep["careManager"] == {"reference": cm_role["fullUrl"]}
    assert cm_role["fullUrl"] not in [p["member"]["reference"] for p in team["participant"]]
    triggers = [x for x in ep["extension"] if x["url"].endswith("ext-case-management-trigger")]
    assert [t["valueCodeableConcept"]["coding"][0]["code"] for t in triggers] == [
        "failed-care-coordination",
        "unstable-complex-situation",
    ]
    region = [x for x in ep["extension"] if x["url"].endswith("ext-region")]
    assert region[0]["valueCoding"]["code"] == "brussels"
    (referral,) = [e for e in by_type["ServiceRequest"]]
    assert ep["referralRequest"] == [{"reference": referral["fullUrl"]}]
    consent = by_type["Consent"][0]["resource"]
    assert consent["scope"]["coding"][0]["code"] == "treatment"
    assert consent["category"][0]["coding"][0]["code"] == "case-management"
    tasks = [e["resource"] for e in by_type["Task"]]
    assert {t["code"]["coding"][0]["code"] for t in tasks} == {
        "intervention-evaluation",
        "handover",
        "follow-up",
    }
    assert all(
        t["extension"][0]["url"] == "http://hl7.org/fhir/StructureDefinition/task-candidateList"
        for t in tasks
    )
    goals = [e["resource"] for e in by_type["Goal"]]
    assert [g["category"][0]["coding"][0]["code"] for g in goals] == ["life-goal", "care-goal"]
    patient = by_type["Patient"][0]
    assert patient["request"]["method"] == "PUT"
    assert patient["request"]["url"] == (
        "Patient?identifier=https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin%7C45120328869"
    )


def test_lay_coordinator_is_only_a_team_role() -> None:
    bundle = to_bundle(
        load_document((ROOT / "mappings/examples/care-coordination-flanders.yaml").read_bytes())
    )
    ep = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "EpisodeOfCare")
    assert "careManager" not in ep
    team = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CareTeam")
    related = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RelatedPerson")
    roles = next(p["role"] for p in team["participant"] if p["member"]["reference"] == related)
    assert "care-coordinator" in [r["coding"][0]["code"] for r in roles]


# -- the schema ----------------------------------------------------------------------------


def test_published_schema_is_up_to_date() -> None:
    assert schema_path().read_text(encoding="utf-8") == render(), (
        "regenerate with: python -m adapter.mapping.schema"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=EXAMPLE_IDS)
def test_examples_follow_the_published_schema(path: Path) -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    data = json.loads(json.dumps(example_data(path), default=str))
    jsonschema.Draft202012Validator(schema).validate(data)


def test_schema_rejects_what_the_model_rejects() -> None:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    data = json.loads(json.dumps(example_data(EXAMPLES[0]), default=str))
    data["episodes"][0]["type"] = "care-co-ordination"
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(data))


# -- bad input --------------------------------------------------------------------------------


def problems_of(data: Any) -> dict[str, str]:
    with pytest.raises(DocumentError) as info:
        load_document(json.dumps(data, default=str))
    return {p.pointer: p.message for p in info.value.problems}


def test_every_schema_error_is_reported_with_its_pointer() -> None:
    data = example_data(ROOT / "mappings/examples/care-coordination-remunerated-wallonia.json")
    data["person"]["ssin"] = "1234"
    data["episodes"][0]["type"] = "coordination"
    data["professionals"][1]["profession"] = "doctor"
    del data["care_team"]["id"]
    data["tasks"][0]["colour"] = "red"
    data["episodes"][0]["period"] = {"start": "2025-02-01", "end": "2024-01-01"}
    found = problems_of(data)
    assert set(found) == {
        "/person/ssin",
        "/episodes/0/type",
        "/professionals/1/profession",
        "/care_team/id",
        "/tasks/0/colour",
        "/episodes/0/period",
    }
    assert found["/care_team/id"] == "required field is missing"
    assert found["/tasks/0/colour"] == "unknown field"
    assert "'coordination' is not allowed here" in found["/episodes/0/type"]
    assert "care-coordination-remunerated" in found["/episodes/0/type"]
    assert "ends before it starts" in found["/episodes/0/period"]


def test_reference_errors_are_reported_with_their_pointer() -> None:
    data = example_data(ROOT / "mappings/examples/case-management-brussels.yaml")
    data["care_team"]["members"][1]["party"] = "nobody"
    data["episodes"][0]["case_manager"] = "ic-fils"
    data["tasks"][0]["goal"] = "no-goal"
    data["informal_caregivers"].append(dict(data["informal_caregivers"][0]))
    found = problems_of(data)
    assert found == {
        "/informal_caregivers/1/id": "the id 'ic-fils' is already used by another party",
        "/care_team/members/1/party": "'nobody' is not the person nor a party of this document",
        "/episodes/0/case_manager": "'ic-fils' is a related; expected professional",
        "/tasks/0/goal": "the care plan has no goal with the id 'no-goal'",
    }


def test_lay_coordinator_must_hold_the_team_role() -> None:
    data = example_data(ROOT / "mappings/examples/care-coordination-flanders.yaml")
    data["care_team"]["members"][1]["roles"] = ["informal-caregiver"]
    assert "/episodes/0/coordinator" in problems_of(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "invalid JSON at line 1, column 2"),
        ('{"a": }', "invalid JSON at line 1, column 7"),
        ("- just\n- a list\n", "must be an object"),
        ("key: [unclosed\n", "invalid YAML at line"),
    ],
)
def test_unreadable_documents(text: str, expected: str) -> None:
    with pytest.raises(DocumentError) as info:
        load_document(text)
    assert expected in info.value.problems[0].message
    assert info.value.problems[0].pointer == ""


def test_yaml_numbers_are_read_as_text() -> None:
    """A YAML postal code or NIHDI number without quotes is still accepted."""
    data = example_data(ROOT / "mappings/examples/care-coordination-flanders.yaml")
    text = (ROOT / "mappings/examples/care-coordination-flanders.yaml").read_text(encoding="utf-8")
    unquoted = text.replace('postal_code: "9000"', "postal_code: 9000").replace(
        '"10203040500"', "10203040500"
    )
    assert load_document(unquoted).model_dump(mode="json") == load_document(
        json.dumps(data, default=str)
    ).model_dump(mode="json")


# -- normaliser ---------------------------------------------------------------------------------


def legacy_bundle() -> dict[str, Any]:
    """What a vendor sends today: BeCore 1.x systems, text roles, parties without profiles."""
    bundle = to_bundle(
        load_document((ROOT / "mappings/examples/care-coordination-remunerated-wallonia.json").read_bytes())
    )
    legacy = copy.deepcopy(bundle)
    for entry in legacy["entry"]:
        res = entry["resource"]
        if res["resourceType"] in ("Patient", "Practitioner", "Organization"):
            res.pop("meta")
            for ident in res.get("identifier", []):
                ident["system"] = ident["system"].replace("/fhir/core/NamingSystem/", "/fhir/NamingSystem/")
        if res["resourceType"] == "CareTeam":
            for part in res["participant"]:
                part["role"] = [{"text": r["coding"][0]["code"]} for r in part["role"]]
        if res["resourceType"] == "Task":
            res["extension"] = []
    return legacy


def test_normaliser_fixes_legacy_input_and_says_what_it_changed() -> None:
    bundle = to_bundle(
        load_document((ROOT / "mappings/examples/care-coordination-remunerated-wallonia.json").read_bytes())
    )
    legacy = legacy_bundle()
    snapshot = json.dumps(legacy)
    result = normalise(legacy)
    assert json.dumps(legacy) == snapshot, "the input is not modified"
    whats = [c.what for c in result.changes]
    assert sum("replaced by" in w for w in whats) == 5  # SSIN, 3 NIHDI, CBE
    assert sum(w.startswith("profile ") for w in whats) == 5  # Patient, 3 Practitioners, Organization
    assert sum(w.startswith("care role ") for w in whats) == 6
    assert sum(w.startswith("task-candidateList") for w in whats) == 3
    for change in result.changes:
        assert change.path.startswith("Bundle.entry[") and change.why
    ssin_change = next(c for c in result.changes if "NamingSystem/ssin" in c.what)
    assert ssin_change.path == "Bundle.entry[0].resource.identifier[0].system"
    # the corrected bundle reads back as the same document as the original
    assert to_document(result.resource) == to_document(bundle)
    # and normalising is idempotent
    assert normalise(result.resource).changes == []


def test_normaliser_codes_roles_from_snomed_and_vendor_text() -> None:
    team = {
        "resourceType": "CareTeam",
        "participant": [
            {"role": [{"coding": [{"system": "http://snomed.info/sct", "code": "133932002"}]}]},
            {"role": [{"text": "Zorgcoördinator"}]},
            {"role": [{"text": "welfare-actor"}]},
            {"role": [{"text": "astronaut"}]},
        ],
    }
    result = normalise(team)
    codes = [
        [c["code"] for c in p["role"][0].get("coding", []) if c["system"].endswith("care-role")]
        for p in result.resource["participant"]
    ]
    assert codes == [["informal-caregiver"], ["care-coordinator"], ["team-member"], []]
    assert result.resource["participant"][1]["role"][0]["text"] == "Zorgcoördinator"
    assert [c.path for c in result.changes if "care role" in c.what] == [
        "CareTeam.participant[0].role[0].coding",
        "CareTeam.participant[1].role[0].coding",
        "CareTeam.participant[2].role[0].coding",
    ]


def test_normaliser_codes_professions_given_as_text() -> None:
    role = {"resourceType": "PractitionerRole", "code": [{"text": "Huisarts"}]}
    result = normalise(role)
    assert result.resource["code"][0]["coding"][0]["code"] == "persgeneralphysician"
    assert result.resource["meta"]["profile"] == [
        "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-practitionerrole"
    ]


# -- command line ---------------------------------------------------------------------------------


def test_cli_maps_a_document_to_json_and_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = ROOT / "mappings/examples/case-management-brussels.yaml"
    out = tmp_path / "bundle.json"
    assert main(["map", str(src), "--output", str(out)]) == 0
    bundle = json.loads(out.read_text(encoding="utf-8"))
    assert bundle == to_bundle(load_document(src.read_bytes()))
    doc_out = tmp_path / "doc.yaml"
    assert main(["map", "--reverse", str(out), "--format", "yaml", "--output", str(doc_out)]) == 0
    assert load_document(doc_out.read_bytes()) == load_document(src.read_bytes())
    assert set(tmp_path.iterdir()) == {out, doc_out}, "no temporary file is left behind"


def test_cli_writes_xml(tmp_path: Path) -> None:
    out = tmp_path / "bundle.xml"
    assert main(["map", str(EXAMPLES[0]), "--format", "xml", "--output", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<Bundle") or text.startswith("<?xml")
    assert 'value="transaction"' in text


def test_cli_reverse_normalises_and_reports_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "legacy.json"
    src.write_text(json.dumps(legacy_bundle()), encoding="utf-8")
    changes = tmp_path / "changes.json"
    assert main(["map", "--reverse", str(src), "--changes", str(changes)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["episodes"][0]["coordinator"] == "pro-infirmiere"
    assert "legacy BeCore 1.x" in out.err
    assert len(json.loads(changes.read_text(encoding="utf-8"))) == 19


def test_cli_bad_input_exits_2_with_pointers_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = example_data(ROOT / "mappings/examples/care-coordination-flanders.yaml")
    data["person"]["ssin"] = "12"
    data["tasks"][1]["owner"] = "@ghost"
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(data, default=str), encoding="utf-8")
    out = tmp_path / "out.json"
    assert main(["map", str(src), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{src}: /person/ssin: '12' is not well formed" in err
    assert f"{src}: /tasks/1/owner: '@ghost' is not well formed" in err
    assert "2 problem(s); nothing written" in err
    assert list(tmp_path.iterdir()) == [src]


def test_cli_existing_output_is_kept_when_input_is_bad(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("previous", encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n", encoding="utf-8")
    assert main(["map", str(bad), "--output", str(out)]) == 2
    assert out.read_text(encoding="utf-8") == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "out.json"]


@pytest.mark.parametrize(
    "argv",
    [
        ["map", "/no/such/file.yaml"],
        ["map", "--reverse", str(ROOT / "mappings/examples/care-coordination-flanders.yaml")],
        ["map", str(ROOT / "mappings/examples/care-coordination-flanders.yaml"), "--format", "yaml"],
        [
            "map",
            "--reverse",
            str(ROOT / "mappings/examples/care-coordination-flanders.yaml"),
            "--format",
            "xml",
        ],
        [
            "map",
            str(ROOT / "mappings/examples/care-coordination-flanders.yaml"),
            "--output",
            "/no/such/dir/x.json",
        ],
    ],
)
def test_cli_cannot_run_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("becare: ") and "Traceback" not in err


def test_cli_reverse_of_a_bundle_without_patient_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "empty.json"
    src.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction"}), encoding="utf-8")
    assert main(["map", "--reverse", str(src)]) == 2
    assert "exactly one Patient" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("codesystem", "table"),
    [
        ("care-role", "roles"),
        ("case-management-trigger", "triggers"),
        ("consent-category", "consent_categories"),
        ("episode-type", "episode_types"),
        ("goal-category", "goal_categories"),
        ("region", "regions"),
        ("task-type", "task_types"),
    ],
)
def test_tables_have_the_codes_and_displays_of_our_code_systems(codesystem: str, table: str) -> None:
    """The mapping tables and the becare CodeSystems (CONTRACT section 3) must not drift."""
    cs = json.loads((ROOT / "profiles/becare" / f"CodeSystem-{codesystem}.json").read_text(encoding="utf-8"))
    rows = getattr(tables(), table)
    assert {c["code"]: c.get("display") for c in cs["concept"]} == {k: v["display"] for k, v in rows.items()}
    assert cs["url"] == next(
        tables().system(name) for name in tables().raw if tables().raw[name].get("system") == cs["url"]
    )


SAMPLES = sorted((ROOT / "samples" / "valid").glob("*.json"))


def test_there_are_valid_samples() -> None:
    assert len(SAMPLES) >= 8


@pytest.mark.parametrize("path", SAMPLES, ids=[p.name for p in SAMPLES])
def test_valid_sample_maps_back_and_forth_to_an_equal_bundle(path: Path) -> None:
    """Bundle -> document -> Bundle gives back the sample itself: same entries in the same order,
    same fullUrls, requests, narratives and every element (deep equality of the JSON)."""
    sample = json.loads(path.read_text(encoding="utf-8"))
    doc = to_document(sample)
    again = to_bundle(doc)
    assert again == sample
    assert json.dumps(again, indent=2, ensure_ascii=False) + "\n" == path.read_text(encoding="utf-8")
    # and the normaliser has nothing to fix in what the mapper makes
    assert normalise(sample).changes == []


def test_a_changed_sample_does_not_map_back_to_itself() -> None:
    """The equality above is not vacuous: an element the document cannot carry is lost."""
    sample = json.loads(SAMPLES[0].read_text(encoding="utf-8"))
    changed = copy.deepcopy(sample)
    changed["entry"][0]["resource"]["active"] = True
    assert to_bundle(to_document(changed)) == sample != changed


# -- narrative ---------------------------------------------------------------------------------


XHTML_DIV = '<div xmlns="http://www.w3.org/1999/xhtml"><p>'


@pytest.mark.parametrize("path", EXAMPLES, ids=EXAMPLE_IDS)
def test_every_resource_has_a_generated_narrative(path: Path) -> None:
    bundle = to_bundle(load_document(path.read_bytes()))
    ssin = load_document(path.read_bytes()).person.ssin
    for entry in bundle["entry"]:
        res = entry["resource"]
        text = res["text"]
        assert set(text) == {"status", "div"} and text["status"] == "generated"
        assert text["div"].startswith(XHTML_DIV) and text["div"].endswith("</p></div>")
        assert list(res)[:3] == ["resourceType", "meta", "text"], "text sits where FHIR puts it"
        assert ssin not in text["div"], "no identifier in the narrative"
    kinds = {e["resource"]["resourceType"]: e["resource"]["text"]["div"] for e in bundle["entry"]}
    assert "Person receiving care: " in kinds["Patient"]
    assert "Care plan: " in kinds["CarePlan"]


def test_narrative_text_is_escaped_and_follows_the_document() -> None:
    data = example_data(ROOT / "mappings/examples/care-coordination-flanders.yaml")
    data["care_plan"]["goals"][0]["description"] = "Tuin <b>werk</b> & markt"
    bundle = to_bundle(load_document(json.dumps(data, default=str)))
    goal = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Goal")
    assert goal["text"]["div"] == (
        f"{XHTML_DIV}Life goal: Tuin &lt;b&gt;werk&lt;/b&gt; &amp; markt</p></div>"
    )
    # the XML form carries it as XHTML, and reads back as the same text
    xml = to_xml(bundle)
    assert "Tuin &lt;b&gt;werk&lt;/b&gt; &amp; markt" in xml
    assert parse(xml).resource == bundle

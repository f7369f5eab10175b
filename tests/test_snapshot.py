"""Snapshot generation from differentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapter.conformance import SnapshotError, default_store
from adapter.conformance.snapshot import diff_element_ids, generate_snapshot
from tests.shared_ref import reference_dir

REFERENCE = reference_dir()
BE_PROFILES = REFERENCE / "belgian-profiles"
TEST_CASES = REFERENCE / "fhir-test-cases" / "validator"
needs_reference = pytest.mark.skipif(not BE_PROFILES.is_dir(), reason="reference material not available")


def _profile(base: str, elements: list[dict], *, type_: str | None = None, url: str = "http://x/sd/t",
             derivation: str = "constraint") -> dict:
    type_ = type_ or base
    return {
        "resourceType": "StructureDefinition", "url": url, "name": "T", "status": "draft",
        "kind": "resource", "abstract": False, "type": type_,
        "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{base}", "derivation": derivation,
        "differential": {"element": elements},
    }


def _by_id(sd: dict) -> dict[str, dict]:
    return {e["id"]: e for e in sd["snapshot"]["element"]}


def _ids(sd: dict) -> list[str]:
    return [e["id"] for e in sd["snapshot"]["element"]]


# -- unit behaviour ------------------------------------------------------------------------
def test_diff_ids_from_paths_and_slice_names():
    elements = [
        {"path": "Patient.identifier", "slicing": {"rules": "open"}},
        {"path": "Patient.identifier", "sliceName": "ssin"},
        {"path": "Patient.identifier.system", "fixedUri": "urn:x"},
        {"path": "Patient.identifier", "sliceName": "other"},
        {"path": "Patient.identifier.value"},
        {"path": "Patient.name"},
    ]
    assert diff_element_ids(elements) == [
        "Patient.identifier", "Patient.identifier:ssin", "Patient.identifier:ssin.system",
        "Patient.identifier:other", "Patient.identifier:other.value", "Patient.name",
    ]


def test_constraints_merge_onto_base_elements():
    store = default_store()
    sd = generate_snapshot(_profile("Patient", [
        {"id": "Patient", "path": "Patient", "constraint": [
            {"key": "t-1", "severity": "error", "human": "x", "expression": "true"}]},
        {"id": "Patient.gender", "path": "Patient.gender", "min": 1, "mustSupport": True, "short": "sex"},
        {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus", "binding": {"strength": "required"}},
        {"id": "Patient.deceased[x]", "path": "Patient.deceased[x]", "type": [{"code": "boolean"}]},
        {"id": "Patient.name", "path": "Patient.name", "max": "1"},
    ]), store)
    els = _by_id(sd)
    assert len(els) == 45
    assert [c["key"] for c in els["Patient"]["constraint"]][-1] == "t-1"
    assert "dom-2" in [c["key"] for c in els["Patient"]["constraint"]]
    assert els["Patient.gender"]["min"] == 1 and els["Patient.gender"]["mustSupport"] is True
    assert els["Patient.gender"]["short"] == "sex"
    assert els["Patient.gender"]["base"] == {"path": "Patient.gender", "min": 0, "max": "1"}
    assert els["Patient.maritalStatus"]["binding"]["strength"] == "required"
    assert els["Patient.maritalStatus"]["binding"]["valueSet"].startswith("http://hl7.org/fhir/ValueSet/marital-status")
    assert [t["code"] for t in els["Patient.deceased[x]"]["type"]] == ["boolean"]
    assert els["Patient.name"]["max"] == "1"
    # the base definition is not modified
    base = _by_id(store.structure_definition("Patient"))
    assert base["Patient.gender"]["min"] == 0 and "t-1" not in str(base["Patient"]["constraint"])


def test_slices_with_children_unfold_the_datatype():
    sd = generate_snapshot(_profile("Patient", [
        {"id": "Patient.identifier", "path": "Patient.identifier",
         "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"},
         "constraint": [{"key": "root-1", "severity": "error", "human": "x", "expression": "true"}]},
        {"id": "Patient.identifier:ssin", "path": "Patient.identifier", "sliceName": "ssin", "max": "1"},
        {"id": "Patient.identifier:ssin.system", "path": "Patient.identifier.system", "min": 1,
         "fixedUri": "urn:ssin"},
        {"id": "Patient.identifier:nihdi", "path": "Patient.identifier", "sliceName": "nihdi"},
        {"id": "Patient.identifier.use", "path": "Patient.identifier.use", "min": 1},
    ]), default_store())
    ids = _ids(sd)
    start = ids.index("Patient.identifier")
    assert ids[start:start + 2] == ["Patient.identifier", "Patient.identifier.id"]  # root children first
    assert ids.index("Patient.identifier.use") < ids.index("Patient.identifier:ssin")
    assert ids.index("Patient.identifier:ssin.assigner") < ids.index("Patient.identifier:nihdi")
    assert ids.index("Patient.identifier:nihdi") < ids.index("Patient.active")
    els = _by_id(sd)
    ssin = els["Patient.identifier:ssin"]
    assert ssin["sliceName"] == "ssin" and ssin["max"] == "1" and "slicing" not in ssin
    assert "root-1" not in str(ssin.get("constraint"))  # slices start from the inherited element
    system = els["Patient.identifier:ssin.system"]
    assert (system["min"], system["fixedUri"], system["path"]) == (1, "urn:ssin", "Patient.identifier.system")
    assert system["base"]["path"] == "Identifier.system"
    assert els["Patient.identifier.use"]["min"] == 1
    assert "Patient.identifier:nihdi.use" not in els  # not unfolded when nothing below is constrained


def test_extension_slice_unfolds_from_its_profile_and_value_choice():
    sd = generate_snapshot(_profile("Patient", [
        {"id": "Patient.extension", "path": "Patient.extension",
         "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}},
        {"id": "Patient.extension:birthPlace", "path": "Patient.extension", "sliceName": "birthPlace",
         "type": [{"code": "Extension",
                   "profile": ["http://hl7.org/fhir/StructureDefinition/patient-birthPlace"]}]},
        {"id": "Patient.extension:birthPlace.value[x]", "path": "Patient.extension.value[x]",
         "short": "where"},
    ]), default_store())
    els = _by_id(sd)
    url = els["Patient.extension:birthPlace.url"]
    assert url["fixedUri"] == "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
    value = els["Patient.extension:birthPlace.value[x]"]
    assert [t["code"] for t in value["type"]] == ["Address"] and value["short"] == "where"


def test_extension_definition_value_renamed_choice():
    ext = {
        "resourceType": "StructureDefinition", "url": "http://x/ext", "name": "E", "status": "draft",
        "kind": "complex-type", "abstract": False, "type": "Extension",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension", "derivation": "constraint",
        "context": [{"type": "element", "expression": "Patient"}],
        "differential": {"element": [
            {"path": "Extension.url", "fixedUri": "http://x/ext"},
            {"path": "Extension.value[x]", "type": [{"code": "string"}]},
            {"path": "Extension.valueString", "maxLength": 10},
        ]},
    }
    els = _by_id(generate_snapshot(ext, default_store()))
    assert els["Extension.value[x]"]["maxLength"] == 10
    assert "Extension.valueString" not in els


def test_renamed_choice_with_several_types_becomes_type_slice():
    sd = generate_snapshot(_profile("Observation", [
        {"path": "Observation.valueQuantity", "min": 1},
        {"path": "Observation.valueQuantity.system", "fixedUri": "http://unitsofmeasure.org"},
    ]), default_store())
    els = _by_id(sd)
    root = els["Observation.value[x]"]
    assert root["slicing"]["discriminator"] == [{"type": "type", "path": "$this"}]
    tslice = els["Observation.value[x]:valueQuantity"]
    assert [t["code"] for t in tslice["type"]] == ["Quantity"] and tslice["min"] == 1
    assert els["Observation.value[x]:valueQuantity.system"]["fixedUri"] == "http://unitsofmeasure.org"


def test_content_reference_is_unfolded():
    sd = generate_snapshot(_profile("Questionnaire", [
        {"path": "Questionnaire.item.item.linkId", "maxLength": 5},
    ]), default_store())
    els = _by_id(sd)
    nested = els["Questionnaire.item.item"]
    assert "contentReference" not in nested and nested["type"] == [{"code": "BackboneElement"}]
    assert els["Questionnaire.item.item.linkId"]["maxLength"] == 5
    assert "Questionnaire.item.item.item" in els  # still a contentReference, not unfolded further
    assert els["Questionnaire.item.item.item"]["contentReference"] == "#Questionnaire.item"


def test_backbone_slice_children_come_from_the_slicing_entry():
    sd = generate_snapshot(_profile("Bundle", [
        {"path": "Bundle.entry", "slicing": {"discriminator": [{"type": "type", "path": "resource"}],
                                              "rules": "open"}},
        {"path": "Bundle.entry", "sliceName": "pat", "min": 1},
        {"path": "Bundle.entry.resource", "type": [{"code": "Patient"}]},
    ]), default_store())
    els = _by_id(sd)
    assert els["Bundle.entry:pat.resource"]["type"] == [{"code": "Patient"}]
    assert "Bundle.entry:pat.request.method" in els
    assert els["Bundle.entry.resource"]["type"] == [{"code": "Resource"}]


def test_bad_differentials_are_clear_errors():
    store = default_store()
    with pytest.raises(SnapshotError, match=r"Patient\.dateOfBirth does not exist"):
        generate_snapshot(_profile("Patient", [{"path": "Patient.dateOfBirth", "min": 1}]), store)
    with pytest.raises(SnapshotError, match="does not start with the type"):
        generate_snapshot(_profile("Patient", [{"path": "Observation.status", "min": 1}]), store)
    with pytest.raises(SnapshotError, match="2 types"):
        generate_snapshot(_profile("Patient", [{"path": "Patient.deceased[x].id", "min": 1}]), store)
    with pytest.raises(SnapshotError, match="without path"):
        generate_snapshot(_profile("Patient", [{"id": "Patient.x"}]), store)


def test_profile_on_profile_keeps_inherited_slices():
    store = default_store().overlay()
    be_patient = "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-patient"
    child = _profile("Patient", [
        {"id": "Patient.identifier:SSIN", "path": "Patient.identifier", "sliceName": "SSIN", "min": 1},
    ])
    child["baseDefinition"] = be_patient
    store.add(child)
    els = _by_id(store.structure_definition("http://x/sd/t"))
    assert els["Patient.identifier:SSIN"]["min"] == 1
    assert els["Patient.identifier:SSIN.system"]["fixedUri"].endswith("/core/NamingSystem/ssin")
    assert "be-inv-SSIN" in str(els["Patient.identifier"]["constraint"])


def test_logical_model_on_base():
    model = {
        "resourceType": "StructureDefinition", "url": "http://x/Model", "name": "Model", "status": "draft",
        "kind": "logical", "abstract": False, "type": "http://x/Model",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Base", "derivation": "specialization",
        "differential": {"element": [
            {"id": "Model", "path": "Model"},
            {"id": "Model.part", "path": "Model.part", "min": 1, "max": "*",
             "type": [{"code": "BackboneElement"}]},
            {"id": "Model.part.name", "path": "Model.part.name", "min": 1, "max": "1",
             "type": [{"code": "string"}]},
        ]},
    }
    assert _ids(generate_snapshot(model, default_store())) == ["Model", "Model.part", "Model.part.name"]


# -- BeCore: our snapshots against SUSHI's --------------------------------------------------
def _signature(el: dict) -> tuple:
    binding = el.get("binding", {})
    return (
        el.get("path"), el.get("min"), el.get("max"), el.get("sliceName"),
        tuple(t["code"] for t in el.get("type", [])),
        tuple(p for t in el.get("type", []) for p in t.get("profile", []) + t.get("targetProfile", [])),
        json.dumps({k: v for k, v in el.items() if k.startswith(("fixed", "pattern"))}, sort_keys=True),
        binding.get("strength"), binding.get("valueSet"),
        tuple(sorted(c["key"] for c in el.get("constraint", []))),
        json.dumps(el.get("slicing"), sort_keys=True),
    )


def _under_profiled_extension(element_id: str, theirs: dict[str, dict]) -> bool:
    """SUSHI unfolds some extension profiles into the snapshot; the FHIR tools do not."""
    parts = element_id.split(".")
    for n in range(1, len(parts)):
        ancestor = theirs.get(".".join(parts[:n]))
        types = ancestor.get("type", []) if ancestor else []
        if any(t.get("code") == "Extension" and t.get("profile") for t in types):
            return True
    return False


BECORE_FILES = sorted((BE_PROFILES / "core-json").glob("StructureDefinition-*.json"))


@needs_reference
def test_becore_files_present():
    assert len(BECORE_FILES) == 22


@needs_reference
@pytest.mark.parametrize("path", BECORE_FILES, ids=lambda p: p.stem.removeprefix("StructureDefinition-"))
def test_becore_snapshot_matches_sushi(path: Path):
    differential = json.loads(path.read_text())
    sushi = json.loads((BE_PROFILES / "core-json-snapshot" / path.name).read_text())
    ours = generate_snapshot(differential, default_store())
    mine = {e["id"]: e for e in ours["snapshot"]["element"]}
    theirs = {e["id"]: e for e in sushi["snapshot"]["element"]}
    assert [i for i in mine if i not in theirs] == []
    missing = [i for i in theirs if i not in mine and not _under_profiled_extension(i, theirs)]
    assert missing == []
    common = [i for i in mine if i in theirs]
    assert common == [i for i in theirs if i in mine]  # same order
    differing = [(i, _signature(mine[i]), _signature(theirs[i])) for i in common
                 if _signature(mine[i]) != _signature(theirs[i])]
    assert differing == []


# -- the official test suite's differential-only profiles ------------------------------------
@needs_reference
def test_suite_json_profiles_generate():
    store = default_store().overlay()
    # invalid on purpose: a path "Observation...unit" and an element "Patient.dateOfBirth"
    broken = {"obs-unit-profile.json", "parameters-profiled-resource-profiles-patient2.json"}
    profiles = []
    for path in sorted(TEST_CASES.glob("*.json")):
        try:
            res = json.loads(path.read_text())
        except ValueError:
            continue  # some test inputs are deliberately malformed JSON
        if res.get("resourceType") == "StructureDefinition" and "snapshot" not in res:
            store.add(res, str(path))
            profiles.append((path, res))
    done = 0
    for path, res in profiles:
        if path.name in broken:
            with pytest.raises(SnapshotError):
                generate_snapshot(res, store)
            continue
        sd = generate_snapshot(res, store)
        ids = _ids(sd)
        assert len(ids) == len(set(ids)), path.name
        assert ids[0] == sd["type"] or ids[0] == res["differential"]["element"][0]["path"].split(".")[0]
        done += 1
    assert done >= 25


@needs_reference
def test_suite_parameters_profile_slice_children():
    store = default_store().overlay()
    store.load(TEST_CASES / "parameters-profiled-resource-profile-params.json")
    sd = store.structure_definition(
        "http://hl7.org/fhir/test/StructureDefinition/parameters-profiled-resource-profile-params")
    els = _by_id(sd)
    assert els["Parameters.parameter"]["slicing"]["rules"] == "closed"
    assert els["Parameters.parameter:one.name"]["fixedString"] == "one"
    resource = els["Parameters.parameter:one.resource"]
    assert resource["min"] == 1
    assert resource["type"][0]["profile"] == [
        "http://hl7.org/fhir/test/StructureDefinition/parameters-profiled-resource-profiles-patient"]


@needs_reference
def test_suite_obs_value_min_choice_renamed():
    store = default_store().overlay()
    store.load(TEST_CASES / "obs-value-min-profile.json")
    sd = store.structure_definition("http://hl7.org.au/fhir/tests/StructureDefinition/obs-value-min-profile")
    value = _by_id(sd)["Observation.value[x]"]
    assert [t["code"] for t in value["type"]] == ["Quantity"]
    assert value["minValueQuantity"]["code"] == "kg"


@needs_reference
def test_suite_derived_extension_chain():
    store = default_store().overlay()
    store.load(TEST_CASES / "ext-base.json")
    store.load(TEST_CASES / "ext-derived.json")
    sd = store.structure_definition("http://hl7.org/fhir/test/StructureDefinition/ext-derived")
    els = _by_id(sd)
    assert els["Extension.url"]["fixedUri"] == "http://hl7.org/fhir/test/StructureDefinition/ext-derived"
    assert [t["code"] for t in els["Extension.value[x]"]["type"]] == ["string"]


@needs_reference
def test_becare_style_profile_on_be_task():
    store = default_store().overlay()
    task = _profile("Task", [
        {"id": "Task.code", "path": "Task.code", "min": 1},
        {"id": "Task.code.coding", "path": "Task.code.coding", "min": 1},
        {"id": "Task.code.coding.system", "path": "Task.code.coding.system", "fixedUri": "https://becare.dev/x"},
    ], url="https://becare.dev/fhir/StructureDefinition/t")
    task["baseDefinition"] = "https://www.ehealth.fgov.be/standards/fhir/patient-care/StructureDefinition/be-task"
    store.add(task)
    els = _by_id(store.structure_definition("https://becare.dev/fhir/StructureDefinition/t"))
    assert els["Task.code.coding.system"]["fixedUri"] == "https://becare.dev/x"
    assert els["Task.code.coding.system"]["path"] == "Task.code.coding.system"
    assert any("task-candidateList" in p for e in els.values() for t in e.get("type", [])
               for p in t.get("profile", []))


# -- XML test-suite profiles (need adapter.fhirio) ------------------------------------------
@needs_reference
def test_suite_xml_differential_profiles():
    store = default_store().overlay()
    store.load(TEST_CASES / "mycommunication.structureDefinition.xml")
    store.load(TEST_CASES / "jv-patient-profile-dt.xml")
    store.load(TEST_CASES / "jv-patient-profile-res.xml")
    for name in ("fixed", "fixed1", "none", "none1", "pattern", "pattern1"):
        store.load(TEST_CASES / f"patient-min-profile-{name}.xml")
    comm = _by_id(store.structure_definition("http://hl7.dk/fhir/core/StructureDefinition/MyCommunication"))
    assert comm["Communication.basedOn"]["min"] == 1
    assert comm["Communication.partOf"]["type"][0]["targetProfile"] == [
        "http://hl7.org/fhir/StructureDefinition/Patient", "http://hl7.org/fhir/StructureDefinition/Basic"]
    jv = _by_id(store.structure_definition("http://example.org/fhir/StructureDefinition/MyPatient"))
    gp = jv["Patient.generalPractitioner:sliceGeneralPractitioner.identifier"]
    assert gp["type"][0]["profile"] == ["http://hl7.dk/fhir/StructureDefinition/dk-core-sor-identifier"]
    sor = _by_id(store.structure_definition("http://hl7.dk/fhir/StructureDefinition/dk-core-sor-identifier"))
    assert sor["Identifier.system"]["fixedUri"] == "urn:oid:1.2.208.176.1.1"
    assert "min-digits-sor" in [c["key"] for c in sor["Identifier.value"]["constraint"]]
    pattern = _by_id(store.structure_definition(
        "http://hl7.org/fhir/test/StructureDefinition/Patient-min-profile-pattern"))
    assert any(k.startswith("pattern") for k in pattern["Patient.identifier"])

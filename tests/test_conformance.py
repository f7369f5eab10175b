"""ConformanceStore, loader and default store."""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from adapter.conformance import ConformanceError, ConformanceStore, SnapshotError, default_store
from adapter.conformance.store import build_default_store, version_key
from tests.shared_ref import reference_dir

REFERENCE = reference_dir()
TEST_CASES = REFERENCE / "fhir-test-cases" / "validator"
BE = "https://www.ehealth.fgov.be/standards/fhir"


def _sd(url: str, version: str | None = None, **extra) -> dict:
    res = {
        "resourceType": "StructureDefinition", "url": url, "name": "T", "status": "draft",
        "kind": "resource", "abstract": False, "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient", "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.active", "path": "Patient.active", "min": 1}]},
    }
    if version:
        res["version"] = version
    res.update(extra)
    return res


def _vs(url: str, version: str) -> dict:
    return {"resourceType": "ValueSet", "url": url, "version": version, "status": "active"}


# -- store ---------------------------------------------------------------------------------
def test_versions_latest_wins_and_url_pipe_version():
    store = ConformanceStore()
    store.add(_vs("http://x/vs", "1.10.0"))
    store.add(_vs("http://x/vs", "1.2.0"))
    store.add(_vs("http://x/vs", "1.10.0-ballot"))
    assert store.get("http://x/vs")["version"] == "1.10.0"
    assert store.get("http://x/vs|1.2.0")["version"] == "1.2.0"
    assert store.get("http://x/vs", "1.2.0")["version"] == "1.2.0"
    assert store.get("http://x/vs|1.2")["version"] == "1.2.0"  # partial version
    assert store.get("http://x/vs|9.9.9") is None
    assert store.value_set("http://x/vs|1.10.0-ballot")["version"] == "1.10.0-ballot"
    assert store.code_system("http://x/vs") is None  # wrong type
    assert version_key("2.0.0") > version_key("2.0.0-rc1") > version_key("1.99")


def test_equal_versions_last_added_wins():
    store = ConformanceStore()
    first, second = _vs("http://x/vs", "1.0.0"), _vs("http://x/vs", "1.0.0")
    second["title"] = "second"
    store.add(first)
    store.add(second)
    assert store.get("http://x/vs")["title"] == "second"


def test_add_rejects_non_conformance_resources_clearly():
    store = ConformanceStore()
    with pytest.raises(ConformanceError, match="not a conformance resource"):
        store.add({"resourceType": "Patient", "id": "p"}, "p.json")
    with pytest.raises(ConformanceError, match="without a canonical url"):
        store.add({"resourceType": "ValueSet", "status": "active"})


def test_overlay_reads_fall_back_and_do_not_pollute_parent():
    parent = ConformanceStore()
    parent.add(_vs("http://x/a", "1.0.0"))
    child = parent.overlay()
    child.add(_vs("http://x/b", "1.0.0"))
    shadow = _vs("http://x/a", "0.1.0")  # an older version in the child still shadows the parent
    shadow["title"] = "mine"
    child.add(shadow)
    assert child.get("http://x/b") is not None
    assert parent.get("http://x/b") is None
    assert child.get("http://x/a")["title"] == "mine"
    assert child.get("http://x/a|1.0.0")["version"] == "1.0.0"  # explicit version still reaches the parent
    assert "title" not in parent.get("http://x/a")
    assert sorted(v["url"] for v in child.all("ValueSet")) == ["http://x/a", "http://x/a", "http://x/b"]
    assert [v["url"] for v in parent.all("ValueSet")] == ["http://x/a"]


def test_structure_definition_generates_snapshot_once_and_by_type_name():
    store = default_store().overlay()
    original = _sd("http://x/sd/p")
    store.add(original)
    sd = store.structure_definition("http://x/sd/p")
    assert "snapshot" not in original  # the caller's dict is not modified
    active = next(e for e in sd["snapshot"]["element"] if e["id"] == "Patient.active")
    assert active["min"] == 1
    assert store.structure_definition("http://x/sd/p") is sd  # cached
    assert store.structure_definition("Patient")["url"] == "http://hl7.org/fhir/StructureDefinition/Patient"
    assert store.structure_definition("http://nowhere/sd") is None


def test_snapshot_of_parent_resource_generated_through_child_stays_clean():
    parent = default_store().overlay()
    parent.add(_sd("http://x/sd/base"))
    child = parent.overlay()
    # the child redefines Patient's base: the parent's profile must not be built on it
    fake_patient = copy.deepcopy(default_store().structure_definition("Patient"))
    fake_patient["snapshot"]["element"] = fake_patient["snapshot"]["element"][:5]
    child.add(fake_patient)
    sd = child.structure_definition("http://x/sd/base")
    assert len(sd["snapshot"]["element"]) == 45


def test_circular_base_is_a_clear_error():
    store = default_store().overlay()
    store.add(_sd("http://x/a", baseDefinition="http://x/b"))
    store.add(_sd("http://x/b", baseDefinition="http://x/a"))
    with pytest.raises(SnapshotError, match="circular"):
        store.structure_definition("http://x/a")


def test_unknown_base_is_a_clear_error():
    store = ConformanceStore()
    store.add(_sd("http://x/a", baseDefinition="http://x/missing"))
    with pytest.raises(SnapshotError, match="http://x/missing"):
        store.structure_definition("http://x/a")


def test_naming_system_by_unique_id():
    ns = default_store().naming_system(f"{BE}/core/NamingSystem/ssin")
    assert ns is not None and ns["resourceType"] == "NamingSystem"


# -- loader --------------------------------------------------------------------------------
def test_load_json_file_and_bundle(tmp_path: Path):
    (tmp_path / "sd.json").write_text(json.dumps(_sd("http://x/one")))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": _vs("http://x/vs1", "1")},
        {"resource": {"resourceType": "Patient", "id": "ignored"}},
        {"resource": {"resourceType": "Bundle", "type": "collection",
                      "entry": [{"resource": _vs("http://x/vs2", "1")}]}},
    ]}
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    store = ConformanceStore()
    assert store.load(tmp_path / "sd.json") == 1
    assert store.load(tmp_path / "bundle.json") == 2
    assert store.get("http://x/vs2") is not None
    assert store.source("http://x/vs2").endswith("bundle.json#entry[2]#entry[0]")


def test_load_folder_recursively_skips_non_conformance(tmp_path: Path):
    sub = tmp_path / "nested"
    sub.mkdir()
    (sub / "a.json").write_text(json.dumps(_vs("http://x/a", "1")))
    (tmp_path / "example.json").write_text(json.dumps({"resourceType": "Patient"}))
    (tmp_path / "package.json").write_text(json.dumps({"name": "x", "version": "1"}))
    (tmp_path / "notes.txt").write_text("hello")
    with gzip.open(tmp_path / "b.json.gz", "wt") as fh:
        json.dump({"resourceType": "Bundle", "type": "collection",
                   "entry": [{"resource": _vs("http://x/b", "1")}]}, fh)
    store = ConformanceStore()
    assert store.load(tmp_path) == 2
    assert store.get("http://x/a") and store.get("http://x/b")


def test_load_package_tgz(tmp_path: Path):
    path = tmp_path / "pkg.tgz"
    members = {
        "package/package.json": {"name": "test.pkg", "version": "1.0.0"},
        "package/StructureDefinition-p.json": _sd("http://x/pkg/p", "1.0.0"),
        "package/ValueSet-v.json": _vs("http://x/pkg/v", "1.0.0"),
        "package/example/Patient-1.json": {"resourceType": "Patient", "id": "1"},
        "other/ValueSet-outside.json": _vs("http://x/outside", "1"),
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    store = ConformanceStore()
    assert store.load(path) == 2
    assert store.get("http://x/pkg/p|1.0.0") is not None
    assert store.get("http://x/outside") is None


def test_load_errors_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConformanceError, match=r"bad\.json: invalid JSON"):
        ConformanceStore().load(bad)
    with pytest.raises(ConformanceError, match="no such file"):
        ConformanceStore().load(tmp_path / "missing.json")
    notpkg = tmp_path / "x.tgz"
    notpkg.write_bytes(b"garbage")
    with pytest.raises(ConformanceError, match=r"x\.tgz"):
        ConformanceStore().load(notpkg)
    emptypkg = tmp_path / "empty.tgz"
    with tarfile.open(emptypkg, "w:gz"):
        pass
    with pytest.raises(ConformanceError, match="no package/ folder"):
        ConformanceStore().load(emptypkg)


# -- default store -------------------------------------------------------------------------
def test_default_store_contents():
    store = default_store()
    assert store is default_store()
    for url in (
        "http://hl7.org/fhir/StructureDefinition/Patient",
        "http://hl7.org/fhir/StructureDefinition/Extension",
        "http://hl7.org/fhir/StructureDefinition/patient-nationality",
        f"{BE}/core/StructureDefinition/be-patient",
        f"{BE}/core/StructureDefinition/be-practitioner",
        f"{BE}/core/StructureDefinition/be-practitionerrole",
        f"{BE}/core/StructureDefinition/be-organization",
        f"{BE}/patient-care/StructureDefinition/be-care-plan",
        f"{BE}/patient-care/StructureDefinition/be-careteam",
        f"{BE}/patient-care/StructureDefinition/be-goal",
        f"{BE}/patient-care/StructureDefinition/be-task",
        f"{BE}/core-clinical/StructureDefinition/be-problem",
        f"{BE}/core/StructureDefinition/BeRelatedPerson",
    ):
        sd = store.structure_definition(url)
        assert sd is not None, url
        assert sd["snapshot"]["element"], url
    assert store.structure_definition("Patient")["version"] == "4.0.1"
    assert store.value_set("http://hl7.org/fhir/ValueSet/administrative-gender") is not None
    assert store.code_system("http://hl7.org/fhir/administrative-gender") is not None
    assert store.value_set(f"{BE}/core/ValueSet/be-contactperson") is not None  # from be-terminology
    assert store.code_system(f"{BE}/core/CodeSystem/cd-hcparty") is not None
    task = store.structure_definition(f"{BE}/patient-care/StructureDefinition/be-task")
    assert any("task-candidateList" in p for e in task["snapshot"]["element"]
               for t in e.get("type", []) for p in t.get("profile", []))
    sds = list(store.all("StructureDefinition"))
    assert len(sds) >= 212 + 437 + 22


def test_default_store_builds_from_the_vendored_packages():
    # how fast it loads is measured in bench/bench_validate.py (first validation after start)
    store = build_default_store()
    assert len(store) >= 1897


def test_vendored_core_is_compacted_but_keeps_validation_data():
    sd = default_store().structure_definition("Patient")
    assert "text" not in sd and "mapping" not in sd
    gender = next(e for e in sd["snapshot"]["element"] if e["id"] == "Patient.gender")
    assert "definition" not in gender and "mapping" not in gender
    assert gender["binding"] == {"strength": "required",
                                 "valueSet": "http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1"}
    root = sd["snapshot"]["element"][0]
    assert any(c["key"] == "dom-2" and "expression" in c and "xpath" not in c for c in root["constraint"])
    extension = default_store().structure_definition("Extension")
    url = next(e for e in extension["snapshot"]["element"] if e["id"] == "Extension.url")
    assert url["representation"] == ["xmlAttr"]  # the XML reader needs it


def test_load_xml_structure_definitions():
    """Runs once adapter.fhirio.parse exists (written by another helper)."""
    store = default_store().overlay()
    assert store.load(TEST_CASES / "patient-min-profile-fixed.xml") == 1
    sd = store.structure_definition("http://hl7.org/fhir/test/StructureDefinition/Patient-min-profile-fixed")
    ident = next(e for e in sd["snapshot"]["element"] if e["id"] == "Patient.identifier")
    assert ident["fixedIdentifier"] == {"use": "usual"}

"""``becare profiles``: what the validator has loaded, grouped by package, with versions."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.main import main
from adapter.conformance import default_store
from adapter.rules import load_catalog

BECARE = "https://becare.dev/fhir/StructureDefinition/"
CONTRACT_PROFILES = {
    "becare-episodeofcare": "EpisodeOfCare",
    "becare-careteam": "CareTeam",
    "becare-careplan": "CarePlan",
    "becare-goal": "Goal",
    "becare-task": "Task",
    "becare-consent": "Consent",
    "becare-bundle": "Bundle",
}


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["profiles", "--format", "json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def _group(data: dict[str, Any], label: str) -> dict[str, Any]:
    return next(g for g in data["groups"] if g["label"] == label)


def test_packages_and_versions(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys)
    labels = [g["label"] for g in data["groups"]]
    assert labels[0] == "FHIR R4 core" and labels[-1] == "becare"
    assert {"BeCore", "Patient Care"} <= set(labels)
    core, be, pc = _group(data, "FHIR R4 core"), _group(data, "BeCore"), _group(data, "Patient Care")
    assert (core["package"], core["version"]) == ("hl7.fhir.r4.core", "4.0.1")
    assert (be["package"], be["version"]) == ("hl7.fhir.be.core", "2.1.2")
    assert (pc["package"], pc["version"]) == ("hl7.fhir.be.patient-care", "1.1.0")
    # the package versions agree with what the resources themselves declare
    assert {sd["version"] for sd in core["StructureDefinition"]} == {"4.0.1"}
    assert {sd["version"] for sd in pc["StructureDefinition"]} == {"1.1.0"}
    pc_urls = {sd["url"].rsplit("/", 1)[1] for sd in pc["StructureDefinition"]}
    assert {"be-care-plan", "be-careteam", "be-goal", "be-task"} <= pc_urls
    assert any(sd["url"].endswith("/be-patient") for sd in be["StructureDefinition"])
    assert data["rulebook_version"] == load_catalog().version


def test_our_profiles_are_listed_with_url_version_type_kind(capsys: pytest.CaptureFixture[str]) -> None:
    ours = _group(_json(capsys), "becare")
    by_url = {sd["url"]: sd for sd in ours["StructureDefinition"]}
    for pid, rtype in CONTRACT_PROFILES.items():
        sd = by_url[BECARE + pid]
        assert (sd["type"], sd["kind"], sd["category"]) == (rtype, "resource", "profile")
        assert sd["version"] == default_store().get(BECARE + pid)["version"]
    # the contract's two, and the two becare puts on the OperationOutcomes it writes
    for ext in ("ext-region", "ext-case-management-trigger", "ext-validation-provenance", "ext-suppressed"):
        assert by_url[BECARE + ext]["category"] == "extension"
    assert ours["counts"]["by_category"] == {"profile": 7, "extension": 4}
    assert ours["counts"]["CodeSystem"] >= 8  # the contract's code systems, section 3


def test_counts_add_up_to_the_store(capsys: pytest.CaptureFixture[str]) -> None:
    data = _json(capsys)
    store = default_store()
    for rtype in ("StructureDefinition", "CodeSystem", "ValueSet"):
        in_store = sum(1 for _ in store.all(rtype))
        assert data["totals"][rtype] == in_store == sum(g["counts"][rtype] for g in data["groups"])
    assert data["totals"]["NamingSystem"] == sum(1 for _ in store.all("NamingSystem")) > 0
    assert all(g["key"] != "other" for g in data["groups"]), "every resource has a known origin"


def test_text_is_short_by_default_and_complete_with_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    short = capsys.readouterr().out
    assert len(short.splitlines()) < 20
    for word in ("FHIR R4 core", "4.0.1", "BeCore", "2.1.2", "Patient Care", "1.1.0", "becare", "rulebook"):
        assert word in short
    assert BECARE + "becare-careteam" not in short
    assert main(["profiles", "--verbose"]) == 0
    verbose = capsys.readouterr().out
    assert f"{BECARE}becare-careteam|1.0.0  CareTeam (resource, profile)" in verbose
    assert "http://hl7.org/fhir/StructureDefinition/Patient|4.0.1  Patient (resource)" in verbose


def _profile(pid: str) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition",
        "url": f"https://example.org/fhir/StructureDefinition/{pid}",
        "version": "0.3.0",
        "name": pid.title().replace("-", ""),
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]},
    }


def test_ig_folder_and_package_are_their_own_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "ig"
    folder.mkdir()
    (folder / "sd.json").write_text(json.dumps(_profile("my-patient")), encoding="utf-8")
    package = tmp_path / "acme.tgz"
    with tarfile.open(package, "w:gz") as tar:
        for name, content in (
            ("package/package.json", {"name": "acme.fhir.ig", "version": "2.0.1"}),
            ("package/StructureDefinition-acme.json", _profile("acme-patient")),
        ):
            raw = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    data = _json(capsys, "--ig", str(folder), "--ig", str(package))
    mine = _group(data, f"--ig {folder}")
    assert [sd["url"] for sd in mine["StructureDefinition"]] == [_profile("my-patient")["url"]]
    assert mine["StructureDefinition"][0]["version"] == "0.3.0"
    acme = _group(data, f"--ig {package}")
    assert (acme["package"], acme["version"]) == ("acme.fhir.ig", "2.0.1")
    assert acme["counts"]["StructureDefinition"] == 1
    assert data["groups"][-2:] == [mine, acme]
    # the cached default store is not modified by --ig
    assert default_store().get(_profile("my-patient")["url"]) is None


@pytest.mark.parametrize("content", [None, "{not json"])
def test_bad_ig_is_a_clear_usage_error(
    content: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "broken.json"
    if content is not None:
        target.write_text(content, encoding="utf-8")
    assert main(["profiles", "--ig", str(target)]) == 2  # an exception would fail the test here
    out, err = capsys.readouterr()
    assert err.startswith("becare: cannot load --ig:") and "broken.json" in err
    assert out == ""

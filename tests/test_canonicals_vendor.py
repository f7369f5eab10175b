"""Profile canonicals as vendors send them (issue 14): legacy eHealth federal canonicals validated
against the current BeCore / Patient Care profile, with the report saying so; ``canonical|version``
honoured, and a clear error when that version is not loaded.

Proof that a profile was applied: an error only that profile raises. BeCore's be-patient carries
the invariant ``be-inv-SSIN`` (11 digits, no punctuation); the base Patient does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.main import main
from adapter.conformance import default_store
from adapter.conformance.legacy import LegacyTableError, legacy_table, lookup, parse_table
from adapter.testing.service import BecareService
from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator
from tests.shared_ref import reference_dir

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = reference_dir() / "belgian-profiles"
SAMPLE = ROOT / "samples" / "valid" / "brussels-care-coordination.json"

FEDERAL = "https://www.ehealth.fgov.be/standards/fhir/StructureDefinition/"
LEGACY_PATIENT = FEDERAL + "be-patient"
CORE_PATIENT = "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-patient"
HOMECARE_PLAN = "https://www.ehealth.fgov.be/standards/fhir/care-coordination/StructureDefinition/be-homecare-plan"
BE_CARE_PLAN = "https://www.ehealth.fgov.be/standards/fhir/patient-care/StructureDefinition/be-care-plan"
SSIN = "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin"
NO_RULES = ValidationOptions(rulebook=False)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def _patient(profile: str | None = None, ssin: str = "12-34") -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "id": "p"}
    patient["identifier"] = [{"system": SSIN, "value": ssin}]
    if profile:
        patient["meta"] = {"profile": [profile]}
    return patient


def _ids(report: Any, message_id: str) -> list[Any]:
    return [i for i in report.issues if i.message_id == message_id]


# -- the table ---------------------------------------------------------------------------------------
def test_every_row_maps_an_unloaded_legacy_canonical_to_a_shipped_profile() -> None:
    table = legacy_table()
    store = default_store()
    expected = {LEGACY_PATIENT, FEDERAL + "be-careteam", FEDERAL + "be-careplan-homecare", HOMECARE_PLAN}
    assert expected <= set(table)
    for declared, row in table.items():
        applied = store.structure_definition(row.applied)
        assert applied is not None, f"{declared} maps to {row.applied}, which becare does not ship"
        assert applied["derivation"] == "constraint" and applied["kind"] == "resource", row.applied
        assert store.get(declared) is None, f"{declared} is loaded: its row would never apply"
        assert row.source and row.reason
    assert lookup(LEGACY_PATIENT + "|1.0.0") is table[LEGACY_PATIENT]  # a version is ignored
    assert lookup(CORE_PATIENT) is None


@pytest.mark.parametrize(
    ("rows", "complaint"),
    [
        ([{"declared": "https://a.org/x", "applied": "https://a.org/y", "source": "s"}], "lacks reason"),
        ([{"declared": "https://a.org/x|1", "applied": "https://a.org/y", "source": "s", "reason": "r"}],
         "not an unversioned canonical"),
        ([{"declared": "https://a.org/x", "applied": "https://a.org/y", "source": "s", "reason": "r"}] * 2,
         "declared twice"),
        ([{"declared": "https://a.org/x", "applied": "https://a.org/y", "source": "s", "reason": "r"},
          {"declared": "https://a.org/y", "applied": "https://a.org/z", "source": "s", "reason": "r"}],
         "itself a legacy canonical"),
    ],
)  # fmt: skip
def test_a_malformed_table_is_refused(rows: list[dict[str, str]], complaint: str) -> None:
    with pytest.raises(LegacyTableError, match=complaint):
        parse_table({"legacy": rows})


# -- legacy canonicals -------------------------------------------------------------------------------
def test_legacy_be_patient_is_validated_against_current_be_patient(validator: Validator) -> None:
    report = validator.validate(_patient(LEGACY_PATIENT), NO_RULES)
    (ssin,) = _ids(report, "be-inv-SSIN")  # only the current be-patient raises it
    assert ssin.severity == "error" and ssin.expression == "Patient.identifier[0]"
    (note,) = _ids(report, "becare-legacy-canonical")
    assert note.severity == "information" and note.expression == "Patient.meta.profile[0]"
    assert LEGACY_PATIENT in note.message and CORE_PATIENT in note.message
    assert not [i for i in report.issues if "unknown" in i.message]
    (mapping,) = report.provenance["canonicals"]
    assert mapping["declared"] == LEGACY_PATIENT
    assert mapping["applied"].startswith(CORE_PATIENT + "|")
    assert mapping["at"] == "Patient.meta.profile[0]"
    # a canonical no row maps stays "unknown, not checked" and applies nothing
    other = validator.validate(_patient(FEDERAL + "be-allergyintolerance"), NO_RULES)
    assert not _ids(other, "be-inv-SSIN") and not _ids(other, "becare-legacy-canonical")
    assert _ids(other, "VALIDATION_VAL_PROFILE_UNKNOWN")
    assert other.provenance["canonicals"] == []


def test_versioned_legacy_canonical_and_profile_option_are_mapped_too(validator: Validator) -> None:
    versioned = validator.validate(_patient(LEGACY_PATIENT + "|1.0.0"), NO_RULES)
    assert _ids(versioned, "be-inv-SSIN") and _ids(versioned, "becare-legacy-canonical")
    assert versioned.provenance["canonicals"][0]["declared"] == LEGACY_PATIENT + "|1.0.0"
    option = validator.validate(_patient(), ValidationOptions(rulebook=False, profiles=(LEGACY_PATIENT,)))
    assert _ids(option, "be-inv-SSIN")
    (note,) = _ids(option, "becare-legacy-canonical")
    assert note.expression == "Patient"  # --profile: at the resource
    assert option.provenance["canonicals"][0]["at"] == "Patient"


def test_2022_homecare_plan_is_validated_against_be_care_plan(validator: Validator) -> None:
    """be-care-plan requires its subject to be a be-patient: a Patient with a malformed SSIN
    fails that, which the base CarePlan (and an unknown profile) would never say."""
    bundle = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:7d1a6c1e-0f4b-4c2e-9d7a-1b2c3d4e5f60", "resource": _patient()},
            {"fullUrl": "urn:uuid:7d1a6c1e-0f4b-4c2e-9d7a-1b2c3d4e5f61", "resource": {
                "resourceType": "CarePlan", "meta": {"profile": [HOMECARE_PLAN]}, "status": "active",
                "intent": "plan", "subject": {"reference": "urn:uuid:7d1a6c1e-0f4b-4c2e-9d7a-1b2c3d4e5f60"}}},
        ],
    }  # fmt: skip
    report = validator.validate(bundle, NO_RULES)
    (note,) = _ids(report, "becare-legacy-canonical")
    assert note.expression == "Bundle.entry[1].resource.meta.profile[0]" and BE_CARE_PLAN in note.message
    assert any(
        i.is_error and i.expression == "Bundle.entry[1].resource.subject.reference"
        and "be-patient" in i.message for i in report.issues
    ), [i.message for i in report.issues]


def test_a_loaded_legacy_profile_is_honoured_as_it_is() -> None:
    """Content loaded with --ig wins over the table: an old package kept on purpose."""
    old = REFERENCE / "hl7-be-github-io-2020-historical" / "StructureDefinition-be-careteam.json"
    store = default_store().overlay()
    store.load(old)
    checker = Validator(store)
    team = {"resourceType": "CareTeam", "meta": {"profile": [FEDERAL + "be-careteam"]}, "status": "active"}
    report = checker.validate(team, NO_RULES)
    assert not _ids(report, "becare-legacy-canonical") and not _ids(report, "VALIDATION_VAL_PROFILE_UNKNOWN")
    assert report.provenance["canonicals"] == []
    assert checker.structures.mapped == {}
    assert FEDERAL + "be-careteam|0.1.0" in report.provenance["profiles"]["CareTeam"]


# -- canonical|version -------------------------------------------------------------------------------
def test_canonical_with_a_loaded_version_is_applied(validator: Validator) -> None:
    version = default_store().get(CORE_PATIENT)["version"]  # type: ignore[index]
    exact = validator.validate(_patient(f"{CORE_PATIENT}|{version}"), NO_RULES)
    assert _ids(exact, "be-inv-SSIN")
    assert not [i for i in exact.issues if i.source == "profile" and i.expression.endswith("meta.profile[0]")]
    assert exact.provenance["canonicals"] == []  # applied exactly as declared: nothing to say
    partial_version = version.rsplit(".", 1)[0]  # 1.0.1 -> 1.0: FHIR partial version matching
    partial = validator.validate(_patient(f"{CORE_PATIENT}|{partial_version}"), NO_RULES)
    assert _ids(partial, "be-inv-SSIN")
    assert partial.provenance["canonicals"] == [
        {"declared": f"{CORE_PATIENT}|{partial_version}", "applied": f"{CORE_PATIENT}|{version}",
         "at": "Patient.meta.profile[0]"}
    ]  # fmt: skip


def test_canonical_with_an_unloaded_version_is_an_error_naming_the_loaded_ones(validator: Validator) -> None:
    version = default_store().get(CORE_PATIENT)["version"]  # type: ignore[index]
    report = validator.validate(_patient(CORE_PATIENT + "|9.9.9"), NO_RULES)
    (error,) = _ids(report, "becare-profile-version-not-loaded")
    assert error.severity == "error" and error.expression == "Patient.meta.profile[0]"
    assert f"'{CORE_PATIENT}|9.9.9' cannot be checked" in error.message
    assert f"loaded: {version}" in error.message
    assert not _ids(report, "be-inv-SSIN")  # nothing was applied in its place
    assert report.has_errors


# -- the command line on a care bundle ---------------------------------------------------------------
def _care_bundle(tmp_path: Path, profile: str) -> Path:
    bundle = json.loads(SAMPLE.read_text(encoding="utf-8"))
    patient = bundle["entry"][0]["resource"]
    assert patient["resourceType"] == "Patient"
    patient["meta"]["profile"] = [profile]
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    return path


def test_cli_reports_declared_and_applied_on_a_care_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _care_bundle(tmp_path, LEGACY_PATIENT)
    assert main(["validate", "--format", "json", "--today", "2024-06-01", str(path)]) == 0
    oo = json.loads(capsys.readouterr().out)
    notes = [i for i in oo["issue"] if i["severity"] == "information"
             and i["expression"] == ["Bundle.entry[0].resource.meta.profile[0]"]]  # fmt: skip
    (note,) = notes
    assert LEGACY_PATIENT in note["details"]["text"] and CORE_PATIENT in note["details"]["text"]
    assert {"url": "http://hl7.org/fhir/StructureDefinition/operationoutcome-message-id",
            "valueString": "becare-legacy-canonical"} in note["extension"]  # fmt: skip
    assert not [i for i in oo["issue"] if i["severity"] in ("error", "fatal")]
    # the same bundle with a malformed SSIN: the current be-patient's invariant fails
    bundle = json.loads(path.read_text(encoding="utf-8"))
    bundle["entry"][0]["resource"]["identifier"][0]["value"] = "12-34"
    path.write_text(json.dumps(bundle), encoding="utf-8")
    assert main(["validate", "--format", "json", "--no-rulebook", str(path)]) == 1
    oo = json.loads(capsys.readouterr().out)
    assert any(
        i["severity"] == "error" and i["expression"] == ["Bundle.entry[0].resource.identifier[0]"]
        and "be-inv-SSIN" in i["details"]["text"] for i in oo["issue"]
    )  # fmt: skip


def test_cli_unloaded_version_fails_the_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _care_bundle(tmp_path, CORE_PATIENT + "|0.9.0")
    assert main(["validate", "--today", "2024-06-01", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"'{CORE_PATIENT}|0.9.0' cannot be checked" in out


# -- the real service --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BecareService]:
    svc = BecareService(tmp_path_factory.mktemp("canonicals")).start()
    try:
        yield svc
    finally:
        svc.stop()


def test_service_maps_legacy_canonicals_in_meta_and_in_profile_parameters(service: BecareService) -> None:
    declared = service.validate(_patient(LEGACY_PATIENT), today="2024-06-01")
    assert declared.status_code == 200
    issues = declared.json()["issue"]
    assert any(i["expression"] == ["Patient.meta.profile[0]"] and i["severity"] == "information"
               and CORE_PATIENT in i["details"]["text"] for i in issues)  # fmt: skip
    assert any("be-inv-SSIN" in i["details"]["text"] and i["severity"] == "error" for i in issues)
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": _patient()},
        {"name": "profile", "valueCanonical": LEGACY_PATIENT},
    ]}  # fmt: skip
    given = service.validate(params, today="2024-06-01")
    assert given.status_code == 200
    issues = given.json()["issue"]
    assert any(i["expression"] == ["Patient"] and i["severity"] == "information"
               and LEGACY_PATIENT in i["details"]["text"] for i in issues)  # fmt: skip
    assert any("be-inv-SSIN" in i["details"]["text"] and i["severity"] == "error" for i in issues)
    unloaded = service.validate(_patient(CORE_PATIENT + "|9.9.9"), today="2024-06-01")
    assert any(i["severity"] == "error" and "cannot be checked" in i["details"]["text"]
               for i in unloaded.json()["issue"])  # fmt: skip


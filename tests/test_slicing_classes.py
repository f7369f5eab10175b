"""Slicing, class by class (profiling.html "Slicing" and "Discriminator"), with profiles of our own
under tests/data/slicing/profiles (loaded the way ``--ig`` loads a folder) and the core vital-signs
profiles. Every ``*.valid.json`` instance must pass; every ``*.invalid.json`` one must fail with
exactly the errors listed in INVALID (each a substring of one error message, one per error).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapter.conformance import default_store
from adapter.validation import Validator
from adapter.validation.api import ValidationOptions
from adapter.validation.model import compile_structure

DATA = Path(__file__).parent / "data" / "slicing"
INSTANCES = DATA / "instances"
CANON = "http://example.org/fhir/slicing/StructureDefinition/"


def _required(slice_id: str, found: int = 0, minimum: int = 1) -> str:
    return (
        f"Slice '{slice_id}': a matching slice is required, but not found "
        f"(minimum required = {minimum}, found {found})"
    )


INVALID: dict[str, list[str]] = {
    # 5. a required slice is missing, also when the sliced element is absent altogether
    "required-slice.no-identifier": [_required("Patient.identifier:ssin")],
    "required-slice.other-only": [_required("Patient.identifier:ssin")],
    "required-slice.two-ssin": ["Slice 'Patient.identifier:ssin': max allowed = 1, but found 2"],
    # the element's own min and the slices' mins are both checked
    "slice-mins.only-a": [_required("Patient.identifier:b")],
    "slice-mins.absent": [
        "Patient.identifier: minimum required = 1, but only found 0",
        _required("Patient.identifier:a"),
        _required("Patient.identifier:b"),
    ],
    # 7. discriminators a slice leaves unconstrained
    "partial-discriminators": [_required("Patient.identifier:local")],
    "unconstrained-slice": [
        "Slicing cannot be evaluated: Could not match discriminator (system) for slice "
        f"Patient.identifier:any in profile {CANON}patient-unconstrained-slice"
    ],
    # type slices on choice elements: value[x]:valueString, payload:file.contentAttachment, ofType()
    "value-types.long-string": ["The value is longer (19) than the maximum length 10"],
    "value-types.boolean": [
        "This element does not match any known slice defined in the profile and slicing is CLOSED "
        "(Observation.value[x])"
    ],
    "value-types.quantity": [
        'The value does not match the required pattern {"system": "http://unitsofmeasure.org"}'
    ],
    "value-typed-names.string": ["The value is longer (8) than the maximum length 5"],
    "value-typed-names.quantity": [
        'The value does not match the required pattern {"system": "http://unitsofmeasure.org"}'
    ],
    "payload-types.missing-text": [_required("Communication.payload:text")],
    "payload-types.bad-attachment": ["Communication.payload.content[x].contentType: minimum required = 1"],
    "payload-oftype": [_required("Communication.payload:greeting")],
    # a discriminator reaching optional nested slices: the item matches when one of them does
    "optional-nested.no-temperature": [_required("Observation.component:temperature")],
    "optional-nested.two-pulses": ["Slice 'Observation.component:pulse': max allowed = 1, but found 2"],
    # re-slicing (identifier:national/official) and slicing below a slice
    "reslice.missing-official": [_required("Patient.identifier:national/official")],
    "reslice.two-old": ["Slice 'Patient.identifier:national/old': max allowed = 1, but found 2"],
    "reslice.parent-slice": [
        _required("Patient.identifier:national"),
        _required("Patient.identifier:national/official"),
    ],
    "contact-telecom.email-only": [_required("Patient.contact.telecom:phone")],
    "contact-telecom.no-telecom": [_required("Patient.contact.telecom:phone")],
    # resolve() to contained resources and to bundle entries
    "resolve-type.contained": [_required("List.entry:patient")],
    "resolve-type.bundle": [_required("List.entry:patient")],
    "resolve-profile.contained": [_required("List.entry:female")],
    "resolve-profile.bundle": [_required("List.entry:female")],
    # profile discriminator: the item must conform to a datatype profile
    "profile-discriminator": [_required("Patient.identifier:ssin")],
    # exists discriminator
    "exists.no-measured": [_required("Observation.component:measured")],
    "exists.no-reason": ["Observation.component.dataAbsentReason: minimum required = 1, but only found 0"],
    # pattern discriminator with a CodeableConcept of several codings
    "pattern-codings.split": [_required("Observation.category:both")],
    # the core vital-signs profiles
    "vs-vitalsigns": [_required("Observation.category:VSCat")],
    "vs-bodyweight": [_required("Observation.code.coding:BodyWeightCode")],
    "vs-bodyheight": [_required("Observation.code.coding:BodyHeightCode")],
    "vs-bmi": ['Value is "kg" but must be "kg/m2" (fixed value)'],
    "vs-heartrate": [_required("Observation.code.coding:HeartRateCode")],
    "vs-resprate": ["Slice 'Observation.code.coding:RespRateCode': max allowed = 1, but found 2"],
    "vs-bodytemp": ['Value is "http://example.org/units" but must be "http://unitsofmeasure.org"'],
    "vs-headcircum": [_required("Observation.code.coding:HeadCircumCode")],
    "vs-oxygensat": ['Value is "mm[Hg]" but must be "%" (fixed value)'],
    "vs-bp": [
        "Observation.component: minimum required = 2, but only found 1",
        _required("Observation.component:DiastolicBP"),
    ],
    "vs-vitalspanel": ["Observation.value[x]: max allowed = 0, but found 1"],
}

VITAL_SIGNS = [
    "vitalsigns", "bp", "bodyweight", "bodyheight", "bmi", "heartrate", "resprate", "bodytemp",
    "headcircum", "oxygensat", "vitalspanel",
]  # fmt: skip


@pytest.fixture(scope="module")
def validator() -> Validator:
    store = default_store().overlay()
    assert store.load(DATA / "profiles") == 19
    return Validator(store)


def _errors(validator: Validator, name: str) -> list[str]:
    resource = json.loads((INSTANCES / f"{name}.json").read_text())
    report = validator.validate(resource, ValidationOptions(rulebook=False))
    return [i.message for i in report.issues if i.is_error]


def _names(suffix: str) -> list[str]:
    return sorted(p.name[: -len(".json")] for p in INSTANCES.glob(f"*.{suffix}.json"))


@pytest.mark.parametrize("name", _names("valid"))
def test_valid_instances_pass(validator: Validator, name: str) -> None:
    assert _errors(validator, name) == []


@pytest.mark.parametrize("name", _names("invalid"))
def test_invalid_instances_fail_with_the_right_message(validator: Validator, name: str) -> None:
    expected = INVALID[name[: -len(".invalid")]]
    errors = _errors(validator, name)
    assert len(errors) == len(expected), errors
    for want in expected:
        assert any(want in e for e in errors), (want, errors)


def test_every_case_has_instances() -> None:
    invalid = {n[: -len(".invalid")] for n in _names("invalid")}
    assert invalid == set(INVALID)
    valid = {n[: -len(".valid")] for n in _names("valid")}
    for profile in VITAL_SIGNS:  # each core vital-signs profile: one valid and one invalid instance
        assert f"vs-{profile}" in valid and f"vs-{profile}" in invalid


def test_vital_signs_instances_declare_the_core_profiles() -> None:
    for profile in VITAL_SIGNS:
        for kind in ("valid", "invalid"):
            resource = json.loads((INSTANCES / f"vs-{profile}.{kind}.json").read_text())
            assert resource["meta"]["profile"] == [f"http://hl7.org/fhir/StructureDefinition/{profile}"]


def test_bp_component_discriminator_reaches_the_nested_slice(validator: Validator) -> None:
    """bp slices component on code.coding.code/system; the values sit in the nested slice
    code.coding:SBPCode. Any coding may carry them: here the LOINC one comes second."""
    resource = json.loads((INSTANCES / "vs-bp.valid.json").read_text())
    assert resource["component"][0]["code"]["coding"][1]["code"] == "8480-6"
    resource["component"].reverse()  # slicing is unordered
    report = validator.validate(resource, ValidationOptions(rulebook=False))
    assert [i.message for i in report.issues if i.is_error] == []
    # a systolic component coded only in SNOMED is not the SystolicBP slice
    resource["component"][1]["code"]["coding"] = resource["component"][1]["code"]["coding"][:1]
    report = validator.validate(resource, ValidationOptions(rulebook=False))
    assert [i.message for i in report.issues if i.is_error] == [_required("Observation.component:SystolicBP")]


def test_required_slice_of_an_absent_element_is_reported_where_the_element_belongs(
    validator: Validator,
) -> None:
    resource = json.loads((INSTANCES / "required-slice.no-identifier.invalid.json").read_text())
    report = validator.validate(resource, ValidationOptions(rulebook=False))
    errors = [i for i in report.issues if i.is_error]
    assert [(i.expression, i.code) for i in errors] == [("Patient.identifier", "required")]


def test_reslice_snapshot_starts_from_its_parent_slice(validator: Validator) -> None:
    sd = validator.store.structure_definition(CANON + "patient-national-ids-reslice")
    ids = [e["id"] for e in sd["snapshot"]["element"] if e["id"].startswith("Patient.identifier:")]
    first = {i.split(".")[1] for i in ids}
    assert [i for i in ids if "." not in i.split(":", 1)[1]] == [
        "Patient.identifier:national",
        "Patient.identifier:national/official",
        "Patient.identifier:national/old",
    ]
    assert first == {"identifier:national", "identifier:national/official", "identifier:national/old"}
    by_id = {e["id"]: e for e in sd["snapshot"]["element"]}
    # the re-slice keeps what its parent slice fixed, adds its own, and is not sliced itself
    assert by_id["Patient.identifier:national/official.system"]["fixedUri"].endswith("/ssin")
    assert by_id["Patient.identifier:national/official.use"]["fixedCode"] == "official"
    assert "slicing" in by_id["Patient.identifier:national"]
    assert "slicing" not in by_id["Patient.identifier:national/official"]
    # compiled, a re-slice belongs to its parent slice
    compiled = compile_structure(sd)
    national = compiled.by_id["Patient.identifier:national"]
    assert [s.slice_name for s in compiled.by_id["Patient.identifier"].slices] == ["national"]
    assert [s.slice_name for s in national.slices] == ["national/official", "national/old"]


def test_slicing_that_cannot_be_evaluated_is_reported_once_and_only_with_items(validator: Validator) -> None:
    resource: dict[str, Any] = json.loads((INSTANCES / "unconstrained-slice.invalid.json").read_text())
    resource["identifier"] = resource["identifier"] * 3
    errors = [i for i in validator.validate(resource, ValidationOptions(rulebook=False)).issues if i.is_error]
    assert len(errors) == 1 and errors[0].message_id == "SLICING_CANNOT_BE_EVALUATED"
    assert errors[0].code == "processing"

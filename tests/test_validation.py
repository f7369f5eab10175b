"""The validator engine, aspect by aspect, on small hand-made resources."""

from __future__ import annotations

import copy

import pytest

from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator

OPTS = ValidationOptions(rulebook=False)


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def errors(validator: Validator, resource: dict, **kw: object) -> list[str]:
    report = validator.validate(resource, ValidationOptions(rulebook=False, **kw))  # type: ignore[arg-type]
    return [f"{i.expression}: {i.message}" for i in report.issues if i.is_error]


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"family": "Peeters", "given": ["An"]}],
    "gender": "female",
    "birthDate": "1950-02-28",
}


def test_valid_patient_has_no_errors(validator: Validator) -> None:
    assert errors(validator, PATIENT) == []


def test_unknown_property_is_reported_with_its_path(validator: Validator) -> None:
    bad = {**PATIENT, "favouriteColour": "blue"}
    assert errors(validator, bad) == ["Patient.favouriteColour: Unrecognized property 'favouriteColour'"]


def test_array_and_single_value_shapes(validator: Validator) -> None:
    bad = {**PATIENT, "gender": ["female"], "name": {"family": "X"}}
    found = errors(validator, bad)
    assert any(e.startswith("Patient.gender:") and "not an array" in e for e in found)
    assert any(e.startswith("Patient.name:") and "must be an array" in e for e in found)


def test_primitive_formats(validator: Validator) -> None:
    bad = {**PATIENT, "birthDate": "1950-02-30", "active": "yes"}
    found = errors(validator, bad)
    assert any(e.startswith("Patient.birthDate:") for e in found)
    assert any(e.startswith("Patient.active:") and "boolean" in e for e in found)


def test_empty_values_are_errors(validator: Validator) -> None:
    bad = {**PATIENT, "name": [], "telecom": [{}], "gender": ""}
    found = errors(validator, bad)
    assert any(e.startswith("Patient.name:") and "empty" in e for e in found)
    assert any(e.startswith("Patient.telecom[0]:") for e in found)
    assert any(e.startswith("Patient.gender:") and "empty" in e for e in found)


def test_required_cardinality(validator: Validator) -> None:
    obs = {"resourceType": "Observation", "status": "final"}
    found = errors(validator, obs)
    assert any("Observation.code: minimum required = 1" in e for e in found)


def test_required_binding(validator: Validator) -> None:
    bad = {**PATIENT, "gender": "bogus"}
    found = errors(validator, bad)
    assert len(found) == 1 and found[0].startswith("Patient.gender:")


def test_a_binding_is_judged_at_every_place_its_codes_recur(validator: Validator) -> None:
    """Codes found to hold are not looked up again within one validation; codes that fail are
    reported at every place, and the same codes hold again at the next place."""
    bad = {
        **PATIENT,
        "gender": "bogus",
        "contact": [
            {"gender": "bogus", "name": {"family": "A"}},
            {"gender": "male", "name": {"family": "B"}},
            {"gender": "bogus", "name": {"family": "C"}},
        ],
    }
    found = [e for e in errors(validator, bad) if "gender" in e]
    assert [e.split(":")[0] for e in found] == [
        "Patient.gender",
        "Patient.contact[0].gender",
        "Patient.contact[2].gender",
    ]
    good = {**PATIENT, "gender": "male", "contact": [{"gender": "male", "name": {"family": "A"}}] * 3}
    assert errors(validator, good) == []


def test_invariant_is_evaluated(validator: Validator) -> None:
    bad = {**PATIENT, "contact": [{"gender": "male"}]}  # pat-1: a contact needs details
    found = errors(validator, bad)
    assert any("pat-1" in e and e.startswith("Patient.contact[0]") for e in found)


def test_datatype_invariant_on_period(validator: Validator) -> None:
    bad = {**PATIENT, "name": [{"family": "X", "period": {"start": "2020-01-02", "end": "2020-01-01"}}]}
    found = errors(validator, bad)
    assert any("per-1" in e for e in found)


def test_reference_target_type(validator: Validator) -> None:
    bad = {**PATIENT, "managingOrganization": {"reference": "Patient/other"}}
    found = errors(validator, bad)
    assert any(e.startswith("Patient.managingOrganization") and "Organization" in e for e in found)


def test_contained_and_extension(validator: Validator) -> None:
    ok = {
        **PATIENT,
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"city": "Gent"},
            }
        ],
    }
    assert errors(validator, ok) == []
    bad = copy.deepcopy(ok)
    bad["extension"][0] = {
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
        "valueString": "Gent",
    }
    assert errors(validator, bad)


def _bundle(entries: list[dict], btype: str = "collection") -> dict:
    return {"resourceType": "Bundle", "type": btype, "entry": entries}


def test_bundle_duplicate_ids_and_unresolved_urn(validator: Validator) -> None:
    p = {"fullUrl": "urn:uuid:8e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d", "resource": PATIENT}
    dup = {"fullUrl": "urn:uuid:9e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d", "resource": PATIENT}
    found = errors(validator, _bundle([p, dup]))
    assert any("Duplicate resource Patient/p1" in e for e in found)
    obs = {
        "fullUrl": "urn:uuid:ae4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d",
        "resource": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "urn:uuid:be4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d"},
        },
    }
    found = errors(validator, _bundle([p, obs]))
    assert found == [
        "Bundle.entry[1].resource.subject.reference: Unable to resolve the reference "
        "'urn:uuid:be4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d' inside the bundle"
    ]


def test_bundle_reference_resolution_checks_target_type(validator: Validator) -> None:
    p = {"fullUrl": "urn:uuid:8e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d", "resource": PATIENT}
    org_ref = {"reference": "urn:uuid:8e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d"}
    other = {
        "fullUrl": "urn:uuid:9e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d",
        "resource": {"resourceType": "Patient", "id": "p2", "managingOrganization": org_ref},
    }
    found = errors(validator, _bundle([p, other]))
    assert any("Bundle.entry[1].resource.managingOrganization" in e for e in found)


def test_transaction_needs_requests(validator: Validator) -> None:
    p = {"fullUrl": "urn:uuid:8e4b7a5c-0f6a-4d8e-9c1e-1d2f3a4b5c6d", "resource": PATIENT}
    found = errors(validator, _bundle([p], "transaction"))
    assert any("bdl-3" in e for e in found)
    p["request"] = {"method": "POST", "url": "Patient"}
    assert errors(validator, _bundle([p], "transaction")) == []


def test_profile_option_applies_profile(validator: Validator) -> None:
    url = "https://www.ehealth.fgov.be/standards/fhir/core/StructureDefinition/be-patient"
    report = validator.validate(PATIENT, ValidationOptions(rulebook=False, profiles=(url,)))
    assert not report.has_errors, [i.message for i in report.issues]


def test_unknown_declared_profile_is_a_warning(validator: Validator) -> None:
    res = {**PATIENT, "meta": {"profile": ["http://example.org/StructureDefinition/nope"]}}
    report = validator.validate(res, OPTS)
    assert not report.has_errors
    assert any(i.severity == "warning" and "nope" in i.message for i in report.issues)


def test_min_and_max_values_of_a_profile() -> None:
    from adapter.conformance import default_store
    from adapter.validation.api import ValidationOptions
    from adapter.validation.engine import Validator

    sd = {
        "resourceType": "StructureDefinition", "url": "http://example.org/sd/limits", "name": "Limits",
        "status": "active", "kind": "resource", "abstract": False, "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation", "derivation": "constraint",
        "differential": {"element": [
            {"id": "Observation.value[x]", "path": "Observation.value[x]", "type": [{"code": "integer"}],
             "maxValueInteger": 5},
            {"id": "Observation.effective[x]", "path": "Observation.effective[x]",
             "type": [{"code": "dateTime"}], "minValueDateTime": "2020-01-01"},
        ]},
    }  # fmt: skip
    store = default_store().overlay()
    store.add(sd)
    validator = Validator(store)

    def limits(value: int, effective: str) -> list[str]:
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "valueInteger": value, "effectiveDateTime": effective,
               "meta": {"profile": ["http://example.org/sd/limits"]}}  # fmt: skip
        report = validator.validate(obs, ValidationOptions(rulebook=False))
        return [i.message for i in report.issues if i.is_error]

    assert limits(3, "2021-05-05") == []
    assert limits(7, "2021-05-05") == [
        "The value in the instance (7) is greater than the specified maxValue (5)"
    ]
    assert limits(3, "2019-05-05") == [
        "The value in the instance (2019-05-05) is less than the specified minValue (2020-01-01)"
    ]
    assert limits(3, "2019") == []  # another precision: not comparable as text


def test_a_constraint_two_profiles_share_is_reported_once_per_place_in_every_entry() -> None:
    """Profile B derives from A and inherits A's constraint; a resource claiming both is walked
    against each, and the constraint is evaluated once per location: one issue, not two, for a
    top-level resource and for every bundle entry (whose marks are kept only while the entry is
    validated)."""
    from adapter.conformance import default_store
    from adapter.validation.api import ValidationOptions
    from adapter.validation.engine import Validator

    a_url, b_url = "http://example.org/sd/named-a", "http://example.org/sd/named-b"
    a = {
        "resourceType": "StructureDefinition", "url": a_url, "name": "NamedA", "status": "active",
        "kind": "resource", "abstract": False, "type": "Patient", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "differential": {"element": [
            {"id": "Patient", "path": "Patient", "constraint": [
                {"key": "tst-1", "severity": "error", "human": "A named patient has a name",
                 "expression": "name.exists()"}]},
        ]},
    }  # fmt: skip
    b = {
        "resourceType": "StructureDefinition", "url": b_url, "name": "NamedB", "status": "active",
        "kind": "resource", "abstract": False, "type": "Patient", "derivation": "constraint",
        "baseDefinition": a_url,
        "differential": {"element": [{"id": "Patient.gender", "path": "Patient.gender", "min": 1}]},
    }  # fmt: skip
    store = default_store().overlay()
    store.add(a)
    store.add(b)
    validator = Validator(store)
    patient = {"resourceType": "Patient", "gender": "female", "meta": {"profile": [a_url, b_url]}}

    def tst_1(resource: dict) -> list[str]:
        report = validator.validate(resource, ValidationOptions(rulebook=False))
        return [i.expression for i in report.issues if i.is_error and "tst-1" in i.message]

    assert tst_1(patient) == ["Patient"]
    bundle = {
        "resourceType": "Bundle", "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}",
                   "resource": {**patient, "id": f"p{i}"}} for i in range(3)],
    }  # fmt: skip
    assert tst_1(bundle) == [f"Bundle.entry[{i}].resource" for i in range(3)]


@pytest.mark.parametrize("depth", [101, 200_000])
def test_a_resource_nested_past_the_depth_limit_is_not_checked_and_says_so(
    validator: Validator, depth: int
) -> None:
    """Parsing refuses such input; given as Python values, the validator refuses it too (fatal,
    too-costly) instead of recursing: compiled, the walk has no interpreter recursion limit and
    200,000 levels would overflow the C stack."""
    extension: dict = {"url": "http://example.org/e", "valueString": "x"}
    for _ in range(depth):
        extension = {"url": "http://example.org/e", "extension": [extension]}
    report = validator.validate({"resourceType": "Patient", "extension": [extension]}, OPTS)
    assert report.has_errors
    assert [(i.severity, i.code) for i in report.issues] == [("fatal", "too-costly")]
    assert "nests deeper than 100 levels" in report.issues[0].message


def test_a_resource_at_the_depth_limit_is_checked(validator: Validator) -> None:
    extension: dict = {"url": "http://example.org/e", "valueString": "x"}
    for _ in range(45):  # Patient > extension[] > (extension > extension[]) x 45 > ... : 94 levels
        extension = {"url": "http://example.org/e", "extension": [extension]}
    report = validator.validate({"resourceType": "Patient", "extension": [extension]}, OPTS)
    assert all(i.code != "too-costly" for i in report.issues)


def test_a_property_name_that_is_not_a_string_is_not_checked_and_says_where(validator: Validator) -> None:
    """JSON has string names only, so parsing never yields another; given as Python values, the
    validator says so (fatal, with the object holding it) instead of raising."""
    report = validator.validate({"resourceType": "Patient", "name": [{"family": "X", 3: "y"}]}, OPTS)
    [issue] = report.issues
    assert (issue.severity, issue.code, issue.expression) == ("fatal", "structure", "Patient.name[0]")
    assert "Property name 3 is not a string (int)" in issue.message
    top = validator.validate({"resourceType": "Patient", (1, 2): "x"}, OPTS)
    assert [(i.severity, i.expression) for i in top.issues] == [("fatal", "Patient")]

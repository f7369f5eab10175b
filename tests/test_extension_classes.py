"""Extension contexts and the smaller element, narrative and extension rules (FHIR R4:
extensibility.html, defining-extensions.html#context, narrative.html, element.html ele-1, dom-3,
txt-1/txt-2), each case as JSON and as XML.

The extensions under tests/data/extensions/ are ours, one per kind of context: element contexts
by resource type, path, datatype and base type, an extension context, a fhirpath context, a
context invariant, a modifier extension and a complex extension. They are loaded as ``--ig`` loads
a folder; the core extensions (patient-birthPlace, patient-nationality, ...) come with the
default store.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.main import main
from adapter.conformance import default_store
from adapter.fhirio import parse, to_xml
from adapter.fhirpath.xhtml import narrative_problems
from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator
from adapter.validation.extensions import is_absolute_url, strip_indexes

DEFS = Path(__file__).resolve().parent / "data" / "extensions"
EX = "http://example.org/fhir/StructureDefinition/"
CORE = "http://hl7.org/fhir/StructureDefinition/"
XHTML = 'xmlns="http://www.w3.org/1999/xhtml"'
OPTS = ValidationOptions(rulebook=False)
NOT_HERE = "is not allowed to be used at this point"


@pytest.fixture(scope="module")
def validator() -> Validator:
    store = default_store().overlay()
    assert store.load(DEFS) == 8
    return Validator(store)


def errors(validator: Validator, resource: dict[str, Any], fmt: str) -> list[str]:
    text = to_xml(resource) if fmt == "xml" else json.dumps(resource)
    report = validator.validate(parse(text, fmt), OPTS)
    return [f"{i.expression}: {i.message}" for i in report.issues if i.is_error]


def patient(**extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "p1",
        "text": {"status": "generated", "div": f"<div {XHTML}><p>An Peeters</p></div>"},
        "name": [{"family": "Peeters", "given": ["An"]}],
    }
    res.update(extra)
    return res


def ext(name: str, **value: Any) -> dict[str, Any]:
    url = name if "/" in name else EX + name
    return {"url": url, **(value or {"valueBoolean": True})}


def observation(**extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "id": "o1",
        "text": {"status": "generated", "div": f"<div {XHTML}>Weight</div>"},
        "status": "final",
        "code": {"text": "weight"},
    }
    res.update(extra)
    return res


BIRTH_PLACE = {"url": CORE + "patient-birthPlace", "valueAddress": {"city": "Gent", "country": "BE"}}
FORMATS = pytest.mark.parametrize("fmt", ["json", "xml"])


# ---------------------------------------------------------------- extension contexts: valid
VALID: dict[str, dict[str, Any]] = {
    "element context: the resource type": patient(extension=[ext("ext-patient-or-name")]),
    "element context: an element path": patient(
        name=[{"extension": [ext("ext-patient-or-name")], "family": "Peeters"}]
    ),
    "element context: a datatype, on a resource's element": patient(
        address=[{"extension": [ext("ext-on-address", valueString="x")], "city": "Gent"}]
    ),
    "element context: a datatype, on another resource": {
        "resourceType": "Organization",
        "id": "org",
        "text": {"status": "generated", "div": f"<div {XHTML}>Org</div>"},
        "name": "Wit-Gele Kruis",
        "address": [{"extension": [ext("ext-on-address", valueString="x")], "city": "Brugge"}],
    },
    "element context: a datatype, in the value of an extension": patient(
        extension=[
            {
                "url": CORE + "patient-birthPlace",
                "valueAddress": {"extension": [ext("ext-on-address", valueString="x")], "city": "Gent"},
            }
        ]
    ),
    "element context: DomainResource covers Patient": patient(extension=[ext("ext-on-domain-resource")]),
    "element context: DomainResource.text covers Patient.text": patient(
        text={
            "extension": [ext("ext-on-domain-resource")],
            "status": "generated",
            "div": f"<div {XHTML}>An</div>",
        }
    ),
    "element context: BackboneElement covers Patient.contact": patient(
        contact=[{"extension": [ext("ext-on-domain-resource")], "name": {"text": "Jan"}}]
    ),
    "extension context: on the value of that extension": patient(
        extension=[
            {
                "url": CORE + "patient-birthPlace",
                "valueAddress": {"extension": [ext("ext-on-birthplace", valueString="x")], "city": "Gent"},
            }
        ]
    ),
    "fhirpath context: an element the expression selects": patient(
        telecom=[
            {
                "extension": [ext("ext-on-mobile-phone")],
                "system": "phone",
                "use": "mobile",
                "value": "+32 470 00 00 00",
            }
        ]
    ),
    "context invariant holds": patient(
        deceasedBoolean=True, extension=[ext("ext-deceased-note", valueString="at home")]
    ),
    "a modifier extension as modifierExtension": patient(modifierExtension=[ext("ext-do-not-use")]),
    "a complex extension with its defined sub-extensions": patient(
        extension=[
            {
                "url": EX + "ext-care-contact",
                "extension": [
                    {"url": "kind", "valueString": "nurse"},
                    {"url": "since", "valueDate": "2024-01-02"},
                ],
            }
        ]
    ),
    "core: patient-birthPlace on a Patient": patient(extension=[BIRTH_PLACE]),
    "core: patient-nationality with its sub-extensions": patient(
        extension=[
            {
                "url": CORE + "patient-nationality",
                "extension": [{"url": "code", "valueCodeableConcept": {"text": "Belgian"}}],
            }
        ]
    ),
    "core: data-absent-reason on a primitive (context Element)": patient(
        _birthDate={"extension": [{"url": CORE + "data-absent-reason", "valueCode": "unknown"}]}
    ),
    "core: an extension on Resource.id (R4 types it as a FHIR string)": patient(
        _id={"extension": [{"url": CORE + "data-absent-reason", "valueCode": "masked"}]}
    ),
    "core: in a Bundle entry, the context is the entry's resource": {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:9b0c3c3a-1111-4aaa-8bbb-000000000001",
                "resource": patient(extension=[BIRTH_PLACE]),
            }
        ],
    },
}


@FORMATS
@pytest.mark.parametrize("case", list(VALID))
def test_extension_in_an_allowed_context_passes(validator: Validator, case: str, fmt: str) -> None:
    assert errors(validator, VALID[case], fmt) == []


# ---------------------------------------------------------------- extension contexts: invalid
INVALID: dict[str, tuple[dict[str, Any], str, str]] = {
    # case: (resource, expression of the error, words in its message)
    "element context: another resource type": (
        observation(extension=[ext("ext-patient-or-name")]),
        "Observation.extension[0]",
        f"The extension {EX}ext-patient-or-name {NOT_HERE} (allowed: element Patient, element "
        "Patient.name; this element is Observation)",
    ),
    "element context: another element of the right resource": (
        patient(address=[{"extension": [ext("ext-patient-or-name")], "city": "Gent"}]),
        "Patient.address[0].extension[0]",
        "this element is Patient.address",
    ),
    "element context: on a primitive": (
        patient(active=True, _active={"extension": [ext("ext-patient-or-name")]}),
        "Patient._active.extension[0]",
        "this element is Patient.active",
    ),
    "element context: a datatype, on another datatype": (
        patient(name=[{"extension": [ext("ext-on-address", valueString="x")], "family": "Peeters"}]),
        "Patient.name[0].extension[0]",
        NOT_HERE,
    ),
    "element context: HumanName is no BackboneElement": (
        patient(name=[{"extension": [ext("ext-on-domain-resource")], "family": "Peeters"}]),
        "Patient.name[0].extension[0]",
        NOT_HERE,
    ),
    "extension context: elsewhere": (
        patient(extension=[ext("ext-on-birthplace", valueString="x")]),
        "Patient.extension[0]",
        "allowed: extension http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
    ),
    "extension context: on the value of another extension": (
        patient(
            extension=[
                {
                    "url": CORE + "patient-cadavericDonor",
                    "valueBoolean": True,
                    "_valueBoolean": {"extension": [ext("ext-on-birthplace", valueString="x")]},
                }
            ]
        ),
        "Patient.extension[0]._valueBoolean.extension[0]",
        NOT_HERE,
    ),
    "fhirpath context: an element the expression does not select": (
        patient(telecom=[{"extension": [ext("ext-on-mobile-phone")], "system": "phone", "use": "home"}]),
        "Patient.telecom[0].extension[0]",
        "allowed: fhirpath Patient.telecom.where(system = 'phone' and use = 'mobile')",
    ),
    "context invariant fails": (
        patient(extension=[ext("ext-deceased-note", valueString="x")]),
        "Patient.extension[0]",
        "its context invariant 'deceased.exists()' is not met",
    ),
    "a modifier extension as extension": (
        patient(extension=[ext("ext-do-not-use")]),
        "Patient.extension[0]",
        "is a modifier extension, so it must be used in modifierExtension",
    ),
    "a plain extension as modifierExtension": (
        patient(modifierExtension=[ext("ext-patient-or-name")]),
        "Patient.modifierExtension[0]",
        "is not a modifier extension, so it must be used in extension",
    ),
    "a complex extension with an undefined sub-extension": (
        patient(
            extension=[
                {
                    "url": EX + "ext-care-contact",
                    "extension": [
                        {"url": "kind", "valueString": "nurse"},
                        {"url": "reason", "valueString": "x"},
                    ],
                }
            ]
        ),
        "Patient.extension[0].extension[1].url",
        f"Sub-extension url 'reason' is not defined by the extension {EX}ext-care-contact "
        "(it defines: kind, since)",
    ),
    "core: patient-birthPlace on an Observation": (
        observation(extension=[BIRTH_PLACE]),
        "Observation.extension[0]",
        f"The extension {CORE}patient-birthPlace {NOT_HERE} (allowed: element Patient",
    ),
    "core: an undefined sub-extension of patient-nationality": (
        patient(
            extension=[
                {
                    "url": CORE + "patient-nationality",
                    "extension": [
                        {"url": "code", "valueCodeableConcept": {"text": "B"}},
                        {"url": "bogus", "valueString": "x"},
                    ],
                }
            ]
        ),
        "Patient.extension[0].extension[1].url",
        "Sub-extension url 'bogus' is not defined by the extension",
    ),
    "core: in a Bundle, on the wrong entry": (
        {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {"fullUrl": "urn:uuid:9b0c3c3a-1111-4aaa-8bbb-000000000001", "resource": patient()},
                {
                    "fullUrl": "urn:uuid:9b0c3c3a-1111-4aaa-8bbb-000000000002",
                    "resource": observation(extension=[BIRTH_PLACE]),
                },
            ],
        },
        "Bundle.entry[1].resource.extension[0]",
        "this element is Observation)",
    ),
    "a relative Extension.url": (
        patient(extension=[{"url": "birthPlace", "valueString": "Gent"}]),
        "Patient.extension[0].url",
        "Extension.url must be an absolute URL, not 'birthPlace'",
    ),
    "a relative url on a primitive's extension": (
        patient(
            birthDate="1950-02-28", _birthDate={"extension": [{"url": "approximate", "valueBoolean": True}]}
        ),
        "Patient._birthDate.extension[0].url",
        "must be an absolute URL",
    ),
}


@FORMATS
@pytest.mark.parametrize("case", list(INVALID))
def test_extension_out_of_its_context_fails_clearly(validator: Validator, case: str, fmt: str) -> None:
    resource, where, words = INVALID[case]
    found = errors(validator, resource, fmt)
    assert any(e.startswith(where + ": ") and words in e for e in found), found


def test_unknown_extensions_keep_their_warning(validator: Validator) -> None:
    res = patient(extension=[{"url": "http://example.org/unknown", "valueString": "x"}])
    report = validator.validate(res, OPTS)
    assert [i.message for i in report.issues if i.is_error] == []
    assert any("could not be found" in i.message for i in report.issues)


def test_relative_sub_extension_urls_of_an_unknown_extension_stay_allowed(validator: Validator) -> None:
    res = patient(
        extension=[{"url": "http://example.org/unknown", "extension": [{"url": "part", "valueString": "x"}]}]
    )
    assert errors(validator, res, "json") == []


def test_context_check_through_the_command_line_ig(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(observation(extension=[ext("ext-patient-or-name")])), encoding="utf-8")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(patient(extension=[ext("ext-patient-or-name")])), encoding="utf-8")
    args = ["validate", "--ig", str(DEFS), "--no-rulebook", "--no-progress"]
    assert main([*args, str(good)]) == 0
    assert main([*args, str(bad)]) == 1
    assert NOT_HERE in capsys.readouterr().out


def test_a_context_verdict_is_not_reused_across_places(validator: Validator) -> None:
    # the same extension twice in one resource: allowed on the mobile number only
    res = patient(
        telecom=[
            {"extension": [ext("ext-on-mobile-phone")], "system": "phone", "use": "mobile", "value": "1"},
            {"extension": [ext("ext-on-mobile-phone")], "system": "phone", "use": "home", "value": "2"},
        ]
    )
    found = errors(validator, res, "json")
    assert [e.split(":")[0] for e in found] == ["Patient.telecom[1].extension[0]"]


# ---------------------------------------------------------------- ele-1
ELE_1 = "ele-1: 'All FHIR elements must have a @value or children'"


@FORMATS
@pytest.mark.parametrize(
    ("res", "where"),
    [
        (patient(_birthDate={"id": "b1"}), "Patient._birthDate"),
        (patient(name=[{"id": "n1"}]), "Patient.name[0]"),
        (
            patient(name=[{"family": "P", "given": ["A", None], "_given": [None, {"id": "g2"}]}]),
            "Patient.name[0]._given[1]",
        ),
    ],
    ids=[
        "primitive with only an id",
        "complex element with only an id",
        "repeating primitive with only an id",
    ],
)
def test_an_element_with_only_an_id_fails_ele_1(
    validator: Validator, res: dict, where: str, fmt: str
) -> None:
    found = errors(validator, res, fmt)
    assert any(e.startswith(where + ": ") and ELE_1 in e for e in found), found


@FORMATS
def test_an_id_with_a_value_or_children_passes_ele_1(validator: Validator, fmt: str) -> None:
    res = patient(birthDate="1950-02-28", _birthDate={"id": "b1"}, name=[{"id": "n1", "family": "Peeters"}])
    assert errors(validator, res, fmt) == []


def test_element_ids_cannot_carry_extensions(validator: Validator) -> None:
    # Element.id is an XML attribute in R4 (representation xmlAttr): no `_id` object on it
    res = patient(name=[{"id": "n1", "_id": {"extension": [ext("ext-patient-or-name")]}, "family": "P"}])
    found = errors(validator, res, "json")
    assert any(e.startswith("Patient.name[0]._id: ") and "XML attribute" in e for e in found), found


# ---------------------------------------------------------------- narrative: txt-2 and the XHTML rules
TXT_2 = "txt-2: 'The narrative SHALL have some non-whitespace content'"


@FORMATS
@pytest.mark.parametrize(
    "div",
    [
        f"<div {XHTML}><p></p></div>",
        f"<div {XHTML}>  \n </div>",
        f'<div {XHTML}><p class="x"> <br/> </p></div>',
    ],
    ids=["empty paragraph", "whitespace", "only markup"],
)
def test_a_narrative_without_content_fails_txt_2(validator: Validator, div: str, fmt: str) -> None:
    found = errors(validator, patient(text={"status": "generated", "div": div}), fmt)
    assert any(e.startswith("Patient.text.div: ") and TXT_2 in e for e in found), found


@FORMATS
@pytest.mark.parametrize(
    "div",
    [
        f'<div {XHTML}><img src="#pic" alt=""/></div>',
        f"<div {XHTML}><p>&#160;</p></div>",
        f'<div {XHTML}><h3>CBC</h3><pre xml:space="preserve">\nHb   g/L  176\n</pre></div>',
        f'<div {XHTML}><p>Press <kbd>F1</kbd> <bdo dir="rtl">x</bdo></p><address>Gent</address></div>',
        f'<div {XHTML}><table border="1" summary="s"><tr><td nowrap="nowrap" colspan="2">a</td></tr>'
        "</table></div>",
        f'<div {XHTML}><a name="top"> </a><blockquote cite="http://x.org">q</blockquote></div>',
    ],
    ids=[
        "an image with a source",
        "a no-break space",
        "pre with xml:space",
        "kbd bdo address",
        "table",
        "anchors",
    ],
)
def test_allowed_narrative_passes(validator: Validator, div: str, fmt: str) -> None:
    res = patient(text={"status": "generated", "div": div})
    if "#pic" in div:
        res["contained"] = [
            {"resourceType": "Binary", "id": "pic", "contentType": "image/png", "data": "iVBORw0KGgo="}
        ]
    assert errors(validator, res, fmt) == []


@pytest.mark.parametrize(
    ("div", "words"),
    [
        (
            f'<div {XHTML}><a href="http://x.org" target="_blank">x</a></div>',
            "attribute 'target' is not allowed on <a>",
        ),
        (f'<div {XHTML}><ol start="2"><li>x</li></ol></div>', "attribute 'start' is not allowed on <ol>"),
        (f'<div {XHTML}><p href="http://x.org">x</p></div>', "attribute 'href' is not allowed on <p>"),
        (f'<div {XHTML}><form action="http://x.org">x</form></div>', "element <form> is not allowed"),
        (f'<div {XHTML}><p onclick="alert(1)">x</p></div>', "attribute 'onclick' is not allowed"),
    ],
)
def test_attributes_outside_the_fhir_xhtml_rules_fail(div: str, words: str) -> None:
    assert any(words in p for p in narrative_problems(div)), narrative_problems(div)


def test_xml_space_survives_xml_input(validator: Validator) -> None:
    xml = (
        '<Patient xmlns="http://hl7.org/fhir"><id value="p"/><text><status value="generated"/>'
        '<div xmlns="http://www.w3.org/1999/xhtml"><pre xml:space="preserve">a  b</pre></div>'
        "</text></Patient>"
    )
    report = validator.validate(parse(xml, "xml"), OPTS)
    assert [i.message for i in report.issues if i.is_error] == []


# ---------------------------------------------------------------- dom-3: references from the narrative
def _with_contained(div: str) -> dict[str, Any]:
    return patient(
        text={"status": "generated", "div": div},
        contained=[
            {"resourceType": "Organization", "id": "org1", "name": "Wit-Gele Kruis"},
            {"resourceType": "Binary", "id": "pic", "contentType": "image/png", "data": "iVBORw0KGgo="},
        ],
    )


@FORMATS
def test_contained_resources_referred_to_from_the_narrative_pass_dom_3(
    validator: Validator, fmt: str
) -> None:
    div = (
        f'<div {XHTML}><p>Cared for by <a href="#org1">Wit-Gele Kruis</a></p><img src="#pic" alt="x"/></div>'
    )
    assert errors(validator, _with_contained(div), fmt) == []


@FORMATS
def test_a_contained_resource_referred_to_from_nowhere_fails_dom_3(validator: Validator, fmt: str) -> None:
    div = f'<div {XHTML}><p>Cared for by <a href="#org1">Wit-Gele Kruis</a></p></div>'
    found = errors(validator, _with_contained(div), fmt)
    assert any(e.startswith("Patient: ") and "dom-3" in e for e in found), found


def test_a_reference_from_the_narrative_of_another_resource_does_not_count(validator: Validator) -> None:
    res = _with_contained(f"<div {XHTML}>nothing</div>")
    res["contained"][0]["text"] = {"status": "generated", "div": f'<div {XHTML}><img src="#pic"/></div>'}
    res["managingOrganization"] = {"reference": "#org1"}
    found = errors(validator, res, "json")
    assert any("dom-3" in e for e in found), found


# ---------------------------------------------------------------- helpers
@pytest.mark.parametrize(
    ("url", "absolute"),
    [
        ("http://hl7.org/fhir/StructureDefinition/x", True),
        ("urn:uuid:9b0c3c3a-1111-4aaa-8bbb-000000000001", True),
        ("urn:oid:1.2.3", True),
        ("birthPlace", False),
        ("/StructureDefinition/x", False),
        ("", False),
        (None, False),
    ],
)
def test_absolute_urls(url: Any, absolute: bool) -> None:
    assert is_absolute_url(url) is absolute


def test_strip_indexes() -> None:
    assert strip_indexes("Bundle.entry[3].resource.name[0].given[1]") == "Bundle.entry.resource.name.given"


def test_the_checks_leave_the_input_alone(validator: Validator) -> None:
    res = INVALID["core: in a Bundle, on the wrong entry"][0]
    before = copy.deepcopy(res)
    validator.validate(res, OPTS)
    assert res == before

"""Unit tests of the FHIRPath layer: the functions added to fhirpathpy and the native invariants."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapter.fhirpath import FhirPathEngine, FhirPathError, native_invariant
from adapter.fhirpath.native import R4_EXPRESSIONS

DATA = Path(__file__).resolve().parent / "data" / "fhirpath"


@pytest.fixture(scope="module")
def engine() -> FhirPathEngine:
    return FhirPathEngine()


@pytest.fixture
def patient() -> dict:
    return json.loads((DATA / "patient-example.json").read_text(encoding="utf-8"))


def test_syntax_error_is_a_fhirpath_error(engine: FhirPathEngine) -> None:
    with pytest.raises(FhirPathError, match="invalid FHIRPath"):
        engine.compile("name.given.where(")
    with pytest.raises(FhirPathError):
        engine.compile("2 + 2 /")  # fhirpathpy alone silently parses this as 2 + 2


def test_compile_is_cached_and_bounded() -> None:
    e = FhirPathEngine(cache_size=2)
    first = e.compile("name")
    assert e.compile("name") is first
    e.compile("id")
    e.compile("gender")
    assert "name" not in e._cache and len(e._cache) == 2


def test_primitive_and_its_extension_are_one_node(engine: FhirPathEngine, patient: dict) -> None:
    assert engine.evaluate("Patient.birthDate.count()", patient) == [1]
    assert engine.evaluate("Patient.birthDate.extension.url", patient) == [
        "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
    ]
    assert engine.evaluate("Patient.birthDate.hasValue()", patient) == [True]
    assert engine.evaluate("Patient.name.hasValue()", patient) == [False]


def test_environment_variables(engine: FhirPathEngine, patient: dict) -> None:
    assert engine.evaluate("%`vs-administrative-gender`", patient) == [
        "http://hl7.org/fhir/ValueSet/administrative-gender"
    ]
    assert engine.evaluate("%`ext-patient-birthTime`", patient) == [
        "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
    ]
    assert engine.evaluate("%sct & %loinc & %ucum", patient) == [
        "http://snomed.info/scthttp://loinc.orghttp://unitsofmeasure.org"
    ]
    name = patient["name"][0]
    assert engine.evaluate("%resource.id", name, resource=patient) == ["example"]
    assert engine.evaluate("%context.family", name, resource=patient) == ["Chalmers"]
    assert engine.evaluate("%rootResource.id", name, resource=patient, root_resource={"id": "b"}) == ["b"]
    assert engine.evaluate("%who", patient, env={"who": "x"}) == ["x"]
    with pytest.raises(FhirPathError):
        engine.evaluate("%undefined", patient)


def _bundle() -> dict:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:aaa", "resource": {"resourceType": "Patient", "id": "p1"}},
            {
                "fullUrl": "http://x.org/fhir/Organization/o1",
                "resource": {"resourceType": "Organization", "id": "o1"},
            },
            {
                "fullUrl": "urn:uuid:ccc",
                "resource": {
                    "resourceType": "Observation",
                    "id": "obs",
                    "subject": {"reference": "urn:uuid:aaa"},
                    "performer": [{"reference": "Organization/o1"}, {"reference": "#dev"}],
                    "contained": [{"resourceType": "Device", "id": "dev"}],
                },
            },
        ],
    }


def test_resolve_in_bundle_and_contained(engine: FhirPathEngine) -> None:
    bundle = _bundle()
    obs = bundle["entry"][2]["resource"]
    kw = {"resource": obs, "root_resource": bundle}
    assert engine.evaluate("subject.resolve().id", obs, **kw) == ["p1"]
    assert engine.evaluate("performer.resolve().ofType(Organization).id", obs, **kw) == ["o1"]
    assert engine.evaluate("performer[1].resolve().id", obs, **kw) == ["dev"]
    assert engine.evaluate("subject.resolve() is Patient", obs, **kw) == [True]
    assert engine.evaluate("encounter.resolve()", obs, **kw) == []


def test_resolve_uses_the_callback_first(engine: FhirPathEngine) -> None:
    calls = []

    def resolver(ref: str, frm: dict | None) -> dict | None:
        calls.append((ref, frm["id"] if frm else None))
        return {"resourceType": "Practitioner", "id": "from-callback"} if ref == "Practitioner/9" else None

    obs = {"resourceType": "Observation", "id": "o", "performer": [{"reference": "Practitioner/9"}]}
    assert engine.evaluate("performer.resolve().id", obs, resolver=resolver) == ["from-callback"]
    assert calls == [("Practitioner/9", "o")]


@dataclass(frozen=True)
class _Result:
    status: str


class FakeTerminology:
    def validate_code(
        self, valueset: str, system: str | None, code: str, display: str | None = None
    ) -> _Result:
        if valueset != "http://hl7.org/fhir/ValueSet/administrative-gender":
            return _Result("unknown")
        return _Result("valid" if code in {"male", "female", "other", "unknown"} else "invalid")


def test_member_of_with_a_fake_terminology(patient: dict) -> None:
    e = FhirPathEngine(FakeTerminology())
    assert e.evaluate("gender.memberOf(%`vs-administrative-gender`)", patient) == [True]
    patient["gender"] = "m"
    assert e.evaluate("gender.memberOf(%`vs-administrative-gender`)", patient) == [False]
    coding = {"system": "http://hl7.org/fhir/administrative-gender", "code": "female"}
    assert e.evaluate("memberOf('http://hl7.org/fhir/ValueSet/administrative-gender')", coding) == [True]
    assert e.evaluate("gender.memberOf('http://example.org/vs')", patient) == []  # unknown: empty
    assert FhirPathEngine().evaluate("gender.memberOf('http://x/vs')", patient) == []  # no terminology


GOOD = '<div xmlns="http://www.w3.org/1999/xhtml"><p>Hi <b>there</b> <a href="http://x.org">x</a></p><img src="http://x.org/a.png"/></div>'


@pytest.mark.parametrize(
    ("div", "ok"),
    [
        (GOOD, True),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="alert(1)">x</p></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><a href="javascript:alert(1)">x</a></div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><iframe src="http://evil.org"/></div>', False),
        (
            '<div xmlns="http://www.w3.org/1999/xhtml"><p style="background:url(http://t.org/p)">x</p></div>',
            False,
        ),
        ("<div><p>no namespace</p></div>", False),
        ('<!DOCTYPE d [<!ENTITY x "y">]><div xmlns="http://www.w3.org/1999/xhtml">&x;</div>', False),
        ('<div xmlns="http://www.w3.org/1999/xhtml"><p>unclosed</div>', False),
    ],
)
def test_html_checks(engine: FhirPathEngine, div: str, ok: bool) -> None:
    res = {"resourceType": "Basic", "text": {"status": "generated", "div": div}}
    assert engine.evaluate("text.`div`.htmlChecks()", res) == [ok]


def test_conforms_to_callback_and_fallback(engine: FhirPathEngine, patient: dict) -> None:
    e = FhirPathEngine(conforms_to=lambda res, url: url.endswith("/ok"))
    assert e.evaluate("conformsTo('http://x.org/StructureDefinition/ok')", patient) == [True]
    assert e.evaluate("conformsTo('http://x.org/StructureDefinition/no')", patient) == [False]
    assert engine.evaluate("conformsTo('http://x.org/StructureDefinition/p')", patient) == []
    with pytest.raises(FhirPathError):
        engine.evaluate("conformsTo('trash')", patient)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("true.toString()", ["true"]),
        ("1.0.toString()", ["1.0"]),
        ("@2015-02-04.is(Date)", [True]),
        ("@2015-02-04T10:00.is(DateTime)", [True]),
        ("(3 | 1 | 2).sort()", [1, 2, 3]),
        ("('a' | 'c' | 'b').sort(-$this)", ["c", "b", "a"]),
        ("'abc'.matchesFull('b')", [False]),
        ("'abc'.matchesFull('a.c')", [True]),
        ("'<a>'.escape('html')", ["&lt;a&gt;"]),
        ("'&lt;a&gt;'.unescape('html')", ["<a>"]),
        ("1.587.precision()", [3]),
        ("@2014-01-05T10:30.precision()", [12]),
        ("(1 'cm').comparable(1 '[in_i]')", [True]),
        ("(1 'cm').comparable(1 'g')", [False]),
        ("(@1973-12-25T00:00:00.000+10:00 + 1 hour).toString()", ["1973-12-25T01:00:00.000+10:00"]),
        ("@2012-04-15T15:00:00Z = @2012-04-15T10:00:00", []),
        ("(1 | 2).trace('x').count()", [2]),
    ],
)
def test_added_functions_and_fixes(engine: FhirPathEngine, expr: str, expected: list) -> None:
    assert engine.evaluate(expr, {}) == expected


def test_boundaries(engine: FhirPathEngine) -> None:
    assert [str(x) for x in engine.evaluate("1.587.lowBoundary(2) | 1.587.highBoundary(2)", {})] == [
        "1.58",
        "1.59",
    ]
    (low,) = engine.evaluate("@2014.lowBoundary(6)", {})
    assert low.asStr == "2014-01"
    (high,) = engine.evaluate("@2014-02.highBoundary(8)", {})
    assert high.asStr == "2014-02-28"


def test_trace_is_silent_without_a_callback_and_reports_with_one(capsys: pytest.CaptureFixture) -> None:
    FhirPathEngine().evaluate("(1 | 2).trace('lbl')", {})
    assert capsys.readouterr().out == ""
    seen = []
    FhirPathEngine(trace=lambda label, items: seen.append((label, items))).evaluate(
        "(1 | 2).trace('lbl')", {}
    )
    assert seen == [("lbl", [1, 2])]


def test_is_true_semantics(engine: FhirPathEngine, patient: dict) -> None:
    assert engine.is_true("name.exists()", patient)
    assert engine.is_true("deceased.ofType(dateTime)", patient)  # empty is satisfied
    assert not engine.is_true("active = false", patient)
    with pytest.raises(FhirPathError):
        engine.is_true("name.given", patient)


# ---- native invariants agree with FHIRPath ------------------------------------------------------

ELEMENT_CASES: list[tuple[object, dict | None, str | None]] = [
    ("x", None, "string"),
    (True, None, "boolean"),
    (None, {"extension": [{"url": "u", "valueString": "v"}]}, "string"),
    (None, {"id": "only-id"}, "string"),
    ("x", {"id": "a"}, "string"),
    ({"family": "F"}, None, "HumanName"),
    ({"id": "only"}, None, "HumanName"),
    ({}, None, "HumanName"),
    ({"_family": {"extension": [{"url": "u", "valueCode": "c"}]}}, None, "HumanName"),
    ({"id": "i", "extension": [{"url": "u", "valueCode": "c"}]}, None, "HumanName"),
    ({"coding": []}, None, "CodeableConcept"),
]


@pytest.mark.parametrize(("node", "side", "type_"), ELEMENT_CASES)
def test_ele_1_native_agrees(engine: FhirPathEngine, node, side, type_) -> None:
    expr = R4_EXPRESSIONS["ele-1"][0]
    fn = native_invariant("ele-1", expr)
    assert fn is not None
    assert fn(node, side) == engine.is_true(expr, node, node_type=type_, side=side)


EXTENSIONS = [
    {"url": "u", "valueString": "v"},
    {"url": "u", "extension": [{"url": "a", "valueString": "v"}]},
    {"url": "u"},
    {"url": "u", "valueString": "v", "extension": [{"url": "a", "valueString": "v"}]},
    {"url": "u", "valueQuantity": {"value": 1}},
    {"url": "u", "_valueCode": {"extension": [{"url": "x", "valueString": "y"}]}},
]


@pytest.mark.parametrize("ext", EXTENSIONS)
def test_ext_1_native_agrees(engine: FhirPathEngine, ext: dict) -> None:
    expr = R4_EXPRESSIONS["ext-1"][0]
    fn = native_invariant("ext-1", expr)
    assert fn(ext) == engine.is_true(expr, ext, node_type="Extension")


def _resources() -> list[dict]:
    base = {"resourceType": "Patient", "id": "p", "text": {"status": "generated", "div": GOOD}}
    org = {"resourceType": "Organization", "id": "o1"}
    out = [copy.deepcopy(base)]
    out.append({**base, "contained": [org], "managingOrganization": {"reference": "#o1"}})
    out.append({**base, "contained": [org]})  # not referenced: dom-3 fails
    out.append(
        {
            **base,
            "contained": [{**org, "contained": [{"resourceType": "Basic", "id": "b"}]}],
            "managingOrganization": {"reference": "#o1"},
        }
    )
    out.append(
        {
            **base,
            "contained": [{**org, "meta": {"versionId": "1"}}],
            "managingOrganization": {"reference": "#o1"},
        }
    )
    out.append(
        {
            **base,
            "contained": [{**org, "meta": {"security": [{"code": "R"}]}}],
            "managingOrganization": {"reference": "#o1"},
        }
    )
    out.append({"resourceType": "Patient", "id": "no-text"})
    out.append({**base, "contained": [{**org, "partOf": {"reference": "#"}}]})  # refers back to container
    return out


@pytest.mark.parametrize("key", ["dom-2", "dom-3", "dom-4", "dom-5", "dom-6"])
@pytest.mark.parametrize("index", range(8))
def test_domain_resource_natives_agree(engine: FhirPathEngine, key: str, index: int) -> None:
    res = _resources()[index]
    expr = R4_EXPRESSIONS[key][0]
    assert native_invariant(key, expr)(res) == engine.is_true(expr, res)


def test_native_outcomes_are_not_trivial() -> None:
    """The agreement tests above must include failing inputs, or agreement proves nothing."""
    r = _resources()
    assert not native_invariant("dom-3", R4_EXPRESSIONS["dom-3"][0])(r[2])
    assert not native_invariant("dom-2", R4_EXPRESSIONS["dom-2"][0])(r[3])
    assert not native_invariant("ele-1", R4_EXPRESSIONS["ele-1"][0])({"id": "x"})
    assert not native_invariant("ext-1", R4_EXPRESSIONS["ext-1"][0])({"url": "u"})


def test_native_only_for_the_r4_text() -> None:
    assert native_invariant("ele-1", "hasValue() or (children().count() > id.count())") is not None
    assert native_invariant("ele-1", "hasValue()  or (children().count() >  id.count())") is not None
    assert native_invariant("ele-1", "hasValue()") is None
    assert native_invariant("xyz-1", "hasValue()") is None

"""FHIRPath behaviour by class of defect, written from the specification rather than the suite.

Sources: FHIRPath Normative Release 1 (http://hl7.org/fhirpath/N1, the version FHIR R4 uses)
for operators, precedence, singleton evaluation, quantities and types; FHIRPath 2.0 for
defineVariable(); R4's fhirpath.html for the FHIR type model (`code` is a `string`).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from adapter.fhirpath import FhirPathEngine, FhirPathError
from adapter.fhirpath.compiled import Env, Fallback
from adapter.terminology import ucum

DATA = Path(__file__).resolve().parent / "data" / "fhirpath"


@pytest.fixture(scope="module")
def engine() -> FhirPathEngine:
    return FhirPathEngine()


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture
def patient() -> dict:
    return _load("patient-example.json")


@pytest.fixture
def observation() -> dict:
    return _load("observation-example.json")


def ev(engine: FhirPathEngine, expression: str, resource: dict | None = None) -> list:
    resource = {} if resource is None else resource
    return engine.evaluate(expression, resource, resource=resource)


def text(values: list) -> list:
    return [v.asStr if hasattr(v, "asStr") else v for v in values]


# ---- operator precedence (N1 "Operator precedence": . [] unary * + is/as | < = in and or implies) ----


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(1 | 1 is Integer).count()", [2]),  # is/as bind tighter than |
        ("('a' | 'b' is String).count()", [2]),
        ("1 | 2 is Integer", [1, True]),
        ("2 + 3 * 4", [14]),
        ("10 - 4 - 3", [3]),  # left-associative
        ("-1.abs()", [-1]),  # invocation binds tighter than unary minus: -(1.abs())
        ("(-1).abs()", [1]),
        ("true or false and false", [True]),  # and binds tighter than or
        ("true xor true and false", [True]),  # ... and than xor
        ("true or false implies false", [False]),  # implies is the loosest
        ("true and '0215' in ('0215' | '0216')", [True]),  # in binds tighter than and
        ("1 + 1 = 2 and 2 * 2 = 4", [True]),
        ("(1 | 2).count() = 2 = true", [True]),
    ],
)
def test_precedence(engine: FhirPathEngine, expression: str, expected: list) -> None:
    assert ev(engine, expression) == expected


def test_is_binds_tighter_than_a_comparison(engine: FhirPathEngine) -> None:
    # 1 > (2 is Boolean): an integer against a boolean is an error, not `(1 > 2) is Boolean`
    with pytest.raises(FhirPathError):
        ev(engine, "1 > 2 is Boolean")
    assert ev(engine, "(1 > 2) is Boolean") == [True]


# ---- and / or / xor / implies / not() on non-Boolean operands (N1 "Singleton Evaluation") ----------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("(true and 'foo').empty()", [False]),  # one non-Boolean item evaluates to true
        ("'foo' and true", [True]),
        ("1 and false", [False]),
        ("true xor 'x'", [False]),
        ("'x' implies false", [False]),
        ("'x'.not()", [False]),
        ("{} and false", [False]),
        ("{} and true", []),
        ("{} or true", [True]),
        ("{} or false", []),
        ("{} xor true", []),
        ("{} implies true", [True]),
        ("{} implies false", []),
        ("false implies {}", [True]),
        ("true implies {}", []),
        ("{}.not()", []),
    ],
)
def test_singleton_evaluation_in_logic(engine: FhirPathEngine, expression: str, expected: list) -> None:
    assert ev(engine, expression) == expected


@pytest.mark.parametrize(
    "expression", ["(1 | 2) and true", "true xor (1 | 2)", "(true | false).not()", "(1 | 2) implies true"]
)
def test_several_items_where_a_boolean_is_expected_is_an_error(
    engine: FhirPathEngine, expression: str
) -> None:
    with pytest.raises(FhirPathError):
        ev(engine, expression)


def test_spec_example_active_and_gender_and_telecom(engine: FhirPathEngine, patient: dict) -> None:
    # "Patient.active and Patient.gender and Patient.telecom": true with one telecom, an error with several
    expression = "Patient.active and Patient.gender and Patient.telecom"
    with pytest.raises(FhirPathError):
        ev(engine, expression, patient)
    patient["telecom"] = patient["telecom"][:1]
    assert ev(engine, expression, patient) == [True]


def test_a_deciding_left_side_ends_the_evaluation(engine: FhirPathEngine) -> None:
    # the right side (several items, an error if evaluated) is not needed
    assert ev(engine, "false and (1 | 2)") == [False]
    assert ev(engine, "true or (1 | 2)") == [True]
    assert ev(engine, "false implies (1 | 2)") == [True]


# ---- Quantity multiply, divide, abs() (N1 "Math": * and / on Quantity; UCUM unit algebra) --------


@pytest.mark.parametrize(
    "expression",
    [
        "2.0 'cm' * 2.0 'm' = 0.040 'm2'",
        "4.0 'g' / 2.0 'm' = 2 'g/m'",
        "1.0 'm' / 1.0 'm' = 1 '1'",
        "(-5.5 'mg').abs() = 5.5 'mg'",
        "2 'mg' * 3 = 6 'mg'",
        "3 * 2 'mg' = 6 'mg'",
        "6 'mg' / 4 = 1.5 'mg'",
        "6 / 3 'mg' = 2 '/mg'",
        "3 'm' * 3 'm' = 9 'm2'",
        "1 'kg' / 1 'L' = 1 'g/mL'",
        "10 'mg' / 2 'mL' * 2 'mL' = 10 'mg'",
        "3 'm' + 2 'cm' = 302 'cm'",
        "1 'kg' - 1 'g' = 999 'g'",
        "2 'h' * 3 = 6 'h'",
    ],
)
def test_quantity_arithmetic(engine: FhirPathEngine, expression: str) -> None:
    assert ev(engine, expression) == [True]


def test_quantity_results_carry_the_combined_unit(engine: FhirPathEngine) -> None:
    assert text(ev(engine, "2.0 'cm' * 2.0 'm'")) == ["4.00 'cm.m'"]
    assert text(ev(engine, "4.0 'g' / 2.0 'm'")) == ["2 'g/m'"]
    assert text(ev(engine, "1.0 'm' / 1.0 'm'")) == ["1 '1'"]
    assert text(ev(engine, "(-5.5 'mg').abs()")) == ["5.5 'mg'"]
    assert ev(engine, "5 'mg' / 0") == []  # division by zero is empty, as for numbers


def test_quantity_of_a_fhir_element_takes_part(engine: FhirPathEngine, observation: dict) -> None:
    # valueQuantity 185 [lb_av]; the UCUM pound is 453.59237 g
    assert ev(engine, "(Observation.value * 2).value", observation) == [Decimal(370)]
    assert ev(engine, "Observation.value = 83914.58845 'g'", observation) == [True]
    assert ev(engine, "Observation.value ~ 83.9 'kg'", observation) == [True]


@pytest.mark.parametrize("expression", ["1 'm' * 'a'", "1 'm' + 1 'g'", "true * 2 'm'"])
def test_quantity_arithmetic_errors(engine: FhirPathEngine, expression: str) -> None:
    with pytest.raises(FhirPathError):
        ev(engine, expression)


def test_ucum_canonical_forms() -> None:
    mg, g = ucum.canonical("mg"), ucum.canonical("g")
    assert mg is not None and g is not None and mg.commensurable(g) and g.factor == 1000 * mg.factor
    assert ucum.canonical("[lb_av]").factor == ucum.canonical("g").factor * Fraction("453.59237")
    assert ucum.canonical("mm[Hg]").commensurable(ucum.canonical("kPa"))
    assert ucum.canonical("10*3/uL").commensurable(ucum.canonical("/L"))
    assert ucum.canonical("{beats}/min") == ucum.canonical("/min")
    assert not ucum.canonical("cm2").commensurable(ucum.canonical("cm"))
    assert ucum.canonical("[IU]/mL").commensurable(ucum.canonical("[IU]/L"))
    assert not ucum.canonical("[IU]").commensurable(ucum.canonical("1"))
    for unknown in ("Cel", "[degF]", "[s]", "mg / dl", "foo"):
        assert ucum.canonical(unknown) is None


def test_ucum_unit_algebra() -> None:
    assert ucum.multiply("cm", "m") == "cm.m"
    assert ucum.multiply("m", "m") == "m2"
    assert ucum.divide("g", "m") == "g/m"
    assert ucum.divide("m", "m") == "1"
    assert ucum.multiply("mg/dL", "dL") == "mg"
    assert ucum.divide("mg", "kg.d") == "mg/kg/d"


# ---- calendar durations vs UCUM (N1 "Time-valued Quantities", "Date/Time Arithmetic") --------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # weeks and below: the calendar keyword is the UCUM definite duration
        ("7 days = 1 'wk'", [True]),
        ("1 week = 1 'wk'", [True]),
        ("1 day = 1 'd'", [True]),
        ("1 hour = 1 'h'", [True]),
        ("60 minutes = 1 'h'", [True]),
        ("1 second = 1 's'", [True]),
        ("1 millisecond = 1 'ms'", [True]),
        ("6 days < 1 week", [True]),
        # a calendar year/month is equivalent, not equal, to the UCUM 'a' / 'mo'
        ("1 year = 1 'a'", []),
        ("1 year ~ 1 'a'", [True]),
        ("1 month = 1 'mo'", []),
        ("1 month ~ 1 'mo'", [True]),
        ("1 year != 1 'a'", []),
        ("'1 \\'mo\\''.toQuantity() = 1 month", []),
        # calendar years and months against days or seconds cannot be compared
        ("1 month = 30 days", []),
        ("1 year > 300 days", []),
        ("1 month ~ 30 days", [False]),
        # among themselves they convert (1 year = 12 months)
        ("1 year = 12 months", [True]),
        ("2 years > 23 months", [True]),
        ("1 'a' = 12 'mo'", [True]),
        ("1 year.comparable(1 'a')", [False]),
        ("1 'wk'.comparable(1 day)", [True]),
    ],
)
def test_calendar_units_equality_and_equivalence(
    engine: FhirPathEngine, expression: str, expected: list
) -> None:
    assert ev(engine, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("@2014-01-01 + 1 'wk'", "2014-01-08"),
        ("@2014-01-01 + 1 week", "2014-01-08"),
        ("@2014-01-01 + 1 'd'", "2014-01-02"),
        ("@2014-01-31 + 1 month", "2014-02-28"),
        ("@2014-01-01 + 1 'year'", "2015-01-01"),  # a calendar keyword in quotes is still one
        ("@1974-12-25 - 1 'month'", "1974-11-25"),
        ("@2014-01-01T10:00:00 + 90 'min'", "2014-01-01T11:30:00"),
        ("@T10:00 + 1 'h'", "11:00"),
        ("@2014 + 24 months", "2016"),
    ],
)
def test_date_arithmetic_with_durations(engine: FhirPathEngine, expression: str, expected: str) -> None:
    assert text(ev(engine, expression)) == [expected]


@pytest.mark.parametrize(
    "expression", ["@2014-01-01 + 1 'a'", "@2014-01-01 + 1 'mo'", "@2014-01-01 - 1 'cm'", "@2014-01-01 + 7"]
)
def test_date_arithmetic_refuses_ucum_years_months_and_non_durations(
    engine: FhirPathEngine, expression: str
) -> None:
    # a UCUM year is 365.25 days and a UCUM month 30.4375: not calendar arithmetic
    with pytest.raises(FhirPathError):
        ev(engine, expression)


# ---- code vs string (FHIR R4: `code` specialises `string`; `as`/`ofType` take a primitive exactly) ----


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Patient.gender = 'male'", [True]),  # a code compares as a string
        ("Patient.gender ~ 'MALE'", [True]),
        ("'male' in Patient.gender", [True]),
        ("(Patient.gender | 'male').count()", [1]),  # one value, whether code or string
        ("(Patient.gender | 'female').count()", [2]),
        ("Patient.gender.is(code)", [True]),
        ("Patient.gender.is(string)", [True]),
        ("Patient.gender is FHIR.code", [True]),
        ("Patient.gender.is(id)", [False]),
        ("Patient.gender.as(code)", ["male"]),
        ("Patient.gender.as(string)", []),
        ("Patient.gender.ofType(code)", ["male"]),
        ("Patient.gender.ofType(string)", []),
        ("Patient.gender as code", ["male"]),
        ("Patient.name.given.ofType(string).count()", [5]),
        ("Patient.is(System.Patient)", [False]),
    ],
)
def test_code_and_string(engine: FhirPathEngine, patient: dict, expression: str, expected: list) -> None:
    assert ev(engine, expression, patient) == expected


@pytest.mark.parametrize(
    "expression", ["Patient.gender.as(string1)", "Patient.gender.ofType(string1)", "Patient.gender is Strin"]
)
def test_unknown_type_names_are_errors(engine: FhirPathEngine, patient: dict, expression: str) -> None:
    with pytest.raises(FhirPathError, match="unknown type"):
        ev(engine, expression, patient)


# ---- defineVariable(name [, expr]) (FHIRPath 2.0 "Utility functions") --------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("defineVariable('v1', 'value1').select(%v1)", ["value1"]),
        ("defineVariable('n1', name.first()).select(%n1.given)", ["Peter", "James"]),
        ("name.first().defineVariable('n').select(%n.given)", ["Peter", "James"]),  # no expr: the input
        ("name.defineVariable('x', 1).count()", [3]),  # the input passes through
        ("defineVariable('fam', name.first().family).name.where(family = %fam).use", ["official"]),
        ("defineVariable('a', 1).defineVariable('b', %a + 1).select(%a + %b)", [3]),
        # a variable defined inside an argument lives for that argument only (each iteration)
        ("(1 | 2).select(defineVariable('x', $this * 10).select(%x))", [10, 20]),
        # the name may itself be computed
        (
            "defineVariable(defineVariable('p', 'ppp').select(%p), 'value').select(%ppp)",
            ["value"],
        ),
        (
            "defineVariable('n1', name.first()).select(%n1.given) | "
            "defineVariable('n1', name.skip(1).first()).select(%n1.given)",
            ["Peter", "James", "Jim"],
        ),
    ],
)
def test_define_variable(engine: FhirPathEngine, patient: dict, expression: str, expected: list) -> None:
    assert ev(engine, expression, patient) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "defineVariable('v', 1).defineVariable('v', 2)",  # already defined in this scope
        "defineVariable('context', 1)",  # a system variable
        "defineVariable('resource', 1)",
        "defineVariable('v', 1).active | %v",  # not visible in the other operand
        "name.select(defineVariable('g', given)).select(%g)",  # nor after the argument it was made in
        "defineVariable()",
    ],
)
def test_define_variable_errors(engine: FhirPathEngine, patient: dict, expression: str) -> None:
    with pytest.raises(FhirPathError):
        ev(engine, expression, patient)


def test_variables_do_not_outlive_an_evaluation(engine: FhirPathEngine, patient: dict) -> None:
    assert ev(engine, "defineVariable('once', 1).select(%once)", patient) == [1]
    assert ev(engine, "defineVariable('once', 2).select(%once)", patient) == [2]
    with pytest.raises(FhirPathError):
        ev(engine, "%once", patient)


# ---- strict semantic checks: invalid expressions are rejected, not evaluated ----------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("name.given1", "'given1' is not an element of HumanName"),
        ("Encounter.name.given", "not the type of the context"),
        ("deceasedBoolean", "'deceasedBoolean' is not an element of Patient"),  # JSON name of a choice
        ("name.where(given1 = 'x').exists()", "given1"),  # inside an argument too
        ("false and name.given1.exists()", "given1"),  # even where it would never be reached
        ("%resource.nme", "'nme' is not an element of Patient"),
        ("extension('x').valueString", "'valueString' is not an element of Extension"),
        ("birthDate.value", "'value' is not an element of date"),  # a primitive has id and extension only
        ("name.first(1)", "first() takes no arguments"),
        ("name.given.substring()", "substring() takes 1 or 2 argument"),
        ("name.where()", "where() takes 1 argument"),
        ("name.frist()", "unknown function frist()"),
    ],
)
def test_invalid_expressions_are_rejected(
    engine: FhirPathEngine, patient: dict, expression: str, message: str
) -> None:
    with pytest.raises(FhirPathError, match=re.escape(message)):
        ev(engine, expression, patient)


@pytest.mark.parametrize(
    "expression",
    [
        "Observation.valueQuantity.unit",
        "(Observation.value as Period).unit",
        "Observation.value.ofType(Period).unit",
    ],
)
def test_choice_elements_are_reached_by_their_name(
    engine: FhirPathEngine, observation: dict, expression: str
) -> None:
    with pytest.raises(FhirPathError):
        ev(engine, expression, observation)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Observation.value.unit", ["lbs"]),  # value may be a Quantity, which has a unit
        ("(Observation.value as Quantity).unit", ["lbs"]),
        ("Observation.value.ofType(Quantity).code", ["[lb_av]"]),
        (
            "Observation.extension('http://example.com/fhir/StructureDefinition/patient-age').value.code",
            ["a"],
        ),
        ("contained.where(id = 'x').id", []),
        ("Observation.children().code.exists()", [True]),  # nothing is checked below children()
    ],
)
def test_valid_paths_still_evaluate(
    engine: FhirPathEngine, observation: dict, expression: str, expected: list
) -> None:
    assert ev(engine, expression, observation) == expected


def test_abstract_resources_accept_any_resource_element(engine: FhirPathEngine) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Observation", "status": "final"}}],
    }
    assert ev(engine, "entry.resource.status", bundle) == ["final"]
    assert ev(engine, "entry.resource.ofType(Observation).status", bundle) == ["final"]
    with pytest.raises(FhirPathError):
        ev(engine, "entry.resource.notAnElementOfAnyResource", bundle)
    with pytest.raises(FhirPathError):
        ev(engine, "entry.resource.ofType(Observation).name", bundle)


def test_checks_need_a_known_type(engine: FhirPathEngine) -> None:
    # untyped input: nothing to check against
    assert engine.evaluate("given1", {"given": ["x"]}) == []
    # the same input typed as a HumanName (as the validator types elements) is checked
    with pytest.raises(FhirPathError):
        engine.evaluate("given1", {"given": ["x"]}, node_type="HumanName")
    assert engine.evaluate("given", {"given": ["x"]}, node_type="HumanName") == ["x"]
    # a backbone element is typed by its path
    contact = {"name": {"family": "x"}}
    assert engine.evaluate("name.family", contact, node_type="Patient.contact") == ["x"]
    with pytest.raises(FhirPathError):
        engine.evaluate("names", contact, node_type="Patient.contact")


def test_the_compiled_form_declines_invalid_expressions(engine: FhirPathEngine, patient: dict) -> None:
    fn = engine.compiled("name.given1.exists()")
    assert fn is not None
    with pytest.raises(Fallback):
        fn(patient, Env(patient, patient, patient, None))
    untyped = {"name": [{"given1": ["x"]}]}
    assert fn(untyped, Env(untyped, untyped, untyped, None)) == [True]


def test_ordered_functions_on_unordered_collections(patient: dict) -> None:
    # children() has no defined order: first()/skip()... on it "should not be used" (N1, Tree navigation)
    assert len(ev(FhirPathEngine(), "Patient.children().skip(1)", patient)) > 1
    strict = FhirPathEngine(check_ordered=True)
    for expression in ("Patient.children().skip(1)", "descendants().first()", "children()[0]"):
        with pytest.raises(FhirPathError, match="unordered"):
            ev(strict, expression, patient)
    assert ev(strict, "Patient.children().where(family = 'Chalmers').exists()", patient) == [True]
    assert ev(strict, "name.first().family", patient) == ["Chalmers"]


# invariants published with an expression that does not fit their context (R4 core cid-0: R4's
# ChargeItemDefinition has no `name`; the substanceExposureRisk extension's inv-1 reads elements of
# the extension's content as if they were elements of Extension)
KNOWN_INVALID_INVARIANTS = {"cid-0", "inv-1"}


def test_published_invariants_pass_the_semantic_checks(engine: FhirPathEngine) -> None:
    from adapter.conformance import default_store

    rejected: dict[str, str] = {}
    checked = 0
    for sd in default_store().all("StructureDefinition"):
        for element in (sd.get("snapshot") or {}).get("element") or []:
            codes = [t.get("code") for t in element.get("type") or []]
            path = element.get("path") or ""
            # the type the validator gives the node (invariants._node_type)
            if len(codes) == 1 and codes[0] not in ("BackboneElement", "Element"):
                root = codes[0]
            elif "." not in path or not codes or codes[0] in ("BackboneElement", "Element"):
                root = path
            else:
                continue  # a choice element: the type depends on the instance
            for constraint in element.get("constraint") or []:
                expression = constraint.get("expression")
                if not expression:
                    continue
                checked += 1
                problem = engine.semantic_error(expression, root)
                if problem is not None:
                    rejected[constraint.get("key", "")] = f"{root}: {expression} -> {problem}"
    assert checked > 1000
    assert set(rejected) <= KNOWN_INVALID_INVARIANTS, rejected


def test_repeat_arguments_are_not_typed_by_the_first_step(engine: FhirPathEngine) -> None:
    questionnaire = {"resourceType": "Questionnaire", "item": [{"linkId": "1", "item": [{"linkId": "2"}]}]}
    assert ev(engine, "repeat(item).linkId", questionnaire) == ["1", "2"]
    assert ev(engine, "item.repeat(item).linkId", questionnaire) == ["2"]

"""The compiled FHIRPath subset: exact on what it accepts, declines the rest.

The differential test is the important one: every invariant verdict the compiled form gives
while validating the samples and the official validator suite is compared with fhirpathpy's
verdict on the same node; they must never differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapter.fhirio import ParseError, parse_file
from adapter.fhirpath import compiled as cp
from adapter.fhirpath.compiled import Env, Fallback, compile_expression
from adapter.validation import invariants as inv
from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator
from tests.suite_runner import SUITE, tier_a_json_cases

ROOT = Path(__file__).resolve().parents[1]


def run(expression: str, node: Any, resource: Any = None, node_type: str | None = None) -> list[Any]:
    fn = compile_expression(expression)
    assert fn is not None
    return fn(node, Env(node, resource if resource is not None else node, resource, node_type))


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "name": [{"family": "A", "given": ["B", "C"]}, {"family": "D"}],
    "identifier": [{"system": "urn:x", "value": "1"}, {"system": "urn:y", "value": "2"}],
    "birthDate": "1950-01-02",
    "multipleBirthInteger": 2,
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("name.given", ["B", "C"]),
        ("name.family.count()", [2]),
        ("name.where(family = 'D').exists()", [True]),
        ("name.all(family.exists())", [True]),
        ("name.all(given.exists())", [False]),
        ("identifier.select(system & '|' & value)", ["urn:x|1", "urn:y|2"]),
        ("identifier.system.isDistinct()", [True]),
        ("(identifier.system | identifier.system).count()", [2]),
        ("Patient.active", [True]),
        ("active and telecom.exists()", [False]),
        ("telecom.exists() or active", [True]),
        ("telecom.value = 'x'", []),
        ("(telecom.value = 'x') and false", [False]),
        ("(telecom.value = 'x') or true", [True]),
        ("(telecom.value = 'x') implies false", []),
        ("false implies telecom.value = 'x'", [True]),
        ("active xor true", [False]),
        ("'urn:y' in identifier.system", [True]),
        ("identifier.system contains 'urn:z'", [False]),
        ("identifier[1].value", ["2"]),
        ("id.matches('^p[0-9]$')", [True]),
        ("id.startsWith('p') and id.length() = 2", [True]),
        ("name.first().family != 'A'", [False]),
        ("%resource.id = 'p1'", [True]),
        ("{}", []),
        ("identifier.select(value.matches('^\\d$')).allTrue()", [True]),
        ("identifier.select(value = '1').anyTrue()", [True]),
        ("identifier.select(value = '1').allTrue()", [False]),
        ("'it\\'s' = 'it' & '\\'' & 's'", [True]),
    ],
)
def test_compiled_results(expression: str, expected: list[Any]) -> None:
    assert run(expression, PATIENT) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "birthDate = '1950-01-02'",  # a date against a string: types matter
        "birthDate < birthDate",  # temporal ordering
        "multipleBirth.exists()",  # a choice element seen by its stem
        "name.given.where($this = 'B').exists() and name.family.is(string)",  # a type test
        "identifier.value = identifier.value",  # collections in equality
        "active and name.family",  # a non-boolean operand
    ],
)
def test_declines_what_needs_types(expression: str) -> None:
    with pytest.raises(Fallback):
        run(expression, PATIENT)


def test_primitive_extensions_and_type_heads_decline() -> None:
    node = {"resourceType": "Patient", "birthDate": "1950", "_birthDate": {"extension": []}}
    with pytest.raises(Fallback):
        run("birthDate.exists()", node)
    with pytest.raises(Fallback):
        run("Identifier.value.exists()", {"value": "x"})
    assert run("Identifier.value.exists()", {"value": "x"}, node_type="Identifier") == [True]


def test_function_arguments_must_be_constants() -> None:
    fn = compile_expression("id.startsWith(name.family)")
    assert fn is not None
    with pytest.raises(Fallback):
        fn(PATIENT, Env(PATIENT, PATIENT, PATIENT, None))


def test_syntax_errors_are_left_to_the_full_engine() -> None:
    assert compile_expression("name.where(") is None
    assert cp.compile_expression("name.") is None


def _corpus() -> list[Any]:
    docs: list[Any] = []
    for path in sorted((ROOT / "samples").rglob("*.json")):
        docs.append(json.loads(path.read_text(encoding="utf-8")))
    for case in tier_a_json_cases():
        try:
            docs.append(parse_file(SUITE / case["file"]))
        except ParseError:
            continue
    return docs


def test_compiled_verdicts_agree_with_fhirpathpy(monkeypatch: pytest.MonkeyPatch) -> None:
    original = inv.InvariantChecker._compiled
    compared: list[str] = []
    mismatches: list[tuple[str, Any, Any]] = []

    def differential(
        self: inv.InvariantChecker, plan: Any, value: Any, rule: Any, tcode: str, resource: Any, root: Any
    ) -> bool | None:
        verdict = original(self, plan, value, rule, tcode, resource, root)
        expression = plan.expression
        if verdict is not None:
            full = inv._truthy(
                self.fp.evaluate(
                    expression,
                    value,
                    resource=resource,
                    root_resource=root,
                    node_type=inv._node_type(rule, tcode),
                )
            )
            compared.append(expression)
            if full != verdict:
                mismatches.append((expression, verdict, full))
        return verdict

    monkeypatch.setattr(inv.InvariantChecker, "_compiled", differential)
    validator = Validator()
    for doc in _corpus():
        validator.validate(doc, ValidationOptions(rulebook=False))
    assert not mismatches, mismatches[:5]
    assert len(compared) > 3000 and len(set(compared)) > 70, (len(compared), len(set(compared)))


def _bundle_variants() -> list[dict[str, Any]]:
    base = json.loads((ROOT / "samples" / "valid" / "flanders-care-coordination.json").read_text())
    out = [base]
    for change in ("batch", "history", "collection", "searchset", "batch-response"):
        b = json.loads(json.dumps(base))
        b["type"] = change
        out.append(b)
    dup = json.loads(json.dumps(base))
    dup["entry"][1]["fullUrl"] = dup["entry"][0]["fullUrl"]
    no_request = json.loads(json.dumps(base))
    del no_request["entry"][2]["request"]
    versioned = json.loads(json.dumps(dup))
    versioned["entry"][1]["resource"].setdefault("meta", {})["versionId"] = "2"
    untyped = json.loads(json.dumps(base))
    del untyped["type"]
    return [*out, dup, no_request, versioned, untyped]


@pytest.mark.parametrize("key", ["bdl-3", "bdl-4", "bdl-7"])
def test_bundle_guards_never_pass_what_fhirpath_fails(key: str) -> None:
    """A guard may only answer "passes" where the full expression passes; otherwise it defers."""
    expression = next(e for (k, e) in inv._GUARDS if k == key)
    guard = inv._GUARDS[(key, expression)]
    engine = Validator().fhirpath
    verdicts = []
    for bundle in _bundle_variants():
        full = inv._truthy(engine.evaluate(expression, bundle, resource=bundle))
        quick = guard(bundle)
        assert quick is None or (quick is True and full), (key, bundle.get("type"))
        verdicts.append(full)
    assert False in verdicts and True in verdicts  # the variants exercise both answers

"""Offline terminology: value set membership, code system look-ups, displays, UCUM syntax."""

from __future__ import annotations

import time
from typing import Any

import pytest

from adapter.terminology import CodeResult, CodeSystemIndex, Terminology
from adapter.terminology.membership import Membership
from adapter.terminology.ucum import syntax_error

BASE = "http://example.org/fhir"
ANIMALS = f"{BASE}/CodeSystem/animals"


class FakeStore:
    """The three look-ups Terminology uses, over a list of resources; counts calls."""

    def __init__(self, *resources: dict[str, Any]) -> None:
        self._resources = list(resources)
        self.calls = 0

    def get(self, url: str, version: str | None = None) -> dict[str, Any] | None:
        self.calls += 1
        if "|" in url:
            url, _, version = url.partition("|")
        found = [r for r in self._resources if r.get("url") == url]
        if version:
            found = [r for r in found if r.get("version") == version]
        return found[-1] if found else None

    def _typed(self, url: str, rtype: str) -> dict[str, Any] | None:
        res = self.get(url)
        return res if res is not None and res["resourceType"] == rtype else None

    def value_set(self, url: str) -> dict[str, Any] | None:
        return self._typed(url, "ValueSet")

    def code_system(self, url: str) -> dict[str, Any] | None:
        return self._typed(url, "CodeSystem")


def animals_cs(**extra: Any) -> dict[str, Any]:
    """animal > mammal > (dog > puppy, cat), animal > bird (parent given as a property)."""
    cs: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "url": ANIMALS,
        "version": "1.0",
        "content": "complete",
        "caseSensitive": True,
        "property": [{"code": "legs", "type": "integer"}, {"code": "pet", "type": "boolean"}],
        "concept": [
            {
                "code": "animal",
                "display": "Animal",
                "concept": [
                    {
                        "code": "mammal",
                        "display": "Mammal",
                        "concept": [
                            {
                                "code": "dog",
                                "display": "Dog",
                                "designation": [{"language": "fr", "value": "Chien"}],
                                "property": [
                                    {"code": "legs", "valueInteger": 4},
                                    {"code": "pet", "valueBoolean": True},
                                ],
                                "concept": [{"code": "puppy", "display": "Puppy"}],
                            },
                            {
                                "code": "cat",
                                "display": "Cat",
                                "property": [
                                    {"code": "legs", "valueInteger": 4},
                                    {"code": "pet", "valueBoolean": True},
                                ],
                            },
                        ],
                    },
                ],
            },
            {
                "code": "bird",
                "display": "Bird",
                "property": [{"code": "parent", "valueCode": "animal"}, {"code": "legs", "valueInteger": 2}],
            },
        ],
    }
    cs.update(extra)
    return cs


def vs(name: str, *include: dict[str, Any], exclude: list[dict[str, Any]] | None = None, **extra: Any):
    res: dict[str, Any] = {
        "resourceType": "ValueSet",
        "url": f"{BASE}/ValueSet/{name}",
        "compose": {"include": list(include)},
    }
    if exclude:
        res["compose"]["exclude"] = exclude
    res.update(extra)
    return res


def term(*resources: dict[str, Any], expansions: dict[str, Any] | None = None) -> Terminology:
    return Terminology(FakeStore(animals_cs(), *resources), expansions=expansions or {})


def url(name: str) -> str:
    return f"{BASE}/ValueSet/{name}"


def filt(op: str, value: str, prop: str = "concept") -> dict[str, Any]:
    return {"system": ANIMALS, "filter": [{"property": prop, "op": op, "value": value}]}


def members(t: Terminology, name: str) -> set[str]:
    expanded = t.expand(url(name))
    assert expanded is not None
    return {code for _, code in expanded}


# -- compose --------------------------------------------------------------------------------------


def test_concept_list_membership_and_invalid_message() -> None:
    t = term(vs("pets", {"system": ANIMALS, "concept": [{"code": "dog"}, {"code": "cat"}]}))
    assert t.validate_code(url("pets"), ANIMALS, "dog") == CodeResult("valid")
    bad = t.validate_code(url("pets"), ANIMALS, "bird")
    assert bad.status == "invalid"
    assert "'bird'" in bad.message and url("pets") in bad.message and ANIMALS in bad.message
    unknown_code = t.validate_code(url("pets"), ANIMALS, "unicorn")
    assert (
        unknown_code.status == "invalid" and f"'unicorn' is not a code of {ANIMALS}" in unknown_code.message
    )
    wrong_system = t.validate_code(url("pets"), "http://other.org", "dog")
    assert wrong_system.status == "invalid" and "no codes from that system" in wrong_system.message


def test_whole_code_system_include() -> None:
    t = term(vs("all", {"system": ANIMALS}))
    assert members(t, "all") == {"animal", "mammal", "dog", "puppy", "cat", "bird"}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (filt("is-a", "mammal"), {"mammal", "dog", "puppy", "cat"}),
        (filt("descendent-of", "mammal"), {"dog", "puppy", "cat"}),
        (filt("is-not-a", "mammal"), {"animal", "bird"}),
        (filt("generalizes", "puppy"), {"puppy", "dog", "mammal", "animal"}),
        (filt("is-a", "animal"), {"animal", "mammal", "dog", "puppy", "cat", "bird"}),  # parent property
        (filt("=", "4", "legs"), {"dog", "cat"}),
        (filt("=", "true", "pet"), {"dog", "cat"}),
        (filt("=", "mammal", "parent"), {"dog", "cat"}),
        (filt("=", "animal", "parent"), {"mammal", "bird"}),
        (filt("=", "puppy", "child"), {"dog"}),
        (filt("in", "dog, bird ,cow", "concept"), {"dog", "bird"}),
        (filt("not-in", "2,4", "legs"), {"animal", "mammal", "puppy"}),
        (filt("regex", "[cd].*", "code"), {"cat", "dog"}),
        (filt("regex", "B.*", "display"), {"bird"}),
        (filt("exists", "true", "legs"), {"dog", "cat", "bird"}),
        (filt("exists", "false", "legs"), {"animal", "mammal", "puppy"}),
        (filt("is-a", "no-such-code"), set()),
    ],
)
def test_filters_on_hierarchical_code_system(flt: dict[str, Any], expected: set[str]) -> None:
    t = term(vs("f", flt))
    assert members(t, "f") == expected


def test_several_filters_in_one_include_are_anded() -> None:
    include = {
        "system": ANIMALS,
        "filter": [
            {"property": "concept", "op": "is-a", "value": "animal"},
            {"property": "legs", "op": "=", "value": "4"},
        ],
    }
    t = term(vs("f", include))
    assert members(t, "f") == {"dog", "cat"}


def test_unsupported_filter_is_unknown_not_invalid() -> None:
    t = term(vs("f", filt("sounds-like", "dog")))
    assert t.validate_code(url("f"), ANIMALS, "cat").status == "unknown"
    assert t.expand(url("f")) is None


def test_exclude() -> None:
    t = term(
        vs("no-pups", filt("is-a", "mammal"), exclude=[{"system": ANIMALS, "concept": [{"code": "puppy"}]}])
    )
    assert members(t, "no-pups") == {"mammal", "dog", "cat"}
    assert t.validate_code(url("no-pups"), ANIMALS, "puppy").status == "invalid"


def test_value_set_imports_union_and_intersection() -> None:
    mammals = vs("mammals", filt("is-a", "mammal"))
    pets = vs("pets", {"system": ANIMALS, "concept": [{"code": "cat"}, {"code": "bird"}]})
    both = vs("both", {"valueSet": [url("mammals"), url("pets")]})
    either = vs("either", {"valueSet": [url("mammals")]}, {"valueSet": [url("pets")]})
    restricted = vs(
        "restricted", {"system": ANIMALS, "concept": [{"code": "dog"}], "valueSet": [url("pets")]}
    )
    t = term(mammals, pets, both, either, restricted)
    assert members(t, "both") == {"cat"}
    assert members(t, "either") == {"mammal", "dog", "puppy", "cat", "bird"}
    assert members(t, "restricted") == set()
    assert t.validate_code(url("both"), ANIMALS, "dog").status == "invalid"


def test_unknown_import_and_cycles_give_unknown() -> None:
    missing = vs("missing-import", {"valueSet": [url("nowhere")]})
    cyc = vs("cyc", {"valueSet": [url("cyc")]}, {"system": ANIMALS, "concept": [{"code": "dog"}]})
    t = term(missing, cyc)
    assert t.validate_code(url("missing-import"), ANIMALS, "dog").status == "unknown"
    assert t.validate_code(url("cyc"), ANIMALS, "dog").status == "valid"
    assert t.validate_code(url("cyc"), ANIMALS, "cat").status == "unknown"


def test_unknown_value_set() -> None:
    t = term()
    result = t.validate_code(url("nope"), ANIMALS, "dog")
    assert result.status == "unknown" and url("nope") in result.message
    assert t.expand(url("nope")) is None


# -- undecidable content --------------------------------------------------------------------------


def test_unknown_and_incomplete_systems_are_unknown_never_invalid() -> None:
    frag = {
        "resourceType": "CodeSystem",
        "url": f"{BASE}/frag",
        "content": "fragment",
        "concept": [{"code": "a"}],
    }
    snomed = vs(
        "sct",
        {
            "system": "http://snomed.info/sct",
            "filter": [{"property": "concept", "op": "is-a", "value": "404684003"}],
        },
    )
    fragment = vs("frag", {"system": f"{BASE}/frag"})
    mixed = vs("mixed", {"system": "http://loinc.org"}, {"system": ANIMALS, "concept": [{"code": "dog"}]})
    t = term(frag, snomed, fragment, mixed)
    assert t.validate_code(url("sct"), "http://snomed.info/sct", "123456").status == "unknown"
    assert t.validate_code(url("frag"), f"{BASE}/frag", "zzz").status == "unknown"
    # the decidable part of a mixed value set is still decided
    assert t.validate_code(url("mixed"), "http://loinc.org", "1234-5").status == "unknown"
    assert t.validate_code(url("mixed"), ANIMALS, "dog").status == "valid"
    assert t.validate_code(url("mixed"), ANIMALS, "cat").status == "invalid"
    # a code without system may come from the open LOINC part
    assert t.validate_code(url("mixed"), None, "1234-5").status == "unknown"


def test_enumerated_codes_of_unknown_system_are_decidable() -> None:
    t = term(
        vs(
            "loinc-list",
            {"system": "http://loinc.org", "concept": [{"code": "8867-4", "display": "Heart rate"}]},
        )
    )
    assert t.validate_code(url("loinc-list"), "http://loinc.org", "8867-4").status == "valid"
    assert t.validate_code(url("loinc-list"), "http://loinc.org", "8310-5").status == "invalid"
    wrong = t.validate_code(url("loinc-list"), "http://loinc.org", "8867-4", "Pulse")
    assert wrong.status == "valid" and "'Heart rate'" in wrong.message


def test_vendored_expansion_only_settles_the_undecidable_part() -> None:
    sct = "http://snomed.info/sct"
    mixed = vs(
        "vendored",
        {"system": sct, "filter": [{"property": "concept", "op": "is-a", "value": "1"}]},
        {"system": ANIMALS, "concept": [{"code": "dog"}]},
        version="4.0.1",
    )
    listed = {
        url("vendored"): {
            "systems": [
                {"uri": sct, "codes": [{"code": "2", "display": "Two"}]},
                {"uri": ANIMALS, "codes": [{"code": "cat"}]},
            ]
        }
    }
    t = term(mixed, expansions=listed)
    assert t.validate_code(url("vendored"), sct, "2").status == "valid"
    assert t.validate_code(url("vendored"), sct, "3").status == "unknown"
    # the locally computable part wins over a (wrong) vendored listing
    assert t.validate_code(url("vendored"), ANIMALS, "cat").status == "invalid"


def test_value_set_carrying_an_expansion() -> None:
    expanded = {
        "resourceType": "ValueSet",
        "url": url("expanded"),
        "expansion": {
            "contains": [
                {
                    "system": ANIMALS,
                    "code": "dog",
                    "display": "Doggy",
                    "contains": [{"system": ANIMALS, "code": "puppy"}],
                },
                {"system": "http://other.org", "code": "x"},
            ]
        },
    }
    paged = {
        "resourceType": "ValueSet",
        "url": url("paged"),
        "expansion": {"total": 50, "offset": 0, "contains": [{"system": ANIMALS, "code": "dog"}]},
    }
    t = term(expanded, paged)
    assert t.validate_code(url("expanded"), ANIMALS, "puppy").status == "valid"
    assert t.validate_code(url("expanded"), "http://other.org", "x").status == "valid"
    assert t.validate_code(url("expanded"), ANIMALS, "cat").status == "invalid"
    assert t.validate_code(url("expanded"), ANIMALS, "dog", "Doggy").message is None  # expansion display
    assert t.validate_code(url("paged"), ANIMALS, "cat").status == "unknown"  # a page is not the whole list


# -- codes, case, displays, versions --------------------------------------------------------------


def test_code_without_system() -> None:
    two = vs(
        "two",
        {"system": ANIMALS, "concept": [{"code": "dog"}]},
        {"system": "http://other.org", "concept": [{"code": "dog"}, {"code": "x"}]},
    )
    t = term(vs("pets", {"system": ANIMALS, "concept": [{"code": "dog"}, {"code": "cat"}]}), two)
    assert t.validate_code(url("pets"), None, "cat") == CodeResult("valid")
    assert t.validate_code(url("pets"), None, "bogus") == CodeResult(
        "invalid", f"The code 'bogus' is not in the value set {url('pets')}"
    )
    assert t.validate_code(url("pets"), None, "dog", "Hound").message is not None
    assert t.validate_code(url("two"), None, "dog").status == "valid"  # in two systems: still a member
    assert t.validate_code(url("two"), None, "x").status == "valid"


def test_case_sensitivity_follows_code_system() -> None:
    insensitive = animals_cs(url=f"{BASE}/ci", caseSensitive=False)
    unspecified = animals_cs(url=f"{BASE}/cu")
    del unspecified["caseSensitive"]
    t = term(
        insensitive,
        unspecified,
        vs("cs", {"system": ANIMALS}),
        vs("ci", {"system": f"{BASE}/ci"}),
        vs("cu", {"system": f"{BASE}/cu"}),
    )
    assert t.validate_code(url("cs"), ANIMALS, "Dog").status == "invalid"
    assert t.validate_code(url("ci"), f"{BASE}/ci", "DOG") == CodeResult("valid")
    unspecified_result = t.validate_code(url("cu"), f"{BASE}/cu", "Dog")
    assert unspecified_result.status == "valid" and "differs in case" in unspecified_result.message
    assert t.validate_code(url("ci"), None, "CAT").status == "valid"
    assert t.code_system_has(ANIMALS, "DOG") is False
    assert t.code_system_has(f"{BASE}/ci", "DOG") is True


def test_display_checks_use_code_system_display_and_designations() -> None:
    t = term(vs("all", {"system": ANIMALS}))
    assert t.validate_code(url("all"), ANIMALS, "dog", "Dog").message is None
    assert t.validate_code(url("all"), ANIMALS, "dog", "  dog ").message is None  # case and spaces
    assert t.validate_code(url("all"), ANIMALS, "dog", "Chien").message is None  # designation
    wrong = t.validate_code(url("all"), ANIMALS, "dog", "Cat")
    assert wrong.status == "valid"
    assert wrong.message == f"Wrong display 'Cat' for {ANIMALS}#dog: expected one of 'Dog', 'Chien'"


def test_version_qualified_urls() -> None:
    v1 = vs("ver", {"system": ANIMALS, "concept": [{"code": "dog"}]}, version="1.0")
    v2 = vs("ver", {"system": ANIMALS, "version": "1.0", "concept": [{"code": "cat"}]}, version="2.0")
    t = term(v1, v2)
    assert t.validate_code(url("ver") + "|1.0", ANIMALS, "dog").status == "valid"
    assert t.validate_code(url("ver") + "|1.0", ANIMALS, "cat").status == "invalid"
    assert t.validate_code(url("ver") + "|2.0", ANIMALS, "cat").status == "valid"
    assert t.validate_code(url("ver"), ANIMALS, "cat").status == "valid"  # latest loaded
    # an unknown version falls back to the loaded one rather than failing
    assert t.validate_code(url("ver") + "|9.9", ANIMALS, "cat").status == "valid"


def test_code_system_has() -> None:
    frag = {
        "resourceType": "CodeSystem",
        "url": f"{BASE}/frag",
        "content": "fragment",
        "concept": [{"code": "a"}],
    }
    t = term(frag)
    assert t.code_system_has(ANIMALS, "puppy") is True
    assert t.code_system_has(ANIMALS, "unicorn") is False
    assert t.code_system_has(f"{BASE}/frag", "b") is None
    assert t.code_system_has("http://snomed.info/sct", "22298006") is None
    assert t.code_system_has("http://unitsofmeasure.org", "mg/dL") is None
    assert t.code_system_has("http://unitsofmeasure.org", "mg / dL") is False


def test_bad_input_gives_results_not_tracebacks() -> None:
    t = term(vs("all", {"system": ANIMALS}))
    assert t.validate_code(url("all"), ANIMALS, "").status == "invalid"
    assert t.validate_code("", ANIMALS, "dog").status == "unknown"
    assert t.code_system_has(None, "x") is None  # type: ignore[arg-type]
    assert t.validate_code(url("all"), ANIMALS, ["dog"]).status == "invalid"  # type: ignore[arg-type]
    assert t.validate_code(url("all"), ANIMALS, "dog", {"x": 1}).status == "valid"  # type: ignore[arg-type]
    broken = {
        "resourceType": "ValueSet",
        "url": url("broken"),
        "compose": {"include": [{"system": ANIMALS, "filter": [{"op": "is-a"}]}, "junk"]},
    }
    t2 = term(broken)
    assert t2.validate_code(url("broken"), ANIMALS, "dog").status == "unknown"


def test_value_sets_are_compiled_once() -> None:
    store = FakeStore(animals_cs(), vs("all", {"system": ANIMALS}))
    t = Terminology(store, expansions={})
    t.validate_code(url("all"), ANIMALS, "dog", "Dog")
    calls = store.calls
    for _ in range(100):
        assert t.validate_code(url("all"), ANIMALS, "dog", "Dog").status == "valid"
        assert t.validate_code(url("all"), ANIMALS, "zebra").status == "invalid"
    assert store.calls == calls


# -- building blocks --------------------------------------------------------------------------------


def test_membership_three_valued_algebra() -> None:
    a = Membership(frozenset({("s", "1"), ("s", "2")}), maybe_systems=frozenset({"t"}))
    b = Membership(frozenset({("s", "2"), ("t", "9")}))
    inter = a.intersect(b)
    assert inter.status(("s", "2")) == "yes"
    assert inter.status(("t", "9")) == "maybe"
    assert inter.status(("s", "1")) == "no"
    diff = a.minus(Membership(maybe_systems=frozenset({"s"})))
    assert diff.status(("s", "1")) == "maybe"
    assert a.union(b).status(("t", "8")) == "maybe"


def test_code_system_index_hierarchy() -> None:
    index = CodeSystemIndex(animals_cs())
    assert index.descendants("animal") == {"mammal", "dog", "puppy", "cat", "bird"}
    assert index.ancestors("puppy") == {"dog", "mammal", "animal"}
    assert index.lookup("DOG") is None


@pytest.mark.parametrize(
    "unit",
    [
        "mg",
        "mg/dL",
        "kg.m-2",
        "10*3/uL",
        "mm[Hg]",
        "[in_i]",
        "%",
        "1",
        "/min",
        "{score}",
        "kg/(m2.s)",
        "ug{total}/L",
    ],
)
def test_ucum_syntax_accepts(unit: str) -> None:
    assert syntax_error(unit) is None


@pytest.mark.parametrize(
    "unit", ["", "mg / dL", "kg m2", "mg)", "(mg", "mg{x", "mm[Hg", "mg//dL", "mg/", "."]
)
def test_ucum_syntax_rejects(unit: str) -> None:
    assert syntax_error(unit) is not None


# -- the real R4 content ----------------------------------------------------------------------------

R4 = "http://hl7.org/fhir/ValueSet/"


@pytest.fixture(scope="module")
def real() -> Terminology:
    from adapter.conformance import default_store

    return Terminology(default_store())


@pytest.mark.parametrize(
    ("valueset", "system", "good", "bad"),
    [
        ("administrative-gender", "http://hl7.org/fhir/administrative-gender", "unknown", "bogus"),
        (
            "care-plan-activity-status",
            "http://hl7.org/fhir/care-plan-activity-status",
            "not-started",
            "active",
        ),
        ("care-team-status", "http://hl7.org/fhir/care-team-status", "suspended", "completed"),
        ("episode-of-care-status", "http://hl7.org/fhir/episode-of-care-status", "waitlist", "suspended"),
        ("task-status", "http://hl7.org/fhir/task-status", "ready", "done"),
        ("bundle-type", "http://hl7.org/fhir/bundle-type", "transaction-response", "transactional"),
        ("http-verb", "http://hl7.org/fhir/http-verb", "PATCH", "patch"),
        ("care-plan-intent", "http://hl7.org/fhir/request-intent", "option", "directive"),
    ],
)
def test_real_r4_value_sets(real: Terminology, valueset: str, system: str, good: str, bad: str) -> None:
    assert real.validate_code(R4 + valueset, system, good).status == "valid"
    assert real.validate_code(R4 + valueset, None, good).status == "valid"
    assert real.validate_code(R4 + valueset + "|4.0.1", system, good).status == "valid"
    result = real.validate_code(R4 + valueset, system, bad)
    assert result.status == "invalid"
    assert f"'{bad}'" in result.message and R4 + valueset in result.message


def test_real_administrative_gender_messages_and_display(real: Terminology) -> None:
    gender = R4 + "administrative-gender"
    assert real.validate_code(gender, None, "bogus") == CodeResult(
        "invalid",
        "The code 'bogus' is not in the value set http://hl7.org/fhir/ValueSet/administrative-gender",
    )
    wrong = real.validate_code(gender, "http://hl7.org/fhir/administrative-gender", "female", "Male")
    assert wrong.status == "valid" and "'Female'" in wrong.message
    assert real.expand(gender) == {
        ("http://hl7.org/fhir/administrative-gender", c) for c in ("male", "female", "other", "unknown")
    }


def test_real_undecidable_and_vendored(real: Terminology) -> None:
    sct = "http://snomed.info/sct"
    assert real.validate_code(R4 + "condition-code", sct, "404684003").status == "unknown"
    assert real.code_system_has(sct, "404684003") is None
    assert real.code_system_has("http://hl7.org/fhir/task-status", "ready") is True
    assert real.code_system_has("http://hl7.org/fhir/task-status", "done") is False
    # an enumerated v3 code is decided, the v3 is-a part is not (no v3 code system offline)
    v3 = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
    assert real.validate_code(R4 + "encounter-participant-type", v3, "SPRF").status == "valid"
    assert real.validate_code(R4 + "encounter-participant-type", v3, "NOPE").status == "unknown"
    # an "example" code system: its listed codes are in, anything else is unknown
    reason = "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason"
    assert real.validate_code(R4 + "appointment-cancellation-reason", reason, "maint").status == "valid"
    assert real.validate_code(R4 + "appointment-cancellation-reason", reason, "zzz").status == "unknown"
    assert real.code_system_has(reason, "maint") is None
    # a value set with a contained hierarchical code system and an expansion
    assert (
        real.validate_code(R4 + "example-hierarchical", "http://hl7.org/fhir/hacked", "duplicate").status
        == "valid"
    )


def test_real_warm_checks_are_fast(real: Terminology) -> None:
    gender = R4 + "administrative-gender"
    real.validate_code(gender, "http://hl7.org/fhir/administrative-gender", "male")
    start = time.perf_counter()
    for _ in range(2000):
        real.validate_code(gender, "http://hl7.org/fhir/administrative-gender", "male", "Male")
    per_call = (time.perf_counter() - start) / 2000
    assert per_call < 1e-3  # generous: a dictionary look-up, measured at a few microseconds


def test_fragment_code_system_codes_are_members_others_unknown() -> None:
    frag = animals_cs(url=f"{BASE}/frag", content="fragment")
    t = term(
        frag,
        vs("frag-all", {"system": f"{BASE}/frag"}),
        vs(
            "frag-mammals",
            {"system": f"{BASE}/frag", "filter": [{"property": "concept", "op": "is-a", "value": "mammal"}]},
        ),
    )
    assert t.validate_code(url("frag-all"), f"{BASE}/frag", "dog").status == "valid"
    assert t.validate_code(url("frag-all"), f"{BASE}/frag", "cow").status == "unknown"
    assert t.validate_code(url("frag-mammals"), f"{BASE}/frag", "cat").status == "valid"
    assert t.validate_code(url("frag-mammals"), f"{BASE}/frag", "bird").status == "unknown"
    assert t.expand(url("frag-all")) is None

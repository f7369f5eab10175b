"""The rule catalog: complete against the contract, four languages, usable by the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from adapter.explainer import explain
from adapter.rules import UnknownRuleError, load_catalog, render_rules_markdown
from adapter.rules.catalog import LANGS, REGIONS, CatalogError, parse_catalog
from adapter.rules.checks import RULE_FUNCTIONS
from adapter.rules.engine import compile_catalog
from tests.shared_ref import shared_dir

CONTRACT = shared_dir() / "CONTRACT.md"
RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
CONTRACT_IDS = [
    "IC-TEAM-1",
    "IC-TEAM-2",
    "IC-TEAM-3",
    "IC-CC-1",
    "IC-CC-2",
    "IC-CC-3",
    "IC-CC-4",
    "IC-CC-5",
    "IC-CC-6",
    "IC-PLAN-1",
    "IC-PLAN-2",
    "IC-PLAN-3",
    "IC-CM-1",
    "IC-CM-2",
    "IC-CM-3",
    "IC-CM-4",
    "IC-CM-5",
    "IC-CM-6",
    "IC-CM-7",
    "IC-ROLE-1",
    "IC-REG-1",
    "IC-REG-2",
    "IC-ONE-1",
    "IC-ONE-2",
    "IC-ID-1",
]


def test_catalog_has_exactly_the_contract_rules() -> None:
    cat = load_catalog()
    assert cat.version == "1"
    assert [r.id for r in cat.rules] == CONTRACT_IDS
    if CONTRACT.is_file():  # the shared contract is the authority when it is present
        ids = re.findall(r"^\| (IC-[A-Z]+-\d) \|", CONTRACT.read_text(encoding="utf-8"), re.M)
        assert ids == CONTRACT_IDS


def test_contract_severities() -> None:
    cat = load_catalog()
    fixed = {
        "IC-TEAM-2": "warning",
        "IC-TEAM-3": "information",
        "IC-CC-5": "warning",
        "IC-CM-7": "information",
        "IC-ONE-1": "error",
        "IC-ID-1": "error",
    }
    for rid, sev in fixed.items():
        assert set(cat.rule(rid).severity.values()) == {sev}
    cc2 = cat.rule("IC-CC-2").severity
    assert cc2 == {
        "flanders": "error",
        "wallonia": "warning",
        "brussels": "warning",
        "german-speaking": "off",
    }
    assert cat.rule("IC-REG-1").severity["german-speaking"] == "error"
    assert {cat.rule("IC-REG-1").severity[r] for r in ("flanders", "wallonia", "brussels")} == {"off"}
    assert cat.rule("IC-REG-2").severity["german-speaking"] == "off"


def test_every_text_in_four_languages_and_cited() -> None:
    for rule in load_catalog().rules:
        for texts in [rule.title, rule.fix, *rule.messages.values()]:
            assert set(texts) == set(LANGS)
            assert all(t.strip() for t in texts.values())
        assert rule.source and rule.lines


def test_placeholders_agree_across_languages() -> None:
    for rule in load_catalog().rules:
        for variant, texts in rule.messages.items():
            names = {lang: set(re.findall(r"\{(\w+)\}", t)) for lang, t in texts.items()}
            assert len({frozenset(v) for v in names.values()}) == 1, (rule.id, variant, names)


def test_regional_table_drives_regional_rules() -> None:
    cat = load_catalog()
    table = {r: cat.regions[r].table1 for r in REGIONS}
    assert table["german-speaking"]["cc_cm_simultaneous"] == "not-allowed"
    assert table["flanders"]["cc_cm_same_person"] == "never"
    assert table["brussels"]["cc_cm_same_person"] == "one-way-switch"
    # where the table allows something, the rule is off there
    reg2 = cat.rule("IC-REG-2")
    for region in REGIONS:
        assert (table[region]["cc_cm_same_person"] == "allowed") == (reg2.severity[region] == "off")


def test_every_rule_has_runnable_logic() -> None:
    compiled = compile_catalog(load_catalog())
    assert len(compiled) == len(CONTRACT_IDS)
    fhirpath = {r.id for r, _ in compiled if r.is_fhirpath}
    assert fhirpath == {"IC-PLAN-1", "IC-CM-3", "IC-CM-6"}
    assert set(RULE_FUNCTIONS) == set(CONTRACT_IDS) - fhirpath


def _raw() -> tuple[dict, dict]:
    rb = yaml.safe_load((RULES_DIR / "rulebook.yaml").read_text(encoding="utf-8"))
    rg = yaml.safe_load((RULES_DIR / "regions.yaml").read_text(encoding="utf-8"))
    return rb, rg


def test_malformed_catalog_is_a_clear_error() -> None:
    rb, rg = _raw()
    del rb["rules"][0]["messages"]["default"]["de"]
    with pytest.raises(CatalogError, match=r"IC-TEAM-1.*missing text in de"):
        parse_catalog(rb, rg)
    rb, rg = _raw()
    rb["rules"][4]["severity"]["flanders"] = "fatal"
    with pytest.raises(CatalogError, match="IC-CC-2"):
        parse_catalog(rb, rg)
    rb, rg = _raw()
    rb["rules"][0]["logic"] = {"function": "not_the_right_name"}
    with pytest.raises(CatalogError, match="not registered"):
        compile_catalog(parse_catalog(rb, rg))
    rb, rg = _raw()
    rb["rules"][9]["logic"]["fhirpath"] = "goal.exists() and"
    with pytest.raises(CatalogError, match="IC-PLAN-1"):
        compile_catalog(parse_catalog(rb, rg))


def test_explain() -> None:
    text = explain("ic-cc-2", "nl")
    assert text.startswith("IC-CC-2 (rulebook 1)")
    assert "Vlaanderen: error" in text and "Duitstalige Gemeenschap: off" in text
    assert "Voeg de coördinator" in text
    assert "001 L710" in text
    with pytest.raises(UnknownRuleError, match="IC-NOPE"):
        explain("IC-NOPE", "en")
    with pytest.raises(ValueError, match="language"):
        explain("IC-CC-2", "es")


def test_render_one_language() -> None:
    fr = render_rules_markdown("fr")
    assert "| id | Flandre | Wallonie | Bruxelles | Communauté germanophone | Règle |" in fr
    assert "Le plan de soins a au moins un objectif." in fr
    assert "The care plan has at least one goal." not in fr
    every = render_rules_markdown()
    for rule in load_catalog().rules:
        assert f"## {rule.id}" in every
        assert all(rule.title[lang] in every for lang in LANGS)


def test_catalog_is_parsed_once_under_concurrent_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst of request threads at start-up must not each parse the rulebook YAML."""
    import threading

    from adapter.rules import catalog as catalog_module

    monkeypatch.setattr(catalog_module, "_LOADED", {})
    parses = []
    real = catalog_module.parse_catalog

    def counting(*args: object) -> object:
        parses.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(catalog_module, "parse_catalog", counting)
    start = threading.Barrier(16)
    results: list[object] = []

    def first_use() -> None:
        start.wait()
        results.append(catalog_module.load_catalog())

    threads = [threading.Thread(target=first_use) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(parses) == 1
    assert len(results) == 16 and all(r is results[0] for r in results)

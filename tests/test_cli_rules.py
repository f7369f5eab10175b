"""``becare rules`` and ``becare explain`` print the catalog from its data, in four languages."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import adapter.explainer as explain_mod
from adapter import datafiles
from adapter.cli.main import main
from adapter.explainer import breaking_sample, explanation, render_text
from adapter.registry import EpisodeRegistry
from adapter.rules import check_rulebook, load_catalog
from adapter.validation.issues import Issue


@pytest.mark.parametrize(
    "lang,word",
    [("en", "care coordinator"), ("nl", "zorgcoördinator"), ("fr", "coordinat"), ("de", "Koordinat")],
)
def test_explain_in_each_language(lang: str, word: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "IC-CC-2", "--lang", lang]) == 0
    out = capsys.readouterr().out
    assert out.startswith("IC-CC-2") and word.lower() in out.lower()


def test_unknown_rule_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "IC-NOPE-9"]) == 2
    assert "unknown rule id" in capsys.readouterr().err


def test_rules_lists_every_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "--lang", "de"]) == 0
    out = capsys.readouterr().out
    for rule_id in ("IC-TEAM-1", "IC-CC-6", "IC-CM-7", "IC-REG-2", "IC-ONE-2", "IC-ID-1"):
        assert rule_id in out


# --- becare explain: the example is the rule's breaking sample, run through the rulebook ---------

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"


def _rulebook_issue(sample: dict[str, Any], rule_id: str, lang: str) -> Issue:
    """What the validator says on the sample, computed here independently of adapter.explainer."""
    registry = EpisodeRegistry("sqlite://", salt="test-salt")
    for prior in sample.get("registry") or ():
        registry.record(json.loads((SAMPLES / prior).read_text(encoding="utf-8")))
    bundle = json.loads((SAMPLES / sample["file"]).read_text(encoding="utf-8"))
    result = check_rulebook(bundle, region=None, lang=lang, registry=registry)
    return next(i for i in result.issues if i.rule == rule_id)


def _resource_at(bundle: dict[str, Any], expression: str) -> dict[str, Any]:
    index = int(expression.split("entry[", 1)[1].split("]", 1)[0])
    return bundle["entry"][index]["resource"]


@pytest.mark.parametrize("rule_id", [r.id for r in load_catalog().rules])
def test_every_rule_has_an_example_produced_by_running_it(rule_id: str) -> None:
    data = explanation(rule_id, "en")
    example = data["example"]
    assert example is not None, rule_id
    sample = breaking_sample(rule_id)
    assert sample is not None and example["sample"] == sample["file"]
    expected = _rulebook_issue(sample, rule_id, "en")
    assert (example["location"], example["message"], example["severity"]) == (
        expected.expression,
        expected.message,
        expected.severity,
    )
    bundle = json.loads((SAMPLES / sample["file"]).read_text(encoding="utf-8"))
    frag = example["fragment"]
    assert frag["resourceType"] == _resource_at(bundle, expected.expression)["resourceType"]
    assert "text" not in frag and "meta" not in frag  # trimmed
    json.dumps(data)  # plain data, servable as JSON


@pytest.mark.parametrize("lang", ["en", "fr", "nl", "de"])
def test_example_message_is_in_the_requested_language(lang: str) -> None:
    data = explanation("IC-CC-2", lang)
    sample = breaking_sample("IC-CC-2")
    assert sample is not None
    assert data["example"]["message"] == _rulebook_issue(sample, "IC-CC-2", lang).message
    assert data["fix"] == load_catalog().rule("IC-CC-2").fix[lang]
    assert data["severity"] == {
        "flanders": "error",
        "wallonia": "warning",
        "brussels": "warning",
        "german-speaking": "off",
    }
    if lang != "en":
        assert data["example"]["message"] != explanation("IC-CC-2", "en")["example"]["message"]


def test_fragment_shows_the_offending_element_with_its_context() -> None:
    # a primitive location (identifier.value) is shown with its parent identifier
    ssin = explanation("IC-ID-1", "en")["example"]
    assert ssin["location"].endswith(".identifier[0].value")
    identifier = ssin["fragment"]["identifier"][0]
    assert identifier["system"].endswith("/core/NamingSystem/ssin") and identifier["value"].isdigit()
    assert set(ssin["fragment"]) == {"resourceType", "identifier"} | ({"id"} & set(ssin["fragment"]))
    # an element location keeps only the path down to it; references are resolved in the bundle
    cc2 = explanation("IC-CC-2", "en")["example"]
    assert list(cc2["fragment"]) == ["resourceType", "careManager"]
    ref = cc2["fragment"]["careManager"]["reference"]
    assert cc2["references"][ref].startswith("PractitionerRole")


def test_explain_text_in_four_languages(capsys: pytest.CaptureFixture[str]) -> None:
    heads = {
        "en": "Example that breaks the rule",
        "fr": "Exemple qui enfreint la règle",
        "nl": "Voorbeeld dat de regel overtreedt",
        "de": "Beispiel, das die Regel verletzt",
    }
    for lang, head in heads.items():
        assert main(["explain", "IC-TEAM-1", "--lang", lang]) == 0
        out = capsys.readouterr().out
        rule = load_catalog().rule("IC-TEAM-1")
        assert head in out and rule.fix[lang] in out and rule.title[lang] in out
        assert rule.messages["default"][lang] in out  # the message the validator gave
        assert '"resourceType": "CareTeam"' in out and "= Patient" in out


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "ic-cm-3", "--format", "json", "--lang", "nl"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["id"] == "IC-CM-3" and data["lang"] == "nl"
    assert data["example"]["fragment"]["resourceType"] == "EpisodeOfCare"


def test_explain_runs_from_the_packaged_data_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel carries the samples under adapter/_data (pyproject force-include), not the checkout."""
    force = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["force-include"]
    assert force["samples/rules"] == "adapter/_data/samples/rules"
    assert force["samples/manifest.yaml"] == "adapter/_data/samples/manifest.yaml"
    package = tmp_path / "adapter"
    data = package / "_data"
    for src, dst in force.items():
        target = tmp_path / dst
        if (REPO / src).is_dir():
            shutil.copytree(REPO / src, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / src, target)
    assert (data / "samples" / "rules" / "IC-TEAM-1" / "breaks.json").is_file()
    monkeypatch.setattr(datafiles, "_PACKAGE", package)
    explain_mod.clear_caches()
    try:
        assert explain_mod._samples_root() == data / "samples"
        assert explanation("IC-TEAM-1", "en")["example"]["sample"] == "rules/IC-TEAM-1/breaks.json"
    finally:
        explain_mod.clear_caches()


def test_no_example_rather_than_a_wrong_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a "breaking" sample that does not break the rule (here: its keeps file) gives no example
    (tmp_path / "rules" / "IC-TEAM-1").mkdir(parents=True)
    shutil.copy(SAMPLES / "rules/IC-TEAM-1/keeps.json", tmp_path / "rules/IC-TEAM-1/breaks.json")
    manifest = {
        "samples": [{"file": "rules/IC-TEAM-1/breaks.json", "region": "wallonia", "expect": ["IC-TEAM-1"]}]
    }
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    monkeypatch.setattr(explain_mod, "_samples_root", lambda: tmp_path)
    explain_mod.clear_caches()
    try:
        assert explanation("IC-TEAM-1", "en")["example"] is None
        assert explanation("IC-CC-1", "de")["example"] is None  # not in this manifest at all
        text = render_text(explanation("IC-CC-1", "de"))
        assert "Für diese Regel ist kein Beispiel enthalten." in text
    finally:
        explain_mod.clear_caches()


def test_damaged_sample_gives_no_example_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "rules" / "IC-PLAN-1").mkdir(parents=True)
    (tmp_path / "rules/IC-PLAN-1/breaks.json").write_text("{truncated", encoding="utf-8")
    manifest = {
        "samples": [{"file": "rules/IC-PLAN-1/breaks.json", "region": "flanders", "expect": ["IC-PLAN-1"]}]
    }
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(manifest), encoding="utf-8")
    monkeypatch.setattr(explain_mod, "_samples_root", lambda: tmp_path)
    explain_mod.clear_caches()
    try:
        assert main(["explain", "IC-PLAN-1", "--lang", "fr"]) == 0
        assert "Aucun exemple n'est fourni pour cette règle." in capsys.readouterr().out
    finally:
        explain_mod.clear_caches()

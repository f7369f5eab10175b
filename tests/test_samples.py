"""Every sample raises exactly the rule ids the manifest says; every rule is broken and kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.cli.main import main
from adapter.mapping import load_document, to_bundle
from adapter.mapping.forward import conditional_url
from adapter.registry import EpisodeRegistry
from adapter.rules import check_rulebook, load_catalog
from adapter.validation.api import ValidationOptions
from adapter.validation.engine import Validator

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MANIFEST = yaml.safe_load((SAMPLES / "manifest.yaml").read_text(encoding="utf-8"))["samples"]
BECARE = "https://becare.dev/fhir/StructureDefinition/"


def load(rel: str) -> dict[str, Any]:
    return json.loads((SAMPLES / rel).read_text(encoding="utf-8"))


def run(sample: dict[str, Any]) -> Any:
    registry = EpisodeRegistry("sqlite://", salt="test-salt")
    for prior in sample.get("registry") or ():
        registry.record(load(prior))
    return check_rulebook(load(sample["file"]), region=None, lang="en", registry=registry)


@pytest.mark.parametrize("sample", MANIFEST, ids=[s["file"] for s in MANIFEST])
def test_sample_raises_exactly_the_expected_rules(sample: dict[str, Any]) -> None:
    result = run(sample)
    assert result.region == sample["region"]
    assert sorted({i.rule for i in result.issues if i.rule}) == sample["expect"]
    assert all(i.rule for i in result.issues), "no notices expected on samples"


def test_manifest_lists_every_file() -> None:
    on_disk = {p.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("*.json")}
    assert on_disk == {s["file"] for s in MANIFEST}


def test_every_rule_is_broken_and_kept() -> None:
    rules = [r.id for r in load_catalog().rules]
    for rid in rules:
        breaking = [s for s in MANIFEST if s["file"].startswith(f"rules/{rid}/breaks") and rid in s["expect"]]
        keeping = [
            s for s in MANIFEST if s["file"].startswith(f"rules/{rid}/keeps") and rid not in s["expect"]
        ]
        assert breaking and keeping, rid
    # and no valid sample raises an error or warning in any region
    for s in MANIFEST:
        if s["file"].startswith("valid/"):
            assert s["expect"] == []


def test_every_regional_rule_has_a_sample_in_every_region() -> None:
    """Each region row of a regional rule is shown at work: broken where the region checks it,
    kept where the region allows it (severity ``off``)."""
    cat = load_catalog()
    regional = [r for r in cat.rules if r.regional]
    assert {r.id for r in regional} == {"IC-CC-2", "IC-REG-1", "IC-REG-2"}
    for rule in regional:
        samples = [s for s in MANIFEST if s["file"].startswith(f"rules/{rule.id}/")]
        for region in REGIONS:
            mine = [s for s in samples if s["region"] == region]
            if rule.severity[region] == "off":
                shown = any("/keeps" in s["file"] and rule.id not in s["expect"] for s in mine)
            else:
                shown = any("/breaks" in s["file"] and rule.id in s["expect"] for s in mine)
            assert shown, (rule.id, region)


def test_breaking_samples_fail_at_the_expected_severity() -> None:
    cat = load_catalog()
    for s in MANIFEST:
        if "/breaks" not in s["file"]:
            continue
        rid = s["file"].split("/")[1]
        sev = {i.severity for i in run(s).issues if i.rule == rid}
        expected = cat.rule(rid).severity[s["region"]]
        if rid == "IC-ID-1" and ("nihdi-8" in s["file"] or "legacy" in s["file"]):
            expected = "warning"
        assert sev == {expected}, (s["file"], sev)


VALID = [s for s in MANIFEST if s["file"].startswith("valid/")]
REGIONS = ("flanders", "wallonia", "brussels", "german-speaking")


def test_valid_situations_per_region() -> None:
    assert len(VALID) == 8
    for kind in ("care-coordination", "case-management"):
        for region in REGIONS:
            sample = next(s for s in MANIFEST if s["file"] == f"valid/{region}-{kind}.json")
            bundle = load(sample["file"])
            assert bundle["type"] == "transaction" and BECARE + "becare-bundle" in bundle["meta"]["profile"]
            full_urls = {e["fullUrl"] for e in bundle["entry"]}
            refs = [v for v in _references(bundle)]
            assert refs and all(r in full_urls for r in refs), "every reference resolves in the bundle"
            for e in bundle["entry"]:
                res, request = e["resource"], e["request"]
                if res.get("identifier"):  # sent again, it updates instead of duplicating
                    ident = res["identifier"][0]
                    assert request["method"] == "PUT"
                    assert request["url"] == conditional_url(
                        res["resourceType"], ident["system"], ident["value"]
                    )
                else:
                    assert request == {"method": "POST", "url": res["resourceType"]}
            types = [e["resource"]["resourceType"] for e in bundle["entry"]]
            assert "RelatedPerson" in types and "PractitionerRole" in types
            if kind == "care-coordination":
                plan = next(
                    e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "CarePlan"
                )
                assessment = next(
                    e for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"
                )
                assert plan["supportingInfo"] == [{"reference": assessment["fullUrl"]}]
                codes = {
                    t["resource"]["code"]["coding"][0]["code"]
                    for t in bundle["entry"]
                    if t["resource"]["resourceType"] == "Task"
                }
                assert "reassessment" in codes
            for e in bundle["entry"]:
                if e["resource"]["resourceType"] == "Task":
                    assert e["resource"]["extension"][0]["url"].endswith("task-candidateList")
    bench = [s for s in MANIFEST if s.get("benchmark")]
    assert len(bench) == 1 and bench[0]["entries"] == 25
    assert len(load(bench[0]["file"])["entry"]) == 25


@pytest.mark.parametrize("sample", VALID, ids=[s["file"] for s in VALID])
def test_valid_sample_is_the_mapping_of_its_document(sample: dict[str, Any], tmp_path: Path) -> None:
    """`becare map` of the document next to the sample writes the sample, byte for byte."""
    document = SAMPLES / sample["document"]
    assert document.name == Path(sample["file"]).with_suffix(".yaml").name
    out = tmp_path / "bundle.json"
    assert main(["map", str(document), "--output", str(out)]) == 0
    assert out.read_bytes() == (SAMPLES / sample["file"]).read_bytes()
    assert to_bundle(load_document(document.read_bytes())) == load(sample["file"])


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("sample", VALID, ids=[s["file"] for s in VALID])
def test_valid_sample_has_no_error_nor_warning_in_any_region(
    validator: Validator, sample: dict[str, Any], region: str
) -> None:
    """The full validator: structure, bindings, invariants (dom-6 narrative included),
    profiles and the rulebook with the region forced."""
    report = validator.validate(load(sample["file"]), ValidationOptions(region=region))
    found = [i for i in report.issues if i.severity in ("fatal", "error", "warning")]
    assert not found, "\n".join(f"{i.severity} {i.rule or ''} {i.expression}: {i.message}" for i in found)
    # what is left is information only: the rules that need the episode registry
    assert {i.rule for i in report.issues} <= {"IC-ONE-1", "IC-ONE-2"}


def _references(value: Any) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            out.append(value["reference"])
        for v in value.values():
            out += _references(v)
    elif isinstance(value, list):
        for v in value:
            out += _references(v)
    return out


def test_samples_are_generated(tmp_path: Path) -> None:
    """The committed samples are what samples/build_samples.py produces."""
    import shutil

    copy = tmp_path / "samples"
    shutil.copytree(SAMPLES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, str(copy / "build_samples.py")], check=True, capture_output=True, cwd=SAMPLES.parent
    )
    for path in SAMPLES.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".yaml"):
            rel = path.relative_to(SAMPLES)
            assert (copy / rel).read_bytes() == path.read_bytes(), rel

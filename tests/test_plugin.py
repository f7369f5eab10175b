"""The becare pytest plugin, exercised the way a vendor uses it: a scratch project with its own
tests and bundles, run by pytest (pytester), with the outcome counts and the failure report checked.

The service suite runs in a subprocess: it starts the real ``becare serve`` and the mock hub, and
must not share module state with this process.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.fhirio import parse_file
from adapter.testing import BecareValidationError, assert_invalid, assert_valid, becare_files
from adapter.testing.collect import matches

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
SUITE = Path(__file__).parent / "data" / "vendor_suite"
SAMPLES = ROOT / "samples"
TEAM_1 = "broken/team-without-person.json"
CC_2 = "broken/coordinator-outside-team.json"
BUNDLES = {
    "valid/flanders-care-coordination.json": "valid/flanders-care-coordination.json",
    "valid/wallonia-case-management.json": "valid/wallonia-case-management.json",
    TEAM_1: "rules/IC-TEAM-1/breaks.json",
    CC_2: "rules/IC-CC-2/breaks.json",
}
TEAM_1_EN = "The care team does not include the person it cares for as a participant."
TEAM_1_AT = "Bundle.entry[11].resource"
CC_2_AT = "Bundle.entry[12].resource.careManager"
TEAM_1_FR = "L'équipe de soins ne comprend pas la personne qu'elle accompagne comme participant."


@pytest.fixture(scope="module")
def warm() -> None:
    """Validate once here, so every module the validator imports lazily is already loaded.

    pytester's in-process runs drop the modules first imported during the run; without this,
    each run would re-import the validator's modules and rebuild their caches (seconds each).
    """
    assert_valid(SAMPLES / "valid" / "flanders-care-coordination.json")
    assert_valid(b"<Patient xmlns='http://hl7.org/fhir'/>")


@pytest.fixture
def project(pytester: pytest.Pytester, warm: None) -> pytest.Pytester:
    """A vendor project: the sample suite as test files plus a ``bundles/`` folder."""
    for name, source in BUNDLES.items():
        target = pytester.path / "bundles" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLES / source, target)
    return pytester


def _where(sample: str, expression: str) -> str:
    """``expression @ line:col`` as the parser locates it in the sample (samples get regenerated)."""
    line, col = parse_file(SAMPLES / sample).locate(expression) or (0, 0)
    return f"{expression} @ {line}:{col}"


def _add_suite(project: pytest.Pytester, source: str, target: str) -> None:
    shutil.copyfile(SUITE / source, project.path / target)


def test_validation_suite_passes_and_fails_with_a_readable_report(project: pytest.Pytester) -> None:
    _add_suite(project, "vendor_validation.py", "test_validation.py")
    result = project.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, failed=4)
    out = result.stdout.str()
    # one test per generated bundle, named after the file
    result.stdout.no_fnmatch_line("*test_generated_bundle_is_valid*FAILED*")
    # rulebook issue: severity, rule id, FHIRPath, line:col, message
    assert f"error [IC-TEAM-1] at {_where(BUNDLES[TEAM_1], TEAM_1_AT)}: {TEAM_1_EN}" in out
    assert (
        "bundles/broken/team-without-person.json is not valid (region flanders, rulebook 1): "
        "1 error or fatal issue(s)" in out
    )
    assert "(not failing: 1 information)" in out
    # by-region rule: Flanders makes IC-CC-2 an error
    assert f"error [IC-CC-2] at {_where(BUNDLES[CC_2], CC_2_AT)}: " in out
    # a dict has no line:col; the aspect and issue code stand in for a rule id
    assert "error [terminology/code-invalid] at Patient.gender: " in out
    # unparseable input is a fatal issue with its position, not a traceback
    assert "fatal [parse/invalid] at (document) @ 2:" in out
    assert "Traceback" not in out
    assert "adapter/testing/assertions.py" not in out
    assert "BecareValidationError" in out


def test_region_and_language_options(project: pytest.Pytester) -> None:
    _add_suite(project, "vendor_validation.py", "test_validation.py")
    selected = ("-k", "depends_on_region or team_without_person_fails")
    result = project.runpytest_inprocess(*selected, "--becare-region", "wallonia", "--becare-lang", "fr")
    result.assert_outcomes(passed=1, failed=1)  # IC-CC-2 is only a warning in Wallonia
    out = result.stdout.str()
    assert TEAM_1_FR in out and "(region wallonia, rulebook 1)" in out
    assert "becare: region=wallonia lang=fr" in out  # the report header
    again = project.runpytest_inprocess(*selected)  # the options did not leak into the next run
    again.assert_outcomes(passed=0, failed=2)
    assert TEAM_1_EN in again.stdout.str()


def test_ini_options_apply_and_bad_values_are_usage_errors(project: pytest.Pytester) -> None:
    _add_suite(project, "vendor_validation.py", "test_validation.py")
    project.makeini("[pytest]\nbecare_region = wallonia\nbecare_allow =\n    IC-TEAM-1\n    code-invalid\n")
    result = project.runpytest_inprocess("-k", "region or team_without_person_fails or bad_code")
    result.assert_outcomes(passed=3)
    project.makeini("[pytest]\nbecare_region = atlantis\n")
    bad = project.runpytest_inprocess()
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    assert "becare: unknown region 'atlantis'" in bad.stderr.str()


def test_validate_paths_collects_one_test_per_file(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nbecare_validate_paths = bundles\n")
    result = project.runpytest_inprocess("-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*bundles/broken/coordinator-outside-team.json::becare-valid FAILED*",
            "*bundles/broken/team-without-person.json::becare-valid FAILED*",
            "*bundles/valid/flanders-care-coordination.json::becare-valid PASSED*",
            "*bundles/valid/wallonia-case-management.json::becare-valid PASSED*",
        ]
    )
    out = result.stdout.str()
    assert f"error [IC-TEAM-1] at {_where(BUNDLES[TEAM_1], TEAM_1_AT)}: {TEAM_1_EN}" in out
    assert "Traceback" not in out and "def runtest" not in out
    project.makeini("[pytest]\nbecare_validate_paths = bundles/valid/*.json\n")
    project.runpytest_inprocess().assert_outcomes(passed=2)


def test_plugin_stays_out_of_the_way_when_unused(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_one():\n    assert True\n")
    result = project.runpytest_inprocess()
    result.assert_outcomes(passed=1)  # bundles/ are not collected without becare_validate_paths
    assert "becare:" not in result.stdout.str()


def test_vendors_own_fhirpathpy_is_left_alone(project: pytest.Pytester) -> None:
    """The plugin is loaded into vendors' own test runs, where their code may use fhirpathpy too:
    validating with becare must not change what fhirpathpy answers them."""
    sample = SAMPLES / "valid" / "flanders-care-coordination.json"
    project.makepyfile(
        test_fhirpath=(
            "import fhirpathpy\n"
            "from fhirpathpy.models import models\n"
            "from adapter.testing import assert_valid\n"
            "PATIENT = {'resourceType': 'Patient', 'birthDate': '2000-01-01', '_birthDate': {'id': 'b'}}\n"
            "EXPRESSIONS = ('1.0', '@2015-02-04.type().name', 'Patient.birthDate.count()')\n"
            "def own():\n"
            "    return [fhirpathpy.evaluate(dict(PATIENT), e, model=models['r4']) for e in EXPRESSIONS]\n"
            "def test_becare_then_fhirpathpy(becare_validator):\n"
            "    before = own()\n"
            f"    assert_valid({str(sample)!r})\n"
            "    assert own() == before == [[1], ['DateTime'], [2]]\n"
        )
    )
    result = project.runpytest_inprocess()
    result.assert_outcomes(passed=1)


@pytest.mark.slow
def test_service_and_mock_hub_fixtures(project: pytest.Pytester) -> None:
    _add_suite(project, "vendor_service.py", "test_service.py")
    result = project.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=4, failed=1)
    result.stdout.fnmatch_lines(["*test_vendor_expects_broken_bundle_accepted*", "*assert 422 == 202*"])


def test_plugin_import_is_light() -> None:
    code = (
        "import sys, adapter.testing.plugin\n"
        "heavy = [m for m in ('adapter.validation.engine', 'adapter.conformance', 'fastapi', 'httpx',\n"
        "         'sqlalchemy', 'uvicorn', 'lxml.etree', 'fhirpathpy') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_helpers_directly() -> None:
    broken = SAMPLES / "rules" / "IC-TEAM-1" / "breaks.json"
    with pytest.raises(BecareValidationError) as info:
        assert_valid(broken)
    assert [i.rule for i in info.value.report.issues if i.is_error] == ["IC-TEAM-1"]
    assert_valid(broken, allow="IC-TEAM-1")  # a single id, not split into characters
    assert_invalid(broken, "IC-TEAM-1")
    with pytest.raises(BecareValidationError, match="expected errors, found no error IC-CC-1"):
        assert_invalid(broken, ["IC-TEAM-1", "IC-CC-1"])
    with pytest.raises(BecareValidationError, match="expected errors, found no error"):
        assert_invalid(SAMPLES / "valid" / "flanders-care-coordination.json")
    with pytest.raises(BecareValidationError, match=r"warning \[IC-CC-2\]"):
        assert_valid(SAMPLES / "rules" / "IC-CC-2" / "breaks.json", region="wallonia", fail_on="warning")
    with pytest.raises(TypeError, match="cannot validate a int"):
        assert_valid(42)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        assert_valid("no/such/bundle.json")


def test_becare_files_and_path_matching(tmp_path: Path) -> None:
    params = becare_files(SAMPLES / "valid")
    assert len(params) == 8 and params[0].id == "brussels-care-coordination.json"
    with pytest.raises(FileNotFoundError, match="no file matching"):
        becare_files(tmp_path)
    f = tmp_path / "out" / "deep" / "b.json"
    assert matches(f, tmp_path, ["out"]) and matches(f, tmp_path, ["out/**/*.json"])
    assert matches(tmp_path / "out" / "b.json", tmp_path, ["out/**/*.json"])
    assert not matches(f, tmp_path, ["other", "out/*.xml"])
    assert not matches(tmp_path / "out" / "notes.txt", tmp_path, ["out"])

"""``becare validate --format junit``: a file CI systems display, one test case per validated file."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Error, Failure, JUnitXml
from lxml import etree

from adapter.cli.main import main
from adapter.output.render import SECONDS, render_junit
from adapter.validation.api import Report
from adapter.validation.issues import Issue

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
# the classic (Ant/Jenkins) layout: element order inside a testcase, and time as seconds
# ``properties`` (provenance per input) first, as pytest's junitxml writes record_property
_CASE_CHILD_ORDER = ("properties", "skipped", "error", "failure", "system-out", "system-err")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


@pytest.fixture(scope="module")
def junit_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    """The real command line on a folder: valid, error, warning-only and unparseable files."""
    folder = tmp_path_factory.mktemp("inputs")
    shutil.copy(SAMPLES / "valid/flanders-care-coordination.json", folder / "valid.json")
    shutil.copy(SAMPLES / "rules/IC-TEAM-1/breaks.json", folder / "team-1.json")
    shutil.copy(SAMPLES / "rules/IC-TEAM-2/breaks.json", folder / "team-2-warning.json")
    (folder / "sub").mkdir()
    (folder / "sub" / "broken.json").write_text('{"resourceType": "Patient",', encoding="utf-8")
    out = folder.parent / "report.xml"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapter.cli.main",
            "validate",
            str(folder),
            "--format",
            "junit",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    return proc, folder, out


def test_junitparser_reads_one_case_per_file(
    junit_run: tuple[subprocess.CompletedProcess[str], Path, Path],
) -> None:
    proc, folder, out = junit_run
    assert proc.returncode == 2, proc.stderr  # an unreadable input makes the run unusable
    assert proc.stdout == ""  # the report went to --output
    xml = JUnitXml.fromfile(str(out))
    suites = list(xml)
    assert len(suites) == 1
    cases = {case.name: case for case in suites[0]}
    files = sorted(str(p) for p in folder.rglob("*.json"))
    assert sorted(cases) == files

    broken = cases[str(folder / "sub" / "broken.json")]
    assert [type(r) for r in broken.result] == [Error]
    assert "Invalid JSON" in broken.result[0].message

    team1 = cases[str(folder / "team-1.json")]
    assert [type(r) for r in team1.result] == [Failure]
    failure = team1.result[0]
    assert failure.message.startswith("1 error(s): The care team does not include the person")
    assert "IC-TEAM-1" in failure.text and "Bundle.entry[11].resource" in failure.text

    warning = cases[str(folder / "team-2-warning.json")]
    assert warning.is_passed and "WARNING IC-TEAM-2" in warning.system_out  # visible, not failing
    assert cases[str(folder / "valid.json")].is_passed

    suite = suites[0]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 1, 1, 0)
    assert all(case.classname == "becare.validate" for case in suite)
    assert all(case.time >= 0 for case in suite) and cases[str(folder / "team-1.json")].time > 0
    assert suite.time == pytest.approx(sum(case.time for case in suite), abs=0.01)


def test_classic_ci_layout(junit_run: tuple[subprocess.CompletedProcess[str], Path, Path]) -> None:
    _proc, _folder, out = junit_run
    root = etree.parse(str(out)).getroot()
    assert root.tag == "testsuites"
    assert [child.tag for child in root] == ["testsuite"]
    suite = root[0]
    for attr in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp", "hostname"):
        assert suite.get(attr), attr
    assert _TIMESTAMP.match(suite.get("timestamp"))
    assert suite[0].tag == "properties"  # the run's provenance, then the cases
    cases = suite.findall("testcase")
    assert int(root.get("tests")) == int(suite.get("tests")) == len(cases) == len(suite) - 1
    for case in cases:
        assert set(case.attrib) == {"name", "classname", "time"}
        assert float(case.get("time")) >= 0
        order = [_CASE_CHILD_ORDER.index(child.tag) for child in case]  # unknown tags raise here
        assert order == sorted(order)
        for child in case:
            if child.tag in ("error", "failure"):
                assert child.get("message") and child.get("type")
    assert sum(1 for c in suite if c.find("failure") is not None) == int(suite.get("failures"))
    assert sum(1 for c in suite if c.find("error") is not None) == int(suite.get("errors"))


def _report(source: str, *issues: Issue, seconds: float = 0.25) -> Report:
    return Report(issues=list(issues), source=source, extra={SECONDS: seconds})


def test_counts_and_awkward_text_still_parse(tmp_path: Path) -> None:
    nasty = 'bad \x01control & <markup> "quotes" \x1f \ud800'
    reports = [
        _report("ok.json"),
        _report("warn.json", Issue("warning", "invalid", "Patient", "just a warning")),
        _report("a&b <1>.json", Issue("error", "value", "Patient.gender", nasty)),
        _report(
            "e2.json",
            Issue("error", "value", "Patient.x", "one"),
            Issue("error", "value", "Patient.y", "two"),
        ),
        _report("fatal.json", Issue("fatal", "structure", "", "not JSON"), seconds=0.0),
    ]
    target = tmp_path / "r.xml"
    target.write_text(render_junit(reports), encoding="utf-8")
    suite = next(iter(JUnitXml.fromfile(str(target))))
    assert (suite.tests, suite.failures, suite.errors) == (5, 2, 1)
    assert suite.time == pytest.approx(1.0)
    cases = {c.name: c for c in suite}
    assert set(cases) == {"ok.json", "warn.json", "a&b <1>.json", "e2.json", "fatal.json"}
    odd = cases["a&b <1>.json"].result[0]
    clean = nasty.replace("\x01", "\ufffd").replace("\x1f", "\ufffd").replace("\ud800", "\ufffd")
    assert odd.message == "1 error(s): " + clean
    assert cases["e2.json"].result[0].message.startswith("2 error(s)")
    assert cases["e2.json"].result[0].text.count("ERROR") == 2
    assert isinstance(cases["fatal.json"].result[0], Error)


def test_valid_folder_exits_0_with_no_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("a.json", "b.json"):
        shutil.copy(SAMPLES / "valid/wallonia-case-management.json", tmp_path / name)
    assert main(["validate", str(tmp_path), "--format", "junit", "--no-progress"]) == 0
    xml = capsys.readouterr().out
    report = tmp_path.parent / f"{tmp_path.name}.xml"
    report.write_text(xml, encoding="utf-8")
    suite = next(iter(JUnitXml.fromfile(str(report))))
    assert (suite.tests, suite.failures, suite.errors) == (2, 0, 0)
    assert all(case.is_passed for case in suite)

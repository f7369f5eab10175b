"""``becare validate`` as CI pipelines use it: exit codes, formats, bad input (CONTRACT §5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from adapter.cli.main import main

GOOD = {
    "resourceType": "Patient",
    "id": "a",
    "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">A</div>'},
    "gender": "female",
}
BAD = {"resourceType": "Patient", "id": "b", "gender": "bogus", "shoeSize": 42}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, content in (
        ("good.json", json.dumps(GOOD)),
        ("bad.json", json.dumps(BAD)),
        ("garbage.json", "this is not json"),
        ("array.json", "[1, 2]"),
        ("alien.json", json.dumps({"resourceType": "Spaceship"})),
    ):
        (tmp_path / name).write_text(content)
        out[name] = tmp_path / name
    return out


def test_exit_codes(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(files["good.json"])]) == 0
    assert main(["validate", str(files["bad.json"])]) == 1
    text = capsys.readouterr().out
    assert "Patient.shoeSize" in text and "Unrecognized property" in text
    for bad_input in ("garbage.json", "array.json", "alien.json"):
        assert main(["validate", str(files[bad_input])]) == 2, bad_input
    assert main(["validate", str(files["good.json"].parent / "missing.json")]) == 2


def test_json_format_one_and_many(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--format", "json", str(files["bad.json"])]) == 1
    oo = json.loads(capsys.readouterr().out)
    assert oo["resourceType"] == "OperationOutcome"
    exprs = {e for i in oo["issue"] for e in i.get("expression", [])}
    assert "Patient.gender" in exprs and "Patient.shoeSize" in exprs
    located = [i for i in oo["issue"] if "diagnostics" in i]
    assert located, "issues carry line/column"
    main(["validate", "--format", "json", str(files["good.json"]), str(files["bad.json"])])
    bundle = json.loads(capsys.readouterr().out)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    assert len(bundle["entry"]) == 2


def test_junit_output_one_case_per_file(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.xml"
    code = main(
        [
            "validate",
            "--format",
            "junit",
            "--output",
            str(out),
            str(files["good.json"]),
            str(files["bad.json"]),
        ]
    )
    assert code == 1
    root = ElementTree.parse(out).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [str(files["good.json"]), str(files["bad.json"])]
    assert cases[0].find("failure") is None and cases[1].find("failure") is not None


def test_usage_errors_exit_2_without_traceback(files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "validate", "--region", "mars", str(files["good.json"])],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "invalid choice" in proc.stderr


def test_profile_option_and_ig(files: dict[str, Path], tmp_path: Path) -> None:
    profile = {
        "resourceType": "StructureDefinition",
        "url": "http://example.org/StructureDefinition/named-patient",
        "name": "NamedPatient",
        "status": "draft",
        "kind": "resource",
        "abstract": False,
        "type": "Patient",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Patient.name", "path": "Patient.name", "min": 1}]},
    }
    (tmp_path / "ig").mkdir()
    (tmp_path / "ig" / "sd.json").write_text(json.dumps(profile))
    args = ["validate", "--ig", str(tmp_path / "ig"), "--profile", profile["url"], str(files["good.json"])]
    assert main(args) == 1  # the profile requires a name
    assert main(["validate", str(files["good.json"])]) == 0  # and did not leak into the default store


def test_registry_option_checks_across_submissions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """IC-ONE-1 needs memory: with --registry a second coordinator for the same person is an
    error; without it the rule is reported as not checked, never silently passed."""
    from adapter.registry import EpisodeRegistry

    samples = Path(__file__).resolve().parents[1] / "samples" / "rules" / "IC-ONE-1"
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    EpisodeRegistry(url).record(json.loads((samples / "prior.json").read_text()))

    assert main(["validate", "--format", "json", "--registry", url, str(samples / "breaks.json")]) == 1
    oo = json.loads(capsys.readouterr().out)
    ids = {c["code"] for i in oo["issue"] if i["severity"] == "error" for c in i["details"].get("coding", [])}
    assert "IC-ONE-1" in ids

    main(["validate", "--format", "json", str(samples / "breaks.json")])
    oo = json.loads(capsys.readouterr().out)
    one = [i for i in oo["issue"] if any(c["code"] == "IC-ONE-1" for c in i["details"].get("coding", []))]
    assert one and all(i["severity"] == "information" for i in one)


def _positions(issue: dict[str, Any]) -> tuple[int | None, int | None]:
    ext = {e["url"].rsplit("-", 1)[-1]: e.get("valueInteger") for e in issue.get("extension", [])}
    return ext.get("line"), ext.get("col")


def test_xml_issues_carry_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 2: XML input gets line AND column, counted in characters as for JSON."""
    path = tmp_path / "x.xml"
    path.write_bytes(
        "\r\n".join(
            [
                '<?xml version="1.0" encoding="UTF-8"?>',
                "<!-- Zoë 𝄞 <gender value='decoy'/> -->",
                '<Patient xmlns="http://hl7.org/fhir">',
                '\t<name><text value="Zoë 𝄞"/></name><gender value="bogus"/>',
                '\t<active value="true" colour="red"/>',
                "</Patient>",
            ]
        ).encode()
    )
    assert main(["validate", "--format", "json", str(path)]) == 1
    oo = json.loads(capsys.readouterr().out)
    gender = next(i for i in oo["issue"] if i.get("expression") == ["Patient.gender"])
    assert "bogus" in gender["details"]["text"]
    assert _positions(gender) == (4, 36)  # the '<' of <gender>, in characters
    colour = next(i for i in oo["issue"] if "colour" in i["details"]["text"])
    assert _positions(colour) == (5, 23)  # a parse finding, at the attribute itself
    assert colour["diagnostics"] == "[5,23]"


def test_broken_xml_exit_2_with_line_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.xml"
    path.write_text("<!-- é -->\n<Patient xmlns='http://hl7.org/fhir'>\n\t<active value='true'>\n</Patient>")
    assert main(["validate", "--format", "json", str(path)]) == 2
    (issue,) = json.loads(capsys.readouterr().out)["issue"]
    assert issue["severity"] == "fatal" and issue["code"] == "invalid"
    assert _positions(issue) == (4, 11)  # where lxml noticed: after the mismatched </Patient>

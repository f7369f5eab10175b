"""The ``text`` output of ``becare validate`` for people: worst first, repeated findings folded.

The case from issue 14: a bundle without narrative gets one ``dom-6`` warning per resource, and
in document order its two errors sat below all of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from adapter.cli.main import main
from adapter.output.fold import fold_key, order_and_fold
from adapter.output.render import render_text
from adapter.output.text import MAX_LOCATIONS
from adapter.validation.api import Report
from adapter.validation.issues import Issue, Suppressed

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "valid" / "flanders-care-coordination.json"
DOM6 = "Constraint failed: dom-6: 'A resource should have narrative for robust management'"


def narrativeless_with_two_errors() -> dict[str, Any]:
    """The flanders sample without any narrative, and two wrong task statuses near its end: two
    errors of the same kind whose messages differ by the value they quote."""
    bundle = json.loads(SAMPLE.read_text(encoding="utf-8"))
    for entry in bundle["entry"]:
        entry["resource"].pop("text", None)
    tasks = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]
    tasks[-2]["status"] = "bogus"
    tasks[-1]["status"] = "wrong"
    return bundle


@pytest.fixture(scope="module")
def bundle_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "no-narrative.json"
    path.write_text(json.dumps(narrativeless_with_two_errors(), indent=2), encoding="utf-8")
    return path


def _validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["validate", *args])
    return code, capsys.readouterr().out


def test_errors_first_and_the_narrative_warnings_folded(
    bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = len(json.loads(bundle_file.read_text(encoding="utf-8"))["entry"])
    code, out = _validate(capsys, str(bundle_file))
    assert code == 1
    lines = out.splitlines()
    assert re.match(rf".*: INVALID: 2 error\(s\), {entries} warning\(s\)", lines[0])
    issue_heads = [ln for ln in lines if re.match(r"  (FATAL|ERROR|WARNING|INFORMATION) ", ln)]
    severities = [ln.split()[0] for ln in issue_heads]
    assert severities[:2] == ["ERROR", "ERROR"], out  # the two errors come first ...
    assert severities == sorted(severities, key=["ERROR", "WARNING", "INFORMATION"].index)
    # ... not folded together: same code, but each message quotes its own wrong value
    assert "'bogus'" in out and "'wrong'" in out
    # every resource lacks narrative: one line says so, with the count, then the places
    assert out.count(DOM6) == 1
    (head,) = [ln for ln in issue_heads if ln.startswith("  WARNING")]
    assert head == f"  WARNING     {entries} times"
    start = lines.index(head)
    assert lines[start + 1].strip() == DOM6
    places = lines[start + 2 : start + 2 + MAX_LOCATIONS]
    json_lines = bundle_file.read_text(encoding="utf-8").splitlines()
    for i, place in enumerate(places):
        m = re.fullmatch(r"\s+\[(\d+):(\d+)\] (Bundle\.entry\[(\d+)\]\.resource)", place)
        assert m, place
        assert int(m.group(4)) == i  # document order
        assert json_lines[int(m.group(1)) - 1].strip().startswith('"resource"')  # a real position
    assert lines[start + 2 + MAX_LOCATIONS].strip() == f"and {entries - MAX_LOCATIONS} more"


def test_json_and_junit_still_carry_every_issue(
    bundle_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = len(json.loads(bundle_file.read_text(encoding="utf-8"))["entry"])
    code, out = _validate(capsys, "--format", "json", str(bundle_file))
    assert code == 1
    dom6 = [i for i in json.loads(out)["issue"] if i.get("details", {}).get("text") == DOM6]
    assert len(dom6) == entries  # folding is for people only
    _, junit = _validate(capsys, "--format", "junit", str(bundle_file))
    assert junit.count("dom-6") == entries


def _issue(severity: str, line: int, message: str = "m", **kw: Any) -> Issue:
    return Issue(severity, kw.pop("code", "invalid"), f"X.a[{line}]", message, line=line, col=1, **kw)  # type: ignore[arg-type]


def test_order_is_severity_then_document_and_only_equal_findings_fold() -> None:
    issues = [
        _issue("information", 1),
        _issue("warning", 2, "narrative", message_id="dom-6"),
        _issue("error", 9, "the code 'x' is wrong", message_id="tx"),
        _issue("warning", 3, "narrative", message_id="dom-6"),
        _issue("fatal", 50),
        _issue("error", 4, "the code 'y' is wrong", message_id="tx"),
        _issue("warning", 1, "narrative", message_id="dom-6"),
        _issue("error", 5, "narrative", message_id="dom-6"),  # same text, other severity
        _issue("warning", 6, "narrative", message_id="dom-6", code="business-rule"),  # other code
        _issue("warning", 7, "narrative", rule="IC-X-1"),  # other rule
        _issue("warning", 2, "narrative", message_id="dom-6"),  # an exact duplicate: dropped
    ]
    folds = order_and_fold(issues)
    assert [(f.first.severity, f.first.line, f.count) for f in folds] == [
        ("fatal", 50, 1),
        ("error", 4, 1),
        ("error", 5, 1),
        ("error", 9, 1),
        ("warning", 1, 3),
        ("warning", 6, 1),
        ("warning", 7, 1),
        ("information", 1, 1),
    ]
    assert [i.line for i in folds[4].issues] == [1, 2, 3]
    assert len({fold_key(i) for i in folds[4].issues}) == 1


def _report(issues: list[Issue], **kw: Any) -> Report:
    return Report(issues=issues, source="in.json", **kw)


@pytest.mark.parametrize("count", [2, MAX_LOCATIONS, MAX_LOCATIONS + 1])
def test_locations_are_capped_and_the_rest_counted(count: int) -> None:
    text = render_text([_report([_issue("warning", n, "same") for n in range(1, count + 1)])])
    assert f"  WARNING     {count} times\n              same\n" in text
    listed = re.findall(r"^ {16}\[\d+:1\] X\.a\[\d+\]$", text, re.M)
    assert len(listed) == min(count, MAX_LOCATIONS)
    assert ("more" in text) == (count > MAX_LOCATIONS)
    if count > MAX_LOCATIONS:
        assert text.rstrip().endswith(f"and {count - MAX_LOCATIONS} more")


def test_a_single_finding_keeps_its_two_lines_and_colour_still_works() -> None:
    issues = [
        _issue("error", 3, "bad", rule="IC-TEAM-1"),
        _issue("warning", 1, "w"),
        _issue("warning", 2, "w"),
    ]
    plain = render_text([_report(issues)])
    assert "  ERROR       [3:1] X.a[3] [IC-TEAM-1]\n              bad\n" in plain
    assert plain.index("ERROR") < plain.index("WARNING")
    coloured = render_text([_report(issues)], colour=True)
    assert "\033[33mWARNING    \033[0m 2 times" in coloured


def test_provenance_is_shown_when_present_and_ignored_when_malformed() -> None:
    provenance = {
        "validator": {"name": "becare", "version": "1.4.0"},
        "rulebook": {"version": "1"},
        "packages": [{"id": "hl7.fhir.r4.core", "version": "4.0.1"}, {"id": "hl7.fhir.be.core"}, "junk"],
        "canonicals": [
            {
                "declared": "https://old/be-patient",
                "applied": "https://new/be-patient",
                "at": "Bundle.entry[0]",
            },
            {"declared": "https://same", "applied": "https://same", "at": "Bundle.entry[1]"},
        ],
        "date": "2025-03-04",
        "duration_ms": 12.4,
    }
    text = render_text([_report([], provenance=provenance)])
    assert (
        "  validated by becare 1.4.0; packages hl7.fhir.r4.core#4.0.1, hl7.fhir.be.core; "
        "date 2025-03-04; 12 ms\n"
    ) in text
    assert (
        "  profile https://old/be-patient declared, https://new/be-patient applied at Bundle.entry[0]\n"
    ) in text
    assert "https://same" not in text
    for junk in ({}, {"validator": "x", "packages": "y", "canonicals": [1, None], "duration_ms": True}):
        text = render_text([_report([], provenance=junk)])
        assert text == "in.json: VALID: 0 error(s), 0 warning(s), 0 note(s)\n"


def test_suppressed_findings_fold_per_suppression_and_keep_their_note() -> None:
    first = Suppressed(severity="warning", reason="no narrative in our feed", entry=1)
    other = Suppressed(severity="warning", reason="legacy sender", entry=2)
    issues = [
        _issue("information", line, "narrative", message_id="dom-6", suppressed=mark)
        for line, mark in ((1, first), (2, first), (3, first), (4, other))
    ]
    folds = order_and_fold(issues)
    assert [f.count for f in folds] == [3, 1]
    text = render_text([_report(issues)])
    note = "              (suppressed warning; suppression 1: no narrative in our feed)"
    assert f"  INFORMATION 3 times\n              narrative\n{note}\n" in text
    assert text.count("suppression 1:") == 1 and text.count("suppression 2:") == 1

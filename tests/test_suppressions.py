"""Suppressions (issue 14): a suppressed rule turns exit 1 into exit 0, still shows as suppressed,
and expires. Checked on the pure functions, on ``becare validate`` as a subprocess, on the real
``becare serve`` (``service.suppress``) and on the pytest plugin (``--becare-suppress``)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from adapter.validation.issues import SUPPRESSED_URL, Issue, operation_outcome
from adapter.validation.suppressions import (
    EXPIRED_ID,
    SuppressionError,
    apply_suppressions,
    glob_pattern,
    load_suppressions,
    parse_suppressions,
)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
BREAKS = ROOT / "samples" / "rules" / "IC-TEAM-1" / "breaks.json"  # one error: IC-TEAM-1
TEAM_1_AT = "Bundle.entry[11].resource"
TODAY = "2025-06-01"

SUPPRESS_TEAM_1 = """\
# known gap in the vendor's export, fixed in release 5
- id: IC-TEAM-1
  expression: "Bundle.entry[*].resource"
  reason: "vendor ticket 42"
  until: 2025-12-31
"""


def _issue(
    severity: str = "error",
    *,
    rule: str | None = "IC-TEAM-1",
    expr: str = TEAM_1_AT,
    code: str = "business-rule",
    message_id: str | None = None,
) -> Issue:
    return Issue(
        severity,
        code,
        expr,
        "the care team lacks the person",
        source="rulebook",
        rule=rule,  # type: ignore[arg-type]
        message_id=message_id,
    )


# -- reading the file ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"id": "IC-TEAM-1"}, "expected a YAML list"),
        ([{"id": "IC-TEAM-1", "reason": "ok"}, {"id": "IC-CC-1"}], "entry 2: 'reason' is required"),
        ([{"reason": "why"}], "entry 1: 'id' is required"),
        ([{"id": "  ", "reason": "why"}], "entry 1: 'id' is required"),
        ([{"id": "IC-TEAM-1", "reason": "why", "rule": "x"}], "entry 1: unknown key 'rule'"),
        ([{"id": "IC-TEAM-1", "reason": "why", "until": "31/12/2025"}], "entry 1: 'until' must be a date"),
        ([{"id": "IC-TEAM-1", "reason": "why", "until": dt.datetime(2025, 1, 1, 10)}], "not a date and time"),
        ([{"id": "IC-TEAM-1", "reason": "why", "expression": ""}], "entry 1: 'expression'"),
        (["IC-TEAM-1"], "entry 1: expected a mapping"),
    ],
)
def test_bad_files_name_the_file_and_the_entry(data: Any, expected: str) -> None:
    with pytest.raises(SuppressionError) as err:
        parse_suppressions(data, "ci/suppress.yaml")
    assert str(err.value).startswith("ci/suppress.yaml: ")
    assert expected in str(err.value)


def test_load_reads_yaml_dates_and_reports_yaml_errors(tmp_path: Path) -> None:
    good = tmp_path / "s.yaml"
    good.write_text(SUPPRESS_TEAM_1)
    (entry,) = load_suppressions(good)
    assert (entry.id, entry.reason, entry.until, entry.entry) == (
        "IC-TEAM-1",
        "vendor ticket 42",
        dt.date(2025, 12, 31),
        1,
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: [unclosed\n")
    with pytest.raises(SuppressionError, match=r"bad\.yaml: not valid YAML \(line"):
        load_suppressions(bad)
    with pytest.raises(SuppressionError, match=r"missing\.yaml: cannot read"):
        load_suppressions(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing suppressed yet\n")
    assert load_suppressions(empty) == ()


def test_expression_is_a_glob_where_only_star_is_special() -> None:
    star = glob_pattern("Bundle.entry[*].resource")
    assert star.fullmatch("Bundle.entry[11].resource")
    assert not star.fullmatch("Bundle.entry[11].resource.participant[0]"), "the whole path must match"
    literal = glob_pattern("Bundle.entry[3].resource")
    assert literal.fullmatch("Bundle.entry[3].resource")
    assert not literal.fullmatch("Bundle.entry3.resource"), "brackets are literal, not a character class"
    assert glob_pattern("Bundle.entry[*].resource.*").fullmatch("Bundle.entry[2].resource.text.div")


# -- applying ---------------------------------------------------------------------------------------
def test_a_matched_issue_becomes_marked_information() -> None:
    (rule,) = parse_suppressions([{"id": "IC-TEAM-1", "reason": "ticket 42", "until": "2025-12-31"}])
    other = _issue("warning", rule="IC-TEAM-2")
    out = apply_suppressions([_issue(), other], [rule], dt.date(2025, 6, 1))
    assert len(out) == 2 and out[1] is other
    assert out[0].severity == "information" and not out[0].is_error
    assert out[0].suppressed is not None
    assert (out[0].suppressed.severity, out[0].suppressed.reason, out[0].suppressed.until) == (
        "error",
        "ticket 42",
        "2025-12-31",
    )
    assert out[0].message == _issue().message, "the finding itself is unchanged"
    # the OperationOutcome keeps the mark: former severity and reason
    (fhir,) = [i for i in operation_outcome(out)["issue"] if i["severity"] == "information"]
    mark = next(e for e in fhir["extension"] if e["url"] == SUPPRESSED_URL)
    subs = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in mark["extension"]}
    assert subs == {"severity": "error", "reason": "ticket 42", "entry": 1, "until": "2025-12-31"}
    assert fhir["severity"] == "information"


def test_message_ids_and_expressions_select_issues() -> None:
    rules = parse_suppressions(
        [{"id": "dom-6", "expression": "Bundle.entry[*].resource", "reason": "no text"}]
    )
    inside = _issue("warning", rule=None, message_id="dom-6", code="invariant")
    root = _issue("warning", rule=None, message_id="dom-6", code="invariant", expr="Bundle")
    out = apply_suppressions([inside, root], rules, dt.date(2025, 6, 1))
    assert [i.severity for i in out] == ["information", "warning"]


def test_fatal_and_exception_issues_are_never_suppressed() -> None:
    rules = parse_suppressions(
        [{"id": "IC-TEAM-1", "reason": "r"}, {"id": "becare-rule-failed", "reason": "r"}]
    )
    failed = _issue(code="exception", rule="IC-TEAM-1")
    crashed = _issue(code="exception", rule=None, message_id="becare-rule-failed")
    fatal = _issue("fatal")
    out = apply_suppressions([failed, crashed, fatal], rules, dt.date(2025, 6, 1))
    assert out == [failed, crashed, fatal]


def test_until_is_the_last_day_then_a_warning_names_the_expired_suppression() -> None:
    rules = parse_suppressions([{"id": "IC-TEAM-1", "reason": "ticket 42", "until": "2025-12-31"}])
    assert apply_suppressions([_issue()], rules, dt.date(2025, 12, 31))[0].severity == "information"
    out = apply_suppressions([_issue()], rules, dt.date(2026, 1, 1))
    assert out[0] == _issue(), "the issue keeps its own severity"
    (warning,) = out[1:]
    assert (warning.severity, warning.message_id) == ("warning", EXPIRED_ID)
    assert "suppression 1 (IC-TEAM-1: ticket 42) expired on 2025-12-31" in warning.message
    # an expired suppression that matches nothing in this report adds nothing
    assert apply_suppressions([_issue(rule="IC-CC-1")], rules, dt.date(2026, 1, 1)) == [
        _issue(rule="IC-CC-1")
    ]


# -- becare validate --suppress (a subprocess, as CI runs it) -------------------------------------------
def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapter.cli.main", "validate", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd or ROOT,
    )


def _suppressed(oo: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in oo["issue"] if any(e["url"] == SUPPRESSED_URL for e in i.get("extension", ()))]


def test_cli_suppression_turns_exit_1_into_0_shows_it_and_expires(tmp_path: Path) -> None:
    supp = tmp_path / "suppress.yaml"
    supp.write_text(SUPPRESS_TEAM_1)
    plain = _cli(str(BREAKS), "--today", TODAY, "--format", "json")
    assert plain.returncode == 1, plain.stderr
    assert not _suppressed(json.loads(plain.stdout))

    kept = _cli(str(BREAKS), "--today", TODAY, "--format", "json", "--suppress", str(supp))
    assert kept.returncode == 0, kept.stdout[-2000:] + kept.stderr
    oo = json.loads(kept.stdout)
    assert not [i for i in oo["issue"] if i["severity"] in ("error", "fatal")]
    (issue,) = _suppressed(oo)
    assert issue["severity"] == "information" and issue["expression"] == [TEAM_1_AT]
    assert issue["details"]["coding"][0]["code"] == "IC-TEAM-1"
    assert "vendor ticket 42" in json.dumps(issue)

    text = _cli(str(BREAKS), "--today", TODAY, "--suppress", str(supp))
    assert text.returncode == 0
    assert "1 suppressed" in text.stdout
    assert "suppressed error; suppression 1: vendor ticket 42; until 2025-12-31" in text.stdout

    junit = _cli(str(BREAKS), "--today", TODAY, "--format", "junit", "--suppress", str(supp))
    assert junit.returncode == 0 and "<failure" not in junit.stdout
    assert "suppressed error; suppression 1: vendor ticket 42" in junit.stdout

    lapsed = _cli(str(BREAKS), "--today", "2026-01-01", "--format", "json", "--suppress", str(supp))
    assert lapsed.returncode == 1, "an expired suppression no longer applies"
    oo = json.loads(lapsed.stdout)
    assert not _suppressed(oo)
    warnings = [
        i
        for i in oo["issue"]
        if i["severity"] == "warning" and "expired on 2025-12-31" in i["details"]["text"]
    ]
    assert len(warnings) == 1 and "IC-TEAM-1" in warnings[0]["details"]["text"]
    assert "expired on 2025-12-31" in lapsed.stderr


def test_cli_bad_suppression_file_is_exit_2_naming_file_and_entry(tmp_path: Path) -> None:
    supp = tmp_path / "suppress.yaml"
    supp.write_text("- id: IC-TEAM-1\n  reason: fine\n- id: IC-CC-1\n")
    run = _cli(str(BREAKS), "--suppress", str(supp))
    assert run.returncode == 2
    assert f"{supp}: entry 2: 'reason' is required" in run.stderr
    assert "Traceback" not in run.stderr
    missing = _cli(str(BREAKS), "--suppress", str(tmp_path / "none.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


# -- the real service: service.suppress --------------------------------------------------------------
def test_service_applies_its_suppressions_and_refuses_a_bad_file(tmp_path: Path) -> None:
    from adapter.testing.service import BecareService, ServiceStartError

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "suppress.yaml").write_text("- id: IC-TEAM-1\n  reason: r\n  colour: red\n")
    bad = BecareService(tmp_path / "bad", config="service:\n  suppress: suppress.yaml\n")
    with pytest.raises(ServiceStartError) as refused:
        bad.start(timeout=60, attempts=1)
    assert "service.suppress" in str(refused.value) and "entry 1: unknown key 'colour'" in str(refused.value)

    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "suppress.yaml").write_text(SUPPRESS_TEAM_1.replace("2025-12-31", "2999-12-31"))
    config = "service:\n  suppress: suppress.yaml\n  rate_limit: {per_second: 1000, burst: 1000}\n"
    service = BecareService(tmp_path / "good", config=config).start()
    try:
        checked = service.validate(BREAKS, today=TODAY)
        assert checked.status_code == 200
        oo = checked.json()
        (issue,) = _suppressed(oo)
        assert issue["severity"] == "information" and issue["expression"] == [TEAM_1_AT]
        assert not [i for i in oo["issue"] if i["severity"] in ("error", "fatal")]
        expired = service.validate(BREAKS, today="3000-01-01")
        assert [i for i in expired.json()["issue"] if i["severity"] == "error"], "expired: the error is back"
        # one verdict everywhere: POST /fhir accepts what $validate passed, still marked suppressed
        accepted = service.submit(BREAKS)
        assert accepted.status_code == 202, accepted.text[:1000]
        (issue,) = _suppressed(accepted.json())
        assert issue["expression"] == [TEAM_1_AT]
    finally:
        service.stop()


# -- the pytest plugin: --becare-suppress / becare_suppress ----------------------------------------------
def test_a_suppressed_issue_never_fails_a_plugin_check() -> None:
    from adapter.testing.report import failing

    rules = parse_suppressions([{"id": "IC-TEAM-1", "reason": "ticket 42"}])
    (kept,) = apply_suppressions([_issue()], rules, dt.date(2025, 6, 1))
    assert failing([kept], fail_on="information") == []
    assert failing([_issue("information", rule="IC-TEAM-3")], fail_on="information")


def test_plugin_suppression_option_and_ini(pytester: pytest.Pytester) -> None:
    (pytester.path / "breaks.json").write_bytes(BREAKS.read_bytes())
    (pytester.path / "ci").mkdir()
    (pytester.path / "ci" / "suppress.yaml").write_text(SUPPRESS_TEAM_1.replace("2025-12-31", "2999-12-31"))
    pytester.makepyfile(
        test_bundle="""
        from pathlib import Path
        from adapter.testing import assert_valid

        def test_bundle():
            assert_valid(Path(__file__).parent / "breaks.json")
    """
    )
    failing = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--becare-today", TODAY)
    failing.assert_outcomes(failed=1)
    failing.stdout.fnmatch_lines(["*IC-TEAM-1*"])
    passing = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--becare-today", TODAY, "--becare-suppress", "ci/suppress.yaml"
    )
    passing.assert_outcomes(passed=1)
    passing.stdout.fnmatch_lines(["becare:*suppressions=1*"])
    pytester.makeini("[pytest]\nbecare_suppress = ci/suppress.yaml\nbecare_today = 2025-06-01\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    (pytester.path / "ci" / "suppress.yaml").write_text("- id: IC-TEAM-1\n")
    broken = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert broken.ret != 0
    broken.stderr.fnmatch_lines(["*suppress.yaml: entry 1: 'reason' is required*"])

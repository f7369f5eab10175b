"""Turn ``Report``s into the three output formats of ``becare validate``.

Pure functions returning strings: the CLI decides where they go.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from adapter.validation.api import Report
from adapter.validation.issues import Issue, operation_outcome, sort_issues

FILE_EXT = "http://hl7.org/fhir/StructureDefinition/operationoutcome-file"

_COLOURS = {"fatal": "\033[1;31m", "error": "\033[31m", "warning": "\033[33m", "information": "\033[36m"}
_RESET = "\033[0m"
_BOLD = "\033[1m"
_GREEN = "\033[32m"


def render(reports: Sequence[Report], fmt: str, *, colour: bool = False) -> str:
    if fmt == "json":
        return render_json(reports)
    if fmt == "junit":
        return render_junit(reports)
    return render_text(reports, colour=colour)


def report_outcome(report: Report) -> dict[str, Any]:
    oo = operation_outcome(report.issues, rulebook_version=report.rulebook_version)
    if report.source:
        oo["extension"] = [{"url": FILE_EXT, "valueString": report.source}]
    return oo


def render_json(reports: Sequence[Report]) -> str:
    if len(reports) == 1:
        return json.dumps(report_outcome(reports[0]), indent=2, ensure_ascii=False) + "\n"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": report_outcome(r)} for r in reports],
    }
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"


def _counts(issues: Sequence[Issue]) -> tuple[int, int, int]:
    e = sum(1 for i in issues if i.is_error)
    w = sum(1 for i in issues if i.severity == "warning")
    n = sum(1 for i in issues if i.severity == "information")
    return e, w, n


def _issue_line(issue: Issue, colour: bool) -> str:
    sev = issue.severity.upper()
    sev = f"{_COLOURS.get(issue.severity, '')}{sev:<11}{_RESET}" if colour else f"{sev:<11}"
    pos = f"[{issue.line}:{issue.col}] " if issue.line is not None else ""
    rule = f" [{issue.rule}]" if issue.rule else ""
    return f"  {sev} {pos}{issue.expression or '(document)'}{rule}\n              {issue.message}"


def render_text(reports: Sequence[Report], *, colour: bool = False) -> str:
    lines: list[str] = []
    total_e = total_w = 0
    for report in reports:
        e, w, n = _counts(report.issues)
        total_e += e
        total_w += w
        verdict = "INVALID" if e else "VALID"
        if colour:
            verdict = f"{_BOLD}{_COLOURS['error'] if e else _GREEN}{verdict}{_RESET}"
        where = report.source or "input"
        extra = []
        if report.region:
            extra.append(f"region {report.region}")
        if report.rulebook_version:
            extra.append(f"rulebook v{report.rulebook_version}")
        suffix = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"{where}: {verdict}: {e} error(s), {w} warning(s), {n} note(s){suffix}")
        for issue in sort_issues(report.issues):
            lines.append(_issue_line(issue, colour))
    if len(reports) > 1:
        lines.append(f"{len(reports)} inputs: {total_e} error(s), {total_w} warning(s)")
    return "\n".join(lines) + "\n"


def render_junit(reports: Sequence[Report], *, suite: str = "becare validate") -> str:
    """JUnit XML: one test case per validated input; errors are failures, the rest goes to
    system-out so CI systems show it without failing the build."""
    failures = sum(1 for r in reports if r.has_errors)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name={quoteattr(suite)} tests="{len(reports)}" failures="{failures}" errors="0">',
        f'  <testsuite name={quoteattr(suite)} tests="{len(reports)}" failures="{failures}" errors="0" '
        f'skipped="0" timestamp="{stamp}" hostname={quoteattr(os.uname().nodename)}>',
    ]
    for report in reports:
        name = report.source or "input"
        out.append(f'    <testcase classname={quoteattr("becare.validate")} name={quoteattr(name)} time="0">')
        issues = sort_issues(report.issues)
        errors = [i for i in issues if i.is_error]
        if errors:
            body = "\n".join(_plain(i) for i in errors)
            message = f"{len(errors)} error(s): {errors[0].message}"
            out.append(
                f'      <failure message={quoteattr(message)} type="fhir-validation">{escape(body)}</failure>'
            )
        rest = [i for i in issues if not i.is_error]
        if rest:
            out.append(f"      <system-out>{escape(chr(10).join(_plain(i) for i in rest))}</system-out>")
        out.append("    </testcase>")
    out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def _plain(issue: Issue) -> str:
    pos = f" [{issue.line}:{issue.col}]" if issue.line is not None else ""
    rule = f" {issue.rule}" if issue.rule else ""
    return f"{issue.severity.upper()}{rule}{pos} {issue.expression}: {issue.message}"

"""Turn ``Report``s into the three output formats of ``becare validate``.

Pure functions returning strings: the CLI decides where they go.
"""

from __future__ import annotations

import json
import re
import socket
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


SECONDS = "seconds"  # Report.extra key: wall time spent on that input, shown as the JUnit test time

# XML 1.0 forbids most control characters even when escaped, and lone surrogates cannot be written
# as UTF-8; messages may quote bad input.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return escape(_XML_ILLEGAL.sub("\ufffd", text))


def _xml_attr(text: str) -> str:
    return quoteattr(_XML_ILLEGAL.sub("\ufffd", text))


def _seconds(report: Report) -> float:
    value = report.extra.get(SECONDS, 0.0)
    return float(value) if isinstance(value, int | float) else 0.0


def _fatal(report: Report) -> bool:
    return any(i.severity == "fatal" for i in report.issues)


def render_junit(reports: Sequence[Report], *, suite: str = "becare validate") -> str:
    """JUnit XML in the classic (Jenkins/Ant) layout that CI systems display: one test case per
    validated input. Inputs that could not be validated (fatal: unreadable, unparseable) are
    ``<error>``s, inputs with error issues are ``<failure>``s; warnings and notes go to
    ``system-out`` so they are visible without failing the build."""
    errored = sum(1 for r in reports if _fatal(r))
    failed = sum(1 for r in reports if r.has_errors and not _fatal(r))
    total_time = f"{sum(_seconds(r) for r in reports):.3f}"
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    counts = f'tests="{len(reports)}" failures="{failed}" errors="{errored}"'
    out = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<testsuites name={_xml_attr(suite)} {counts} time="{total_time}">',
        f'  <testsuite name={_xml_attr(suite)} {counts} skipped="0" time="{total_time}" '
        f"timestamp={quoteattr(stamp)} hostname={_xml_attr(socket.gethostname() or 'localhost')}>",
    ]
    for report in reports:
        name = report.source or "input"
        out.append(
            f'    <testcase classname="becare.validate" name={_xml_attr(name)} time="{_seconds(report):.3f}">'
        )
        issues = sort_issues(report.issues)
        errors = [i for i in issues if i.is_error]
        if errors:
            tag, kind = ("error", "unreadable-input") if _fatal(report) else ("failure", "fhir-validation")
            body = "\n".join(_plain(i) for i in errors)
            message = f"{len(errors)} error(s): {errors[0].message}"
            out.append(
                f"      <{tag} message={_xml_attr(message)} type={quoteattr(kind)}>{_xml_text(body)}</{tag}>"
            )
        rest = [i for i in issues if not i.is_error]
        if rest:
            out.append(f"      <system-out>{_xml_text(chr(10).join(_plain(i) for i in rest))}</system-out>")
        out.append("    </testcase>")
    out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def _plain(issue: Issue) -> str:
    pos = f" [{issue.line}:{issue.col}]" if issue.line is not None else ""
    rule = f" {issue.rule}" if issue.rule else ""
    return f"{issue.severity.upper()}{rule}{pos} {issue.expression}: {issue.message}"

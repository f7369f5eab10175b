"""Turn ``Report``s into the three output formats of ``becare validate``.

Pure functions returning strings: the CLI decides where they go.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Sequence
from typing import Any

from adapter.fhirio.jsonwrite import pretty_json
from adapter.output.fold import order_and_fold
from adapter.output.text import fold_lines, provenance_lines
from adapter.validation.api import Report
from adapter.validation.issues import Issue, operation_outcome, sort_issues
from adapter.validation.provenance import junit_properties

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
    oo = operation_outcome(
        report.issues, rulebook_version=report.rulebook_version, provenance=report.provenance
    )
    if report.source:
        oo["extension"] = [{"url": FILE_EXT, "valueString": report.source}, *oo.get("extension", ())]
    return oo


def render_json(reports: Sequence[Report]) -> str:
    if len(reports) == 1:
        return pretty_json(report_outcome(reports[0])) + "\n"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": report_outcome(r)} for r in reports],
    }
    return pretty_json(bundle) + "\n"  # json.dumps(indent=2), at orjson's speed


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
    text = f"  {sev} {pos}{issue.expression or '(document)'}{rule}\n              {issue.message}"
    return text + (f"\n              ({suppressed_note(issue)})" if issue.suppressed else "")


def suppressed_note(issue: Issue) -> str:
    """``suppressed error; suppression 2: reason; until 2025-12-31``: a suppressed issue always says
    what it was and why it no longer counts."""
    mark = issue.suppressed
    if mark is None:
        return ""
    until = f"; until {mark.until}" if mark.until else ""
    return f"suppressed {mark.severity}; suppression {mark.entry}: {mark.reason}{until}"


def render_text(reports: Sequence[Report], *, colour: bool = False) -> str:
    def severity(sev: str) -> str:
        return f"{_COLOURS.get(sev, '')}{sev.upper():<11}{_RESET}" if colour else f"{sev.upper():<11}"

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
        suppressed = sum(1 for i in report.issues if i.suppressed)
        if suppressed:
            extra.append(f"{suppressed} suppressed")
        suffix = f" ({', '.join(extra)})" if extra else ""
        lines.append(f"{where}: {verdict}: {e} error(s), {w} warning(s), {n} note(s){suffix}")
        lines.extend(provenance_lines(report.provenance))
        # Worst first, and a finding repeated at many places once, with its places (fold.py).
        for fold in order_and_fold(report.issues):
            lines.append(fold_lines(fold, lambda i: _issue_line(i, colour), severity))
    if len(reports) > 1:
        lines.append(f"{len(reports)} inputs: {total_e} error(s), {total_w} warning(s)")
    return "\n".join(lines) + "\n"


SECONDS = "seconds"  # Report.extra key: wall time spent on that input, shown as the JUnit test time

def escape(text: str) -> str:
    """``xml.sax.saxutils.escape``, imported when first used: that module pulls in urllib and
    http.client (~15 ms at the start of every ``becare validate``) and only JUnit needs it."""
    from xml.sax.saxutils import escape as sax_escape

    return sax_escape(text)


def quoteattr(text: str) -> str:
    """``xml.sax.saxutils.quoteattr``, imported when first used (see ``escape``)."""
    from xml.sax.saxutils import quoteattr as sax_quoteattr

    return sax_quoteattr(text)


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
    # provenance: what is the same for the whole run on the suite, the rest on each test case
    shared = next((junit_properties(r.provenance) for r in reports if r.provenance), [])
    out.extend(_properties([p for p in shared if p[0] in _RUN_WIDE], "    "))
    for report in reports:
        name = report.source or "input"
        out.append(
            f'    <testcase classname="becare.validate" name={_xml_attr(name)} time="{_seconds(report):.3f}">'
        )
        own = [p for p in junit_properties(report.provenance) if p[0] not in _RUN_WIDE]
        out.extend(_properties(own, "      "))
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


_RUN_WIDE = frozenset({"becare.validator", "becare.package", "becare.date"})


def _properties(props: list[tuple[str, str]], indent: str) -> list[str]:
    if not props:
        return []
    rows = [f"{indent}  <property name={_xml_attr(k)} value={_xml_attr(v)}/>" for k, v in props]
    return [f"{indent}<properties>", *rows, f"{indent}</properties>"]


def _plain(issue: Issue) -> str:
    pos = f" [{issue.line}:{issue.col}]" if issue.line is not None else ""
    rule = f" {issue.rule}" if issue.rule else ""
    note = f" ({suppressed_note(issue)})" if issue.suppressed else ""
    return f"{issue.severity.upper()}{rule}{pos} {issue.expression}: {issue.message}{note}"

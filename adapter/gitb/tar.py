"""The TAR (test assertion report) that ``validate`` answers with.

One report item per issue, in document order (as in the OperationOutcome):

- ``error`` / ``warning`` / ``info`` (fatal and error are errors), each ``xsi:type="tr:BAR"``
  because the element's declared type is abstract;
- ``description``: the message in the requested language (a suppressed issue says so);
- ``location``: ``content:LINE:COL``, which the test bed turns into a link to that line of the
  context item ``content``; the FHIRPath when the line is unknown;
- ``test``: the FHIRPath expression; ``assertionID``: the rule id, else the message id;
  ``type``: the FHIR issue type.

``counters`` count the items (``nrOfAssertions`` counts the info ones), the ``context`` map carries
what a later test step may read (``$out{errorCount}``): ``content``, ``operationOutcome``,
``errorCount``, ``warningCount``, ``informationCount``, ``severity`` and ``provenance``.

``result``: FAILURE when an item reaches ``failOn`` (error by default), else WARNING when there are
warnings, else SUCCESS. ``WARNING`` exists in the current gitb_tr.xsd (ISAITB/gitb-types), which
is the one becare publishes; the 2018 schema only had SUCCESS / FAILURE / UNDEFINED.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from lxml import etree

from adapter.gitb.ns import CORE, TR, XSI
from adapter.validation.issues import Issue, sort_issues

CONTENT_ITEM = "content"
_LEVEL = {"fatal": "error", "error": "error", "warning": "warning", "information": "info"}
_FAIL_RANK = {"error": 1, "warning": 2, "information": 3}
_SEVERITY_RANK = {"fatal": 0, "error": 1, "warning": 2, "information": 3}
# characters XML 1.0 cannot carry, even escaped
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class TarContext:
    """Everything one report is made of; ``build_tar`` is a pure function of it."""

    issues: Sequence[Issue]
    now: dt.datetime
    fail_on: str = "error"
    content: str | None = None  # the validated text, when addInputToReport
    content_mime: str | None = None
    outcome: Mapping[str, Any] | None = None
    provenance: Mapping[str, Any] | None = None
    profile_id: str | None = None  # the validation type
    note: str | None = None
    service_version: str = ""


def safe(text: object) -> str:
    """Text XML can carry: characters it cannot are replaced (a message may quote the input)."""
    return _NOT_XML.sub("\ufffd", str(text))


def result_of(errors: int, warnings: int, infos: int, fail_on: str = "error") -> str:
    rank = _FAIL_RANK.get(fail_on, 1)
    if errors or (warnings and rank >= 2) or (infos and rank >= 3):
        return "FAILURE"
    return "WARNING" if warnings else "SUCCESS"


def highest_severity(issues: Sequence[Issue]) -> str:
    """The FHIR severity of the worst issue; ``information`` when there is none."""
    ranks = [_SEVERITY_RANK.get(i.severity, 3) for i in issues]
    best = min(ranks, default=3)
    return next(k for k, v in _SEVERITY_RANK.items() if v == best)


def _sub(parent: etree._Element, name: str, text: object | None = None, ns: str = TR) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ns}}}{name}")
    if text is not None:
        element.text = safe(text)
    return element


def location(issue: Issue) -> str | None:
    if issue.line is not None:
        return f"{CONTENT_ITEM}:{issue.line}:{issue.col if issue.col is not None else 0}"
    return issue.expression or None


def description(issue: Issue) -> str:
    text = issue.message or issue.code
    mark = issue.suppressed
    if mark is not None:
        until = f"; until {mark.until}" if mark.until else ""
        text += f" (suppressed {mark.severity}; suppression {mark.entry}: {mark.reason}{until})"
    return text


def _item(reports: etree._Element, issue: Issue) -> None:
    bar = _sub(reports, _LEVEL.get(issue.severity, "info"))
    bar.set(f"{{{XSI}}}type", "tr:BAR")
    _sub(bar, "description", description(issue))
    where = location(issue)
    if where:
        _sub(bar, "location", where)
    if issue.expression:
        _sub(bar, "test", issue.expression)
    ident = issue.rule or issue.message_id
    if ident:
        _sub(bar, "assertionID", ident)
    if issue.code:
        _sub(bar, "type", issue.code)


def build_tar(ctx: TarContext) -> etree._Element:
    """The ``report`` element (unqualified, as ``ValidationResponse`` declares it)."""
    issues = sort_issues(ctx.issues)
    errors = sum(1 for i in issues if _LEVEL.get(i.severity) == "error")
    warnings = sum(1 for i in issues if _LEVEL.get(i.severity) == "warning")
    infos = len(issues) - errors - warnings

    report = etree.Element("report", nsmap={"tr": TR, "gitb": CORE, "xsi": XSI})
    report.set("name", "becare FHIR validation")
    _sub(report, "date", ctx.now.isoformat(timespec="milliseconds"))
    _sub(report, "result", result_of(errors, warnings, infos, ctx.fail_on))
    overview = _sub(report, "overview")
    if ctx.profile_id:
        _sub(overview, "profileID", ctx.profile_id)
    _sub(overview, "validationServiceName", "becare")
    _sub(overview, "validationServiceVersion", ctx.service_version)
    if ctx.note:
        _sub(overview, "note", ctx.note)
    counters = _sub(report, "counters")
    _sub(counters, "nrOfAssertions", infos)
    _sub(counters, "nrOfErrors", errors)
    _sub(counters, "nrOfWarnings", warnings)
    _context(report, ctx, errors, warnings, infos, highest_severity(issues))
    if issues:
        reports = _sub(report, "reports")
        for issue in issues:
            _item(reports, issue)
    return report


def _context(report: etree._Element, ctx: TarContext, errors: int, warnings: int, infos: int,
             severity: str) -> None:
    context = _sub(report, "context")
    context.set("type", "map")
    if ctx.content is not None:
        _text_item(context, CONTENT_ITEM, ctx.content, ctx.content_mime)
    if ctx.outcome is not None:
        _text_item(context, "operationOutcome", _json(ctx.outcome), "application/fhir+json")
    for name, count in (("errorCount", errors), ("warningCount", warnings), ("informationCount", infos)):
        _value_item(context, name, "number", str(count), display=False)
    _value_item(context, "severity", "string", severity, display=False)
    if ctx.provenance:
        _any_item(context, "provenance", ctx.provenance)


def _json(resource: Mapping[str, Any]) -> str:
    try:
        return json.dumps(resource, ensure_ascii=False, indent=2)
    except TypeError:  # decimals read from the input: written exactly by fhirio
        from adapter.fhirio import to_json

        return to_json(dict(resource), pretty=True)


def _value_item(parent: etree._Element, name: str | None, type_: str, value: str, *,
                display: bool = True) -> etree._Element:
    item = _sub(parent, "item", ns=CORE)
    if name is not None:
        item.set("name", safe(name))
    item.set("type", type_)
    item.set("embeddingMethod", "STRING")
    if not display:
        item.set("forDisplay", "false")
    _sub(item, "value", value, ns=CORE)
    return item


def _text_item(parent: etree._Element, name: str, text: str, mime: str | None) -> None:
    """A text the test bed shows and links locations into; BASE64 when XML cannot carry it as is."""
    if _NOT_XML.search(text):
        item = _sub(parent, "item", ns=CORE)
        item.set("name", name)
        item.set("type", "string")
        item.set("embeddingMethod", "BASE64")
        item.set("encoding", "UTF-8")
        _sub(item, "value", base64.b64encode(text.encode("utf-8", errors="replace")).decode("ascii"), ns=CORE)
    else:
        item = _value_item(parent, name, "string", text)
    if mime:
        item.set("mimeType", mime)


def _any_item(parent: etree._Element, name: str | None, value: Any) -> None:
    """Provenance (nested dicts, lists, scalars) as GITB map / list / typed values."""
    if value is None:
        return
    if isinstance(value, Mapping):
        item = _sub(parent, "item", ns=CORE)
        if name is not None:
            item.set("name", safe(name))
        item.set("type", "map")
        for key, sub in value.items():
            _any_item(item, str(key), sub)
    elif isinstance(value, list | tuple):
        item = _sub(parent, "item", ns=CORE)
        if name is not None:
            item.set("name", safe(name))
        item.set("type", "list")
        for sub in value:
            _any_item(item, None, sub)
    elif isinstance(value, bool):
        _value_item(parent, name, "boolean", "true" if value else "false")
    elif isinstance(value, int | float | Decimal):
        _value_item(parent, name, "number", str(value))
    else:
        _value_item(parent, name, "string", str(value))

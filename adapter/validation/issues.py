"""Validation issues and their OperationOutcome form.

Every checker (structure, terminology, invariants, profiles, bundle, rulebook) reports
``Issue`` values; only the edges turn them into an OperationOutcome, text or JUnit. Keeping
one plain value type lets the aspects stay pure and lets the outcome be sorted and
de-duplicated in one place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from adapter.validation.provenance import provenance_extensions

Severity = Literal["fatal", "error", "warning", "information"]

SEVERITY_ORDER: dict[str, int] = {"fatal": 0, "error": 1, "warning": 2, "information": 3}

BECARE_BASE = "https://becare.dev/fhir"
RULE_SYSTEM = f"{BECARE_BASE}/CodeSystem/rule"
MESSAGE_ID_URL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-message-id"
LINE_URL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-line"
COL_URL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-col"
SOURCE_URL = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-source"
RULEBOOK_VERSION_URL = f"{BECARE_BASE}/StructureDefinition/ext-rulebook-version"
# No HL7 extension marks a suppressed issue (the Java validator drops them): ours keeps the severity
# it had and why it was suppressed (docs/validation-notes.md, "Suppressions").
SUPPRESSED_URL = f"{BECARE_BASE}/StructureDefinition/ext-suppressed"


@dataclass(frozen=True, slots=True)
class Suppressed:
    """Why an issue reads ``information``: a suppression (adapter/validation/suppressions.py) matched
    it. Kept on the issue so that no output can show it without saying it was suppressed."""

    severity: str  # the severity it had before
    reason: str
    entry: int  # the suppression's number in its file (1-based)
    until: str | None = None  # ISO date after which the suppression stops applying


@dataclass(frozen=True, slots=True)
class Issue:
    """One finding.

    ``expression`` is a FHIRPath with indexes from the root of the validated input
    (``Bundle.entry[3].resource.participant[1].member``). ``rule`` is the rulebook id for
    interfederal rules (it becomes ``details.coding``) and ``message_id`` a stable id for
    engine messages (it becomes the ``operationoutcome-message-id`` extension).
    """

    severity: Severity
    code: str
    expression: str
    message: str
    source: str = "structure"
    rule: str | None = None
    message_id: str | None = None
    line: int | None = None
    col: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    suppressed: Suppressed | None = None

    @property
    def is_error(self) -> bool:
        return self.severity in ("fatal", "error")

    def at(self, line: int | None, col: int | None) -> Issue:
        return replace(self, line=line, col=col)


def has_errors(issues: Iterable[Issue]) -> bool:
    return any(i.is_error for i in issues)


def sort_issues(issues: Iterable[Issue]) -> list[Issue]:
    """Stable order: by location in the document, then severity; duplicates dropped."""
    seen: set[tuple[str, str, str, str | None]] = set()
    unique: list[Issue] = []
    for issue in issues:
        key = (issue.severity, issue.expression, issue.message, issue.rule)
        if key in seen:
            continue
        seen.add(key)
        unique.append(issue)
    return sorted(
        unique,
        key=lambda i: (
            i.line if i.line is not None else 1 << 30,
            i.col if i.col is not None else 0,
            SEVERITY_ORDER.get(i.severity, 9),
        ),
    )


def issue_to_fhir(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": issue.severity, "code": issue.code}
    ext: list[dict[str, Any]] = []
    if issue.line is not None:
        ext.append({"url": LINE_URL, "valueInteger": issue.line})
    if issue.col is not None:
        ext.append({"url": COL_URL, "valueInteger": issue.col})
    ext.append({"url": SOURCE_URL, "valueString": issue.source})
    if issue.message_id:
        ext.append({"url": MESSAGE_ID_URL, "valueString": issue.message_id})
    if issue.suppressed is not None:
        ext.append(suppressed_extension(issue.suppressed))
    out["extension"] = ext
    details: dict[str, Any] = {"text": issue.message}
    if issue.rule:
        details["coding"] = [{"system": RULE_SYSTEM, "code": issue.rule}]
    out["details"] = details
    if issue.line is not None:
        out["diagnostics"] = f"[{issue.line},{issue.col or 0}]"
    if issue.expression:
        out["expression"] = [issue.expression]
    return out


def suppressed_extension(mark: Suppressed) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "severity", "valueCode": mark.severity},
        {"url": "reason", "valueString": mark.reason},
        {"url": "entry", "valueInteger": mark.entry},
    ]
    if mark.until:
        parts.append({"url": "until", "valueDate": mark.until})
    return {"url": SUPPRESSED_URL, "extension": parts}


def operation_outcome(
    issues: Iterable[Issue],
    *,
    rulebook_version: str | None = None,
    id_: str | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the OperationOutcome. An empty list yields the conventional single
    ``information`` issue "All OK", because an OperationOutcome needs at least one issue.
    ``provenance`` (``Report.provenance``) becomes OperationOutcome extensions (provenance.py)."""
    ordered = sort_issues(issues)
    oo: dict[str, Any] = {"resourceType": "OperationOutcome"}
    if id_:
        oo["id"] = id_
    if rulebook_version:
        oo["meta"] = {"tag": [{"system": RULEBOOK_VERSION_URL, "code": rulebook_version}]}
    extensions = provenance_extensions(provenance) if provenance else []
    if extensions:
        oo["extension"] = extensions
    if ordered:
        oo["issue"] = [issue_to_fhir(i) for i in ordered]
    else:
        oo["issue"] = [{"severity": "information", "code": "informational", "details": {"text": "All OK"}}]
    return oo

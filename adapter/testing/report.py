"""Which issues fail a check, and how they read in a test failure.

A failure message is what a vendor's developer sees in CI, often without the bundle at hand, so
each issue carries everything needed to find it: severity, rule id (or the aspect that raised
it), FHIRPath, line:col and the message.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from adapter.validation.api import Report
    from adapter.validation.issues import Issue

FailOn = Literal["error", "warning", "information"]
_RANK = {"fatal": 0, "error": 1, "warning": 2, "information": 3}


def tolerated(issue: Issue, allow: Iterable[str]) -> bool:
    """An issue is tolerated when ``allow`` names its rule id, its issue code or its message id."""
    names = {issue.rule, issue.code, issue.message_id}
    return any(a in names for a in allow)


def failing(issues: Iterable[Issue], *, allow: Sequence[str] = (), fail_on: FailOn = "error") -> list[Issue]:
    limit = _RANK[fail_on]
    # a suppressed issue (--becare-suppress) is accepted, whatever ``fail_on`` asks for
    return [
        i
        for i in issues
        if _RANK.get(i.severity, 9) <= limit and not tolerated(i, allow) and i.suppressed is None
    ]


def kind(issue: Issue) -> str:
    """The rule id for rulebook issues, else the aspect (structure, terminology, ...) and code."""
    if issue.rule:
        return issue.rule
    return f"{issue.source}/{issue.code}"


def location(issue: Issue) -> str:
    where = issue.expression or "(document)"
    if issue.line is not None:
        return f"{where} @ {issue.line}:{issue.col or 0}"
    return where


def format_issue(issue: Issue) -> str:
    return f"{issue.severity} [{kind(issue)}] at {location(issue)}: {issue.message}"


def format_failure(label: str, report: Report, bad: list[Issue], *, fail_on: FailOn) -> str:
    from adapter.validation.issues import sort_issues

    context = [f"region {report.region or 'not determined'}"]
    if report.rulebook_version:
        context.append(f"rulebook {report.rulebook_version}")
    worst = "error or fatal" if fail_on == "error" else f"{fail_on} or worse"
    lines = [f"{label} is not valid ({', '.join(context)}): {len(bad)} {worst} issue(s)"]
    lines += [f"  - {format_issue(i)}" for i in sort_issues(bad)]
    rest = Counter(i.severity for i in report.issues if i not in bad)
    if rest:
        summary = ", ".join(f"{n} {sev}" for sev, n in sorted(rest.items(), key=lambda kv: _RANK[kv[0]]))
        lines.append(f"  (not failing: {summary})")
    return "\n".join(lines)

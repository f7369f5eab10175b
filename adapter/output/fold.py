"""Order issues for people and fold the repeated ones.

A bundle without narrative gets one ``dom-6`` warning per resource: listed in document order,
a few real errors end up below dozens of identical lines. People read the worst first, and read
a repeated finding once, with where it happens. So: severity first (fatal, error, warning,
information), document order within a severity, and issues that differ only by their location
folded into one :class:`Fold`.

Two issues fold only when their severity, code, rule (or engine message id), message text *and*
suppression (none, or the same suppression entry) are all equal. The text must match because
messages quote the offending value ("the code 'x' is not in ...") and folding two of those would
hide one of the values; when the text is equal, the location is the only thing the second issue
adds, and the fold keeps every location.

Machine formats (json, junit, the OperationOutcome the service returns) keep one issue per
finding: this is presentation only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from adapter.validation.issues import SEVERITY_ORDER, Issue, Suppressed, sort_issues

FoldKey = tuple[str, str, str | None, str, Suppressed | None]


@dataclass(frozen=True)
class Fold:
    """One finding and every place it was made, in document order (never empty)."""

    issues: tuple[Issue, ...]

    @property
    def first(self) -> Issue:
        return self.issues[0]

    @property
    def count(self) -> int:
        return len(self.issues)


def fold_key(issue: Issue) -> FoldKey:
    """What must be equal for two issues to be the same finding at different places."""
    return (issue.severity, issue.code, issue.rule or issue.message_id, issue.message, issue.suppressed)


def order_and_fold(issues: Iterable[Issue]) -> list[Fold]:
    """Severity first, then document order; identical findings folded at their first place."""
    ordered = sorted(sort_issues(issues), key=lambda i: SEVERITY_ORDER.get(i.severity, 9))  # stable
    folds: dict[FoldKey, list[Issue]] = {}
    for issue in ordered:
        folds.setdefault(fold_key(issue), []).append(issue)
    return [Fold(tuple(group)) for group in folds.values()]

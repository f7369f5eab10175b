"""Suppressions: known issues a CI pipeline accepts for now, with a reason and an end date.

A suppression file is a YAML list; each entry names an issue by its rule id or message id, may
narrow it to locations, and must say why::

    - id: IC-TEAM-2                      # rule id (IC-...) or engine message id (dom-6, ...)
      expression: "Bundle.entry[*].resource"   # optional; see below
      reason: "vendor ticket 1234: second discipline added in release 5"
      until: 2025-12-31                  # optional; the last day it applies

``expression`` is a glob over the issue's FHIRPath (with indexes), matched against the whole
path: ``*`` stands for any run of characters (dots and brackets included) and every other character
is literal, so ``Bundle.entry[3].resource`` is written as it reads and ``Bundle.entry[*].resource.*``
covers everything inside any entry. A glob, not a regular expression, because FHIRPath is made of
the characters a regex treats as special (``.``, ``[``, ``(``); without ``expression`` the entry
applies at every location.

A matched issue is not removed: it becomes ``information`` and carries an ``Issue.suppressed``
mark with its former severity and the reason, rendered in every output. Exit codes and verdicts
follow the new severities. Never suppressed: ``fatal`` issues and ``exception`` issues (a check
that could not run means the input was not checked, docs/architecture.md "Fail closed").

``until`` is the last day an entry applies (compared with the validation date: ``--today``, else
today). After it the entry stops applying, and a report it would have changed gets one warning
naming it, so the issue comes back with an explanation instead of silently.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from adapter.validation.issues import Issue, Suppressed

EXPIRED_ID = "becare-suppression-expired"
_KEYS = ("id", "expression", "reason", "until")
_UNSUPPRESSIBLE_CODES = frozenset({"exception"})


class SuppressionError(ValueError):
    """A suppression file that cannot be used: the message names the file and the entry."""


@dataclass(frozen=True)
class Suppression:
    """One entry of a suppression file."""

    id: str
    reason: str
    entry: int  # 1-based position in the file, for messages
    expression: str | None = None
    until: dt.date | None = None
    pattern: re.Pattern[str] | None = None  # compiled ``expression``

    def matches(self, issue: Issue) -> bool:
        if self.id not in (issue.rule, issue.message_id):
            return False
        if self.pattern is None:
            return True
        return self.pattern.fullmatch(issue.expression or "") is not None

    def expired(self, today: dt.date) -> bool:
        return self.until is not None and today > self.until

    def describe(self) -> str:
        where = f" at {self.expression}" if self.expression else ""
        return f"suppression {self.entry} ({self.id}{where}: {self.reason})"


def glob_pattern(expression: str) -> re.Pattern[str]:
    """``*`` is any run of characters; everything else literal."""
    return re.compile(".*".join(re.escape(part) for part in expression.split("*")), re.DOTALL)


# -- reading ------------------------------------------------------------------------------------
def parse_suppressions(data: Any, source: str = "suppressions") -> tuple[Suppression, ...]:
    """Check a parsed YAML document and build the suppressions; ``SuppressionError`` names the
    file and the entry (1-based) of the first problem."""
    if data is None:
        return ()
    if not isinstance(data, list):
        raise SuppressionError(f"{source}: expected a YAML list of suppressions (- id: ..., reason: ...)")
    out: list[Suppression] = []
    for number, raw in enumerate(data, start=1):
        out.append(_entry(raw, number, source))
    return tuple(out)


def _entry(raw: Any, number: int, source: str) -> Suppression:
    where = f"{source}: entry {number}"
    if not isinstance(raw, dict):
        raise SuppressionError(f"{where}: expected a mapping (id, reason, and optionally expression, until)")
    unknown = [str(k) for k in raw if k not in _KEYS]
    if unknown:
        raise SuppressionError(f"{where}: unknown key '{unknown[0]}' (expected some of: {', '.join(_KEYS)})")
    ident = raw.get("id")
    if not isinstance(ident, str) or not ident.strip():
        raise SuppressionError(f"{where}: 'id' is required: the rule id (IC-...) or message id to suppress")
    reason = raw.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise SuppressionError(f"{where}: 'reason' is required: say why this issue is accepted")
    expression = raw.get("expression")
    if expression is not None and (not isinstance(expression, str) or not expression.strip()):
        raise SuppressionError(f"{where}: 'expression' must be a non-empty FHIRPath glob, or left out")
    return Suppression(
        id=ident.strip(),
        reason=reason.strip(),
        entry=number,
        expression=expression.strip() if expression else None,
        until=_until(raw.get("until"), where),
        pattern=glob_pattern(expression.strip()) if expression else None,
    )


def _until(value: Any, where: str) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):  # YAML reads 2025-12-31T10:00 as a timestamp
        raise SuppressionError(f"{where}: 'until' must be a date YYYY-MM-DD, not a date and time")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise SuppressionError(f"{where}: 'until' must be a date YYYY-MM-DD, not {value!r}")


def load_suppressions(path: str | Path) -> tuple[Suppression, ...]:
    """Read and check a suppression file (the only I/O of this module)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SuppressionError(f"{name}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SuppressionError(f"{name}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise SuppressionError(f"{name}: not valid YAML{at}") from None
    return parse_suppressions(data, name)


def expired(suppressions: Iterable[Suppression], today: dt.date) -> list[Suppression]:
    return [s for s in suppressions if s.expired(today)]


# -- applying -----------------------------------------------------------------------------------
def _suppressible(issue: Issue) -> bool:
    return (
        issue.suppressed is None
        and issue.severity != "fatal"
        and issue.code not in _UNSUPPRESSIBLE_CODES
        and (issue.rule is not None or issue.message_id is not None)
    )


def apply_suppressions(
    issues: Sequence[Issue], suppressions: Sequence[Suppression], today: dt.date
) -> list[Issue]:
    """The issues with suppressed ones downgraded to ``information`` and marked, plus one warning
    per expired suppression that would have matched one of them. Pure; order kept."""
    if not suppressions:
        return list(issues)
    active = [s for s in suppressions if not s.expired(today)]
    lapsed = [s for s in suppressions if s.expired(today)]
    out: list[Issue] = []
    hits: dict[int, int] = {}
    for issue in issues:
        if not _suppressible(issue):
            out.append(issue)
            continue
        rule = next((s for s in active if s.matches(issue)), None)
        if rule is None:
            for s in lapsed:
                if s.matches(issue):
                    hits[s.entry] = hits.get(s.entry, 0) + 1
            out.append(issue)
            continue
        mark = Suppressed(
            severity=issue.severity,
            reason=rule.reason,
            entry=rule.entry,
            until=rule.until.isoformat() if rule.until else None,
        )
        out.append(replace(issue, severity="information", suppressed=mark))
    for s in lapsed:
        if s.entry in hits:
            out.append(_expired_warning(s, hits[s.entry]))
    return out


def _expired_warning(suppression: Suppression, count: int) -> Issue:
    assert suppression.until is not None
    return Issue(
        "warning",
        "processing",
        "",
        f"The {suppression.describe()} expired on {suppression.until.isoformat()} and no longer applies: "
        f"{count} issue(s) it matched keep their own severity",
        source="suppressions",
        message_id=EXPIRED_ID,
    )

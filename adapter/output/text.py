"""Pieces of the ``text`` output of ``becare validate`` for people at a terminal.

``render_text`` (render.py) writes the header of each input; this module writes what follows it:
a folded finding (one line with the count, its message, then its locations, capped so that 400
missing narratives do not scroll the two errors off the screen) and the provenance lines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from adapter.output.fold import Fold
from adapter.validation.issues import Issue

MAX_LOCATIONS = 10  # locations listed under a folded finding; the rest are counted
_INDENT = " " * 14  # under the message column of an issue line


def _position(issue: Issue) -> str:
    return f"[{issue.line}:{issue.col}] " if issue.line is not None else ""


def fold_lines(fold: Fold, single: Callable[[Issue], str], severity: Callable[[str], str]) -> str:
    """A finding seen once is ``single(issue)`` (its usual lines). One seen N times:
    ``  WARNING     25 times [rule]``, then what ``single`` writes below its first line (the
    message, a suppression note), then up to ``MAX_LOCATIONS`` ``[line:col] path`` and
    ``and K more``. ``severity`` formats the (coloured, padded) severity column."""
    if fold.count == 1:
        return single(fold.first)
    first = fold.first
    rule = f" [{first.rule}]" if first.rule else ""
    below = single(first).split("\n", 1)[1:]  # everything but the line that says where
    lines = [f"  {severity(first.severity)} {fold.count} times{rule}", *below]
    for issue in fold.issues[:MAX_LOCATIONS]:
        lines.append(f"{_INDENT}  {_position(issue)}{issue.expression or '(document)'}")
    if fold.count > MAX_LOCATIONS:
        lines.append(f"{_INDENT}  and {fold.count - MAX_LOCATIONS} more")
    return "\n".join(lines)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def provenance_lines(provenance: Mapping[str, Any]) -> list[str]:
    """What judged the report, in one line, plus one line per profile canonical that was applied
    in place of the one declared (a legacy eHealth canonical, a version not loaded): the reader
    must know which profile the verdict is about. Whatever is missing is left out."""
    parts: list[str] = []
    validator = provenance.get("validator")
    if isinstance(validator, Mapping) and _text(validator.get("name")):
        parts.append(f"{validator['name']} {_text(validator.get('version'))}".strip())
    packages = provenance.get("packages")
    if isinstance(packages, list):
        names = [
            f"{_text(p.get('id'))}#{_text(p.get('version'))}".rstrip("#")
            for p in packages
            if isinstance(p, Mapping) and _text(p.get("id"))
        ]
        if names:
            parts.append("packages " + ", ".join(names))
    if _text(provenance.get("date")):
        parts.append(f"date {provenance['date']}")
    duration = provenance.get("duration_ms")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        parts.append(f"{duration:.0f} ms")
    lines = [f"  validated by {'; '.join(parts)}"] if parts else []
    canonicals = provenance.get("canonicals")
    for item in canonicals if isinstance(canonicals, list) else []:
        if not isinstance(item, Mapping):
            continue
        declared, applied = _text(item.get("declared")), _text(item.get("applied"))
        if declared and applied and declared != applied:
            at = f" at {item['at']}" if _text(item.get("at")) else ""
            lines.append(f"  profile {declared} declared, {applied} applied{at}")
    return lines

"""Reading the FHIRPath-with-indexes expressions that issues carry.

Only the navigational subset matters for locating an issue in the source text:
``Bundle.entry[3].resource.participant[1].member``, ``Patient.name[0].given[1]``,
``Patient.birthDate.extension[0]`` (a primitive's extension, ``_birthDate`` in JSON) and the
harmless functions ``ofType(X)``, ``as(X)``, ``first()``. Anything else ends the walk and the
caller reports the deepest element found so far.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_STEP = re.compile(r"^\s*([A-Za-z_$][\w$]*|`[^`]+`)\s*(\((.*)\))?\s*((?:\[\s*\d+\s*\])*)\s*$", re.S)
_INDEX = re.compile(r"\[\s*(\d+)\s*\]")


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    index: int | None = None
    function: bool = False
    argument: str | None = None


def _split(expression: str) -> list[str]:
    """Split on dots outside parentheses, brackets and quotes."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    start = 0
    for i, ch in enumerate(expression):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'`":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "." and depth == 0:
            parts.append(expression[start:i])
            start = i + 1
    parts.append(expression[start:])
    return parts


def parse_path(expression: str) -> list[Step] | None:
    """Steps of ``expression``; None when it is not a navigational path at all."""
    steps: list[Step] = []
    for part in _split(expression.strip()):
        m = _STEP.match(part)
        if not m:
            return steps or None
        name = m.group(1).strip("`")
        indexes = [int(i) for i in _INDEX.findall(m.group(4) or "")]
        index = indexes[-1] if indexes else None
        if m.group(2) is not None:
            steps.append(Step(name, index, function=True, argument=(m.group(3) or "").strip()))
        else:
            steps.append(Step(name, index))
    return steps

"""The answer of a terminology check.

Three states, because offline we often cannot know: SNOMED CT, LOINC or a fragment code system
are not on disk, and calling such a code invalid would reject correct data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["valid", "invalid", "unknown"]


@dataclass(frozen=True, slots=True)
class CodeResult:
    """``message`` explains an invalid or unknown result, or carries a warning (wrong display,
    different case) on a valid one."""

    status: Status
    message: str | None = None

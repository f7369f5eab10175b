"""Turn what a test holds (a dict, JSON or XML text, bytes, a file path) into validator input.

Tests rarely hold the exact shape the validator wants, and a helper that demands one shape
pushes conversion code (and its bugs) into every vendor's suite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Subject = dict[str, Any] | str | bytes | os.PathLike[str]

_CONTENT_TYPES = {".json": "application/fhir+json", ".xml": "application/fhir+xml"}


@dataclass(frozen=True)
class Input:
    """A resource (``resource``) or raw content (``data``), plus a label for messages."""

    label: str
    resource: dict[str, Any] | None = None
    data: bytes | None = None
    content_type: str | None = None


def load(subject: Subject) -> Input:
    """A ``str`` that starts with ``{`` or ``<`` is content; any other ``str`` is a path.

    Raises ``TypeError`` for anything else and ``OSError`` when a path cannot be read, so a
    mistake in the test itself is not reported as a validation failure of the bundle.
    """
    if isinstance(subject, dict):
        rtype = subject.get("resourceType")
        return Input(label=f"{rtype if isinstance(rtype, str) else 'resource'} (dict)", resource=subject)
    if isinstance(subject, bytes | bytearray):
        return Input(label="content (bytes)", data=bytes(subject))
    if isinstance(subject, str) and subject.lstrip()[:1] in ("{", "<"):
        return Input(label="content (text)", data=subject.encode("utf-8"))
    if isinstance(subject, str | os.PathLike):
        path = Path(subject)
        return Input(
            label=_short(path),
            data=path.read_bytes(),
            content_type=_CONTENT_TYPES.get(path.suffix.lower()),
        )
    raise TypeError(
        f"cannot validate a {type(subject).__name__}: give a dict, JSON or XML text, bytes or a path"
    )


def _short(path: Path) -> str:
    """The path as the user would type it: relative to the working folder when under it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError):
        return str(path)

"""Fatal parse errors and the cost limits that bound what the parser accepts.

A ``ParseError`` means there is no resource to validate at all; everything the parser can
recover from is an ``Issue`` on the ``Document`` instead. The limits exist because the
service parses untrusted input: a request must not be able to buy unbounded memory or
recursion with a few kilobytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ParseErrorCode = Literal["structure", "invalid", "too-costly", "security"]


class ParseError(Exception):
    """The input cannot be read as a FHIR resource.

    ``code`` is the OperationOutcome issue type to report: ``invalid`` (not well-formed JSON
    or XML), ``structure`` (well-formed, but not a FHIR resource), ``too-costly`` (over a
    limit), ``security`` (a DOCTYPE / entity declaration).
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        col: int | None = None,
        code: ParseErrorCode = "invalid",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.col = col
        self.code: ParseErrorCode = code

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.message} (line {self.line}, col {self.col or 0})"
        return self.message


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds on the input: ``max_bytes`` of raw input (characters for ``str``) and
    ``max_depth`` nested JSON objects/arrays or XML elements.

    ``max_bytes=None`` is no size limit: for a file on disk, which the user chose to validate,
    the limit is memory (``becare validate``; ``--max-size`` sets one). What arrives over the
    network keeps a bound. The depth limit stays for every input: legitimate FHIR nests a few
    dozen levels at most, whatever its size, and the walk of a deeper tree would recurse past
    what the interpreter allows."""

    max_bytes: int | None = 10 * 1024 * 1024
    max_depth: int = 100


DEFAULT_LIMITS = Limits()
FILE_LIMITS = Limits(max_bytes=None)  # a file on disk: no size limit (the depth limit stays)

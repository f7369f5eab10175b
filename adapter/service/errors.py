"""Errors the service answers with: always an OperationOutcome, never a traceback.

Handlers raise ``ServiceError`` with a message key; the app's exception handlers render it in the
caller's language and format, so no code path can leak an exception text to a client.
"""

from __future__ import annotations

from typing import Any

from adapter.service.messages import message
from adapter.validation.issues import Issue, operation_outcome


class ServiceError(Exception):
    """A request that cannot be served, with its HTTP status and FHIR issue type."""

    def __init__(
        self,
        status: int,
        key: str,
        *,
        code: str = "invalid",
        severity: str = "error",
        headers: dict[str, str] | None = None,
        **values: object,
    ) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.code = code
        self.severity = severity
        self.headers = headers or {}
        self.values = values

    def outcome(self, lang: str) -> dict[str, Any]:
        return error_outcome(message(self.key, lang, **self.values), code=self.code, severity=self.severity)


def error_outcome(text: str, *, code: str = "invalid", severity: str = "error",
                  line: int | None = None, col: int | None = None) -> dict[str, Any]:
    """A one-issue OperationOutcome in the same shape as validation outcomes."""
    issue = Issue(severity=severity, code=code, expression="", message=text, source="service",  # type: ignore[arg-type]
                  line=line, col=col)
    return operation_outcome([issue])


def parse_error_status(code: str | None) -> int:
    """HTTP status for an ``adapter.fhirio.ParseError`` code: resource limits are 413, the rest 400."""
    return 413 if code == "too-costly" else 400

"""The validation step the endpoints share: read the body, validate off the event loop, audit.

Handlers stay thin: they call ``validate`` and render its report; anything that cannot be a
report (unparseable input, a check that could not run) leaves as ``Rendered`` or ``ServiceError``,
which the app's exception handlers turn into an OperationOutcome.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from adapter.fhirio.errors import ParseError
from adapter.service.deps import Call, read_body
from adapter.service.errors import ServiceError, error_outcome, parse_error_status
from adapter.service.messages import message
from adapter.service.state import ServiceState

log = logging.getLogger("becare.service")

BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": {"type": "object"}},
            "application/fhir+xml": {"schema": {"type": "string"}},
        },
    }
}


class Rendered(Exception):
    """An OperationOutcome already built (parse failures, mapping problems) with its status."""

    def __init__(self, outcome: dict[str, Any], status: int) -> None:
        super().__init__(status)
        self.outcome = outcome
        self.status = status


def unwrap_parameters(resource: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """(resource, profiles) from a ``$validate`` Parameters, or None if it is not that form."""
    params = resource.get("parameter")
    if not isinstance(params, list):
        return None
    inner: dict[str, Any] | None = None
    profiles: list[str] = []
    for p in params:
        if not isinstance(p, dict):
            continue
        if p.get("name") == "resource" and isinstance(p.get("resource"), dict):
            inner = p["resource"]
        elif p.get("name") == "profile":
            for key in ("valueUri", "valueCanonical", "valueString", "valueUrl"):
                if isinstance(p.get(key), str):
                    profiles.append(p[key])
    if inner is None:
        if profiles:
            raise ServiceError(400, "bad-parameters", code="required")
        return None
    return inner, tuple(profiles)


def what(resource: dict[str, Any] | None) -> str | None:
    """An audit 'what' that names the content without personal data."""
    if not isinstance(resource, dict):
        return None
    rtype = str(resource.get("resourceType", "?"))
    ident = resource.get("identifier")
    if rtype == "Bundle" and isinstance(ident, dict) and isinstance(ident.get("value"), str):
        return f"Bundle?identifier={ident.get('system', '')}|{ident['value']}"
    if isinstance(resource.get("id"), str):
        return f"{rtype}/{resource['id']}"
    return rtype


def options(state: ServiceState, call: Call, with_registry: bool) -> Any:
    from adapter.validation.api import ValidationOptions

    return ValidationOptions(
        region=call.region, lang=call.neg.lang,
        registry=state.registry if with_registry else None, today=call.today,
        suppressions=state.config.suppressions,
    )


def validator(state: ServiceState) -> Any:
    """The validator, waiting (up to the request timeout) for the warm-up to build it."""
    if state.validator is None:
        if state.warm_error:
            raise ServiceError(503, "unavailable", code="transient", value="validator failed to load")
        state.warm.wait(timeout=max(state.config.request_timeout, 1))
        if state.validator is None:
            raise ServiceError(503, "unavailable", code="transient", value="validator loading")
    return state.validator


def validate_sync(
    state: ServiceState, data: bytes, content_type: str | None, opts: Any, unwrap: bool
) -> Any:
    checker = validator(state)
    report = checker.validate_bytes(data, content_type, opts)
    resource = report.resource
    if unwrap and isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        unwrapped = unwrap_parameters(resource)
        if unwrapped is not None:
            inner, profiles = unwrapped
            report = checker.validate(inner, replace(opts, profiles=opts.profiles + profiles))
            if report.resource is None:
                report.resource = inner
    return report


async def validate(state: ServiceState, request: Request, call: Call, *, unwrap: bool,
                   with_registry: bool) -> Any:
    """Read the body (413 past the limit), validate it in a worker thread, count and audit."""
    data = await read_body(request, state.config.max_body_bytes)
    opts = options(state, call, with_registry)
    content_type = request.headers.get("content-type")
    try:
        report = await run_in_threadpool(validate_sync, state, data, content_type, opts, unwrap)
    except ParseError as exc:
        state.metrics.validations.labels("unparseable").inc()
        state.audit.record("validate", who=call.principal.id, what=None, outcome="failure",
                           detail=f"unparseable ({exc.code})")
        key = "too-costly" if exc.code == "too-costly" else "unparseable"
        text = message(key, call.neg.lang, detail=exc.message)
        outcome = error_outcome(text, code=exc.code or "invalid", severity="fatal",
                                line=exc.line, col=exc.col)
        raise Rendered(outcome, parse_error_status(exc.code)) from None
    record_verdict(state, call, report.resource, valid=not report.has_errors)
    return report


def record_verdict(state: ServiceState, call: Call, resource: Any, *, valid: bool, via: str = "") -> None:
    """Count and audit one validation that ran to its verdict (``via``: the interface, if not FHIR)."""
    verdict = "valid" if valid else "invalid"
    state.metrics.validations.labels(verdict).inc()
    state.audit.record("validate", who=call.principal.id, what=what(resource),
                       outcome="success" if valid else "rejected",
                       detail=f"{verdict} ({via})" if via else verdict)


def internal_failure(state: ServiceState, report: Any, call: Call, subject: str | None) -> None:
    """A check becare could not run (a rule or an invariant that raised) means the input was
    not checked: POST /fhir answers 500 with a reference id, never 202 (nor 422: the data
    may be fine). $validate shows the ``exception`` issue instead."""
    failed = [i for i in report.issues if i.is_error and i.code == "exception"]
    if not failed:
        return
    ref = uuid.uuid4().hex[:12]
    log.error("internal validation failure, reference %s: %s", ref,
              "; ".join(f"{i.rule or i.message_id}: {i.message[:300]}" for i in failed))
    state.audit.record("accept", who=call.principal.id, what=subject, outcome="failure",
                       detail=f"internal error, reference {ref}", sync=True)
    raise ServiceError(500, "internal", code="exception", value=ref)

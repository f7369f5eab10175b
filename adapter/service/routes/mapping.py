"""``POST /fhir/$map``: a care situation document (JSON or YAML) to a becare transaction Bundle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapter.service import core
from adapter.service import negotiation as neg
from adapter.service.deps import MapCall, read_body
from adapter.service.errors import ServiceError
from adapter.service.rendering import render
from adapter.service.state import AppState, ServiceState
from adapter.validation.issues import Issue, operation_outcome

router = APIRouter(tags=["mapping"])


@router.post("/fhir/$map", response_class=Response,
             summary="Map a care situation document (JSON or YAML) to a becare transaction Bundle")
async def map_endpoint(request: Request, call: MapCall, state: AppState) -> Response:
    data = await read_body(request, state.config.max_body_bytes)
    ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    fmt = "yaml" if "yaml" in ctype else "json"
    bundle = await run_in_threadpool(_map_sync, state, data, fmt)
    out_fmt = neg.response_format(request.query_params.get("_format"), request.headers.get("accept"))
    return render(bundle, out_fmt, 200)


def _map_sync(state: ServiceState, data: bytes, fmt: str) -> dict[str, Any]:
    mapper = state.mapper or default_mapper()
    try:
        return mapper(data, fmt)
    except ServiceError:
        raise
    except Exception as exc:
        problems = getattr(exc, "problems", None)
        if problems is None:
            raise
        issues = [Issue(severity="error", code="invalid", expression=str(getattr(p, "pointer", "")),
                        message=str(getattr(p, "message", p)), source="mapping") for p in problems]
        raise core.Rendered(operation_outcome(issues), 422) from None


def default_mapper() -> Callable[[bytes, str | None], dict[str, Any]]:
    try:
        from adapter.mapping.document import load_document
        from adapter.mapping.forward import to_bundle
    except ImportError:
        raise ServiceError(503, "unavailable", code="not-supported", value="no mapping module") from None

    def mapper(data: bytes, fmt: str | None) -> dict[str, Any]:
        return to_bundle(load_document(data, fmt))

    return mapper

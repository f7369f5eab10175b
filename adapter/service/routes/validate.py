"""``POST /fhir/$validate`` (and ``/fhir/Bundle/$validate``): 200 and an OperationOutcome."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from adapter.service import core
from adapter.service.deps import ValidateCall
from adapter.service.rendering import render
from adapter.service.state import AppState

router = APIRouter(tags=["validation"])


async def validate_endpoint(request: Request, call: ValidateCall, state: AppState) -> Response:
    report = await core.validate(state, request, call, unwrap=True, with_registry=True)
    return render(report.outcome(), call.neg.response_format, 200)


for _path in ("/fhir/$validate", "/fhir/Bundle/$validate"):
    router.add_api_route(
        _path, validate_endpoint, methods=["POST"], openapi_extra=core.BODY_DOC, response_class=Response,
        summary="Validate a resource (or a Parameters with resource and profile): 200 + OperationOutcome",
    )

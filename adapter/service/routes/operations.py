"""Discovery and operations: ``/fhir/metadata``, ``/healthz``, ``/readyz``, ``/metrics``.

None of them needs credentials; ``/healthz``, ``/readyz`` and ``/metrics`` are also outside the
request timeout (see ``GuardMiddleware``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from adapter.service import negotiation as neg
from adapter.service.capability import capability_statement
from adapter.service.errors import ServiceError
from adapter.service.metrics import CONTENT_TYPE as METRICS_TYPE
from adapter.service.rendering import negotiate_scope, render
from adapter.service.state import AppState

discovery = APIRouter(tags=["discovery"])
router = APIRouter(tags=["operations"])


@discovery.get("/fhir/metadata", response_class=Response)
async def metadata(request: Request) -> Response:
    fmt, _lang = negotiate_scope(request.scope)
    if request.query_params.get("_format"):
        try:
            fmt = neg.response_format(request.query_params["_format"], None)
        except neg.BadFormatParameter:
            raise ServiceError(400, "bad-format", code="not-supported",
                               value=request.query_params["_format"]) from None
    base = str(request.base_url).rstrip("/") + "/fhir"
    today = datetime.now(UTC).date().isoformat()
    return render(capability_statement(base, today), fmt)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(state: AppState) -> JSONResponse:
    db_ok = True
    if state.outbox is not None and hasattr(state.outbox, "ping"):
        db_ok = bool(await run_in_threadpool(state.outbox.ping))
    warm = state.warm.is_set()
    checks = {"database": "ok" if db_ok else "unreachable",
              "validator": "ok" if warm else ("failed" if state.warm_error else "loading")}
    ready = db_ok and warm
    return JSONResponse({"status": "ready" if ready else "not-ready", "checks": checks},
                        status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(state: AppState) -> Response:
    body = await run_in_threadpool(state.metrics.render)
    return Response(body, media_type=METRICS_TYPE)

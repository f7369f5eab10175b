"""``GET /audit``: the audit trail as a FHIR Bundle of AuditEvent (needs the ``audit`` scope)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapter.service.deps import AuditCall
from adapter.service.errors import ServiceError
from adapter.service.rendering import render
from adapter.service.state import AppState

router = APIRouter(tags=["audit"])


@router.get("/audit", response_class=Response,
            summary="The audit trail as a FHIR Bundle of AuditEvent (needs the 'audit' scope)")
async def audit(call: AuditCall, state: AppState, since: str | None = None, _count: int = 1000) -> Response:
    since_ts = None
    if since:
        try:
            since_ts = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise ServiceError(400, "bad-request", value="since: not an ISO date or dateTime") from None
    count = max(1, min(_count, 10_000))
    bundle = await run_in_threadpool(state.audit.bundle, count, since_ts)
    return render(bundle, call.neg.response_format)

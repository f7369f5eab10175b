"""``GET /deliveries/{id}``: where an accepted bundle is on its way to its destinations."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from adapter.service.deps import ReadCall
from adapter.service.errors import ServiceError
from adapter.service.state import AppState

router = APIRouter(tags=["forwarding"])


@router.get("/deliveries/{delivery_id}")
async def delivery_status(delivery_id: str, call: ReadCall, state: AppState) -> Response:
    if state.outbox is None:
        raise ServiceError(404, "not-found", code="not-found", value=f"/deliveries/{delivery_id[:64]}")
    delivery = await run_in_threadpool(state.outbox.get, delivery_id)
    if delivery is None:
        raise ServiceError(404, "not-found", code="not-found", value=f"/deliveries/{delivery_id[:64]}")
    return JSONResponse(delivery.to_json())

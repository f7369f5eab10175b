"""``POST /fhir`` (and ``/fhir/Bundle``): validate, then accept a Bundle for forwarding.

422 with the issues when it has errors; otherwise its episode roles are claimed in the registry,
it is stored in the outbox with its route, and the answer is 202 with ``Location``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from adapter.service import core
from adapter.service.deps import Call, SubmitCall
from adapter.service.errors import ServiceError
from adapter.service.messages import message
from adapter.service.rendering import render
from adapter.service.state import AppState, ServiceState
from adapter.validation.issues import Issue, operation_outcome

router = APIRouter(tags=["forwarding"])


async def accept_endpoint(request: Request, call: SubmitCall, state: AppState) -> Response:
    if state.outbox is None:
        raise ServiceError(503, "unavailable", code="not-supported", value="forwarding is not configured")
    report = await core.validate(state, request, call, unwrap=False, with_registry=True)
    resource = report.resource
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if rtype != "Bundle":
        raise ServiceError(400, "not-a-bundle", code="not-supported", value=str(rtype)[:60])
    core.internal_failure(state, report, call, core.what(resource))
    if not report.has_errors:
        # claim the person's coordinator / case-manager roles atomically: a concurrent
        # submission may have taken one since this bundle was validated
        report = await run_in_threadpool(_claim, state, resource, call) or report
        core.internal_failure(state, report, call, core.what(resource))
    if report.has_errors:
        state.audit.record("accept", who=call.principal.id, what=core.what(resource), outcome="rejected",
                           detail="validation errors", sync=True)
        notice = Issue(severity="error", code="processing", expression="", source="service",
                       message=message("not-accepted", call.neg.lang))
        rejected = operation_outcome([*report.issues, notice], rulebook_version=report.rulebook_version,
                                     provenance=report.provenance)
        return render(rejected, call.neg.response_format, 422)
    key = request.headers.get("idempotency-key") or None
    destination = request.query_params.get("destination") or None
    delivery = await run_in_threadpool(_enqueue, state, resource, key, call, destination)
    state.metrics.accepted.inc()
    notice = Issue(severity="information", code="informational", expression="", source="service",
                   message=message("accepted", call.neg.lang, value=delivery.id),
                   message_id="becare-accepted")
    body = operation_outcome([*report.issues, notice], rulebook_version=report.rulebook_version,
                             provenance=report.provenance)
    for issue in body["issue"]:
        if any(e.get("valueString") == "becare-accepted" for e in issue.get("extension", ())):
            issue["diagnostics"] = delivery.id
    location = f"/deliveries/{delivery.id}"
    return render(body, call.neg.response_format, 202,
                  {"Location": location, "Content-Location": location, "X-Delivery-Id": delivery.id})


for _path in ("/fhir", "/fhir/Bundle"):
    router.add_api_route(
        _path, accept_endpoint, methods=["POST"], openapi_extra=core.BODY_DOC,
        summary="Validate, then accept a Bundle to forward: 422 on errors, 202 + Location once stored",
        response_class=Response, status_code=202,
    )


def _enqueue(state: ServiceState, bundle: dict[str, Any], key: str | None, call: Call,
             destination: str | None) -> Any:
    from adapter.outbox import OutboxError
    from adapter.outbox.keys import idempotency_key

    who = call.principal.id
    route = _route(state, bundle, call.region, destination) if state.router is not None else no_route()
    try:
        delivery = state.outbox.enqueue(bundle, route=route, client=who,
                                        idempotency_key=key or idempotency_key(bundle))
    except OutboxError as exc:
        if exc.code != "conflict":
            raise
        raise ServiceError(409, "identifier-reused", code="conflict", value=exc.delivery_id) from None
    state.audit.record("accept", who=who, what=delivery.id, outcome="success",
                       detail=f"status {delivery.status}", sync=True)
    return delivery


def _claim(state: ServiceState, bundle: dict[str, Any], call: Call) -> Any:
    """Record the bundle's episode roles before it is accepted, under the registry's
    per-person lock, storing nothing if they collide (IC-ONE-1/2 across concurrent callers).
    On a collision the bundle is validated again, now against the registry that holds the
    other episode, and that report (with the rule's own message) is returned; None means
    go ahead. A registry that cannot be reached blocks acceptance (``RegistryUnavailable``,
    503): accepting a bundle whose roles were not recorded would let the next submission
    for the same person pass IC-ONE-1/2 unseen."""
    if state.registry is None:
        return None
    who = call.principal.id
    recorded = state.registry.record(bundle, source=who, exclusive=True)
    if not getattr(recorded, "conflicts", ()):
        return None
    report = core.validator(state).validate(bundle, core.options(state, call, with_registry=True))
    if report.has_errors:
        return report
    state.registry.record(bundle, source=who)  # the rule is not an error in this region
    return None


def _route(state: ServiceState, bundle: dict[str, Any], region: str | None, destination: str | None) -> Any:
    try:
        return state.router.route(bundle, region=region, destination=destination)
    except Exception as exc:
        code = getattr(exc, "code", None)
        if type(exc).__name__ != "RoutingError" or code is None:
            raise
        text = str(getattr(exc, "message", exc))[:300]
        if code == "unavailable":
            raise ServiceError(503, "unavailable", code="transient", value=text,
                               headers={"Retry-After": "30"}) from None
        raise ServiceError(400, "bad-request", code="invalid", value=text) from None


def no_route() -> Any:
    """A route that blocks: accepted and stored, but with nowhere to go until configured."""
    return SimpleNamespace(destinations=(), blocked=True, reason="no destination configured",
                           region=None, via=None)

"""The FastAPI application: validate, accept for forwarding, report.

Everything the app talks to (validator, outbox, router, forwarder, registry, mapper) is injected
through ``create_app`` so tests run it with fakes and ``becare serve`` wires the real ones. Handlers
stay thin: negotiation, limits and rendering live in their own modules, and every failure goes
through ``ServiceError`` so the client always gets an OperationOutcome, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.fhirio.errors import ParseError
from adapter.rules.checks import RegistryUnavailable
from adapter.service import negotiation as neg
from adapter.service.audit import AuditStore, AuditWriter, MemoryAuditStore
from adapter.service.capability import capability_statement
from adapter.service.config import ServiceConfig
from adapter.service.deps import AUDIT, MAP, READ, SUBMIT, VALIDATE, Call, read_body
from adapter.service.errors import ServiceError, error_outcome, parse_error_status
from adapter.service.messages import message
from adapter.service.metrics import CONTENT_TYPE as METRICS_TYPE
from adapter.service.metrics import Metrics
from adapter.service.ratelimit import TokenBuckets
from adapter.service.rendering import negotiate_scope, render
from adapter.validation.issues import Issue, operation_outcome

log = logging.getLogger("becare.service")

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": {"type": "object"}},
            "application/fhir+xml": {"schema": {"type": "string"}},
        },
    }
}
_EXEMPT_FROM_LIMITS = frozenset({"/healthz", "/readyz", "/metrics"})


# -- the guard: timeouts, metrics, last-resort errors ------------------------------------------------
class GuardMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so it adds microseconds, not milliseconds.

    It times every request, applies the request timeout, and turns any exception that escaped the
    handlers into a 500 OperationOutcome with a reference id, logging the traceback (masked by
    the log filter) server-side only.
    """

    def __init__(self, app: ASGIApp, *, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(msg: Message) -> None:
            nonlocal status, response_started
            if msg["type"] == "http.response.start":
                response_started = True
                status = msg["status"]
            await send(msg)

        try:
            timeout = self.state.config.request_timeout
            if scope.get("path") in _EXEMPT_FROM_LIMITS or timeout <= 0:
                await self.app(scope, receive, send_wrapper)
            else:
                await asyncio.wait_for(self.app(scope, receive, send_wrapper), timeout)
        except TimeoutError:
            status = 503
            if not response_started:
                fmt, lang = negotiate_scope(scope)
                err = ServiceError(503, "timeout", code="timeout", value=self.state.config.request_timeout)
                await render(err.outcome(lang), fmt, 503)(scope, receive, send)
        except Exception:
            status = 500
            ref = uuid.uuid4().hex[:12]
            log.exception("unhandled error, reference %s, %s %s", ref, scope.get("method"), scope.get("path"))
            if not response_started:
                fmt, lang = negotiate_scope(scope)
                err = ServiceError(500, "internal", code="exception", value=ref)
                await render(err.outcome(lang), fmt, 500)(scope, receive, send)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            metrics = self.state.metrics
            metrics.requests.labels(scope.get("method", ""), label, str(status)).inc()
            metrics.latency.labels(label).observe(elapsed)


class _Rendered(Exception):
    """An OperationOutcome already built (parse failures, mapping problems) with its status."""

    def __init__(self, outcome: dict[str, Any], status: int) -> None:
        super().__init__(status)
        self.outcome = outcome
        self.status = status


# -- state ---------------------------------------------------------------------------------------------
@dataclass
class ServiceState:
    config: ServiceConfig
    validator: Any
    outbox: Any | None
    router: Any | None
    forwarder: Any | None
    registry: Any | None
    mapper: Callable[[bytes, str | None], dict[str, Any]] | None
    audit: AuditWriter
    metrics: Metrics
    buckets: TokenBuckets | None
    warm: threading.Event
    warm_error: str | None = None

    def warm_up(self) -> None:
        """Load and exercise the validator once, so the first real request is not the slow one."""
        try:
            from adapter.validation.api import ValidationOptions

            if self.validator is None:
                from adapter.validation import Validator

                self.validator = Validator()
            self.validator.validate_bytes(
                b'{"resourceType":"Bundle","type":"collection"}', neg.JSON_TYPE, ValidationOptions()
            )
        except Exception as exc:
            self.warm_error = type(exc).__name__
            log.exception("validator warm-up failed")
            return
        self.warm.set()


def _unwrap_parameters(resource: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]] | None:
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


def _what(resource: dict[str, Any] | None) -> str | None:
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


def create_app(
    config: ServiceConfig | None = None,
    *,
    validator: Any | None = None,
    outbox: Any | None = None,
    router: Any | None = None,
    forwarder: Any | None = None,
    registry: Any | None = None,
    audit_store: AuditStore | None = None,
    mapper: Callable[[bytes, str | None], dict[str, Any]] | None = None,
) -> FastAPI:
    """Build the app. ``validator=None`` builds the real one in the background at start-up
    (``/readyz`` says when it is warm); ``outbox=None`` makes a validate-only service."""
    config = config or ServiceConfig()
    store: AuditStore = audit_store or outbox or MemoryAuditStore()
    state = ServiceState(
        config=config,
        validator=validator,
        outbox=outbox,
        router=router,
        forwarder=forwarder,
        registry=registry,
        mapper=mapper,
        audit=AuditWriter(store),
        metrics=Metrics(outbox.counts if outbox is not None and hasattr(outbox, "counts") else None),
        buckets=TokenBuckets(config.rate_limit.per_second, config.rate_limit.burst)
        if config.rate_limit.enabled else None,
        warm=threading.Event(),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        threading.Thread(target=state.warm_up, name="becare-warm", daemon=True).start()
        if forwarder is not None:
            forwarder.start()
        try:
            yield
        finally:
            if forwarder is not None:
                await run_in_threadpool(forwarder.stop)
            await run_in_threadpool(state.audit.close)

    app = FastAPI(
        title="becare",
        version=_version(),
        description="FHIR R4 validation and forwarding for Belgian integrated care.",
        lifespan=lifespan,
    )
    app.state.becare = state
    app.add_middleware(GuardMiddleware, state=state)

    # -- error handlers ------------------------------------------------------------------------------
    def _lang_fmt(request: Request) -> tuple[str, str]:
        fmt, lang = negotiate_scope(request.scope)
        return lang, fmt

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        lang, fmt = _lang_fmt(request)
        return render(exc.outcome(lang), fmt, exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        lang, fmt = _lang_fmt(request)
        key = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "invalid")
        what = request.url.path if exc.status_code in (404, 405) else str(exc.detail)[:200]
        if exc.status_code == 405:
            what = f"{request.method} {request.url.path}"
        text = message(key, lang, value=what)
        return render(error_outcome(text, code=code), fmt, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        lang, fmt = _lang_fmt(request)
        errors = exc.errors()
        detail = "; ".join(
            ".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg", "")) for e in errors[:3]
        )
        return render(error_outcome(message("bad-request", lang, value=detail)), fmt, 400)

    # -- validation core --------------------------------------------------------------------------------
    def _options(call: Call, with_registry: bool) -> Any:
        from adapter.validation.api import ValidationOptions

        return ValidationOptions(
            region=call.region, lang=call.neg.lang,
            registry=state.registry if with_registry else None, today=call.today,
        )

    def _validator() -> Any:
        if state.validator is None:
            if state.warm_error:
                raise ServiceError(503, "unavailable", code="transient", value="validator failed to load")
            state.warm.wait(timeout=max(state.config.request_timeout, 1))
            if state.validator is None:
                raise ServiceError(503, "unavailable", code="transient", value="validator loading")
        return state.validator

    def _validate_sync(data: bytes, content_type: str | None, options: Any, unwrap: bool) -> Any:
        validator = _validator()
        report = validator.validate_bytes(data, content_type, options)
        resource = report.resource
        if unwrap and isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
            unwrapped = _unwrap_parameters(resource)
            if unwrapped is not None:
                inner, profiles = unwrapped
                report = validator.validate(inner, replace(options, profiles=options.profiles + profiles))
                if report.resource is None:
                    report.resource = inner
        return report

    async def _validate(request: Request, call: Call, *, unwrap: bool, with_registry: bool) -> Any:
        data = await read_body(request, state.config.max_body_bytes)
        options = _options(call, with_registry)
        content_type = request.headers.get("content-type")
        try:
            report = await run_in_threadpool(_validate_sync, data, content_type, options, unwrap)
        except ParseError as exc:
            state.metrics.validations.labels("unparseable").inc()
            state.audit.record("validate", who=call.principal.id, what=None, outcome="failure",
                               detail=f"unparseable ({exc.code})")
            key = "too-costly" if exc.code == "too-costly" else "unparseable"
            text = message(key, call.neg.lang, detail=exc.message)
            outcome = error_outcome(text, code=exc.code or "invalid", severity="fatal",
                                    line=exc.line, col=exc.col)
            raise _Rendered(outcome, parse_error_status(exc.code)) from None
        verdict = "invalid" if report.has_errors else "valid"
        state.metrics.validations.labels(verdict).inc()
        state.audit.record("validate", who=call.principal.id, what=_what(report.resource),
                           outcome="success" if verdict == "valid" else "rejected", detail=verdict)
        return report

    @app.exception_handler(_Rendered)
    async def _rendered(request: Request, exc: _Rendered) -> Response:
        _lang, fmt = _lang_fmt(request)
        return render(exc.outcome, fmt, exc.status)

    @app.exception_handler(RegistryUnavailable)
    async def _registry_down(request: Request, exc: RegistryUnavailable) -> Response:
        # IC-ONE-1/2 cannot be judged and the roles cannot be claimed: nothing is accepted or
        # passed without them; the client retries once the registry is back
        log.error("episode registry unavailable: %s", exc)
        lang, fmt = _lang_fmt(request)
        err = ServiceError(503, "unavailable", code="transient", value="episode registry",
                           headers={"Retry-After": "30"})
        return render(err.outcome(lang), fmt, 503, err.headers)

    def _internal_failure(report: Any, call: Call, what: str | None) -> None:
        """A check becare could not run (a rule or an invariant that raised) means the input was
        not checked: POST /fhir answers 500 with a reference id, never 202 (nor 422: the data
        may be fine). $validate shows the ``exception`` issue instead."""
        failed = [i for i in report.issues if i.is_error and i.code == "exception"]
        if not failed:
            return
        ref = uuid.uuid4().hex[:12]
        log.error("internal validation failure, reference %s: %s", ref,
                  "; ".join(f"{i.rule or i.message_id}: {i.message[:300]}" for i in failed))
        state.audit.record("accept", who=call.principal.id, what=what, outcome="failure",
                           detail=f"internal error, reference {ref}", sync=True)
        raise ServiceError(500, "internal", code="exception", value=ref)

    # -- endpoints -------------------------------------------------------------------------------------
    async def validate_endpoint(request: Request, call: Call = VALIDATE) -> Response:
        report = await _validate(request, call, unwrap=True, with_registry=True)
        return render(report.outcome(), call.neg.response_format, 200)

    for path in ("/fhir/$validate", "/fhir/Bundle/$validate"):
        app.add_api_route(
            path, validate_endpoint, methods=["POST"], tags=["validation"], openapi_extra=_BODY_DOC,
            summary="Validate a resource (or a Parameters with resource and profile): 200 + OperationOutcome",
            response_class=Response,
        )

    async def accept_endpoint(request: Request, call: Call = SUBMIT) -> Response:
        if state.outbox is None:
            raise ServiceError(503, "unavailable", code="not-supported", value="forwarding is not configured")
        report = await _validate(request, call, unwrap=False, with_registry=True)
        resource = report.resource
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if rtype != "Bundle":
            raise ServiceError(400, "not-a-bundle", code="not-supported", value=str(rtype)[:60])
        _internal_failure(report, call, _what(resource))
        if not report.has_errors:
            # claim the person's coordinator / case-manager roles atomically: a concurrent
            # submission may have taken one since this bundle was validated
            report = await run_in_threadpool(_claim, resource, call) or report
            _internal_failure(report, call, _what(resource))
        if report.has_errors:
            state.audit.record("accept", who=call.principal.id, what=_what(resource), outcome="rejected",
                               detail="validation errors", sync=True)
            notice = Issue(severity="error", code="processing", expression="", source="service",
                           message=message("not-accepted", call.neg.lang))
            rejected = operation_outcome([*report.issues, notice], rulebook_version=report.rulebook_version)
            return render(rejected, call.neg.response_format, 422)
        key = request.headers.get("idempotency-key") or None
        destination = request.query_params.get("destination") or None
        delivery = await run_in_threadpool(_enqueue, resource, key, call, destination)
        state.metrics.accepted.inc()
        notice = Issue(severity="information", code="informational", expression="", source="service",
                       message=message("accepted", call.neg.lang, value=delivery.id),
                       message_id="becare-accepted")
        body = operation_outcome([*report.issues, notice], rulebook_version=report.rulebook_version)
        for issue in body["issue"]:
            if any(e.get("valueString") == "becare-accepted" for e in issue.get("extension", ())):
                issue["diagnostics"] = delivery.id
        location = f"/deliveries/{delivery.id}"
        return render(body, call.neg.response_format, 202,
                      {"Location": location, "Content-Location": location, "X-Delivery-Id": delivery.id})

    def _enqueue(bundle: dict[str, Any], key: str | None, call: Call, destination: str | None) -> Any:
        from adapter.outbox.keys import idempotency_key

        who = call.principal.id
        route = _route(bundle, call.region, destination) if state.router is not None else _no_route()
        from adapter.outbox import OutboxError

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

    def _claim(bundle: dict[str, Any], call: Call) -> Any:
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
        report = _validator().validate(bundle, _options(call, with_registry=True))
        if report.has_errors:
            return report
        state.registry.record(bundle, source=who)  # the rule is not an error in this region
        return None

    def _route(bundle: dict[str, Any], region: str | None, destination: str | None) -> Any:
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

    for path in ("/fhir", "/fhir/Bundle"):
        app.add_api_route(
            path, accept_endpoint, methods=["POST"], tags=["forwarding"], openapi_extra=_BODY_DOC,
            summary="Validate, then accept a Bundle to forward: 422 on errors, 202 + Location once stored",
            response_class=Response, status_code=202,
        )

    @app.get("/fhir/metadata", tags=["discovery"], response_class=Response)
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

    @app.post("/fhir/$map", tags=["mapping"], response_class=Response,
              summary="Map a care situation document (JSON or YAML) to a becare transaction Bundle")
    async def map_endpoint(request: Request, call: Call = MAP) -> Response:
        data = await read_body(request, state.config.max_body_bytes)
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        fmt = "yaml" if "yaml" in ctype else "json"
        bundle = await run_in_threadpool(_map_sync, data, fmt, call.neg.lang)
        out_fmt = neg.response_format(request.query_params.get("_format"), request.headers.get("accept"))
        return render(bundle, out_fmt, 200)

    def _map_sync(data: bytes, fmt: str, lang: str) -> dict[str, Any]:
        mapper = state.mapper or _default_mapper()
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
            raise _Rendered(operation_outcome(issues), 422) from None

    @app.get("/deliveries/{delivery_id}", tags=["forwarding"])
    async def delivery_status(delivery_id: str, call: Call = READ) -> Response:
        if state.outbox is None:
            raise ServiceError(404, "not-found", code="not-found", value=f"/deliveries/{delivery_id[:64]}")
        delivery = await run_in_threadpool(state.outbox.get, delivery_id)
        if delivery is None:
            raise ServiceError(404, "not-found", code="not-found", value=f"/deliveries/{delivery_id[:64]}")
        return JSONResponse(delivery.to_json())

    @app.get("/audit", tags=["audit"], response_class=Response,
             summary="The audit trail as a FHIR Bundle of AuditEvent (needs the 'audit' scope)")
    async def audit(call: Call = AUDIT, since: str | None = None,
                    _count: int = 1000) -> Response:
        since_ts = None
        if since:
            try:
                since_ts = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise ServiceError(400, "bad-request", value="since: not an ISO date or dateTime") from None
        count = max(1, min(_count, 10_000))
        bundle = await run_in_threadpool(state.audit.bundle, count, since_ts)
        return render(bundle, call.neg.response_format)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz() -> JSONResponse:
        db_ok = True
        if state.outbox is not None and hasattr(state.outbox, "ping"):
            db_ok = bool(await run_in_threadpool(state.outbox.ping))
        warm = state.warm.is_set()
        checks = {"database": "ok" if db_ok else "unreachable",
                  "validator": "ok" if warm else ("failed" if state.warm_error else "loading")}
        ready = db_ok and warm
        return JSONResponse({"status": "ready" if ready else "not-ready", "checks": checks},
                            status_code=200 if ready else 503)

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        body = await run_in_threadpool(state.metrics.render)
        return Response(body, media_type=METRICS_TYPE)

    from adapter.web import register as register_page  # the validation page at / (adapter/web)

    register_page(app)
    return app


def _version() -> str:
    from adapter import __version__

    return __version__


def _no_route() -> Any:
    """A route that blocks: accepted and stored, but with nowhere to go until configured."""
    from types import SimpleNamespace

    return SimpleNamespace(destinations=(), blocked=True, reason="no destination configured",
                           region=None, via=None)


def _default_mapper() -> Callable[[bytes, str | None], dict[str, Any]]:
    try:
        from adapter.mapping.document import load_document
        from adapter.mapping.forward import to_bundle
    except ImportError:
        raise ServiceError(503, "unavailable", code="not-supported", value="no mapping module") from None

    def mapper(data: bytes, fmt: str | None) -> dict[str, Any]:
        return to_bundle(load_document(data, fmt))

    return mapper

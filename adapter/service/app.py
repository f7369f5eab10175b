"""The FastAPI application: validate, accept for forwarding, report.

Everything the app talks to (validator, outbox, router, forwarder, registry, mapper) is injected
through ``create_app`` so tests run it with fakes and ``becare serve`` wires the real ones. The
endpoints live in ``adapter.service.routes`` (one router per group) and get the app's state
through the ``AppState`` dependency; negotiation, limits and rendering live in their own modules,
and every failure goes through ``ServiceError`` so the client always gets an OperationOutcome,
never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.rules.checks import RegistryUnavailable
from adapter.service.audit import AuditStore, AuditWriter, MemoryAuditStore
from adapter.service.config import ServiceConfig
from adapter.service.core import Rendered
from adapter.service.drain import DrainMiddleware
from adapter.service.errors import ServiceError, error_outcome
from adapter.service.messages import message
from adapter.service.metrics import Metrics
from adapter.service.ratelimit import TokenBuckets
from adapter.service.rendering import negotiate_scope, render
from adapter.service.routes import ROUTERS
from adapter.service.state import ServiceState

__all__ = ["GuardMiddleware", "ServiceState", "create_app"]

log = logging.getLogger("becare.service")

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
    # outside the guard: draining an unread body is not part of the request's time budget
    app.add_middleware(DrainMiddleware, drain_bytes=config.drain_bytes)
    _add_error_handlers(app)
    for group in ROUTERS:
        app.include_router(group)

    from adapter.web import register as register_page  # the validation page at / (adapter/web)

    register_page(app)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    """Every failure becomes an OperationOutcome in the caller's language and format."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> Response:
        fmt, lang = negotiate_scope(request.scope)
        return render(exc.outcome(lang), fmt, exc.status, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        fmt, lang = negotiate_scope(request.scope)
        key = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "bad-request")
        code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "invalid")
        what = request.url.path if exc.status_code in (404, 405) else str(exc.detail)[:200]
        if exc.status_code == 405:
            what = f"{request.method} {request.url.path}"
        text = message(key, lang, value=what)
        return render(error_outcome(text, code=code), fmt, exc.status_code, dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> Response:
        fmt, lang = negotiate_scope(request.scope)
        errors = exc.errors()
        detail = "; ".join(
            ".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg", "")) for e in errors[:3]
        )
        return render(error_outcome(message("bad-request", lang, value=detail)), fmt, 400)

    @app.exception_handler(Rendered)
    async def _rendered(request: Request, exc: Rendered) -> Response:
        fmt, _lang = negotiate_scope(request.scope)
        return render(exc.outcome, fmt, exc.status)

    @app.exception_handler(RegistryUnavailable)
    async def _registry_down(request: Request, exc: RegistryUnavailable) -> Response:
        # IC-ONE-1/2 cannot be judged and the roles cannot be claimed: nothing is accepted or
        # passed without them; the client retries once the registry is back
        log.error("episode registry unavailable: %s", exc)
        fmt, lang = negotiate_scope(request.scope)
        err = ServiceError(503, "unavailable", code="transient", value="episode registry",
                           headers={"Retry-After": "30"})
        return render(err.outcome(lang), fmt, 503, err.headers)


def _version() -> str:
    from adapter import __version__

    return __version__

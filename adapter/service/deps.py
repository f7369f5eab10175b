"""Per-request checks that run before a handler reads the body: negotiation, authentication,
rate limit, region. Module-level so FastAPI can resolve them; the app's state comes from
``request.app.state.becare``."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from adapter.service import negotiation as neg
from adapter.service.auth import AuthError, Principal, authenticate
from adapter.service.config import DEFAULT_SCOPES, ServiceConfig
from adapter.service.errors import ServiceError
from adapter.service.ratelimit import retry_after_header

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="becare"'}


@dataclass(frozen=True)
class Call:
    """Per-request context: who, and what they asked for."""

    principal: Principal
    neg: neg.Negotiated
    region: str | None
    today: dt.date | None = None  # ``today`` parameter of $validate: the date the rules judge against


def client_ip(request: Request, config: ServiceConfig) -> str:
    """The caller's address: the peer's, or behind trusted proxies the one they recorded.

    Each proxy appends the address it received the request from to X-Forwarded-For, so only the
    right-hand end of the list was written by proxies becare trusts; whatever a client put in the
    header itself sits to the left and is never used. With ``trusted_proxies: N`` the client is
    the entry N from the right (the left-most one when there are fewer); with a list of networks it
    is the right-most entry outside them, provided the peer itself is one of them.
    """
    peer = request.client.host if request.client else "unknown"
    if not config.trust_forwarded_for:
        return peer
    # several X-Forwarded-For headers are one list, in order (RFC 9110 section 5.3)
    entries = [e.strip() for h in request.headers.getlist("x-forwarded-for") for e in h.split(",")]
    entries = [e for e in entries if e]
    if not entries:
        return peer
    if not config.trusted_networks:
        return entries[-min(config.trusted_proxies, len(entries))][:64]
    if not _trusted(peer, config):
        return peer
    for entry in reversed(entries):
        if not _trusted(entry, config):
            return entry[:64]
    return entries[0][:64]


def _trusted(address: str, config: ServiceConfig) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in config.trusted_networks)


def negotiate(request: Request) -> neg.Negotiated:
    fmt_param = request.query_params.get("_format")
    lang = neg.language(request.headers.get("accept-language"))
    body_fmt = None
    if request.method in ("POST", "PUT"):
        try:
            body_fmt = neg.request_format(request.headers.get("content-type"))
        except neg.UnsupportedMediaType as exc:
            raise ServiceError(415, "unsupported-media-type", code="not-supported", media=str(exc)) from None
    try:
        resp_fmt = neg.response_format(fmt_param, request.headers.get("accept"), body_fmt)
    except neg.BadFormatParameter:
        raise ServiceError(400, "bad-format", code="not-supported", value=str(fmt_param)[:40]) from None
    return neg.Negotiated(body_fmt, resp_fmt, lang)


def identify(request: Request, config: ServiceConfig, scope_name: str) -> Principal:
    """The caller: anonymous-by-IP when no authentication is configured (loopback only)."""
    auth = config.auth
    if not auth.configured:
        if scope_name == "audit":
            raise ServiceError(403, "audit-needs-auth", code="forbidden")
        return Principal(id=f"ip:{client_ip(request, config)}", scopes=DEFAULT_SCOPES)
    try:
        principal = authenticate(auth, request.headers.get("x-api-key"), request.headers.get("authorization"))
    except AuthError:
        raise ServiceError(401, "unauthenticated", code="login", headers=_CHALLENGE) from None
    if principal is None:
        raise ServiceError(401, "unauthenticated", code="login", headers=_CHALLENGE)
    if scope_name not in principal.scopes:
        raise ServiceError(403, "forbidden", code="forbidden", value=scope_name)
    return principal


def requires(scope_name: str, *, body: bool = False) -> Callable[[Request], Call]:
    """A dependency checking, in order: media types (415 before anything else), credentials
    (401/403), the caller's rate (429), the region parameter (400)."""

    def dependency(request: Request) -> Call:
        state: Any = request.app.state.becare
        negotiated = negotiate(request) if body else _negotiate_get(request)
        principal = identify(request, state.config, scope_name)
        if state.buckets is not None:
            wait = state.buckets.take(principal.id)
            if wait > 0:
                seconds = retry_after_header(wait)
                raise ServiceError(429, "rate-limited", code="throttled", value=seconds,
                                   headers={"Retry-After": seconds})
        region = request.query_params.get("region")
        if region is not None and region not in neg.REGIONS:
            raise ServiceError(400, "bad-region", code="value", value=region[:40])
        return Call(principal, negotiated, region, _today(request, scope_name))

    return dependency


def _today(request: Request, scope_name: str) -> dt.date | None:
    """The ``today`` parameter (YYYY-MM-DD): reproducible validations for tests and CI. Only
    validation takes it: what is accepted for forwarding is judged on the service's own date."""
    value = request.query_params.get("today")
    if value is None:
        return None
    try:
        if scope_name != "validate" or len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ServiceError(400, "bad-today", code="value", value=value[:40]) from None


def _negotiate_get(request: Request) -> neg.Negotiated:
    fmt_param = request.query_params.get("_format")
    try:
        resp_fmt = neg.response_format(fmt_param, request.headers.get("accept"))
    except neg.BadFormatParameter:
        raise ServiceError(400, "bad-format", code="not-supported", value=str(fmt_param)[:40]) from None
    return neg.Negotiated(None, resp_fmt, neg.language(request.headers.get("accept-language")))


VALIDATE = Depends(requires("validate", body=True))
SUBMIT = Depends(requires("submit", body=True))
MAP = Depends(requires("validate"))  # $map takes JSON/YAML documents, not FHIR media types
READ = Depends(requires("read"))
AUDIT = Depends(requires("audit"))

# The same checks as parameter types: ``call: ValidateCall``.
ValidateCall = Annotated[Call, VALIDATE]
SubmitCall = Annotated[Call, SUBMIT]
MapCall = Annotated[Call, MAP]
ReadCall = Annotated[Call, READ]
AuditCall = Annotated[Call, AUDIT]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` (before any parsing)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, "too-large", code="too-costly", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError(413, "too-large", code="too-costly", limit=limit)
        chunks.append(chunk)
    if size == 0:
        raise ServiceError(400, "empty-body", code="required")
    return b"".join(chunks)

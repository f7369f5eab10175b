"""HTTP routes of the validation page: ``/``, its assets under ``/ui/``, and ``/rules``.

The page and the rulebook are public (the rulebook is published in ``docs/rules.md`` anyway), so
a browser can load them before the user has typed an API key; the page's calls to
``/fhir/$validate`` go through the service's normal authentication with the key it sends.
Assets are served from a fixed list, never from a path taken from the request.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from adapter.rules.catalog import LANGS, UnknownRuleError
from adapter.service import negotiation as neg
from adapter.service.errors import ServiceError
from adapter.web.rules_api import UnknownLanguage, check_lang, one_rule_json, rules_json

ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "i18n.json": "application/json; charset=utf-8",
}

# Everything comes from this origin: no CDN, no inline script, no framing of the page.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@functools.lru_cache(maxsize=8)
def asset(name: str) -> bytes:
    """The bytes of a packaged static file (read once; they never change while running)."""
    return (resources.files("adapter.web") / "static" / name).read_bytes()


def _lang(request: Request) -> str:
    raw = request.query_params.get("lang")
    if raw is None:
        return neg.language(request.headers.get("accept-language"))
    try:
        return check_lang(raw)
    except UnknownLanguage:
        raise ServiceError(
            400, "bad-request", code="value", value=f"lang={raw[:20]!r}: use {', '.join(LANGS)}"
        ) from None


def register(app: FastAPI) -> None:
    """Add the page's routes to ``app`` (outside the OpenAPI schema: they are not the FHIR API)."""

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return Response(asset("index.html"), media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @app.get("/ui/{name}", include_in_schema=False)
    async def ui_asset(name: str) -> Response:
        media = ASSETS.get(name)
        if media is None:
            raise ServiceError(404, "not-found", code="not-found", value=f"/ui/{name[:64]}")
        return Response(asset(name), media_type=media, headers=_PAGE_HEADERS)

    @app.get("/rules", tags=["rulebook"], summary="The interfederal rulebook in one language (JSON)")
    async def rules(request: Request) -> JSONResponse:
        return JSONResponse(rules_json(_lang(request)))

    @app.get("/rules/{rule_id}", tags=["rulebook"], summary="One rule with its explanation (JSON)")
    async def rule(rule_id: str, request: Request) -> JSONResponse:
        lang = _lang(request)
        try:
            # off the event loop: the first call for a rule runs its breaking sample
            return JSONResponse(await run_in_threadpool(one_rule_json, rule_id, lang))
        except UnknownRuleError:
            raise ServiceError(404, "not-found", code="not-found", value=f"/rules/{rule_id[:40]}") from None

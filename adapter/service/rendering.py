"""Writing resources in the negotiated format, and negotiation from a raw ASGI scope.

Kept apart from the handlers so error paths (exception handlers, the guard middleware) render
exactly like successful ones.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from fastapi.responses import Response
from starlette.types import Scope

from adapter.fhirio.jsonwrite import compact_json
from adapter.service import negotiation as neg


def dump_json(resource: Any) -> bytes:
    """Compact JSON, as the stdlib writes it (by orjson where that provably writes the same)."""
    try:
        return compact_json(resource)
    except TypeError:  # decimals from parsed input: let fhirio write them exactly
        from adapter.fhirio import to_json

        return to_json(resource, pretty=False).encode("utf-8")


def render(resource: dict[str, Any], fmt: str, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    if fmt == "xml":
        from adapter.fhirio import to_xml

        body = to_xml(resource, pretty=False).encode("utf-8")
        media = neg.XML_TYPE
    else:
        body = dump_json(resource)
        media = neg.JSON_TYPE
    return Response(body, status_code=status, media_type=media, headers=headers)


def negotiate_scope(scope: Scope) -> tuple[str, str]:
    """(format, lang) from the raw ASGI scope, never failing: for error paths."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
    fmt_param = None
    for part in scope.get("query_string", b"").decode("latin-1").split("&"):
        name, _, value = part.partition("=")
        if name == "_format":
            fmt_param = unquote_plus(value)
    try:
        fmt = neg.response_format(fmt_param, headers.get("accept"))
    except neg.BadFormatParameter:
        fmt = "json"
    return fmt, neg.language(headers.get("accept-language"))

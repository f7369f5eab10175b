"""Content negotiation: request media type, response format, language, region.

Pure functions over header strings so the rules (FHIR's ``_format`` beats ``Accept``; q-values
order languages) are tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass

JSON_TYPE = "application/fhir+json"
XML_TYPE = "application/fhir+xml"

LANGUAGES = ("en", "fr", "nl", "de")
REGIONS = ("flanders", "wallonia", "brussels", "german-speaking")

_JSON_MEDIA = frozenset({"application/fhir+json", "application/json", "application/json+fhir", "text/json"})
_XML_MEDIA = frozenset({"application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml"})
_FORMAT_ALIASES = {
    "json": "json",
    "xml": "xml",
    **{m: "json" for m in _JSON_MEDIA},
    **{m: "xml" for m in _XML_MEDIA},
}


class UnsupportedMediaType(ValueError):
    """The request body's media type is neither FHIR JSON nor FHIR XML."""


class BadFormatParameter(ValueError):
    """``_format`` names a format we do not write."""


def _media(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def request_format(content_type: str | None) -> str | None:
    """``json``/``xml`` for a FHIR media type, None when absent (the parser sniffs).

    Raises UnsupportedMediaType for anything else, which becomes a 415.
    """
    if content_type is None or not content_type.strip():
        return None
    media = _media(content_type)
    if media in _JSON_MEDIA:
        return "json"
    if media in _XML_MEDIA:
        return "xml"
    raise UnsupportedMediaType(media)


def _weighted(header: str) -> list[tuple[str, float, int]]:
    """Split a header like ``fr-BE;q=0.8, nl`` into (value, q, position)."""
    out: list[tuple[str, float, int]] = []
    for pos, part in enumerate(header.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        value = pieces[0].lower()
        if not value:
            continue
        q = 1.0
        for param in pieces[1:]:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(raw.strip())
                except ValueError:
                    q = 0.0
        if q > 0:
            out.append((value, q, pos))
    out.sort(key=lambda item: (-item[1], item[2]))
    return out


def response_format(fmt_param: str | None, accept: str | None, body_format: str | None = None) -> str:
    """Pick ``json`` or ``xml`` for the response.

    ``_format`` wins (FHIR search/operation convention), then the best ``Accept`` entry we can
    write; with neither (or only ``*/*``) we answer in the request body's format, else JSON.
    """
    if fmt_param:
        fmt = _FORMAT_ALIASES.get(_media(fmt_param.replace(" ", "+")))
        if fmt is None:
            raise BadFormatParameter(fmt_param)
        return fmt
    if accept:
        for media, _q, _pos in _weighted(accept):
            fmt = _FORMAT_ALIASES.get(_media(media))
            if fmt:
                return fmt
    return body_format or "json"


def language(accept_language: str | None, default: str = "en") -> str:
    """Best supported language by q-value; ``nl-BE`` matches ``nl``; ``*`` takes the default."""
    if not accept_language:
        return default
    for tag, _q, _pos in _weighted(accept_language):
        if tag == "*":
            return default
        primary = tag.split("-", 1)[0]
        if primary in LANGUAGES:
            return primary
    return default


@dataclass(frozen=True)
class Negotiated:
    """What one request asked for, decided once and passed down."""

    body_format: str | None
    response_format: str
    lang: str

    @property
    def media_type(self) -> str:
        return XML_TYPE if self.response_format == "xml" else JSON_TYPE

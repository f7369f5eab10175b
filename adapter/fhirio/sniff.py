"""Which format a payload is in, and how to turn it into text the parsers accept.

The content type wins when it names a format; otherwise the first non-blank character
decides (``{`` JSON, ``<`` XML), tolerating a byte order mark.
"""

from __future__ import annotations

import codecs
import re

from adapter.fhirio.errors import ParseError

_JSON_TYPES = frozenset(
    {"json", "application/fhir+json", "application/json", "text/json", "application/json+fhir"}
)
_XML_TYPES = frozenset({"xml", "application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir"})
_ANY = frozenset({"", "*/*", "application/octet-stream", "text/plain"})

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_XML_ENCODING_DECL = re.compile(r"""^(\s*<\?xml[^>]*?)\s+encoding\s*=\s*(["'])[^"']*\2""")


def normalize_format(fmt: str | None) -> str | None:
    """``json``/``xml`` for a format name or content type; None when it does not say."""
    if fmt is None:
        return None
    mime = fmt.split(";", 1)[0].strip().lower()
    if mime in _JSON_TYPES or mime.endswith("+json"):
        return "json"
    if mime in _XML_TYPES or mime.endswith("+xml"):
        return "xml"
    if mime in _ANY:
        return None
    raise ParseError(f"Unsupported content type '{fmt}': FHIR JSON or XML expected", code="invalid")


def bom_encoding(data: bytes) -> tuple[str | None, int]:
    """The encoding a byte order mark announces and the mark's length."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding, len(bom)
    return None, 0


def decode(data: bytes) -> str:
    """Bytes to text: the BOM's encoding, else UTF-8 (what FHIR JSON requires)."""
    encoding, skip = bom_encoding(data)
    try:
        return data[skip:].decode(encoding or "utf-8")
    except UnicodeDecodeError as exc:
        before = data[skip : skip + exc.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        raise ParseError(
            f"The content is not valid {encoding or 'UTF-8'} text", line=line, col=col, code="invalid"
        ) from None


def sniff(data: bytes | str) -> str:
    """``json`` or ``xml`` from the first non-blank character."""
    if isinstance(data, bytes):
        encoding, skip = bom_encoding(data)
        head = data[skip : skip + 4096]
        text = head.decode(encoding or "utf-8", errors="replace") if encoding else head.decode("latin-1")
    else:
        text = data[:4096]
    stripped = text.lstrip("\ufeff \t\r\n")
    first = stripped[:1]
    if first == "{":
        return "json"
    if first == "<":
        return "xml"
    if not first:
        raise ParseError("The content is empty: a FHIR resource in JSON or XML is expected", code="invalid")
    offset = len(text) - len(stripped)
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    what = "a JSON array" if first == "[" else f"'{first}'"
    raise ParseError(
        f"The content starts with {what}: a FHIR resource (JSON object or XML element) is expected",
        line=line,
        col=col,
        code="structure" if first == "[" else "invalid",
    )


def xml_bytes(data: bytes | str) -> bytes:
    """What lxml should parse: UTF-8 bytes for text (its encoding declaration dropped, since
    the text is already decoded) and for BOM-marked UTF-16/32; other bytes as they are."""
    if isinstance(data, bytes):
        encoding, _ = bom_encoding(data)
        if encoding is None or encoding == "utf-8":
            return data
        data = decode(data)
    text = data.lstrip("\ufeff")
    return _XML_ENCODING_DECL.sub(r"\1", text, count=1).encode("utf-8")

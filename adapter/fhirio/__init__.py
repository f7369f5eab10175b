"""FHIR R4 JSON and XML in, the internal form (FHIR JSON as Python values) out, and back.

See ``docs/architecture.md`` ("adapter.fhirio") for the interface.
"""

from typing import Any

from adapter.fhirio.document import Document, parse, parse_file
from adapter.fhirio.errors import DEFAULT_LIMITS, Limits, ParseError
from adapter.fhirio.jsonwrite import to_json

__all__ = [
    "DEFAULT_LIMITS",
    "Document",
    "Limits",
    "ParseError",
    "parse",
    "parse_file",
    "to_json",
    "to_xml",
]


def __getattr__(name: str) -> Any:
    # The XML writer (and lxml with it) is loaded when first asked for: reading and validating
    # JSON never needs it, and it cost ~10 ms at the start of every ``becare validate``.
    if name == "to_xml":
        from adapter.fhirio.xmlwrite import to_xml

        return to_xml
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

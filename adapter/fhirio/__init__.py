"""FHIR R4 JSON and XML in, the internal form (FHIR JSON as Python values) out, and back.

See ``docs/architecture.md`` ("adapter.fhirio") for the interface.
"""

from adapter.fhirio.document import Document, parse, parse_file
from adapter.fhirio.errors import DEFAULT_LIMITS, Limits, ParseError
from adapter.fhirio.jsonwrite import to_json
from adapter.fhirio.xmlwrite import to_xml

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

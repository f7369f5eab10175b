"""The generated narrative (``Resource.text``) the mapper gives every resource.

FHIR's dom-6 best practice asks each resource for a human-readable narrative so a receiving
system that cannot interpret the codes can still show something. The mapper writes one short
sentence from the same document fields it maps (never an identifier such as the SSIN), so the
narrative is a pure function of the document: the reverse mapper can ignore it and mapping the
document read back still gives an equal bundle.
"""

from __future__ import annotations

from html import escape
from typing import Any

from adapter.mapping.model import Name

XHTML = "http://www.w3.org/1999/xhtml"


def narrative(sentence: str) -> dict[str, str]:
    """A ``generated`` Narrative whose div holds ``sentence`` as escaped text."""
    return {
        "status": "generated",
        "div": f'<div xmlns="{XHTML}"><p>{escape(sentence, quote=False)}</p></div>',
    }


def with_text(resource: dict[str, Any], sentence: str) -> dict[str, Any]:
    """``resource`` with ``text`` where FHIR puts it: after ``meta`` (so serialisations read in
    the usual element order)."""
    out: dict[str, Any] = {}
    for key, value in resource.items():
        out[key] = value
        if key == "meta":
            out["text"] = narrative(sentence)
    if "text" not in out:
        out = {"resourceType": resource["resourceType"], "text": narrative(sentence)} | out
    return out


def full_name(name: Name) -> str:
    return " ".join([*name.prefix, *name.given, name.family])


def span(start: str | None, end: str | None) -> str:
    if start and end:
        return f"from {start} to {end}"
    if start:
        return f"from {start}"
    return f"until {end}" if end else ""


def sentence(*parts: str | None) -> str:
    """Parts joined by ", ", skipping empty ones."""
    return ", ".join(p for p in parts if p)

"""Internal hyperlinks of a narrative: ``<a href="#x">`` must land somewhere in the resource.

Why: a narrative is the human-readable form of the resource; a link to ``#x`` that goes nowhere
is a broken document (the HL7 Java validator reports it as XHTML_IDREF_NOT_FOUND). A target is
any ``id`` or ``name`` attribute in the narratives of the resource (its own and its contained
resources'), or the ``id`` of any element or contained resource of the resource. ``#`` alone is
the top of the document. Links elsewhere (other schemes, relative URLs) are not checked here.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

XHTML_NS = "http://www.w3.org/1999/xhtml"
_ANCHOR_ATTR = re.compile(r'\s(?:id|name)\s*=\s*"([^"]*)"')


def _narratives_and_ids(value: Any, divs: list[str], ids: set[str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "id" and isinstance(item, str):
                ids.add(item)
            elif key == "div" and isinstance(item, str):
                divs.append(item)
            else:
                _narratives_and_ids(item, divs, ids)
    elif isinstance(value, list):
        for item in value:
            _narratives_and_ids(item, divs, ids)


def targets(resource: dict[str, Any]) -> set[str]:
    """Every fragment a link inside ``resource`` may point to."""
    divs: list[str] = []
    ids: set[str] = set()
    _narratives_and_ids(resource, divs, ids)
    for div in divs:
        ids.update(_ANCHOR_ATTR.findall(div))
    return ids


def unresolved_links(xhtml: str, resource: dict[str, Any]) -> list[tuple[str, str]]:
    """(href, link text) of each ``<a href="#...">`` in ``xhtml`` with no target in ``resource``.
    The narrative must already be known well-formed (the caller checked it)."""
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)  # per call: not thread-safe
        root = etree.fromstring(xhtml.encode("utf-8"), parser)
    except etree.XMLSyntaxError:
        return []
    found = None
    out: list[tuple[str, str]] = []
    for a in root.iter(f"{{{XHTML_NS}}}a"):
        href = a.get("href") or ""
        if not href.startswith("#") or href == "#":
            continue
        if found is None:
            found = targets(resource)
        if href[1:] not in found:
            text = " ".join("".join(a.itertext()).split())[:80]
            out.append((href, text))
    return out

"""The FHIR narrative safety check behind `htmlChecks()` (txt-1/txt-2 in R4).

Narrative is displayed by receivers; an active element or an external reference in it is a script
injection or a tracking vector. The rules are the FHIR ones: only a basic set of XHTML elements and
attributes, no scripts, forms, event handlers, and no external references except images.
Parsed by lxml with network and entity resolution off, so the check itself cannot be abused.
"""

from __future__ import annotations

import re

from lxml import etree

XHTML_NS = "http://www.w3.org/1999/xhtml"

ALLOWED_ELEMENTS = frozenset(
    [
        "a",
        "abbr",
        "acronym",
        "b",
        "big",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "ul",
        "var",
    ]
)
ALLOWED_ATTRIBUTES = frozenset(
    [
        "title",
        "style",
        "class",
        "id",
        "lang",
        "xml:lang",
        "dir",
        "accesskey",
        "tabindex",
        "abbr",
        "accept-charset",
        "accept",
        "accesskey",
        "action",
        "align",
        "alt",
        "axis",
        "border",
        "cellpadding",
        "cellspacing",
        "char",
        "charoff",
        "charset",
        "checked",
        "cite",
        "colspan",
        "compact",
        "coords",
        "datetime",
        "disabled",
        "enctype",
        "for",
        "frame",
        "headers",
        "height",
        "href",
        "hreflang",
        "hspace",
        "ismap",
        "label",
        "longdesc",
        "maxlength",
        "media",
        "method",
        "multiple",
        "name",
        "nohref",
        "noshade",
        "nowrap",
        "readonly",
        "rel",
        "rev",
        "rows",
        "rowspan",
        "rules",
        "scope",
        "selected",
        "shape",
        "size",
        "span",
        "src",
        "start",
        "summary",
        "target",
        "type",
        "valign",
        "value",
        "vspace",
        "width",
        "xmlns",
    ]
)
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


_ROOT_OPEN = f'<div xmlns="{XHTML_NS}">'
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_TOKEN = re.compile(
    r"<(/?)([a-z][a-z0-9]*)\s*(/?)>"  # a tag without attributes
    r"|[^<&]+"  # text
    r"|&(?:amp|lt|gt|quot|apos|#[0-9]{1,7}|#x[0-9a-fA-F]{1,6});"  # a predefined or numeric entity
)


def _plain_and_safe(xhtml: str) -> bool:
    """True for the common generated narrative: an XHTML div whose descendants are allowed
    elements without attributes, text and the predefined entities, properly nested. Anything
    else (attributes, comments, CDATA, other entities) goes through the full XML check."""
    if not xhtml.startswith(_ROOT_OPEN) or not xhtml.endswith("</div>"):
        return False
    body = xhtml[len(_ROOT_OPEN) : -len("</div>")]
    if "]]>" in body or _NOT_XML_CHAR.search(body):
        return False
    stack: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(body):
        if m.start() != pos:
            return False
        pos = m.end()
        name = m.group(2)
        if name is None:
            continue
        if name not in ALLOWED_ELEMENTS:
            return False
        if m.group(1):
            if m.group(3) or not stack or stack.pop() != name:
                return False
        elif not m.group(3):
            stack.append(name)
    return pos == len(body) and not stack


def narrative_problems(xhtml: str) -> list[str]:
    """Human-readable reasons why this narrative div is unsafe or invalid; empty when fine."""
    if not isinstance(xhtml, str) or not xhtml.strip():
        return ["narrative is empty"]
    if _plain_and_safe(xhtml):
        return []
    if "<!DOCTYPE" in xhtml or "<!ENTITY" in xhtml:
        return ["narrative may not declare a DOCTYPE or entities"]
    try:
        root = etree.fromstring(xhtml.encode("utf-8"), _PARSER)
    except etree.XMLSyntaxError as exc:
        return [f"narrative is not well-formed XHTML: {exc.msg}"]
    problems: list[str] = []
    if etree.QName(root).localname != "div" or etree.QName(root).namespace != XHTML_NS:
        problems.append("narrative root must be an XHTML <div>")
    for el in root.iter():
        if not isinstance(el.tag, str):
            if isinstance(el, etree._ProcessingInstruction):
                problems.append("processing instructions are not allowed in narrative")
            continue
        q = etree.QName(el)
        if q.namespace != XHTML_NS:
            problems.append(f"element <{q.localname}> is not in the XHTML namespace")
            continue
        if q.localname not in ALLOWED_ELEMENTS:
            problems.append(f"element <{q.localname}> is not allowed in narrative")
        for name, value in el.attrib.items():
            aq = etree.QName(name)
            local = (
                aq.localname
                if aq.namespace is None
                else (
                    "xml:" + aq.localname if aq.namespace == "http://www.w3.org/XML/1998/namespace" else None
                )
            )
            if local is None or local.lower().startswith("on") or local not in ALLOWED_ATTRIBUTES:
                problems.append(f"attribute '{aq.localname}' is not allowed on <{q.localname}>")
                continue
            low = value.strip().lower()
            if low.startswith(("javascript:", "vbscript:", "data:text/html")):
                problems.append(f"active content in '{local}' on <{q.localname}>")
            if local == "src" and q.localname != "img":
                problems.append(f"'src' is only allowed on <img>, not <{q.localname}>")
            if local == "style" and ("url(" in low or "expression(" in low):
                problems.append("external references in style are not allowed")
    return problems


def html_checks(xhtml: str) -> bool:
    return not narrative_problems(xhtml)

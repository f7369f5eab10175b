"""The FHIR narrative safety check behind `htmlChecks()` (txt-1/txt-2 in R4).

Narrative is displayed by receivers; an active element or an external reference in it is a script
injection or a tracking vector. The rules are the FHIR ones: only a basic set of XHTML elements and
attributes, no scripts, forms, event handlers, and no external references except images.
Parsed by lxml with network and entity resolution off, so the check itself cannot be abused.
"""

from __future__ import annotations

import re
import threading

from lxml import etree

XHTML_NS = "http://www.w3.org/1999/xhtml"

# The elements of XHTML 1.0 Strict that narrative.html allows (chapters 7-11 and 15 of HTML 4.0:
# text, lists, tables, links, images), as the reference validator lists them.
ALLOWED_ELEMENTS = frozenset(
    [
        "a",
        "abbr",
        "acronym",
        "address",
        "area",
        "b",
        "bdo",
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
        "kbd",
        "li",
        "map",
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
# Attributes allowed on any of them: core and i18n attributes (no event handlers) and the table
# cell alignment ones. `xml:space` is the fixed attribute of <pre> in the XHTML schema; the
# reference validator only notes it anywhere else, so it is accepted everywhere.
GLOBAL_ATTRIBUTES = frozenset(
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
        "span",
        "width",
        "align",
        "valign",
        "char",
        "charoff",
        "abbr",
        "axis",
        "headers",
        "scope",
        "rowspan",
        "colspan",
        "xml:space",
    ]
)
# Attributes allowed only on some elements (XHTML 1.0 Strict: links, images, image maps, quotes,
# table layout; td nowrap as the reference validator allows it).
ELEMENT_ATTRIBUTES: dict[str, frozenset[str]] = {
    "a": frozenset(["href", "name", "charset", "type", "hreflang", "rel", "rev", "shape", "coords"]),
    "img": frozenset(["src", "alt", "longdesc", "height", "width", "usemap", "ismap", "border"]),
    "map": frozenset(["name"]),
    "area": frozenset(["shape", "coords", "href", "nohref", "alt"]),
    "blockquote": frozenset(["cite"]),
    "q": frozenset(["cite"]),
    "table": frozenset(["summary", "width", "border", "frame", "rules", "cellspacing", "cellpadding"]),
    "td": frozenset(["nowrap"]),
}
ALLOWED_ATTRIBUTES = GLOBAL_ATTRIBUTES.union(*ELEMENT_ATTRIBUTES.values())
TXT_2 = "Constraint failed: txt-2: 'The narrative SHALL have some non-whitespace content'"
_XML_SPACE = " \t\r\n"
_XML_NS = "http://www.w3.org/XML/1998/namespace"
_TAG = re.compile(r"<[^>]*>")
_LOCAL = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser. lxml's own documentation on ``XMLParser``: "avoid sharing parsers
    between threads. While this is not harmful, it is more efficient to use separate parsers":
    a shared parser is locked while it parses, so narratives checked by the validator's worker
    threads would be parsed one at a time. One parser per thread, reused for every narrative."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
    return parser


_ROOT_OPEN = f'<div xmlns="{XHTML_NS}">'
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_TAG_TOKEN = r"<(/?)([a-z][a-z0-9]*)\s*(/?)>"  # a tag without attributes
# the body as a sequence of tokens: tags, text and predefined or numeric entities; possessive,
# so a text that is not made of them fails at once instead of trying every split of its runs
_PLAIN_BODY = re.compile(
    rf"(?:{_TAG_TOKEN}|[^<&]++|&(?:amp|lt|gt|quot|apos|#[0-9]{{1,7}}|#x[0-9a-fA-F]{{1,6}});)*+"
)
_TAGS = re.compile(_TAG_TOKEN)


def _plain_and_safe(xhtml: str) -> bool:
    """True for the common generated narrative: an XHTML div whose descendants are allowed
    elements without attributes, text and the predefined entities, properly nested. Anything
    else (attributes, comments, CDATA, other entities) goes through the full XML check.

    Once the body is known to be such tokens, every ``<`` in it opens a tag token, so the tags
    are found again by a plain search and only they are looked at one by one."""
    if not xhtml.startswith(_ROOT_OPEN) or not xhtml.endswith("</div>"):
        return False
    body = xhtml[len(_ROOT_OPEN) : -len("</div>")]
    if "]]>" in body or _NOT_XML_CHAR.search(body) or _PLAIN_BODY.fullmatch(body) is None:
        return False
    stack: list[str] = []
    for closing, name, empty in _TAGS.findall(body):
        if name not in ALLOWED_ELEMENTS:
            return False
        if closing:
            if empty or not stack or stack.pop() != name:
                return False
        elif not empty:
            stack.append(name)
    return not stack


def narrative_problems(xhtml: str) -> list[str]:
    """Human-readable reasons why this narrative div is unsafe or invalid; empty when fine."""
    if not isinstance(xhtml, str) or not xhtml.strip():
        return ["narrative is empty"]
    if _plain_and_safe(xhtml):
        body = _TAG.sub("", xhtml[len(_ROOT_OPEN) : -len("</div>")])
        return [] if body.strip(_XML_SPACE) else [TXT_2]
    if "<!DOCTYPE" in xhtml or "<!ENTITY" in xhtml:
        return ["narrative may not declare a DOCTYPE or entities"]
    try:
        root = etree.fromstring(xhtml.encode("utf-8"), _parser())
    except etree.XMLSyntaxError as exc:
        return [f"narrative is not well-formed XHTML: {exc.msg}"]
    problems: list[str] = []
    if etree.QName(root).localname != "div" or etree.QName(root).namespace != XHTML_NS:
        problems.append("narrative root must be an XHTML <div>")
    has_content = False
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
        has_content = has_content or _has_text(el) or (q.localname == "img" and bool(el.get("src")))
        allowed = ELEMENT_ATTRIBUTES.get(q.localname, frozenset())
        for name, value in el.attrib.items():
            aq = etree.QName(name)
            local = (
                aq.localname
                if aq.namespace is None
                else ("xml:" + aq.localname if aq.namespace == _XML_NS else None)
            )
            if (
                local is None
                or local.lower().startswith("on")
                or (local not in GLOBAL_ATTRIBUTES and local not in allowed)
            ):
                problems.append(f"attribute '{local or aq.localname}' is not allowed on <{q.localname}>")
                continue
            low = value.strip().lower()
            if low.startswith(("javascript:", "vbscript:", "data:text/html")):
                problems.append(f"active content in '{local}' on <{q.localname}>")
            if local == "style" and ("url(" in low or "expression(" in low):
                problems.append("external references in style are not allowed")
    if not has_content:
        problems.append(TXT_2)
    return problems


def _has_text(el: etree._Element) -> bool:
    """Non-whitespace text directly in ``el`` or right after one of its children (XML
    whitespace only: a no-break space is content, as in txt-2's normalize-space())."""
    if el.text and el.text.strip(_XML_SPACE):
        return True
    return any(c.tail and c.tail.strip(_XML_SPACE) for c in el)


def html_checks(xhtml: str) -> bool:
    return not narrative_problems(xhtml)

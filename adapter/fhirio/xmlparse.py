"""FHIR XML reading: hardened lxml parsing, then conversion to the FHIR JSON form.

Hardening: the DOCTYPE is refused before lxml sees the document (so no entity can be
declared, let alone expanded: billion laughs and external entities die in the prolog scan),
and the parser itself runs with ``resolve_entities=False``, ``no_network``, ``load_dtd=False``
and ``huge_tree=False`` as a second line.

Conversion follows the element tables of the core StructureDefinitions (``model.py``):
arrays where ``max != "1"``, primitive types to bool/int/Decimal/str, ``id`` and extensions
of primitives to the ``_name`` sibling (arrays padded with ``None``), choice types by their
concrete name, nested resources unwrapped, the narrative ``div`` kept as XHTML text.

Content the model does not know is *kept*, not dropped: an unknown element becomes a key of
the same name (``{namespace}name`` outside the FHIR namespace) whose value is a generic
conversion (``value`` attribute -> string, child elements -> object, repeats -> list), so the
structure validator reports it as an unknown element at its path. What cannot be carried in
JSON (unknown attributes, text content) is reported here as an ``Issue``.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from lxml import etree

from adapter.fhirio.errors import Limits, ParseError
from adapter.fhirio.model import BOOLEAN_TYPES, DECIMAL_TYPES, INTEGER_TYPES, ElementInfo, TypeModel
from adapter.validation.issues import Issue

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

_FHIR_PREFIX = "{" + FHIR_NS + "}"
_PROLOG_ITEM = re.compile(rb"\s*(?:<\?.*?\?>|<!--.*?-->)", re.S)
_DOCTYPE = re.compile(rb"\s*<!DOCTYPE", re.I)
_INTEGER = re.compile(r"[-+]?\d+\Z")
_DECIMAL = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?\Z")

# (element, attribute name or None) -> (line, col) in the source text; see xmllocate.py.
Where = Callable[[etree._Element, str | None], tuple[int, int]]


def _reject_doctype(data: bytes) -> None:
    pos = 0
    while True:
        m = _PROLOG_ITEM.match(data, pos)
        if not m:
            break
        pos = m.end()
    doctype = _DOCTYPE.match(data, pos)
    entity = data.find(b"<!ENTITY", 0, pos + 4096)
    if doctype or entity >= 0:
        at = doctype.end() - len(b"<!DOCTYPE") if doctype else entity
        line_start = data.rfind(b"\n", 0, at) + 1
        raise ParseError(
            "XML with a DOCTYPE is not accepted (entity declarations are a security risk)",
            line=data.count(b"\n", 0, at) + 1,
            col=len(data[line_start:at].decode("utf-8", errors="replace")) + 1,
            code="security",
        )


_LOCAL = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser, reused for every document it parses.

    lxml's documentation on ``XMLParser``: "avoid sharing parsers between threads. While this is
    not harmful, it is more efficient to use separate parsers." Sharing one is safe (lxml locks
    the parser while it parses) but serialises the service's worker threads on that lock; a new
    parser per call costs a parser context per document. One per thread avoids both, and is
    what ``adapter.fhirpath.xhtml`` does for narratives."""
    parser = getattr(_LOCAL, "parser", None)
    if parser is None:
        parser = _LOCAL.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
    return parser


def parse_tree(data: bytes, limits: Limits) -> etree._Element:
    """Parse XML bytes safely into an lxml element (no conversion)."""
    _reject_doctype(data)
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        line, col = exc.position if exc.position else (None, None)
        msg = str(exc.msg or exc)
        if "depth" in msg.lower() or "huge" in msg.lower():
            raise ParseError(
                f"XML nesting deeper than {limits.max_depth} levels", line=line, col=col, code="too-costly"
            ) from None
        raise ParseError(f"Invalid XML: {msg}", line=line, col=col) from None
    if root.getroottree().docinfo.doctype:
        raise ParseError("XML with a DOCTYPE is not accepted", code="security")
    return root


def _local(tag: str) -> tuple[str | None, str]:
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


def _primitive_value(text: str, type_code: str | None) -> Any:
    """The JSON value of a primitive; text that does not fit its type is kept as a string
    so the validator reports it with the type's own message."""
    if type_code in BOOLEAN_TYPES:
        if text == "true":
            return True
        if text == "false":
            return False
        return text
    if type_code in INTEGER_TYPES:
        return int(text) if _INTEGER.match(text) and len(text) < 40 else text
    if type_code in DECIMAL_TYPES:
        if not _DECIMAL.match(text):
            return text
        # As the JSON reader does: an integer literal stays an int, anything else is a Decimal.
        return int(text) if _INTEGER.match(text) and len(text) < 40 else Decimal(text)
    return text


def xhtml_text(div: etree._Element) -> str:
    """The narrative as XHTML text with its namespace declared and no stray declarations."""
    clone = copy.deepcopy(div)
    clone.tail = None
    etree.cleanup_namespaces(clone)
    return etree.tostring(clone, encoding=str, with_tail=False)


def _subtree_depth(el: etree._Element) -> int:
    depth = deepest = 0
    for event, _ in etree.iterwalk(el, events=("start", "end")):
        depth += 1 if event == "start" else -1
        deepest = max(deepest, depth)
    return deepest


def _position(
    where: Where | None, el: etree._Element, attribute: str | None = None
) -> tuple[int | None, int | None]:
    return where(el, attribute) if where is not None else (el.sourceline, None)


class _Converter:
    def __init__(self, model: TypeModel, limits: Limits, where: Where | None) -> None:
        self.model = model
        self.max_depth = limits.max_depth
        self.where = where
        self.issues: list[Issue] = []

    # -- findings -------------------------------------------------------------------------
    def issue(
        self,
        el: etree._Element,
        expr: str,
        message: str,
        severity: str = "error",
        *,
        attribute: str | None = None,
    ) -> None:
        line, col = _position(self.where, el, attribute)
        self.issues.append(
            Issue(
                severity=severity,  # type: ignore[arg-type]
                code="structure",
                expression=expr,
                message=message,
                message_id="XML_CONTENT",
                line=line,
                col=col,
            )
        )

    def too_deep(self, el: etree._Element) -> ParseError:
        line, col = _position(self.where, el)
        return ParseError(
            f"XML nesting deeper than {self.max_depth} levels", line=line, col=col, code="too-costly"
        )

    # -- resources ------------------------------------------------------------------------
    def resource(self, el: etree._Element, expr: str, depth: int) -> dict[str, Any]:
        ns, rtype = _local(el.tag)
        out: dict[str, Any] = {"resourceType": rtype}
        if ns != FHIR_NS:
            self.issue(el, expr, f"Resource element '{rtype}' is not in the FHIR namespace")
        elif rtype not in self.model.resource_types:
            self.issue(el, expr, f"Unknown resource type '{rtype}'")
        self.fill(el, rtype, out, expr, depth)
        return out

    # -- objects --------------------------------------------------------------------------
    def fill(
        self,
        el: etree._Element,
        parent: str,
        out: dict[str, Any],
        expr: str,
        depth: int,
        *,
        own_attributes: bool = True,
    ) -> None:
        if depth > self.max_depth:
            raise self.too_deep(el)
        model = self.model
        for name, value in el.attrib.items() if own_attributes else ():
            if name[:1] == "{":
                if not name.startswith("{" + XSI_NS + "}"):
                    self.issue(el, expr, f"Unexpected attribute '{name}'", "warning", attribute=name)
                continue
            found = model.lookup(parent, name)
            if found is not None and found[0].xml_attr:
                out[name] = value
            else:
                message = f"Unknown attribute '{name}' on element '{_local(el.tag)[1]}'"
                self.issue(el, expr, message, attribute=name)
        if own_attributes and el.text is not None and el.text.strip():
            self.issue(el, expr, "Text content is not allowed in FHIR elements (use the value attribute)")
        counts: dict[str, int] = {}
        padded: list[str] = []
        for child in el:
            tag = child.tag
            if not isinstance(tag, str):
                continue
            if child.tail is not None and child.tail.strip():
                self.issue(el, expr, "Text content is not allowed in FHIR elements (use the value attribute)")
            if tag.startswith(_FHIR_PREFIX):
                name = tag[len(_FHIR_PREFIX) :]
                found = model.lookup(parent, name)
            else:
                ns, name = _local(tag)
                found = model.lookup(parent, name) if name == "div" and ns == XHTML_NS else None
                if found is None:
                    name = tag  # '{ns}name': never a FHIR name, so it is reported as unknown
            index = counts.get(name, 0)
            counts[name] = index + 1
            if found is None:
                self.unknown(child, name, out, index)
                continue
            if found[0].xml_attr:
                self.issue(child, f"{expr}.{name}", f"'{name}' must be an XML attribute, not an element")
                continue
            info, type_code = found
            child_expr = f"{expr}.{name}[{index}]" if info.repeats else f"{expr}.{name}"
            if not info.repeats and index > 0:
                self.issue(child, child_expr, f"Element '{name}' occurs more than once (max 1)")
                continue
            self.element(child, info, type_code, name, out, child_expr, depth + 1, index, padded)
        for name in padded:  # primitive arrays: drop an all-None side
            if all(v is None for v in out[name]):
                del out[name]
            ext_key = "_" + name
            if all(v is None for v in out[ext_key]):
                del out[ext_key]

    def element(
        self,
        el: etree._Element,
        info: ElementInfo,
        type_code: str | None,
        name: str,
        out: dict[str, Any],
        expr: str,
        depth: int,
        index: int,
        padded: list[str],
    ) -> None:
        model = self.model
        if type_code == "xhtml":
            if _local(el.tag)[0] != XHTML_NS:
                self.issue(el, expr, "The narrative div must be in the XHTML namespace")
            if depth + _subtree_depth(el) - 1 > self.max_depth:
                raise self.too_deep(el)
            out[name] = xhtml_text(el)
            return
        if type_code == "Resource":
            value: Any = self.wrapped_resource(el, expr, depth)
        elif model.is_primitive(type_code):
            prim, ext = self.primitive(el, type_code, expr, depth)
            if info.repeats:
                if index == 0:
                    out[name] = []
                    out["_" + name] = []
                    padded.append(name)
                out[name].append(prim)
                out["_" + name].append(ext)
            else:
                if prim is not None:
                    out[name] = prim
                if ext is not None:
                    out["_" + name] = ext
            return
        else:
            value = {}
            sub = model.child_path(info, type_code)
            if sub is None:
                self.generic_fill(el, value, depth)
            else:
                self.fill(el, sub, value, expr, depth)
        if info.repeats:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value

    def wrapped_resource(self, el: etree._Element, expr: str, depth: int) -> dict[str, Any]:
        inner = [c for c in el if isinstance(c.tag, str)]
        for name in el.attrib:
            self.issue(el, expr, f"Unknown attribute '{name}' on a resource container", attribute=name)
        if len(inner) != 1:
            self.issue(
                el, expr, f"Expected exactly one resource inside '{_local(el.tag)[1]}', found {len(inner)}"
            )
            if not inner:
                return {}
        return self.resource(inner[0], expr, depth + 1)

    def primitive(
        self, el: etree._Element, type_code: str | None, expr: str, depth: int
    ) -> tuple[Any, dict[str, Any] | None]:
        if depth > self.max_depth:
            raise self.too_deep(el)
        prim: Any = None
        ext: dict[str, Any] = {}
        for name, text in el.attrib.items():
            if name == "value":
                prim = _primitive_value(text, type_code)
            elif name == "id":
                ext["id"] = text
            elif not name.startswith("{" + XSI_NS + "}"):
                message = f"Unknown attribute '{name}' on element '{_local(el.tag)[1]}'"
                self.issue(el, expr, message, attribute=name)
        if el.text is not None and el.text.strip():
            self.issue(el, expr, "Text content is not allowed in FHIR elements (use the value attribute)")
        if len(el):
            # Only id and extension are allowed; fill() reports anything else as unknown keys.
            self.fill(el, "Element", ext, expr, depth, own_attributes=False)
        return prim, (ext or None)

    # -- unknown content ------------------------------------------------------------------
    def unknown(self, el: etree._Element, name: str, out: dict[str, Any], index: int) -> None:
        value = self.generic(el, 1)
        if index == 0 or name not in out:
            out[name] = value
        elif index == 1:
            out[name] = [out[name], value]
        else:
            out[name].append(value)

    def generic(self, el: etree._Element, depth: int) -> Any:
        if depth > self.max_depth:
            raise self.too_deep(el)
        children = [c for c in el if isinstance(c.tag, str)]
        if not children and set(el.attrib) <= {"value"}:
            value = el.get("value")
            return value if value is not None else (el.text or "")
        obj: dict[str, Any] = {}
        self.generic_fill(el, obj, depth)
        return obj

    def generic_fill(self, el: etree._Element, obj: dict[str, Any], depth: int) -> None:
        obj.update(el.attrib)
        counts: dict[str, int] = {}
        for child in el:
            if not isinstance(child.tag, str):
                continue
            ns, local = _local(child.tag)
            name = local if ns == FHIR_NS else child.tag
            index = counts.get(name, 0)
            counts[name] = index + 1
            value = self.generic(child, depth + 1)
            if index == 0:
                obj[name] = value
            elif index == 1:
                obj[name] = [obj[name], value]
            else:
                obj[name].append(value)


def convert(
    root: etree._Element, model: TypeModel, limits: Limits, where: Where | None = None
) -> tuple[dict[str, Any], list[Issue]]:
    """Convert a parsed FHIR XML resource to the internal (FHIR JSON) form. ``where`` gives
    findings their column; it is only called for findings, so valid input never pays."""
    ns, rtype = _local(root.tag)
    if ns != FHIR_NS:
        line, col = _position(where, root)
        space = f"namespace '{ns}'" if ns else "no namespace"
        raise ParseError(
            f"The root element '{rtype}' is in {space}; FHIR XML uses '{FHIR_NS}'",
            line=line,
            col=col,
            code="structure",
        )
    if rtype not in model.resource_types:
        line, col = _position(where, root)
        raise ParseError(f"Unknown resource type '{rtype}'", line=line, col=col, code="structure")
    conv = _Converter(model, limits, where)
    resource = conv.resource(root, rtype, 1)
    return resource, conv.issues

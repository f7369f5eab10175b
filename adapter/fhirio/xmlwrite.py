"""FHIR XML writer: the internal form back to XML, in StructureDefinition element order.

JSON key order carries no meaning but XML element order does, so each object is written by
walking the children of its type in the core snapshot order. Keys the model does not know are
written last, as generic elements, so that nothing is silently lost.
"""

from __future__ import annotations

from decimal import Decimal
from itertools import zip_longest
from typing import Any

from lxml import etree

from adapter.fhirio.jsonwrite import decimal_text
from adapter.fhirio.model import ElementInfo, TypeModel, core_model
from adapter.fhirio.xmlparse import FHIR_NS, XHTML_NS

_F = "{" + FHIR_NS + "}"


def primitive_text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return decimal_text(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _xhtml(text: Any) -> etree._Element:
    if not isinstance(text, str):
        raise ValueError("Narrative div must be a string of XHTML")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        div = etree.fromstring(text.encode("utf-8"), parser)
    except etree.XMLSyntaxError as exc:
        raise ValueError(f"Narrative div is not well-formed XHTML: {exc}") from None
    if div.tag != "{" + XHTML_NS + "}div":
        raise ValueError("Narrative div must be a <div> in the XHTML namespace")
    return div


class _Writer:
    def __init__(self, model: TypeModel) -> None:
        self.model = model

    def resource(self, parent: etree._Element | None, res: dict[str, Any]) -> etree._Element:
        rtype = res.get("resourceType")
        if not isinstance(rtype, str) or not rtype:
            raise ValueError("Cannot write a resource without 'resourceType' as XML")
        tag = _F + rtype
        el = etree.Element(tag, nsmap={None: FHIR_NS}) if parent is None else etree.SubElement(parent, tag)
        self.obj(el, res, rtype)
        return el

    def obj(self, el: etree._Element, obj: dict[str, Any], path: str | None) -> None:
        used = {"resourceType"}
        for info in self.model.children.get(path, ()) if path else ():
            if info.choice:
                keys = [
                    k
                    for k in obj
                    if k.startswith(info.name) and (found := self.model.lookup(path, k)) and found[0] is info
                ]
                keys += [
                    k[1:]
                    for k in obj
                    if k.startswith("_" + info.name)
                    and k[1:] not in obj
                    and (found := self.model.lookup(path, k[1:]))
                    and found[0] is info
                ]
            elif info.name in obj or "_" + info.name in obj:
                keys = [info.name]
            else:
                continue
            for key in keys:
                used.add(key)
                used.add("_" + key)
                value, ext = obj.get(key), obj.get("_" + key)
                if info.xml_attr:
                    if value is not None:
                        el.set(key, primitive_text(value))
                    continue
                self.value(el, key, info, info.type_for(key), value, ext)
        for key, value in obj.items():
            if key not in used:
                self.generic(el, key, value)

    def value(
        self, el: etree._Element, key: str, info: ElementInfo, type_code: str | None, value: Any, ext: Any
    ) -> None:
        values = value if isinstance(value, list) else [value]
        exts = ext if isinstance(ext, list) else [] if ext is None else [ext]
        if value is None:
            values = [None] * len(exts)
        for v, e in zip_longest(values, exts):
            if type_code == "xhtml":
                if v is not None:
                    el.append(_xhtml(v))
                continue
            if type_code == "Resource":
                wrapper = etree.SubElement(el, _F + key)
                if isinstance(v, dict):
                    self.resource(wrapper, v)
                continue
            child = etree.SubElement(el, _F + key)
            if self.model.is_primitive(type_code):
                if isinstance(e, dict) and e.get("id") is not None:
                    child.set("id", primitive_text(e["id"]))
                if v is not None:
                    child.set("value", primitive_text(v))
                if isinstance(e, dict):
                    rest = {k: x for k, x in e.items() if k != "id"}
                    self.obj(child, rest, "Element")
            elif isinstance(v, dict):
                self.obj(child, v, self.model.child_path(info, type_code))
            elif v is not None:
                child.set("value", primitive_text(v))

    def generic(self, el: etree._Element, key: str, value: Any) -> None:
        """Content the model does not know (invalid FHIR), kept as plain elements."""
        for v in value if isinstance(value, list) else [value]:
            try:
                child = etree.SubElement(el, _F + key)
            except ValueError:
                raise ValueError(f"Cannot write the JSON property '{key}' as an XML element") from None
            if isinstance(v, dict):
                if "resourceType" in v:
                    self.resource(child, v)
                else:
                    self.obj(child, v, None)
            elif v is not None:
                child.set("value", primitive_text(v))


def to_xml(resource: dict[str, Any], *, pretty: bool = True) -> str:
    """Serialise the internal form as FHIR XML text (no XML declaration: the caller picks the
    encoding; UTF-8 is the norm)."""
    root = _Writer(core_model()).resource(None, resource)
    if pretty:
        _indent_outside_xhtml(root)
    return etree.tostring(root, encoding=str)


def _indent_outside_xhtml(root: etree._Element) -> None:
    """Indent the FHIR elements but leave narrative whitespace exactly as it was."""
    saved: list[tuple[etree._Element, str | None, str | None, bool]] = []
    for div in root.iter("{" + XHTML_NS + "}div"):
        for node in div.iter():
            saved.append((node, node.text, node.tail, node is not div))
    etree.indent(root, space="  ")
    for node, text, tail, inner in saved:
        node.text = text
        if inner:
            node.tail = tail

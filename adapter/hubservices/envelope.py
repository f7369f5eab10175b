"""SOAP 1.1 envelopes for hubservices v3: wrap a body, parse a reply safely, read and write faults.

Replies are parsed with a hardened parser: no DTD (a document type declaration is refused
outright), no entity expansion, no network, a size limit, no huge-tree mode. The envelope is
built as an element tree and serialised only at the transport, so a security step can add its
``wsse:Security`` header and sign the Body in between.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
CONTENT_TYPE = "text/xml; charset=utf-8"
MAX_REPLY_BYTES = 16 * 1024 * 1024


def _s(local: str) -> str:
    return f"{{{SOAP11_NS}}}{local}"


class MalformedMessage(Exception):
    """Not a usable SOAP message (not XML, a DTD, too large, no Body ...); ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Fault:
    """A SOAP 1.1 fault: ``code`` is (namespace, local name) of the faultcode QName."""

    code: tuple[str | None, str]
    string: str
    actor: str | None = None
    detail: str | None = None

    @property
    def code_text(self) -> str:
        ns, local = self.code
        prefix = {SOAP11_NS: "soap", WSSE_NS: "wsse"}.get(ns or "")
        return f"{prefix}:{local}" if prefix else local

    @property
    def is_security(self) -> bool:
        return self.code[0] == WSSE_NS

    @property
    def is_client(self) -> bool:
        return self.code[0] == SOAP11_NS and self.code[1].split(".")[0] == "Client"


class SoapFault(Exception):
    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        super().__init__(f"{fault.code_text}: {fault.string}")


def wrap(body: etree._Element, *, header: bool = True) -> etree._Element:
    """An envelope holding ``body`` (moved, not copied) in its Body, with an empty Header."""
    env = etree.Element(_s("Envelope"), nsmap={"soapenv": SOAP11_NS})
    if header:
        etree.SubElement(env, _s("Header"))
    etree.SubElement(env, _s("Body")).append(body)
    return env


def serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def parse_xml(data: bytes, *, max_bytes: int = MAX_REPLY_BYTES, what: str = "message") -> etree._Element:
    """The root of ``data``, parsed by the project's one hardened parser
    (``adapter.fhirio.xmlparse``); ``MalformedMessage`` when too large, not XML, or carrying a DTD."""
    from adapter.fhirio.errors import DEFAULT_LIMITS, ParseError
    from adapter.fhirio.xmlparse import parse_tree

    if len(data) > max_bytes:
        raise MalformedMessage(f"{what} larger than {max_bytes} bytes")
    try:
        return parse_tree(bytes(data), DEFAULT_LIMITS)
    except ParseError as exc:
        if exc.code == "security":
            raise MalformedMessage(f"{what} carries a document type declaration") from None
        raise MalformedMessage(f"{what} is not well-formed XML ({_short(exc.message)})") from None


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse(data: bytes, *, max_bytes: int = MAX_REPLY_BYTES) -> etree._Element:
    """The envelope root; ``MalformedMessage`` unless it is a SOAP 1.1 Envelope with a Body."""
    root = parse_xml(data, max_bytes=max_bytes, what="SOAP message")
    if root.tag != _s("Envelope"):
        raise MalformedMessage("not a SOAP 1.1 envelope")
    if body_of(root) is None:
        raise MalformedMessage("SOAP envelope without a Body")
    return root


def body_of(envelope: etree._Element) -> etree._Element | None:
    return envelope.find(_s("Body"))


def payload(envelope: etree._Element) -> etree._Element:
    """The single element in the Body; ``SoapFault`` when it is a Fault."""
    body = body_of(envelope)
    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    if len(children) != 1:
        raise MalformedMessage(f"SOAP Body holds {len(children)} elements, expected 1")
    child = children[0]
    if child.tag == _s("Fault"):
        raise SoapFault(read_fault(child))
    return child


def read_fault(el: etree._Element) -> Fault:
    code_text = (el.findtext("faultcode") or "").strip()
    prefix, _, local = code_text.rpartition(":")
    ns = el.nsmap.get(prefix or None) if prefix else None
    if prefix and ns is None:
        code_el = el.find("faultcode")
        ns = code_el.nsmap.get(prefix) if code_el is not None else None
    detail_el = el.find("detail")
    detail = None
    if detail_el is not None:
        detail = " ".join(t.strip() for t in detail_el.itertext() if t.strip()) or None
    return Fault(
        (ns, local or "Server"), (el.findtext("faultstring") or "").strip(), el.findtext("faultactor"), detail
    )


def fault_envelope(code: tuple[str, str], string: str, *, detail: str | None = None) -> bytes:
    """A serialised SOAP 1.1 fault (what the mock hub answers); ``code`` is (namespace, local)."""
    ns, local = code
    nsmap = {"soapenv": SOAP11_NS}
    prefix = "soapenv"
    if ns != SOAP11_NS:
        prefix = "wsse" if ns == WSSE_NS else "f"
        nsmap[prefix] = ns
    env = etree.Element(_s("Envelope"), nsmap=nsmap)
    fault = etree.SubElement(etree.SubElement(env, _s("Body")), _s("Fault"))
    etree.SubElement(fault, "faultcode").text = f"{prefix}:{local}"
    etree.SubElement(fault, "faultstring").text = string
    if detail:
        etree.SubElement(etree.SubElement(fault, "detail"), "message").text = detail
    return serialize(env)


def response_envelope(body: etree._Element) -> bytes:
    return serialize(wrap(body, header=False))

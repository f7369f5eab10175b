"""SOAP 1.1 replies: a response envelope around a payload, and the Fault.

The WSDL's binding says ``wsaw:UsingAddressing required="true"``, so a request that came with
WS-Addressing headers is answered with them: ``Action`` (the operation's output action),
``MessageID``, ``RelatesTo`` the request's ``MessageID``, ``To`` anonymous.
"""

from __future__ import annotations

import uuid

from lxml import etree

from adapter.gitb.ns import ACTIONS, SOAP11, VS, WSA_ANONYMOUS
from adapter.gitb.tar import safe

CONTENT_TYPE = "text/xml; charset=utf-8"


def _envelope() -> tuple[etree._Element, etree._Element]:
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"soap": SOAP11})
    header = etree.SubElement(envelope, f"{{{SOAP11}}}Header")
    return envelope, header


def response_envelope(payload: etree._Element, *, operation: str, relates_to: str | None = None,
                      addressing_ns: str | None = None) -> bytes:
    envelope, header = _envelope()
    if addressing_ns:
        wsa = addressing_ns
        etree.SubElement(header, f"{{{wsa}}}Action", nsmap={"wsa": wsa}).text = ACTIONS[operation]
        etree.SubElement(header, f"{{{wsa}}}MessageID", nsmap={"wsa": wsa}).text = f"urn:uuid:{uuid.uuid4()}"
        if relates_to:
            etree.SubElement(header, f"{{{wsa}}}RelatesTo", nsmap={"wsa": wsa}).text = relates_to
        etree.SubElement(header, f"{{{wsa}}}To", nsmap={"wsa": wsa}).text = WSA_ANONYMOUS
    else:
        envelope.remove(header)
    body = etree.SubElement(envelope, f"{{{SOAP11}}}Body")
    body.append(payload)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def validation_response(report: etree._Element) -> etree._Element:
    """``vs:ValidationResponse`` holding the (unqualified) ``report``."""
    response = etree.Element(f"{{{VS}}}ValidationResponse", nsmap={"vs": VS})
    response.append(report)
    return response


def fault_envelope(text: str, *, code: str = "Client") -> bytes:
    """A SOAP 1.1 Fault; ``code`` is Client, Server or VersionMismatch (``soap:`` qualified)."""
    envelope, header = _envelope()
    envelope.remove(header)
    body = etree.SubElement(envelope, f"{{{SOAP11}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = safe(text)
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

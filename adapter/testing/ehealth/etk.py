"""A mock eHealth ETK depot: ``GetEtkRequest`` in, ``GetEtkResponse`` with the ETK out.

Each ETK is a CMS SignedData (DER) whose content and certificate set carry the owner's
encryption certificate, signed with the owner's key, built once at construction. An unknown
identifier gets a ``GetEtkResponse`` with status 404 and no ETK; an identifier given without an
application id that matches several ETKs gets ``MatchingEtks``; a request that is not a
``GetEtkRequest`` gets a SOAP 1.1 fault (HTTP 500).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Mapping

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import pkcs7
from lxml import etree

from adapter.ehealth.etk import COMMONS_NS, ETK_CORE_NS, ETK_PROTOCOL_NS
from adapter.ehealth.wssecurity import SOAP11_NS, parse_xml
from adapter.testing.ehealth.sts import fault_response

__all__ = ["MockEtkDepot", "make_etk"]

_NS = {"soap": SOAP11_NS, "p": ETK_PROTOCOL_NS, "c": ETK_CORE_NS}


def make_etk(key: PrivateKeyTypes, certificate: x509.Certificate) -> bytes:
    """The DER CMS SignedData ETK for ``certificate``, signed with ``key``."""
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(certificate.public_bytes(serialization.Encoding.DER))
        .add_signer(certificate, key, hashes.SHA256())  # type: ignore[arg-type]
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )


class MockEtkDepot:
    """``etks``: (type, value, application id) -> (the owner's key, its encryption certificate).
    ``requests`` counts the requests handled."""

    def __init__(self, etks: Mapping[tuple[str, str, str], tuple[PrivateKeyTypes, x509.Certificate]]) -> None:
        self.etks = {ident: make_etk(key, cert) for ident, (key, cert) in etks.items()}
        self.requests = 0
        self._lock = threading.Lock()

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        with self._lock:
            self.requests += 1
        try:
            envelope = parse_xml(body)
        except ValueError as exc:
            return fault_response(f"the request is not acceptable XML: {exc}")
        identifier = envelope.find("soap:Body/p:GetEtkRequest/p:SearchCriteria/c:Identifier", _NS)
        if identifier is None:
            return fault_response("the Body holds no GetEtkRequest/SearchCriteria/Identifier")
        kind = (identifier.findtext("c:Type", namespaces=_NS) or "").strip()
        value = (identifier.findtext("c:Value", namespaces=_NS) or "").strip()
        app = (identifier.findtext("c:ApplicationID", namespaces=_NS) or "").strip()
        if not kind or not value:
            return fault_response("the Identifier needs a Type and a Value")
        etk = self.etks.get((kind, value, app))
        if etk is not None:
            return 200, self._response("200", "OK", etk=etk)
        matches = [e for (t, v, _), e in self.etks.items() if (t, v) == (kind, value)] if not app else []
        if len(matches) > 1:
            return 200, self._response("200", "several ETKs match", matches=tuple(matches))
        return 200, self._response("404", "No ETK found for the given identifier")

    @staticmethod
    def _response(
        code: str, message: str, *, etk: bytes | None = None, matches: tuple[bytes, ...] = ()
    ) -> bytes:
        envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
        body = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body")
        answer = etree.SubElement(
            body, f"{{{ETK_PROTOCOL_NS}}}GetEtkResponse", nsmap={None: COMMONS_NS, "etk": ETK_PROTOCOL_NS}
        )
        status = etree.SubElement(answer, f"{{{COMMONS_NS}}}Status")
        etree.SubElement(status, f"{{{COMMONS_NS}}}Code").text = code
        etree.SubElement(status, f"{{{COMMONS_NS}}}Message", Lang="EN").text = message
        if etk is not None:
            etree.SubElement(answer, f"{{{ETK_PROTOCOL_NS}}}ETK").text = base64.b64encode(etk).decode("ascii")
        if matches:
            listing = etree.SubElement(answer, f"{{{ETK_PROTOCOL_NS}}}MatchingEtks")
            for match in matches:
                etree.SubElement(listing, f"{{{ETK_PROTOCOL_NS}}}ETK").text = base64.b64encode(match).decode()
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

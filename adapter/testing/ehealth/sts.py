"""A mock eHealth STS: WS-Trust Issue in, SAML 1.1 holder-of-key assertion out.

It checks the request as the STS does (the WS-Security signature and Timestamp, a signer
certificate issued by a trusted CA, a SAML 1.1 / Issue / PublicKey request whose ``UseKey`` is
the signer's own certificate) and answers an RSTR holding an assertion signed by the STS key:
Conditions now .. now + lifetime (or the requested Lifetime if shorter), the caller's
certificate as holder-of-key, and the requested attributes. Attribute values come from the
caller's certificate subject (eHealth writes identifiers there as ``CBE=...``, ``NIHII-...=...``):
``...cbe-number`` -> the CBE, ``...nihii...`` -> a NIHII, ``...:boolean`` -> ``true``; anything
else cannot be certified and is a fault, as with the real STS.

Every problem is a SOAP 1.1 fault (HTTP 500) with a one-line faultstring.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import CanonicalizationMethod, DigestAlgorithm, SignatureMethod, XMLSigner

from adapter.ehealth.credentials import utc
from adapter.ehealth.errors import SecurityError
from adapter.ehealth.sts import KEY_TYPE_PUBLIC_KEY, SAMLV11_TOKEN_TYPE, WST_ISSUE, WST_NS
from adapter.ehealth.wssecurity import (
    DS_NS,
    HOLDER_OF_KEY,
    SAML1_NS,
    SOAP11_NS,
    WSSE_NS,
    WSU_NS,
    format_time,
    parse_time,
    parse_xml,
    verify_x509,
)

__all__ = ["ISSUER", "MockSts", "build_assertion", "fault_response"]

ISSUER = "urn:be:fgov:ehealth:sts:test"
X509_PKI = "urn:oasis:names:tc:SAML:1.0:am:X509-PKI"
X509_SUBJECT_NAME = "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
_KEY_TYPES = {KEY_TYPE_PUBLIC_KEY, "http://docs.oasis-open.org/ws-sx/ws-trust/200512/PublicKey"}
_NS = {"soap": SOAP11_NS, "wst": WST_NS, "saml": SAML1_NS, "ds": DS_NS, "wsse": WSSE_NS, "wsu": WSU_NS}
_IDENTIFIER = re.compile(r"^([A-Z][A-Z-]*)=(\S+)$")


class _Fault(Exception):
    def __init__(self, text: str, code: str = "Client") -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def fault_response(text: str, code: str = "Client") -> tuple[int, bytes]:
    """A SOAP 1.1 fault (HTTP 500) with ``faultcode`` soap:{code} and ``faultstring`` text."""
    envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
    fault = etree.SubElement(etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body"), f"{{{SOAP11_NS}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = text
    return 500, etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


def _identifiers(certificate: x509.Certificate) -> dict[str, str]:
    found: dict[str, str] = {}
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.SERIAL_NUMBER):
        for attribute in certificate.subject.get_attributes_for_oid(oid):
            m = _IDENTIFIER.match(str(attribute.value).strip())
            if m:
                found.setdefault(m.group(1), m.group(2))
    return found


def _value_for(name: str, ids: Mapping[str, str]) -> str | None:
    lowered = name.lower()
    if lowered.endswith(":boolean"):
        return "true"
    if "cbe-number" in lowered:
        return ids.get("CBE")
    if "nihii" in lowered:
        return next((v for k, v in ids.items() if k.startswith("NIHII")), None)
    if "ehp" in lowered:
        return ids.get("EHP")
    return None


def build_assertion(
    *,
    key: PrivateKeyTypes,
    certificate: x509.Certificate,
    holder: x509.Certificate,
    attributes: Sequence[tuple[str, str, Sequence[str]]],
    not_before: datetime,
    not_on_or_after: datetime,
    issue_instant: datetime | None = None,
    issuer: str = ISSUER,
) -> etree._Element:
    """A SAML 1.1 holder-of-key assertion for ``holder`` with ``attributes`` ((namespace, name,
    values) triples), signed (enveloped, exclusive c14n, rsa-sha256) by ``key``/``certificate``."""
    instant = format_time(issue_instant or not_before)
    assertion_id = f"_{uuid.uuid4().hex}"
    assertion = etree.Element(
        f"{{{SAML1_NS}}}Assertion",
        nsmap={"saml": SAML1_NS},
        AssertionID=assertion_id,
        IssueInstant=instant,
        Issuer=issuer,
        MajorVersion="1",
        MinorVersion="1",
    )
    etree.SubElement(
        assertion,
        f"{{{SAML1_NS}}}Conditions",
        NotBefore=format_time(not_before),
        NotOnOrAfter=format_time(not_on_or_after),
    )
    holder_b64 = base64.b64encode(holder.public_bytes(Encoding.DER)).decode("ascii")

    def subject(parent: etree._Element) -> None:
        element = etree.SubElement(parent, f"{{{SAML1_NS}}}Subject")
        name_id = etree.SubElement(
            element,
            f"{{{SAML1_NS}}}NameIdentifier",
            Format=X509_SUBJECT_NAME,
            NameQualifier=holder.issuer.rfc4514_string(),
        )
        name_id.text = holder.subject.rfc4514_string()
        confirmation = etree.SubElement(element, f"{{{SAML1_NS}}}SubjectConfirmation")
        etree.SubElement(confirmation, f"{{{SAML1_NS}}}ConfirmationMethod").text = HOLDER_OF_KEY
        key_info = etree.SubElement(confirmation, f"{{{DS_NS}}}KeyInfo", nsmap={"ds": DS_NS})
        etree.SubElement(
            etree.SubElement(key_info, f"{{{DS_NS}}}X509Data"), f"{{{DS_NS}}}X509Certificate"
        ).text = holder_b64

    authn = etree.SubElement(
        assertion,
        f"{{{SAML1_NS}}}AuthenticationStatement",
        AuthenticationInstant=instant,
        AuthenticationMethod=X509_PKI,
    )
    subject(authn)
    if attributes:
        statement = etree.SubElement(assertion, f"{{{SAML1_NS}}}AttributeStatement")
        subject(statement)
        for namespace, name, values in attributes:
            attribute = etree.SubElement(
                statement, f"{{{SAML1_NS}}}Attribute", AttributeName=name, AttributeNamespace=namespace
            )
            for value in values:
                etree.SubElement(attribute, f"{{{SAML1_NS}}}AttributeValue").text = value
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    return signer.sign(
        assertion,
        key=key,  # type: ignore[arg-type]
        cert=[certificate],
        reference_uri=f"#{assertion_id}",
        id_attribute="AssertionID",
    )


class MockSts:
    """The STS as a request handler. ``issued`` counts tokens issued; ``faults`` counts faults."""

    def __init__(
        self,
        key: PrivateKeyTypes,
        certificate: x509.Certificate,
        *,
        trusted: Sequence[x509.Certificate],
        lifetime: float = 3600.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.key = key
        self.certificate = certificate
        self.trusted = tuple(trusted)
        self.lifetime = float(lifetime)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.issued = 0
        self.faults = 0
        self._lock = threading.Lock()

    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        try:
            status, reply = 200, self._issue(body)
        except _Fault as fault:
            with self._lock:
                self.faults += 1
            return fault_response(fault.text, fault.code)
        with self._lock:
            self.issued += 1
        return status, reply

    def _issue(self, body: bytes) -> bytes:
        now = utc(self.clock())
        try:
            envelope = parse_xml(body)
        except ValueError as exc:
            raise _Fault(f"the request is not acceptable XML: {exc}") from None
        try:
            signer = verify_x509(envelope, trusted=self.trusted, now=now)
        except SecurityError as exc:
            raise _Fault(f"authentication failed: {exc.reason}") from None
        rst = envelope.find("soap:Body/wst:RequestSecurityToken", _NS)
        if rst is None:
            raise _Fault("the Body holds no wst:RequestSecurityToken")
        if (rst.findtext("wst:TokenType", namespaces=_NS) or "").strip() != SAMLV11_TOKEN_TYPE:
            raise _Fault("only SAML 1.1 tokens (SAMLV1.1) are issued")
        if (rst.findtext("wst:RequestType", namespaces=_NS) or "").strip() != WST_ISSUE:
            raise _Fault("only the Issue request type is supported")
        if (rst.findtext("wst:KeyType", namespaces=_NS) or "").strip() not in _KEY_TYPES:
            raise _Fault("only holder-of-key tokens (KeyType PublicKey) are issued")
        proof = rst.findtext(
            "wst:UseKey/wsse:SecurityTokenReference/ds:X509Data/ds:X509Certificate", namespaces=_NS
        )
        try:
            proof_cert = x509.load_der_x509_certificate(base64.b64decode("".join((proof or "").split())))
        except ValueError:
            raise _Fault("UseKey holds no readable X.509 certificate") from None
        if proof_cert.fingerprint(hashes.SHA256()) != signer.fingerprint(hashes.SHA256()):
            raise _Fault("the proof key (UseKey) is not the certificate that signed the request")

        ids = _identifiers(signer)
        attributes: list[tuple[str, str, list[str]]] = []
        for designator in rst.iterfind("wst:Claims/saml:AttributeDesignator", _NS):
            name = designator.get("AttributeName", "")
            value = _value_for(name, ids)
            if value is None:
                raise _Fault(f"attribute {name} cannot be certified for this certificate")
            attributes.append((designator.get("AttributeNamespace", ""), name, [value]))

        not_on_or_after = now + timedelta(seconds=self.lifetime)
        requested = rst.findtext("wst:Lifetime/wsu:Expires", namespaces=_NS)
        if requested:
            try:
                wanted = parse_time(requested)
            except ValueError:
                raise _Fault("the requested Lifetime/Expires is not a date-time") from None
            if now < wanted < not_on_or_after:
                not_on_or_after = wanted
        assertion = build_assertion(
            key=self.key,
            certificate=self.certificate,
            holder=signer,
            attributes=attributes,
            not_before=now,
            not_on_or_after=not_on_or_after,
        )
        return self._response(rst.get("Context"), assertion, now, not_on_or_after)

    def _response(
        self, context: str | None, assertion: etree._Element, now: datetime, not_on_or_after: datetime
    ) -> bytes:
        envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
        body = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body")
        collection = etree.SubElement(
            body, f"{{{WST_NS}}}RequestSecurityTokenResponseCollection", nsmap={"wst": WST_NS, "wsu": WSU_NS}
        )
        rstr = etree.SubElement(collection, f"{{{WST_NS}}}RequestSecurityTokenResponse")
        if context:
            rstr.set("Context", context)
        etree.SubElement(rstr, f"{{{WST_NS}}}TokenType").text = SAMLV11_TOKEN_TYPE
        etree.SubElement(rstr, f"{{{WST_NS}}}RequestedSecurityToken").append(assertion)
        lifetime = etree.SubElement(rstr, f"{{{WST_NS}}}Lifetime")
        etree.SubElement(lifetime, f"{{{WSU_NS}}}Created").text = format_time(now)
        etree.SubElement(lifetime, f"{{{WSU_NS}}}Expires").text = format_time(not_on_or_after)
        return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")

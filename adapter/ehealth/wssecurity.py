"""WS-Security for SOAP 1.1 envelopes as Belgian hubs and the eHealth STS expect it.

``secure`` adds to an envelope what a hub request carries (the connector's SAML holder-of-key
layout): ``soap:Header/wsse:Security`` (mustUnderstand) with a ``wsu:Timestamp``, the STS's
``saml:Assertion`` (SAML 1.1) and a ``ds:Signature`` made with the caller's key over the
``soap:Body`` and the Timestamp; its KeyInfo points at the assertion (``SAMLAssertionID``). The
hub trusts the signature because the STS-signed assertion names the signing certificate as its
holder-of-key proof key. ``verify`` is that check, as a hub does it.

``secure_x509`` / ``verify_x509`` are the X.509 token profile variant (a BinarySecurityToken
holds the signer's certificate): how a WS-Trust request to the STS itself is signed.

XML-DSig is ``signxml`` (exclusive c14n, rsa-sha256, sha256 digests; detached references to
``wsu:Id`` via its ``id_attribute`` and a custom ``KeyInfo``). On top of the cryptographic check,
``verify`` pins *what* is signed, because a valid signature says nothing about which element a
reader will act on (XML signature wrapping): exactly one Envelope/Header/Security, one Body, one
Timestamp, one request Signature, no duplicated ids anywhere, and the references must be exactly
the Body and the Timestamp that the hub is going to read.
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConfiguration,
    SignatureConstructionMethod,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidSignature, SignXMLException

from adapter.ehealth.credentials import Credential, utc
from adapter.ehealth.errors import SecurityError

__all__ = [
    "DS_NS",
    "HOLDER_OF_KEY",
    "SAML1_NS",
    "SOAP11_NS",
    "WSSE_NS",
    "WSU_NS",
    "Caller",
    "SamlToken",
    "format_time",
    "parse_time",
    "parse_xml",
    "secure",
    "secure_x509",
    "token_from_assertion",
    "verify",
    "verify_assertion",
    "verify_x509",
]

SOAP11_NS = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU_NS = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
SAML1_NS = "urn:oasis:names:tc:SAML:1.0:assertion"
DS_NS = "http://www.w3.org/2000/09/xmldsig#"

SAML_ASSERTION_ID_TYPE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.0#SAMLAssertionID"
X509V3_TYPE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_ENCODING = (
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
)
HOLDER_OF_KEY = "urn:oasis:names:tc:SAML:1.0:cm:holder-of-key"

_NS = {"soap": SOAP11_NS, "wsse": WSSE_NS, "wsu": WSU_NS, "saml": SAML1_NS, "ds": DS_NS}
_WSU_ID = f"{{{WSU_NS}}}Id"
_ID_ATTRIBUTES = frozenset({"Id", "ID", "AssertionID"})
_SIGNATURE_METHODS = frozenset(
    {
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.ECDSA_SHA512,
    }
)
_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})
_DOCTYPE = re.compile(rb"<!DOCTYPE|<!ENTITY", re.I)


# --- small helpers shared with the STS and ETK clients and the test doubles -----------------------


def parse_xml(data: bytes) -> etree._Element:
    """Parse untrusted XML with the project's one hardened parser (``adapter.fhirio.xmlparse``:
    no DTD, no entities, no network, no huge trees). ``ValueError`` when the bytes are not
    acceptable XML (the message names the problem, not the content)."""
    from adapter.fhirio.errors import DEFAULT_LIMITS, ParseError
    from adapter.fhirio.xmlparse import parse_tree

    try:
        root = parse_tree(bytes(data), DEFAULT_LIMITS)
    except ParseError as exc:
        if exc.code == "security":
            raise ValueError(exc.message) from None
        raise ValueError(f"not well-formed XML (line {exc.line or '?'})") from None
    if root is None:
        raise ValueError("empty XML document")
    return root


def format_time(value: datetime) -> str:
    """``2024-01-01T10:00:00.000Z`` (UTC, milliseconds), as WS-Security and SAML write instants."""
    value = utc(value)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_time(text: str | None) -> datetime:
    """An xsd:dateTime as an aware UTC datetime (no zone = UTC); ``ValueError`` if unreadable."""
    if not text:
        raise ValueError("missing date-time")
    value = datetime.fromisoformat(text.strip())
    return utc(value)


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _cert_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")


def _load_cert_b64(text: str | None) -> x509.Certificate:
    if not text:
        raise ValueError("empty certificate")
    return x509.load_der_x509_certificate(base64.b64decode("".join(text.split()), validate=True))


def _same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.fingerprint(hashes.SHA256()) == b.fingerprint(hashes.SHA256())


# --- tokens and callers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SamlToken:
    """An STS-issued SAML 1.1 assertion: ``assertion`` is its XML exactly as the STS signed it."""

    assertion: bytes
    assertion_id: str
    not_before: datetime
    not_on_or_after: datetime

    def __repr__(self) -> str:  # the assertion holds personal attributes: keep it out of logs
        return (
            f"SamlToken(assertion_id={self.assertion_id!r}, not_before={self.not_before.isoformat()}, "
            f"not_on_or_after={self.not_on_or_after.isoformat()})"
        )


@dataclass(frozen=True)
class Caller:
    """Who sent a verified request: the assertion's subject, its holder-of-key certificate, the
    attributes the STS certified (name -> values) and the assertion id."""

    subject: str
    certificate: x509.Certificate
    attributes: dict[str, list[str]]
    assertion_id: str


def token_from_assertion(assertion: etree._Element) -> SamlToken:
    """A ``SamlToken`` for a ``saml:Assertion`` element; ``ValueError`` when it lacks an id or
    Conditions with both bounds."""
    if assertion.tag != f"{{{SAML1_NS}}}Assertion":
        raise ValueError("not a SAML 1.1 assertion")
    assertion_id = assertion.get("AssertionID")
    if not assertion_id:
        raise ValueError("the assertion has no AssertionID")
    conditions = assertion.find("saml:Conditions", _NS)
    if conditions is None:
        raise ValueError("the assertion has no Conditions")
    standalone = copy.deepcopy(assertion)  # keeps the namespaces it uses, drops the rest
    etree.cleanup_namespaces(standalone)
    return SamlToken(
        assertion=etree.tostring(standalone),
        assertion_id=assertion_id,
        not_before=parse_time(conditions.get("NotBefore")),
        not_on_or_after=parse_time(conditions.get("NotOnOrAfter")),
    )


# --- signing --------------------------------------------------------------------------------------


def _prepare(
    envelope: etree._Element, *, ttl: float, now: datetime | None
) -> tuple[etree._Element, str, str]:
    """Header/Security + Timestamp; returns (security, body id, timestamp id)."""
    if envelope.tag != f"{{{SOAP11_NS}}}Envelope":
        raise ValueError("secure() needs a SOAP 1.1 soap:Envelope")
    bodies = envelope.findall("soap:Body", _NS)
    if len(bodies) != 1:
        raise ValueError("the envelope must have exactly one soap:Body")
    body = bodies[0]
    header = envelope.find("soap:Header", _NS)
    if header is None:
        header = etree.Element(f"{{{SOAP11_NS}}}Header")
        envelope.insert(0, header)
    if header.find("wsse:Security", _NS) is not None:
        raise ValueError("the envelope already has a wsse:Security header")
    body_id = body.get(_WSU_ID)
    if not body_id:
        body_id = _new_id("id")
        body.set(_WSU_ID, body_id)
    security = etree.SubElement(header, f"{{{WSSE_NS}}}Security", nsmap={"wsse": WSSE_NS, "wsu": WSU_NS})
    security.set(f"{{{SOAP11_NS}}}mustUnderstand", "1")
    created = utc(now or datetime.now(UTC))
    ts_id = _new_id("TS")
    timestamp = etree.SubElement(security, f"{{{WSU_NS}}}Timestamp")
    timestamp.set(_WSU_ID, ts_id)
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Created").text = format_time(created)
    etree.SubElement(timestamp, f"{{{WSU_NS}}}Expires").text = format_time(created + timedelta(seconds=ttl))
    return security, body_id, ts_id


def _sign(
    envelope: etree._Element,
    security: etree._Element,
    credential: Credential,
    ids: Sequence[str],
    key_info: etree._Element,
) -> None:
    signer = XMLSigner(
        method=SignatureConstructionMethod.detached,
        signature_algorithm=SignatureMethod.RSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    try:
        signature = signer.sign(
            envelope,
            key=credential.key,  # type: ignore[arg-type]
            reference_uri=[f"#{i}" for i in ids],
            key_info=key_info,
            id_attribute="Id",
        )
    except SignXMLException as exc:
        raise SecurityError(f"signing failed: {exc}") from None
    security.append(signature)


def secure(
    envelope: etree._Element,
    *,
    token: SamlToken,
    credential: Credential,
    ttl: float = 60.0,
    now: datetime | None = None,
) -> etree._Element:
    """Add the hub WS-Security header (Timestamp, the SAML assertion, a signature over Body and
    Timestamp whose KeyInfo names the assertion) to ``envelope``; returns it, mutated.

    ``credential`` must be the holder-of-key of ``token`` (the certificate the STS put in the
    assertion); that is not checked here, the hub checks it."""
    security, body_id, ts_id = _prepare(envelope, ttl=ttl, now=now)
    try:
        assertion = parse_xml(token.assertion)
    except ValueError as exc:
        raise SecurityError(f"the SAML token is not usable: {exc}") from None
    security.append(assertion)
    key_info = etree.Element(f"{{{DS_NS}}}KeyInfo", nsmap={"ds": DS_NS})
    reference = etree.SubElement(key_info, f"{{{WSSE_NS}}}SecurityTokenReference", nsmap={"wsse": WSSE_NS})
    identifier = etree.SubElement(reference, f"{{{WSSE_NS}}}KeyIdentifier", ValueType=SAML_ASSERTION_ID_TYPE)
    identifier.text = token.assertion_id
    _sign(envelope, security, credential, (body_id, ts_id), key_info)
    return envelope


def secure_x509(
    envelope: etree._Element, *, credential: Credential, ttl: float = 60.0, now: datetime | None = None
) -> etree._Element:
    """WS-Security with the X.509 token profile: the credential's certificate as a
    BinarySecurityToken, a Timestamp, a signature over Body and Timestamp referencing the token.
    How a request to the STS is signed (there is no SAML token yet)."""
    security, body_id, ts_id = _prepare(envelope, ttl=ttl, now=now)
    bst_id = _new_id("X509")
    bst = etree.Element(
        f"{{{WSSE_NS}}}BinarySecurityToken", EncodingType=BASE64_ENCODING, ValueType=X509V3_TYPE
    )
    bst.set(_WSU_ID, bst_id)
    bst.text = _cert_b64(credential.certificate)
    security.insert(0, bst)
    key_info = etree.Element(f"{{{DS_NS}}}KeyInfo", nsmap={"ds": DS_NS})
    reference = etree.SubElement(key_info, f"{{{WSSE_NS}}}SecurityTokenReference", nsmap={"wsse": WSSE_NS})
    etree.SubElement(reference, f"{{{WSSE_NS}}}Reference", URI=f"#{bst_id}", ValueType=X509V3_TYPE)
    _sign(envelope, security, credential, (body_id, ts_id), key_info)
    return envelope


# --- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parts:
    security: etree._Element
    body: etree._Element
    timestamp: etree._Element
    signature: etree._Element


def _one(parent: etree._Element, path: str, what: str) -> etree._Element:
    found = parent.findall(path, _NS)
    if not found:
        raise SecurityError(f"no {what}")
    if len(found) > 1:
        raise SecurityError(f"{len(found)} {what} elements where one is allowed (signature wrapping?)")
    return found[0]


def _parts(envelope: etree._Element) -> _Parts:
    if envelope.tag != f"{{{SOAP11_NS}}}Envelope":
        raise SecurityError("not a SOAP 1.1 envelope")
    header = _one(envelope, "soap:Header", "soap:Header")
    body = _one(envelope, "soap:Body", "soap:Body")
    security = _one(header, "wsse:Security", "wsse:Security header")
    if security.get(f"{{{SOAP11_NS}}}mustUnderstand") not in ("1", "true"):
        raise SecurityError("the wsse:Security header is not marked mustUnderstand")
    timestamp = _one(security, "wsu:Timestamp", "wsu:Timestamp in the Security header")
    signature = _one(security, "ds:Signature", "request ds:Signature in the Security header")
    _check_unique_ids(envelope)
    return _Parts(security, body, timestamp, signature)


def _check_unique_ids(root: etree._Element) -> None:
    seen: set[str] = set()
    for element in root.iter(etree.Element):
        for name, value in element.attrib.items():
            if etree.QName(name).localname in _ID_ATTRIBUTES:
                if value in seen:
                    raise SecurityError(f"duplicated id {value!r} in the message (signature wrapping?)")
                seen.add(value)


def _check_timestamp(timestamp: etree._Element, now: datetime, skew: timedelta) -> None:
    try:
        created = parse_time(timestamp.findtext("wsu:Created", namespaces=_NS))
        expires = parse_time(timestamp.findtext("wsu:Expires", namespaces=_NS))
    except ValueError:
        raise SecurityError("the wsu:Timestamp needs readable Created and Expires") from None
    if expires <= created:
        raise SecurityError("the wsu:Timestamp expires before it was created")
    if expires <= now:
        raise SecurityError(f"the wsu:Timestamp expired at {format_time(expires)}")
    if created > now + skew:
        raise SecurityError(f"the wsu:Timestamp is created in the future ({format_time(created)})")


def _check_references(parts: _Parts) -> None:
    """The signature must reference exactly the Body and the Timestamp the reader acts on."""
    body_id = parts.body.get(_WSU_ID)
    ts_id = parts.timestamp.get(_WSU_ID)
    uris = [r.get("URI") for r in parts.signature.findall("ds:SignedInfo/ds:Reference", _NS)]
    if body_id is None or f"#{body_id}" not in uris:
        raise SecurityError("the request signature does not cover the soap:Body")
    if ts_id is None or f"#{ts_id}" not in uris:
        raise SecurityError("the request signature does not cover the wsu:Timestamp")
    extra = [u for u in uris if u not in (f"#{body_id}", f"#{ts_id}")]
    if extra or len(uris) != 2:
        raise SecurityError("the request signature references elements other than the Body and the Timestamp")


def _verify_request_signature(
    envelope: etree._Element, parts: _Parts, certificate: x509.Certificate, now: datetime, whose: str
) -> None:
    names = {
        f"#{parts.body.get(_WSU_ID)}": "the soap:Body",
        f"#{parts.timestamp.get(_WSU_ID)}": "the wsu:Timestamp",
    }
    config = SignatureConfiguration(
        location=f"./{{{SOAP11_NS}}}Header/{{{WSSE_NS}}}Security/",
        expect_references=2,
        signature_methods=_SIGNATURE_METHODS,
        digest_algorithms=_DIGESTS,
        verification_time=now,
    )
    try:
        XMLVerifier().verify(envelope, x509_cert=certificate, id_attribute="Id", expect_config=config)
    except InvalidDigest as exc:
        changed = next((what for uri, what in names.items() if f"({uri})" in str(exc)), "a signed element")
        raise SecurityError(
            f"the request signature does not verify: {changed} was changed after signing"
        ) from None
    except InvalidCertificate as exc:
        raise SecurityError(f"the signing certificate is not usable: {exc}") from None
    except InvalidSignature:
        raise SecurityError(
            f"the request signature does not verify: it was not made with {whose} key"
        ) from None
    except (SignXMLException, ValueError) as exc:
        raise SecurityError(f"the request signature does not verify: {exc}") from None


def verify_assertion(
    assertion: etree._Element,
    *,
    sts_certificates: Sequence[x509.Certificate],
    now: datetime | None = None,
    clock_skew: float = 300.0,
) -> Caller:
    """Check a SAML 1.1 assertion on its own: signed by one of ``sts_certificates`` (enveloped,
    referencing its own AssertionID), inside its Conditions (with ``clock_skew``), with exactly
    one holder-of-key certificate. Returns the caller it describes."""
    at = utc(now or datetime.now(UTC))
    skew = timedelta(seconds=clock_skew)
    if assertion.tag != f"{{{SAML1_NS}}}Assertion":
        raise SecurityError("no SAML 1.1 assertion")
    assertion_id = assertion.get("AssertionID")
    if not assertion_id:
        raise SecurityError("the SAML assertion has no AssertionID")
    # a standalone copy: the assertion is verified exactly as the STS signed it, whatever surrounds it
    standalone = parse_xml(etree.tostring(assertion))
    _check_unique_ids(standalone)
    signature = _one(standalone, "ds:Signature", "ds:Signature in the SAML assertion")
    uris = [r.get("URI") for r in signature.findall("ds:SignedInfo/ds:Reference", _NS)]
    if uris != [f"#{assertion_id}"]:
        raise SecurityError("the SAML assertion's signature does not reference the assertion itself")
    if not sts_certificates:
        raise SecurityError("no trusted STS certificate configured")
    config = SignatureConfiguration(
        location="./",
        expect_references=1,
        signature_methods=_SIGNATURE_METHODS,
        digest_algorithms=_DIGESTS,
        verification_time=at,
    )
    failure = "the SAML assertion is not signed by a trusted STS"
    for certificate in sts_certificates:
        try:
            XMLVerifier().verify(
                standalone, x509_cert=certificate, id_attribute="AssertionID", expect_config=config
            )
            break
        except InvalidDigest:
            failure = "the SAML assertion was changed after the STS signed it"
        except InvalidCertificate as exc:
            failure = f"the STS certificate is not usable: {exc}"
        except (SignXMLException, ValueError):
            continue
    else:
        raise SecurityError(failure)

    conditions = standalone.find("saml:Conditions", _NS)
    if conditions is None:
        raise SecurityError("the SAML assertion has no Conditions")
    try:
        not_before = parse_time(conditions.get("NotBefore"))
        not_on_or_after = parse_time(conditions.get("NotOnOrAfter"))
    except ValueError:
        raise SecurityError("the SAML assertion's Conditions need NotBefore and NotOnOrAfter") from None
    if at + skew < not_before:
        raise SecurityError(f"the SAML assertion is not valid before {format_time(not_before)}")
    if at - skew >= not_on_or_after:
        raise SecurityError(f"the SAML assertion expired at {format_time(not_on_or_after)}")

    holder: x509.Certificate | None = None
    for confirmation in standalone.iterfind(".//saml:SubjectConfirmation", _NS):
        if confirmation.findtext("saml:ConfirmationMethod", namespaces=_NS) != HOLDER_OF_KEY:
            continue
        try:
            cert = _load_cert_b64(
                confirmation.findtext("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=_NS)
            )
        except ValueError:
            raise SecurityError("the holder-of-key KeyInfo holds no readable certificate") from None
        if holder is not None and not _same_cert(holder, cert):
            raise SecurityError("the SAML assertion names two different holder-of-key certificates")
        holder = cert
    if holder is None:
        raise SecurityError("the SAML assertion is not holder-of-key (no certificate in SubjectConfirmation)")

    subject = (
        standalone.findtext("saml:AuthenticationStatement/saml:Subject/saml:NameIdentifier", namespaces=_NS)
        or standalone.findtext(".//saml:Subject/saml:NameIdentifier", namespaces=_NS)
        or ""
    )
    attributes: dict[str, list[str]] = {}
    for attribute in standalone.iterfind("saml:AttributeStatement/saml:Attribute", _NS):
        values = [v.text or "" for v in attribute.iterfind("saml:AttributeValue", _NS)]
        attributes.setdefault(attribute.get("AttributeName", ""), []).extend(values)
    return Caller(
        subject=subject.strip(), certificate=holder, attributes=attributes, assertion_id=assertion_id
    )


def verify(
    envelope: etree._Element,
    *,
    sts_certificates: Sequence[x509.Certificate],
    now: datetime | None = None,
    clock_skew: float = 300.0,
) -> Caller:
    """Check a hub request as a hub does; returns the caller or raises ``SecurityError``.

    The Security header, its Timestamp (Expires not past, Created not beyond ``clock_skew`` in the
    future), the assertion (``verify_assertion``), the request signature (made with the
    assertion's holder-of-key certificate, its KeyInfo naming that assertion, covering exactly the
    Body and the Timestamp), and no duplicated ids (signature wrapping)."""
    at = utc(now or datetime.now(UTC))
    skew = timedelta(seconds=clock_skew)
    parts = _parts(envelope)
    _check_timestamp(parts.timestamp, at, skew)
    assertion = _one(parts.security, "saml:Assertion", "saml:Assertion in the Security header")
    caller = verify_assertion(assertion, sts_certificates=sts_certificates, now=at, clock_skew=clock_skew)
    key_id = parts.signature.find("ds:KeyInfo/wsse:SecurityTokenReference/wsse:KeyIdentifier", _NS)
    if key_id is None or key_id.get("ValueType") != SAML_ASSERTION_ID_TYPE:
        raise SecurityError("the request signature's KeyInfo does not reference the SAML assertion")
    if (key_id.text or "").strip() != caller.assertion_id:
        raise SecurityError("the request signature's KeyInfo names another SAML assertion")
    _check_references(parts)
    _verify_request_signature(envelope, parts, caller.certificate, at, "the holder-of-key certificate's")
    return caller


def verify_x509(
    envelope: etree._Element,
    *,
    trusted: Sequence[x509.Certificate],
    now: datetime | None = None,
    clock_skew: float = 300.0,
) -> x509.Certificate:
    """Check an X.509-token-profile request (``secure_x509``); returns the signer's certificate.

    The certificate in the BinarySecurityToken must be one of ``trusted`` or issued directly by
    one of them, and valid now."""
    at = utc(now or datetime.now(UTC))
    skew = timedelta(seconds=clock_skew)
    parts = _parts(envelope)
    _check_timestamp(parts.timestamp, at, skew)
    reference = parts.signature.find("ds:KeyInfo/wsse:SecurityTokenReference/wsse:Reference", _NS)
    if reference is None or not (reference.get("URI") or "").startswith("#"):
        raise SecurityError("the request signature's KeyInfo does not reference a BinarySecurityToken")
    token_id = reference.get("URI", "")[1:]
    tokens = [
        t for t in parts.security.findall("wsse:BinarySecurityToken", _NS) if t.get(_WSU_ID) == token_id
    ]
    if len(tokens) != 1:
        raise SecurityError("the referenced BinarySecurityToken is not in the Security header")
    if tokens[0].get("ValueType") != X509V3_TYPE:
        raise SecurityError("the BinarySecurityToken is not an X.509v3 certificate")
    try:
        certificate = _load_cert_b64(tokens[0].text)
    except ValueError:
        raise SecurityError("the BinarySecurityToken holds no readable certificate") from None
    _check_trusted(certificate, trusted, at)
    _check_references(parts)
    _verify_request_signature(envelope, parts, certificate, at, "the BinarySecurityToken certificate's")
    return certificate


def _check_trusted(certificate: x509.Certificate, trusted: Sequence[x509.Certificate], at: datetime) -> None:
    if not (certificate.not_valid_before_utc <= at <= certificate.not_valid_after_utc):
        raise SecurityError("the signer's certificate is expired or not yet valid")
    for anchor in trusted:
        if _same_cert(anchor, certificate):
            return
        if certificate.issuer != anchor.subject:
            continue
        try:
            certificate.verify_directly_issued_by(anchor)
        except Exception:  # any failure (signature, algorithm, key type) means "not issued by"
            continue
        if anchor.not_valid_before_utc <= at <= anchor.not_valid_after_utc:
            return
    raise SecurityError("the signer's certificate is not trusted")

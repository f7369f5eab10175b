"""The recipient's encryption certificate (ETK) from the eHealth ETK depot, cached.

``GetEtkRequest`` (SOAP 1.1, unauthenticated, as the depot is public) names the owner by
identifier type, value and optional application id. The reply's ``ETK`` is base64 of a CMS
SignedData that carries the encryption certificate; the certificate is checked to be currently
valid, for key encipherment, and is cached per identifier for ``ttl`` seconds (and re-fetched
earlier if it expires meanwhile).

Limit: ``cryptography`` has no API to verify a CMS SignedData signature, so the ETK's own
signature is not verified; trust rests on the depot's TLS connection and the certificate checks.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7
from lxml import etree

from adapter.ehealth.errors import EtkError
from adapter.ehealth.soapcall import call
from adapter.ehealth.wssecurity import SOAP11_NS

__all__ = [
    "COMMONS_NS",
    "ETK_CORE_NS",
    "ETK_PROTOCOL_NS",
    "GET_ETK_ACTION",
    "EtkClient",
    "EtkIdentifier",
    "describe",
    "encryption_certificate",
]

ETK_PROTOCOL_NS = "urn:be:fgov:ehealth:etkdepot:1_0:protocol"
ETK_CORE_NS = "urn:be:fgov:ehealth:etkdepot:1_0:core"
COMMONS_NS = "urn:be:fgov:ehealth:commons:1_0:core"
GET_ETK_ACTION = "urn:be:fgov:ehealth:etkdepot:1_0:etkdepot:GetEtk"

_NS = {"soap": SOAP11_NS, "p": ETK_PROTOCOL_NS, "c": ETK_CORE_NS, "cm": COMMONS_NS}
_PERSONAL_TYPES = ("SSIN", "INSS", "NISS")


@dataclass(frozen=True)
class EtkIdentifier:
    """Whose ETK: e.g. ``EtkIdentifier("CBE", "0809394427")`` for a hub."""

    type: str
    value: str
    application_id: str = ""


def describe(identifier: EtkIdentifier) -> str:
    """The identifier for messages: a person's number (SSIN) is never written out."""
    value = "(personal number)" if identifier.type.upper() in _PERSONAL_TYPES else identifier.value
    app = f", application {identifier.application_id}" if identifier.application_id else ""
    return f"{identifier.type} {value}{app}"


def encryption_certificate(etk: bytes, *, now: datetime | None = None, what: str = "ETK") -> x509.Certificate:
    """The currently valid encryption certificate carried by a DER CMS SignedData ETK."""
    try:
        certificates = pkcs7.load_der_pkcs7_certificates(etk)
    except ValueError:
        raise EtkError(f"the {what} is not a CMS SignedData with certificates") from None
    candidates = [c for c in certificates if _encrypts(c)]
    if not candidates:
        raise EtkError(f"the {what} carries no encryption certificate")
    certificate = candidates[0]
    at = now or datetime.now(UTC)
    if at < certificate.not_valid_before_utc:
        raise EtkError(f"the {what} certificate is not valid yet")
    if at > certificate.not_valid_after_utc:
        raise EtkError(f"the {what} certificate expired on {certificate.not_valid_after_utc:%Y-%m-%d}")
    return certificate


def _encrypts(certificate: x509.Certificate) -> bool:
    try:
        if certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_encipherment


def _request(identifier: EtkIdentifier) -> bytes:
    envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
    body = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body")
    request = etree.SubElement(
        body, f"{{{ETK_PROTOCOL_NS}}}GetEtkRequest", nsmap={"etk": ETK_PROTOCOL_NS, "core": ETK_CORE_NS}
    )
    criteria = etree.SubElement(request, f"{{{ETK_PROTOCOL_NS}}}SearchCriteria")
    element = etree.SubElement(criteria, f"{{{ETK_CORE_NS}}}Identifier")
    etree.SubElement(element, f"{{{ETK_CORE_NS}}}Type").text = identifier.type
    etree.SubElement(element, f"{{{ETK_CORE_NS}}}Value").text = identifier.value
    if identifier.application_id:
        etree.SubElement(element, f"{{{ETK_CORE_NS}}}ApplicationID").text = identifier.application_id
    return etree.tostring(envelope, xml_declaration=True, encoding="UTF-8")


class EtkClient:
    """ETKs from the depot at ``url``; ``clock`` (monotonic seconds) drives the cache in tests."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        ttl: float = 3600 * 24,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.ttl = float(ttl)
        self._clock = clock or time.monotonic
        self._client = httpx.Client(transport=transport, timeout=timeout)
        self._cache: dict[EtkIdentifier, tuple[x509.Certificate, float]] = {}
        self._locks: dict[EtkIdentifier, threading.Lock] = {}
        self._guard = threading.Lock()

    def __enter__(self) -> EtkClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def certificate(self, identifier: EtkIdentifier) -> x509.Certificate:
        """The owner's current encryption certificate (``EtkError`` when there is none)."""
        with self._guard:
            lock = self._locks.setdefault(identifier, threading.Lock())
        with lock:
            cached = self._cache.get(identifier)
            now = datetime.now(UTC)
            if cached is not None:
                certificate, until = cached
                if self._clock() < until and certificate.not_valid_after_utc > now:
                    return certificate
                self._cache.pop(identifier, None)
            certificate = self._fetch(identifier, now)
            self._cache[identifier] = (certificate, self._clock() + self.ttl)
            return certificate

    def _fetch(self, identifier: EtkIdentifier, now: datetime) -> x509.Certificate:
        who = describe(identifier)
        root = call(self._client, self.url, GET_ETK_ACTION, _request(identifier), service="ETK depot",
                    error=EtkError)
        answer = root.find("soap:Body/p:GetEtkResponse", _NS)
        if answer is None:
            raise EtkError("ETK depot reply holds no GetEtkResponse")
        code = (answer.findtext("cm:Status/cm:Code", namespaces=_NS) or "").strip()
        message = " ".join((answer.findtext("cm:Status/cm:Message", namespaces=_NS) or "").split())[:200]
        etk_text = answer.findtext("p:ETK", namespaces=_NS)
        if code != "200" or not etk_text:
            matches = answer.findall("p:MatchingEtks/p:ETK", _NS)
            if matches:
                raise EtkError(f"{who} matches {len(matches)} ETKs: configure its application id")
            detail = f" (status {code}: {message})" if code else ""
            raise EtkError(f"no ETK found for {who}{detail}", retryable=code.startswith("5"))
        try:
            der = base64.b64decode("".join(etk_text.split()), validate=True)
        except ValueError:
            raise EtkError(f"the ETK of {who} is not base64") from None
        return encryption_certificate(der, now=now, what=f"ETK of {who}")

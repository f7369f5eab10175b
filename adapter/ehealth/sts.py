"""A SAML 1.1 holder-of-key token from the eHealth STS (WS-Trust 1.3 Issue), cached.

The request (``RequestSecurityToken``) asks for a SAML 1.1 token (``SAMLV1.1``) with the
credential's certificate as the proof key (``KeyType`` PublicKey, ``UseKey``), the requested
attributes as SAML ``AttributeDesignator``s in ``wst:Claims``, and a ``Lifetime``; it is signed
with WS-Security (X.509 token profile: Timestamp + Body) by the same credential. The shape follows
the connector's ``issue.samlv11.hok.template.xml``; carrying the designators inside ``Claims`` is
this module's choice (the template leaves ``Claims`` empty for code to fill).

The token is kept until ``renew_margin`` before it expires (never more than half its lifetime),
then a new one is requested. One lock serialises the check and the request: sixteen threads
asking at once cause one STS call.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import httpx
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree

from adapter.ehealth.credentials import Credential, utc
from adapter.ehealth.errors import StsError
from adapter.ehealth.soapcall import call
from adapter.ehealth.wssecurity import (
    DS_NS,
    SAML1_NS,
    SOAP11_NS,
    WSSE_NS,
    WSU_NS,
    SamlToken,
    format_time,
    secure_x509,
    token_from_assertion,
)

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "IDENTIFICATION_NS",
    "KEY_TYPE_PUBLIC_KEY",
    "RST_ISSUE_ACTION",
    "SAMLV11_TOKEN_TYPE",
    "WST_ISSUE",
    "WST_NS",
    "StsClient",
]

WST_NS = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
AUTHCLAIMS_DIALECT = "http://docs.oasis-open.org/wsfed/authorization/200706/authclaims"
SAMLV11_TOKEN_TYPE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1"
WST_ISSUE = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue"
# as written in the eHealth template (note "wstrust", not "ws-trust")
KEY_TYPE_PUBLIC_KEY = "http://docs.oasis-open.org/ws-sx/wstrust/200512/PublicKey"
RST_ISSUE_ACTION = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"

IDENTIFICATION_NS = "urn:be:fgov:identification-namespace"
CERTIFIED_NS = "urn:be:fgov:certified-namespace:ehealth"

# (AttributeNamespace, AttributeName), the order of eHealth's ``sessionmanager.designators``
# configuration lines: an organisation identified by its CBE (enterprise) number.
DEFAULT_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    (IDENTIFICATION_NS, "urn:be:fgov:ehealth:1.0:certificateholder:enterprise:cbe-number"),
    (CERTIFIED_NS, "urn:be:fgov:ehealth:1.0:enterprise:cbe-number"),
)

_NS = {"soap": SOAP11_NS, "wst": WST_NS, "saml": SAML1_NS, "ds": DS_NS, "wsse": WSSE_NS, "wsu": WSU_NS}


class StsClient:
    """Issues and caches the SAML token for one credential.

    ``attributes`` are (AttributeNamespace, AttributeName) pairs of the attributes the STS must
    certify; ``lifetime`` is the token lifetime asked for (the STS may grant less); ``clock`` gives
    the current time (aware datetime) for tests."""

    def __init__(
        self,
        url: str,
        credential: Credential,
        *,
        attributes: Sequence[tuple[str, str]] = DEFAULT_ATTRIBUTES,
        lifetime: float = 3600 * 4,
        renew_margin: float = 300.0,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.url = url
        self.credential = credential
        self.attributes = tuple((str(ns), str(name)) for ns, name in attributes)
        self.lifetime = float(lifetime)
        self.renew_margin = float(renew_margin)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._client = httpx.Client(transport=transport, timeout=timeout)
        self._lock = threading.Lock()
        self._token: SamlToken | None = None

    def __enter__(self) -> StsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def token(self) -> SamlToken:
        """A valid token: the cached one, or a new one when it is about to expire."""
        with self._lock:
            now = utc(self._clock())
            token = self._token
            if token is None or now >= self._renew_at(token):
                token = self._issue(now)
                self._token = token
            return token

    def _renew_at(self, token: SamlToken) -> datetime:
        span = token.not_on_or_after - token.not_before
        margin = min(timedelta(seconds=self.renew_margin), span / 2)
        return token.not_on_or_after - margin

    # -- request ---------------------------------------------------------------------------------

    def request_envelope(self, now: datetime) -> etree._Element:
        """The signed RequestSecurityToken envelope (exposed for tests)."""
        envelope = etree.Element(f"{{{SOAP11_NS}}}Envelope", nsmap={"soap": SOAP11_NS})
        body = etree.SubElement(envelope, f"{{{SOAP11_NS}}}Body")
        rst = etree.SubElement(
            body,
            f"{{{WST_NS}}}RequestSecurityToken",
            nsmap={"wst": WST_NS, "saml": SAML1_NS, "wsu": WSU_NS, "wsse": WSSE_NS, "ds": DS_NS},
            Context=f"uuid-{uuid.uuid4()}",
        )
        etree.SubElement(rst, f"{{{WST_NS}}}TokenType").text = SAMLV11_TOKEN_TYPE
        etree.SubElement(rst, f"{{{WST_NS}}}RequestType").text = WST_ISSUE
        claims = etree.SubElement(rst, f"{{{WST_NS}}}Claims", Dialect=AUTHCLAIMS_DIALECT)
        for namespace, name in self.attributes:
            etree.SubElement(
                claims, f"{{{SAML1_NS}}}AttributeDesignator", AttributeName=name, AttributeNamespace=namespace
            )
        lifetime = etree.SubElement(rst, f"{{{WST_NS}}}Lifetime")
        etree.SubElement(lifetime, f"{{{WSU_NS}}}Created").text = format_time(now)
        etree.SubElement(lifetime, f"{{{WSU_NS}}}Expires").text = format_time(
            now + timedelta(seconds=self.lifetime)
        )
        etree.SubElement(rst, f"{{{WST_NS}}}KeyType").text = KEY_TYPE_PUBLIC_KEY
        use_key = etree.SubElement(rst, f"{{{WST_NS}}}UseKey")
        reference = etree.SubElement(use_key, f"{{{WSSE_NS}}}SecurityTokenReference")
        x509_data = etree.SubElement(reference, f"{{{DS_NS}}}X509Data")
        etree.SubElement(x509_data, f"{{{DS_NS}}}X509Certificate").text = base64.b64encode(
            self.credential.certificate.public_bytes(Encoding.DER)
        ).decode("ascii")
        return secure_x509(envelope, credential=self.credential, now=now)

    def _issue(self, now: datetime) -> SamlToken:
        payload = etree.tostring(self.request_envelope(now), xml_declaration=True, encoding="UTF-8")
        root = call(self._client, self.url, RST_ISSUE_ACTION, payload, service="STS", error=StsError)
        assertions = root.findall(".//wst:RequestedSecurityToken/saml:Assertion", _NS)
        if len(assertions) != 1:
            raise StsError("STS reply holds no SAML 1.1 assertion in RequestedSecurityToken")
        try:
            token = token_from_assertion(assertions[0])
        except ValueError as exc:
            raise StsError(f"STS reply holds an unusable assertion: {exc}") from None
        self._check_holder(assertions[0])
        if token.not_on_or_after <= now:
            raise StsError("STS issued a token that is already expired (check the clocks)")
        return token

    def _check_holder(self, assertion: etree._Element) -> None:
        mine = base64.b64encode(self.credential.certificate.public_bytes(Encoding.DER)).decode("ascii")
        certs = {
            "".join((c.text or "").split())
            for c in assertion.iterfind(
                ".//saml:SubjectConfirmation/ds:KeyInfo/ds:X509Data/ds:X509Certificate", _NS
            )
        }
        if certs != {mine}:
            raise StsError("STS issued a token whose holder-of-key is not this credential's certificate")

"""One SOAP 1.1 call to an eHealth service (the STS, the ETK depot), with one way of failing.

Why shared: both services answer the same ways (a SOAP fault, an HTML error page, a non-200
without a body), and each failure must become a typed ``EHealthError`` that says whether a retry
can help, so a delivery ends ``pending`` with the reason rather than dead or silently stuck.
"""

from __future__ import annotations

import httpx
from lxml import etree

from adapter.ehealth.errors import EtkError, StsError
from adapter.ehealth.wssecurity import SOAP11_NS, parse_xml

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
_NS = {"soap": SOAP11_NS}


def soap_fault(element: etree._Element) -> tuple[str, str] | None:
    """(faultcode local name, faultstring on one line, at most 300 characters) of a SOAP 1.1
    envelope holding a Fault, else None."""
    fault = element.find("soap:Body/soap:Fault", _NS)
    if fault is None:
        return None
    code = (fault.findtext("faultcode") or "").strip()
    text = " ".join((fault.findtext("faultstring") or "no faultstring").split())
    return code.rpartition(":")[2], text[:300]


def call(client: httpx.Client, url: str, action: str, payload: bytes, *, service: str,
         error: type[StsError] | type[EtkError]) -> etree._Element:
    """POST ``payload`` with ``action``; the reply's envelope, or ``error`` naming ``service``.

    Network failures, timeouts, 408/425/429/5xx and ``Server`` faults are retryable; a ``Client``
    fault or another status is not (the request itself is wrong: configuration, certificate)."""
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action}"'}
    try:
        response = client.post(url, content=payload, headers=headers)
    except httpx.TimeoutException:
        raise error(f"{service} unreachable: timed out", retryable=True) from None
    except httpx.TransportError as exc:
        raise error(f"{service} unreachable: {type(exc).__name__}", retryable=True) from None
    status = response.status_code
    try:
        root = parse_xml(response.content)
    except ValueError as exc:
        raise error(f"{service} answered HTTP {status} without a usable SOAP message ({exc})",
                    retryable=status in RETRYABLE_STATUS or status >= 500) from None
    fault = soap_fault(root)
    if fault is not None:
        code, text = fault
        raise error(f"{service} fault ({code or 'no code'}): {text}", retryable=code == "Server")
    if status != 200:
        raise error(f"{service} answered HTTP {status}", retryable=status in RETRYABLE_STATUS)
    return root

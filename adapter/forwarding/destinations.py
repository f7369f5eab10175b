"""Destinations by kind, behind one small protocol, with a registry so new kinds plug in.

Outcome classification is shared: 2xx delivered; 408, 429, 5xx and network failures are worth a
retry; any other 4xx means the receiver will never accept this content, so retrying only delays
the dead-letter an operator must look at.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import httpx

from adapter.outbox.keys import canonical_json
from adapter.outbox.masking import mask

from .backoff import parse_retry_after
from .mhd import provide_document_bundle
from .settings import AuthConfig, DestinationConfig
from .transport import StdlibTransport

FHIR_JSON = "application/fhir+json"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "becare-forwarder"


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """``blocked``: the destination will not take this bundle until an operator (or the person)
    resolves ``error``, e.g. no consent or therapeutic link at a hub; nothing was sent."""

    outcome: Literal["delivered", "retry", "dead", "blocked"]
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None


class Destination(Protocol):
    name: str
    kind: str

    def deliver(
        self, bundle: dict[str, Any], *, idempotency_key: str, delivery_id: str, raw: str | None = None
    ) -> DeliveryResult:
        """``raw`` is the stored JSON text of ``bundle`` (canonical), to send without re-encoding.

        Network and receiver failures come back as ``retry`` / ``dead`` / ``blocked`` results,
        never as exceptions. A destination whose ``wants_attempt`` is true also gets
        ``attempt=`` (1-based): after a first attempt whose outcome may be unknown, it can look
        the delivery up at the receiver before sending again."""
        ...

    def close(self) -> None: ...


def classify(status: int) -> Literal["delivered", "retry", "dead"]:
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "dead"  # other 4xx, and 1xx/3xx we do not follow: a configuration or content problem


def header_key(idempotency_key: str) -> str:
    """The header value: a hash, so identifiers never travel in headers and non-ASCII is safe."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()


def ssl_verify(auth: AuthConfig) -> ssl.SSLContext:
    """The SSL context carrying the CA, the mutual-TLS client cert, or verification off."""
    ctx = ssl.create_default_context(cafile=auth.ca_bundle or None)
    if not auth.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if auth.client_cert:
        ctx.load_cert_chain(auth.client_cert, auth.client_key)
    return ctx


def proxy_for(url: str) -> str | None:
    """The proxy the environment sets for ``url`` (HTTPS_PROXY, ALL_PROXY, NO_PROXY), if any."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return proxy


def make_transport(auth: AuthConfig, url: str) -> httpx.BaseTransport:
    """Direct connections go through the stdlib transport (a third of the CPU per delivery of
    httpx's default one); behind a proxy, httpx's own transport, which speaks to proxies."""
    context = ssl_verify(auth) if auth.ca_bundle or auth.client_cert or not auth.verify else None
    proxy = proxy_for(url)
    if proxy is not None:
        return httpx.HTTPTransport(verify=context or True, proxy=proxy,
                                   limits=httpx.Limits(max_connections=32, max_keepalive_connections=32))
    return StdlibTransport(ssl_context=context)  # None: the system's default verification


def base_headers(auth: AuthConfig, headers: dict[str, str] | None = None) -> dict[str, str]:
    out = {"User-Agent": USER_AGENT, **(headers or {})}
    token = auth.token()
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


def make_client(auth: AuthConfig, timeout: float, *, url: str) -> httpx.Client:
    """A client for occasional calls to ``url``'s server (the metahub locator)."""
    return httpx.Client(timeout=httpx.Timeout(timeout), headers=base_headers(auth), follow_redirects=False,
                        transport=make_transport(auth, url))


def _error_summary(response: httpx.Response) -> str:
    """A short, masked summary of an error reply (OperationOutcome diagnostics when present)."""
    text = ""
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
            parts = []
            for issue in body.get("issue") or []:
                parts.append(issue.get("diagnostics") or (issue.get("details") or {}).get("text") or "")
            text = "; ".join(p for p in parts if p)
    except (ValueError, UnicodeDecodeError):
        text = response.text[:200] if response.content else ""
    reason = response.reason_phrase or ""
    return mask(f"HTTP {response.status_code} {reason}".strip() + (f": {text}" if text else ""))


class HttpDestination:
    """POST one JSON body; subclasses decide the body and the URL.

    Requests go straight to the transport, not through an ``httpx.Client``: the client's
    merging, cookie and redirect machinery cost a third of a delivery's CPU and do nothing here
    (no cookies, no redirects followed, fixed headers). Tests hand in ``httpx.MockTransport``.
    """

    kind = "http"
    reads_bundle = True  # whether deliver() needs the decoded bundle, or only its stored text

    def __init__(
        self, name: str, config: DestinationConfig, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.url = config.url
        self.transport = transport or make_transport(config.auth, config.url)
        self._headers = httpx.Headers({**base_headers(config.auth, config.headers),
                                       "Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
        self._timeout = httpx.Timeout(config.timeout).as_dict()
        self._urls: dict[str, httpx.URL] = {}  # parsed once: parsing cost a tenth of a delivery

    def request(self, bundle: dict[str, Any], idempotency_key: str, raw: bytes) -> tuple[str, bytes]:
        raise NotImplementedError

    def deliver(
        self, bundle: dict[str, Any], *, idempotency_key: str, delivery_id: str, raw: str | None = None
    ) -> DeliveryResult:
        data = raw.encode("utf-8") if raw is not None else canonical_json(bundle).encode("utf-8")
        url, body = self.request(bundle, idempotency_key, data)
        headers = self._headers.copy()
        headers[IDEMPOTENCY_HEADER] = header_key(idempotency_key)
        headers["X-Request-ID"] = delivery_id
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        request = httpx.Request("POST", parsed, content=body, headers=headers,
                                extensions={"timeout": self._timeout})
        try:
            response = self.transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TimeoutException as exc:
            error = f"timeout ({type(exc).__name__}) after {self.config.timeout}s"
            return DeliveryResult("retry", error=error)
        except httpx.TransportError as exc:
            return DeliveryResult("retry", error=mask(f"network error ({type(exc).__name__}): {exc}"))
        outcome = classify(response.status_code)
        if outcome == "delivered":
            return DeliveryResult("delivered", http_status=response.status_code)
        return DeliveryResult(
            outcome,
            http_status=response.status_code,
            error=_error_summary(response),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def close(self) -> None:
        self.transport.close()


_TAIL_TYPE = re.compile(rb'"type":"([a-z-]+)"}\s*$')


def bundle_type(raw: bytes) -> Any:
    """Bundle.type from the stored canonical JSON without decoding 25 KB for one word: keys are
    sorted, so a Bundle's top-level ``type`` is its last key; anything else is decoded."""
    m = _TAIL_TYPE.search(raw[-80:])
    if m is not None:
        return m.group(1).decode("ascii")
    parsed = json.loads(raw)
    return parsed.get("type") if isinstance(parsed, dict) else None


class FhirRestDestination(HttpDestination):
    """A FHIR server: transactions and batches go to the base; other bundles are stored as Bundles."""

    kind = "fhir-rest"
    reads_bundle = False  # the worker may pass None: the stored text says all it needs

    def request(self, bundle: dict[str, Any] | None, idempotency_key: str, raw: bytes) -> tuple[str, bytes]:
        btype = bundle.get("type") if bundle is not None else bundle_type(raw)
        if btype in ("transaction", "batch"):
            return self.url, raw
        return f"{self.url}/Bundle", raw


class MhdDestination(HttpDestination):
    """An MHD Document Recipient: ITI-65 Provide Document Bundle POSTed to its base."""

    kind = "mhd"

    def request(self, bundle: dict[str, Any], idempotency_key: str, raw: bytes) -> tuple[str, bytes]:
        wrapped = provide_document_bundle(
            bundle, idempotency_key=idempotency_key, source_id=self.config.source_id, data=raw
        )
        return self.url, json.dumps(wrapped, separators=(",", ":")).encode("utf-8")


DestinationFactory = Callable[[str, DestinationConfig], Destination]


def _kmehr_hub(name: str, config: DestinationConfig) -> Destination:
    """Imported on use: the KMEHR, SOAP and eHealth security stack is not loaded for FHIR-only set-ups."""
    from .kmehrhub import KmehrHubDestination

    return KmehrHubDestination(name, config)


_KINDS: dict[str, DestinationFactory] = {
    "fhir-rest": FhirRestDestination,
    "mhd": MhdDestination,
    "kmehr-hub": _kmehr_hub,
}


def register_kind(kind: str, factory: DestinationFactory) -> None:
    """Plug in a destination kind (``factory(name, config) -> Destination``)."""
    _KINDS[kind] = factory


def known_kinds() -> list[str]:
    return sorted(_KINDS)


def build_destination(name: str, config: DestinationConfig) -> Destination:
    return _KINDS[config.kind](name, config)


def build_destinations(destinations: dict[str, DestinationConfig]) -> dict[str, Destination]:
    return {name: build_destination(name, cfg) for name, cfg in destinations.items()}

"""Destinations by kind, behind one small protocol, with a registry so new kinds plug in.

Outcome classification is shared: 2xx delivered; 408, 429, 5xx and network failures are worth a
retry; any other 4xx means the receiver will never accept this content, so retrying only delays
the dead-letter an operator must look at.

An attempt whose request went out whole without an answer coming back (reply lost, read
timeout, a gateway's 502 or 504) has an *unknown* outcome: the receiver may hold the bundle.
What happens next depends on what the receiver offers (``exactly_once`` in the destination's
settings): with ``search`` the next attempt looks the bundle up before sending it again; with
``conditional-create`` every POST carries ``If-None-Exist`` so the receiver keeps one; with
``idempotency-key`` (the default) and ``none`` it is sent again, with the same Idempotency-Key.
What cannot be looked up (a transaction posted to the base, a bundle without identifier) under
``search`` / ``conditional-create`` is not sent again blindly: unless each of its entries is
conditional (the server's business then), it is ``blocked`` for an operator to check.
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
import orjson

from adapter.outbox.keys import canonical_json
from adapter.outbox.masking import mask

from .backoff import parse_retry_after
from .mhd import _uuid_from, provide_document_bundle
from .settings import AuthConfig, DestinationConfig
from .transport import StdlibTransport

FHIR_JSON = "application/fhir+json"
IDEMPOTENCY_HEADER = "Idempotency-Key"
IF_NONE_EXIST = "If-None-Exist"
USER_AGENT = "becare-forwarder"
# Failures that prove the request never reached the receiver whole: safe to send again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.WriteError, httpx.WriteTimeout,
            httpx.LocalProtocolError, httpx.UnsupportedProtocol, httpx.PoolTimeout, httpx.ProxyError)
# A gateway's answer: the server behind it may have processed the request.
UNKNOWN_STATUSES = frozenset({502, 504})
# Transaction entries a server can apply twice without a second copy.
_IDEMPOTENT_ENTRY_METHODS = frozenset({"PUT", "DELETE", "GET", "HEAD"})


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """``blocked``: the destination will not take this bundle until an operator (or the person)
    resolves ``error``, e.g. no consent or therapeutic link at a hub; nothing was sent.

    ``unknown``: the request went out whole and no answer came back, so the receiver may hold
    the bundle (recorded as an attempt with outcome ``unknown``)."""

    outcome: Literal["delivered", "retry", "dead", "blocked"]
    http_status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    unknown: bool = False


class Destination(Protocol):
    name: str
    kind: str

    def deliver(
        self, bundle: dict[str, Any], *, idempotency_key: str, delivery_id: str, raw: str | None = None
    ) -> DeliveryResult:
        """``raw`` is the stored JSON text of ``bundle`` (canonical), to send without re-encoding.

        Network and receiver failures come back as ``retry`` / ``dead`` / ``blocked`` results,
        never as exceptions. A destination whose ``wants_attempt`` is true also gets
        ``attempt=`` (1-based, over the delivery's whole life): after a first attempt whose
        outcome may be unknown, it can look the delivery up at the receiver before sending
        again. One whose ``wants_outcome_unknown`` is true also gets ``outcome_unknown=``: the
        previous attempt's worker stopped after sending, before it heard back."""
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


def search_token(system: str | None, value: str) -> str:
    """A FHIR token search value ``system|value`` with FHIR's escapes, percent-encoded for a
    query string (no system: ``|value``, which matches only identifiers without one)."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")

    return urllib.parse.quote(f"{esc(system or '')}|{esc(value)}", safe=":/|")


def bundle_identifier(bundle: dict[str, Any] | None) -> tuple[str | None, str] | None:
    """(system, value) of ``Bundle.identifier`` when it has a value."""
    ident = bundle.get("identifier") if isinstance(bundle, dict) else None
    if not isinstance(ident, dict):
        return None
    value, system = ident.get("value"), ident.get("system")
    if not isinstance(value, str) or not value:
        return None
    return (system if isinstance(system, str) and system else None), value


def entries_idempotent(bundle: dict[str, Any] | None) -> bool:
    """Every entry of a transaction or batch can be applied twice without a second copy: PUT,
    DELETE, GET, or a POST carrying its own conditional create (``ifNoneExist``)."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if not isinstance(entries, list) or not entries:
        return False
    for entry in entries:
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict):
            return False
        method = str(request.get("method") or "").upper()
        if method in _IDEMPOTENT_ENTRY_METHODS:
            continue
        if method == "POST" and request.get("ifNoneExist"):
            continue
        return False
    return True


@dataclass(frozen=True, slots=True)
class Target:
    """Where one delivery goes, and how the receiver can tell it already has it.

    ``lookup``: a search URL answering whether the receiver holds the bundle (None: nothing
    can be looked up). ``condition``: the ``If-None-Exist`` query for a conditional create."""

    url: str
    body: bytes
    lookup: str | None = None
    condition: str | None = None
    what: str = "bundle"


class HttpDestination:
    """POST one JSON body; subclasses decide the body, the URL and the lookup.

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
        self.exactly_once = config.delivery_guarantee
        # lookups and the blocked-when-unknowable rule need the attempt's history
        resolving = self.exactly_once in ("search", "conditional-create")
        self.wants_attempt = self.wants_outcome_unknown = resolving
        self.transport = transport or make_transport(config.auth, config.url)
        common = base_headers(config.auth, config.headers)
        self._headers = httpx.Headers({**common, "Content-Type": FHIR_JSON, "Accept": FHIR_JSON})
        self._lookup_headers = httpx.Headers({**common, "Accept": FHIR_JSON})
        self._timeout = httpx.Timeout(config.timeout).as_dict()
        self._urls: dict[str, httpx.URL] = {}  # parsed once: parsing cost a tenth of a delivery

    @property
    def attempt_timeout(self) -> float:
        """How long one attempt may take: a lookup and a POST with ``search``."""
        return self.config.timeout * (2 if self.exactly_once == "search" else 1)

    def request(self, bundle: dict[str, Any], idempotency_key: str, raw: bytes) -> tuple[str, bytes]:
        raise NotImplementedError

    def target(self, bundle: dict[str, Any] | None, idempotency_key: str, raw: bytes) -> Target:
        """The POST, plus how to find it at the receiver (subclasses that can say)."""
        url, body = self.request(bundle, idempotency_key, raw)  # type: ignore[arg-type]
        return Target(url, body)

    def deliver(
        self, bundle: dict[str, Any], *, idempotency_key: str, delivery_id: str, raw: str | None = None,
        attempt: int = 1, outcome_unknown: bool = False,
    ) -> DeliveryResult:
        data = raw.encode("utf-8") if raw is not None else canonical_json(bundle).encode("utf-8")
        target = self.target(bundle, idempotency_key, data)
        mode = self.exactly_once
        if mode == "search" and target.lookup is not None and attempt > 1:
            # an earlier attempt may have reached the receiver: ask before sending again
            found = self._look_up(target, delivery_id)
            if found is not None:
                return found
        elif outcome_unknown and self._unresolvable(target, bundle, data):
            return self._blocked_unknown(target, "the previous attempt's worker stopped after sending it")
        headers = self._headers.copy()
        headers[IDEMPOTENCY_HEADER] = header_key(idempotency_key)
        headers["X-Request-ID"] = delivery_id
        if mode == "conditional-create" and target.condition is not None:
            headers[IF_NONE_EXIST] = target.condition
        parsed = self._urls.get(target.url)
        if parsed is None:
            parsed = self._urls[target.url] = httpx.URL(target.url)
        request = httpx.Request("POST", parsed, content=target.body, headers=headers,
                                extensions={"timeout": self._timeout})
        try:
            response = self.transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except NOT_SENT as exc:  # the receiver cannot have it: plainly worth another try
            if isinstance(exc, httpx.TimeoutException):
                return DeliveryResult("retry", error=self._timed_out(exc))
            return DeliveryResult("retry", error=mask(f"network error ({type(exc).__name__}): {exc}"))
        except httpx.TimeoutException as exc:
            return self._unknown(target, bundle, data, self._timed_out(exc))
        except httpx.TransportError as exc:
            return self._unknown(target, bundle, data, mask(f"network error ({type(exc).__name__}): {exc}"))
        status = response.status_code
        outcome = classify(status)
        if outcome == "delivered":
            return DeliveryResult("delivered", http_status=status)
        if status == 412 and IF_NONE_EXIST in headers:
            # the condition matched several resources: the receiver holds copies already
            return DeliveryResult("delivered", http_status=status, error=mask(
                f"{self.name}: If-None-Exist matched several Bundles: the receiver already holds this one "
                "(more than once); not sent again"))
        if status in UNKNOWN_STATUSES:
            return self._unknown(target, bundle, data, _error_summary(response), status,
                                 parse_retry_after(response.headers.get("Retry-After")))
        return DeliveryResult(
            outcome,
            http_status=status,
            error=_error_summary(response),
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _timed_out(self, exc: Exception) -> str:
        return f"timeout ({type(exc).__name__}) after {self.config.timeout}s"

    # -- unknown outcomes ----------------------------------------------------------------------
    def _unresolvable(self, target: Target, bundle: dict[str, Any] | None, data: bytes) -> bool:
        """Under ``search`` / ``conditional-create``: a bundle that can neither be looked up nor
        conditionally created, whose entries are not all conditional either."""
        if self.exactly_once not in ("search", "conditional-create"):
            return False
        if (target.lookup if self.exactly_once == "search" else target.condition) is not None:
            return False
        return not entries_idempotent(bundle if bundle is not None else _decode(data))

    def _unknown(self, target: Target, bundle: dict[str, Any] | None, data: bytes, error: str,
                 status: int | None = None, retry_after: float | None = None) -> DeliveryResult:
        if self._unresolvable(target, bundle, data):
            return self._blocked_unknown(target, error, status, unknown=True)
        mode = self.exactly_once
        if mode == "search" and target.lookup is not None:
            how = "the next attempt looks it up at the receiver before sending it again"
        elif mode == "conditional-create" and target.condition is not None:
            how = "sent again with If-None-Exist, the receiver keeps one"
        elif mode in ("search", "conditional-create"):
            how = "every entry is conditional: sent again, the receiver keeps one"
        elif mode == "idempotency-key":
            how = "sent again with the same Idempotency-Key, which the receiver must honour"
        else:
            how = "sent again: delivery to this destination is at-least-once"
        return DeliveryResult("retry", http_status=status, error=f"{error} (outcome unknown: {how})",
                              retry_after=retry_after, unknown=True)

    def _blocked_unknown(self, target: Target, why: str, status: int | None = None, *,
                         unknown: bool = False) -> DeliveryResult:
        return DeliveryResult("blocked", http_status=status, unknown=unknown, error=mask(
            f"{self.name}: outcome unknown and {target.what} cannot be looked up, so it is not sent again "
            "blindly: check whether the receiver has it; if not, `becare outbox retry` sends it again "
            f"(exactly_once: {self.exactly_once}; {why})", limit=600))

    def _look_up(self, target: Target, delivery_id: str) -> DeliveryResult | None:
        """Whether the receiver already holds the bundle: a result when it does (or when the
        lookup fails), None when it does not and the bundle must be sent."""
        assert target.lookup is not None
        headers = self._lookup_headers.copy()
        headers["X-Request-ID"] = delivery_id
        request = httpx.Request("GET", target.lookup, headers=headers, extensions={"timeout": self._timeout})
        try:
            response = self.transport.handle_request(request)
            try:
                response.read()
            finally:
                response.close()
        except httpx.TransportError as exc:  # a GET changes nothing: try again later
            return DeliveryResult("retry", error=mask(
                f"lookup before sending again failed ({type(exc).__name__}): {exc}"))
        if not 200 <= response.status_code < 300:
            outcome = classify(response.status_code)
            where = target.lookup.split("?")[0]
            note = "" if outcome == "retry" else (
                f" (exactly_once: search needs the receiver to answer {where}?identifier=)")
            return DeliveryResult("retry" if outcome == "retry" else "dead", http_status=response.status_code,
                                  error=f"lookup before sending again: {_error_summary(response)}{note}",
                                  retry_after=parse_retry_after(response.headers.get("Retry-After")))
        try:
            found = response.json()
            total = found.get("total")
            if not isinstance(total, int):
                total = len(found.get("entry") or [])
        except (ValueError, AttributeError, TypeError):
            return DeliveryResult("retry", http_status=response.status_code, error="lookup before sending "
                                  "again: the answer is not a FHIR searchset Bundle")
        if total <= 0:
            return None
        copies = "" if total == 1 else f", {total} copies"
        return DeliveryResult("delivered", http_status=response.status_code,
                              error=f"already at the receiver (found by search{copies}); not sent again")

    def close(self) -> None:
        self.transport.close()


def _decode(data: bytes) -> dict[str, Any] | None:
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


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
    """A FHIR server: transactions and batches go to the base; other bundles are stored as Bundles.

    Only a Bundle stored as one (at ``{base}/Bundle``) with a ``Bundle.identifier`` can be found
    again (``GET {base}/Bundle?identifier=``) or created conditionally (``If-None-Exist``): a
    transaction is not kept as a Bundle, its entries become resources, and whether those are
    conditional (``request.ifNoneExist``, PUT) is the sender's and the server's business.
    """

    kind = "fhir-rest"
    reads_bundle = False  # the worker may pass None: the stored text says all it needs

    def request(self, bundle: dict[str, Any] | None, idempotency_key: str, raw: bytes) -> tuple[str, bytes]:
        btype = bundle.get("type") if bundle is not None else bundle_type(raw)
        if btype in ("transaction", "batch"):
            return self.url, raw
        return f"{self.url}/Bundle", raw

    def target(self, bundle: dict[str, Any] | None, idempotency_key: str, raw: bytes) -> Target:
        url, body = self.request(bundle, idempotency_key, raw)
        if self.exactly_once not in ("search", "conditional-create"):
            return Target(url, body)
        if url == self.url:
            return Target(url, body, what="a transaction (not kept as a Bundle)")
        ident = bundle_identifier(bundle if bundle is not None else _decode(raw))
        if ident is None:
            return Target(url, body, what="a Bundle without Bundle.identifier")
        token = search_token(*ident)
        return Target(url, body, lookup=f"{self.url}/Bundle?identifier={token}&_summary=count",
                      condition=f"identifier={token}")


class MhdDestination(HttpDestination):
    """An MHD Document Recipient: ITI-65 Provide Document Bundle POSTed to its base.

    The DocumentReference's identifier is derived from the idempotency key, so with
    ``exactly_once: search`` a re-send is preceded by ``GET {base}/DocumentReference?identifier=``
    (ITI-67). ITI-65 has no conditional create."""

    kind = "mhd"

    def request(self, bundle: dict[str, Any], idempotency_key: str, raw: bytes) -> tuple[str, bytes]:
        wrapped = provide_document_bundle(
            bundle, idempotency_key=idempotency_key, source_id=self.config.source_id, data=raw
        )
        return self.url, json.dumps(wrapped, separators=(",", ":")).encode("utf-8")

    def target(self, bundle: dict[str, Any] | None, idempotency_key: str, raw: bytes) -> Target:
        url, body = self.request(bundle, idempotency_key, raw)  # type: ignore[arg-type]
        if self.exactly_once != "search":
            return Target(url, body, what="an ITI-65 submission")
        # the DocumentReference's masterIdentifier, as provide_document_bundle derives it
        token = search_token("urn:ietf:rfc:3986", f"urn:uuid:{_uuid_from(idempotency_key, 'docref')}")
        return Target(url, body, lookup=f"{self.url}/DocumentReference?identifier={token}&_summary=count",
                      what="an ITI-65 submission")


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

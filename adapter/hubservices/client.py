"""The hubservices v3 SOAP client (CoZo, VZN, Réseau Santé Wallon, Abrumet ...).

Each call: build the body (``messages``), check it against the hub's vendored XSD (an invalid
body is a programming or configuration error: ``InvalidRequest`` is raised and nothing is sent),
wrap it in a SOAP 1.1 envelope, let the injected ``RequestSecurity`` add WS-Security (zeep
style: the envelope is complete and unsigned before, serialised only after), POST it, then read
the reply with a hardened parser and turn anything but a complete acknowledge into a
``HubError`` (see ``replies``).

Unknown outcomes. PutTransaction and RevokeTransaction change the hub's state, so a request
that was fully sent and then got no usable reply may have been applied. Two rules keep that from
turning into a silent double publication:

1. They never go over a reused connection. ``StdlibTransport`` retries a request once on a fresh
   connection when a kept-alive one fails before any reply byte, which for a request the hub did
   receive (it read the body, then the connection dropped) is a second send. State-changing
   calls therefore use their own transport that keeps no idle connection
   (``max_idle_per_origin=0`` and ``Connection: close``): every exchange is on a new connection
   and that retry path cannot trigger.
2. Failures are classified by how far the exchange got: a connect failure, or a write that did
   not complete, means the hub cannot have processed the request (``unavailable``, retryable);
   anything after the body was written (read timeout, connection dropped before or during the
   reply, a 502/504 from a gateway, an unreadable 200/500) is ``unknown-outcome``: the caller
   must look the transaction up (``find_transaction`` with the LOCAL id the KMEHR writer put
   on it) before sending again. Reads are idempotent: the same failures are ``unavailable``.

Nothing personal is logged: no INSS, no names; request ids carry the organisation's id only.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import httpx
from lxml import etree

from adapter.forwarding.backoff import parse_retry_after
from adapter.forwarding.transport import StdlibTransport
from adapter.kmehr import schemas

from . import messages
from .encryption import EncryptionProblem, decrypt_folders, encrypt_folders, is_encrypted
from .envelope import (
    CONTENT_TYPE,
    MAX_REPLY_BYTES,
    MalformedMessage,
    SoapFault,
    parse,
    payload,
    serialize,
    wrap,
)
from .messages import PROT_NS, STATE_CHANGING, InvalidArgument, KmehrId, check_inss
from .replies import (
    Acknowledge,
    Consent,
    HubError,
    InvalidRequest,
    PutResult,
    TherapeuticLinks,
    TransactionSummary,
    read_acknowledge,
    read_consent,
    read_kmehrmessage,
    read_put_transaction,
    read_therapeutic_links,
    read_transaction_list,
)

log = logging.getLogger("becare.hubservices")
HubVersion = Literal["3.2", "3.5"]
USER_AGENT = "becare-hubservices"
_BRUSSELS = ZoneInfo("Europe/Brussels")
_MAX_PAGES = 100
_PATIENT_ID = ("Patient.identifier",)  # where an INSS problem lives in the FHIR the caller holds


class RequestSecurity(Protocol):
    """Turns the complete, unsigned envelope into the one to send (adds ``wsse:Security``)."""

    def apply(self, envelope: etree._Element) -> etree._Element: ...


class NoSecurity:
    """No WS-Security: for tests of the message level, or a hub behind a trusted gateway."""

    def apply(self, envelope: etree._Element) -> etree._Element:
        return envelope


class SamlSecurity:
    """The eHealth way: a SAML holder-of-key token from the STS (cached and renewed by
    ``StsClient``), a Timestamp, and a signature over Body and Timestamp with the credential."""

    def __init__(
        self,
        sts_client: Any,
        credential: Any,
        *,
        ttl: float = 60.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.sts_client = sts_client
        self.credential = credential
        self.ttl = ttl
        self.clock = clock

    def apply(self, envelope: etree._Element) -> etree._Element:
        from adapter.ehealth import wssecurity

        token = self.sts_client.token()
        now = self.clock() if self.clock else None
        return wssecurity.secure(envelope, token=token, credential=self.credential, ttl=self.ttl, now=now)


def _ehealth_errors() -> tuple[type[BaseException], ...]:
    try:
        from adapter.ehealth.errors import EHealthError
    except ImportError:  # pragma: no cover - the package is part of becare
        return ()
    return (EHealthError,)


class HubClient:
    """One hub endpoint. ``author`` is a Sender-like configuration (``organisation``,
    ``professional``, ``software_name``, ``software_version``) or ready ``kmehr:hcparty``
    elements. ``encrypt_for_hub`` (bytes -> CMS bytes, for the hub's ETK) makes PutTransaction
    send its folders encrypted; ``decrypt_from_hub`` opens an encrypted GetTransaction reply.

    ``transport`` carries the reads (default: a pooled ``StdlibTransport``); state-changing calls
    go through ``write_transport`` (default: a ``StdlibTransport`` that keeps no connection). A
    custom ``transport`` that is not a ``StdlibTransport`` is used for both and must not resend
    a request on its own.
    """

    def __init__(
        self,
        url: str,
        *,
        hub_version: HubVersion,
        security: RequestSecurity,
        author: Any,
        encrypt_for_hub: Callable[[bytes], bytes] | None = None,
        decrypt_from_hub: Callable[[bytes], bytes] | None = None,
        transport: httpx.BaseTransport | None = None,
        write_transport: httpx.BaseTransport | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        clock: Callable[[], datetime] | None = None,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        name: str | None = None,
    ) -> None:
        if hub_version not in schemas.KMEHR_FOR_HUB:
            raise ValueError(f"unsupported hubservices version {hub_version!r} (3.2 or 3.5)")
        self.url = url
        self.name = name or httpx.URL(url).host
        self.hub_version: HubVersion = hub_version
        self.kmehr_version = schemas.KMEHR_FOR_HUB[hub_version]
        self.security = security
        if hasattr(author, "software_name"):
            self.author = messages.author_hcparties(author)
        else:
            self.author = tuple(author)
        self.encrypt_for_hub = encrypt_for_hub
        self.decrypt_from_hub = decrypt_from_hub
        self._own: list[httpx.BaseTransport] = []
        if transport is None:
            transport = StdlibTransport(ssl_context=ssl_context)
            self._own.append(transport)
        if write_transport is None:
            if isinstance(transport, StdlibTransport):
                # same TLS set-up, but no idle connection: no reuse, so no silent resend
                context = ssl_context or getattr(transport, "_ssl_context", None)
                write_transport = StdlibTransport(ssl_context=context, max_idle_per_origin=0)
                self._own.append(write_transport)
            else:
                write_transport = transport
        self._read = transport
        self._write = write_transport
        self._timeout = httpx.Timeout(timeout).as_dict()
        self._clock = clock or (lambda: datetime.now(UTC))
        self.max_reply_bytes = max_reply_bytes

    # -- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        for t in self._own:
            t.close()
        self._own.clear()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations --------------------------------------------------------------------------------
    def _info(self) -> messages.RequestInfo:
        return messages.request_info(self.author, self._clock())

    def _today(self) -> date:
        now = self._clock()
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(_BRUSSELS).date()

    def put_transaction(self, kmehrmessage: etree._Element, *, patient_inss: str) -> PutResult:
        """Store ``kmehrmessage`` (a standalone ``kmehr:kmehrmessage``) for ``patient_inss``.
        Its folders must all be about that patient; they are encrypted when the client has
        ``encrypt_for_hub``. Raises ``HubError``; ``unknown-outcome`` means: look it up first."""
        op = "PutTransaction"
        inss = self._inss(patient_inss, op)
        message = messages.as_kmehr_message(kmehrmessage)
        if is_encrypted(message):
            raise InvalidRequest("the kmehrmessage is already encrypted: pass it in clear", operation=op)
        patients = messages.folder_patient_ids(message)
        if not patients or any(p != inss for p in patients):
            raise InvalidRequest(
                "the kmehrmessage's folder patient is not the patient given",
                operation=op,
                expression=_PATIENT_ID,
            )
        errors = schemas.problems("kmehr", self.kmehr_version, message)
        if errors:
            raise InvalidRequest(
                f"kmehrmessage is not valid KMEHR {self.kmehr_version}", operation=op, schema_errors=errors
            )
        if self.encrypt_for_hub is not None:
            try:
                message = encrypt_folders(message, self.encrypt_for_hub)
            except EncryptionProblem as exc:
                raise InvalidRequest(exc.reason, operation=op) from None
            except _ehealth_errors() as exc:
                raise _security_failure(exc, op, "encryption for the hub") from None
        info = self._info()
        reply, ack = self._call(op, messages.put_transaction(info, message), info.id)
        return read_put_transaction(reply, ack, info.id)

    def get_transaction_list(
        self,
        patient_inss: str,
        *,
        cd: str | Sequence[str] | None = "careplan",
        author: Sequence[etree._Element] | None = None,
        begindate: date | None = None,
        enddate: date | None = None,
        searchtype: str | None = "global",
    ) -> list[TransactionSummary]:
        """Summaries of the patient's transactions (ids incl. the LOCAL ones, cd, author, dates).
        On hubservices 3.5 further pages are fetched while the hub reports more records."""
        op = "GetTransactionList"
        inss = self._inss(patient_inss, op)
        cds = (cd,) if isinstance(cd, str) else tuple(cd or ())
        found: list[TransactionSummary] = []
        seen: set[tuple[tuple[str, str | None, str], ...]] = set()
        page_index: int | None = None
        for _ in range(_MAX_PAGES):
            info = self._info()
            body = messages.get_transaction_list(
                info,
                inss,
                cds=cds,
                author=author,
                begindate=begindate,
                enddate=enddate,
                searchtype=searchtype,
                page_index=page_index,
            )
            reply, _ack = self._call(op, body, info.id)
            page = read_transaction_list(reply)
            new = 0
            for tr in page.transactions:
                key = tuple((i.s, i.sl, i.value) for i in tr.ids)
                if key not in seen:
                    seen.add(key)
                    found.append(tr)
                    new += 1
            if page.total is None or len(found) >= page.total or new == 0 or self.hub_version != "3.5":
                break
            page_index = len(found) + 1  # [guess] 1-based index of the first record of the next page
        return found

    def find_transaction(
        self,
        patient_inss: str,
        local_id: str,
        *,
        cd: str | Sequence[str] | None = None,
        sl: str = messages.BECARE_TRANSACTION_SL,
    ) -> TransactionSummary | None:
        """The listed transaction carrying LOCAL id ``local_id`` (``SL=sl``), or None: how a caller
        settles an ``unknown-outcome`` before deciding to send again."""
        for tr in self.get_transaction_list(patient_inss, cd=cd):
            if any(i.s == "LOCAL" and i.sl == sl and i.value == local_id for i in tr.ids):
                return tr
        return None

    def get_transaction(self, patient_inss: str, transaction_id: str | KmehrId) -> etree._Element:
        """The transaction as a ``kmehr:kmehrmessage`` (decrypted when the client can)."""
        op = "GetTransaction"
        info = self._info()
        body = messages.get_transaction(info, self._inss(patient_inss, op), transaction_id)
        reply, _ack = self._call(op, body, info.id)
        message = read_kmehrmessage(reply)
        if message is None:
            raise HubError("rejected", "the hub returned no kmehrmessage", retryable=False, operation=op)
        if is_encrypted(message) and self.decrypt_from_hub is not None:
            try:
                message = decrypt_folders(message, self.decrypt_from_hub)
            except EncryptionProblem as exc:
                raise HubError("bad-reply", exc.reason, retryable=False, operation=op) from None
            except _ehealth_errors() as exc:
                raise _security_failure(exc, op, "decryption of the reply") from None
        return message

    def revoke_transaction(self, patient_inss: str, transaction_id: str | KmehrId) -> Acknowledge:
        op = "RevokeTransaction"
        info = self._info()
        body = messages.revoke_transaction(info, self._inss(patient_inss, op), transaction_id)
        _reply, ack = self._call(op, body, info.id)
        return ack

    def get_patient_consent(self, patient_inss: str, *, consent_types: Sequence[str] = ()) -> Consent:
        op = "GetPatientConsent"
        info = self._info()
        body = messages.get_patient_consent(info, self._inss(patient_inss, op), consent_types=consent_types)
        reply, _ack = self._call(op, body, info.id)
        return read_consent(reply, self._today())

    def get_therapeutic_link(
        self, patient_inss: str, hcparty: Any, *, link_types: Sequence[str] = ()
    ) -> TherapeuticLinks:
        """The links between the patient and ``hcparty`` (a Party-like object with nihii / inss /
        cbe, a ``{scheme: value}`` mapping, or (scheme, value) pairs); ``.active`` = one holds today."""
        op = "GetTherapeuticLink"
        info = self._info()
        try:
            body = messages.get_therapeutic_link(
                info, self._inss(patient_inss, op), hcparty, link_types=link_types
            )
        except InvalidArgument as exc:
            raise InvalidRequest(str(exc), operation=op) from None
        reply, _ack = self._call(op, body, info.id)
        return read_therapeutic_links(reply, self._today())

    # -- the exchange ------------------------------------------------------------------------------
    @staticmethod
    def _inss(value: str, op: str) -> str:
        try:
            return check_inss(value)
        except InvalidArgument as exc:
            raise InvalidRequest(str(exc), operation=op, expression=_PATIENT_ID) from None

    def _call(
        self, operation: str, body: etree._Element, request_id: str
    ) -> tuple[etree._Element, Acknowledge]:
        body = messages.normalised(body)  # validate exactly what will be serialised
        errors = schemas.problems("hub", self.hub_version, body)
        if errors:
            log.error(
                "hub %s: %s request %s refused before sending: %d XSD error(s)",
                self.name,
                operation,
                request_id,
                len(errors),
            )
            raise InvalidRequest(
                f"{operation}Request is not valid against hubservices {self.hub_version}",
                operation=operation,
                schema_errors=errors,
            )
        envelope = wrap(body)
        try:
            envelope = self.security.apply(envelope)
        except HubError:
            raise
        except _ehealth_errors() as exc:
            raise _security_failure(exc, operation, "securing the request") from None
        data = serialize(envelope)
        state_changing = operation in STATE_CHANGING
        headers = {
            "Content-Type": CONTENT_TYPE,
            "SOAPAction": f'"{messages.soap_action(operation)}"',
            "User-Agent": USER_AGENT,
            "Accept": "text/xml",
        }
        if state_changing:
            headers["Connection"] = "close"
        request = httpx.Request(
            "POST", self.url, content=data, headers=headers, extensions={"timeout": self._timeout}
        )
        transport = self._write if state_changing else self._read
        started = time.monotonic()
        try:
            response = transport.handle_request(request)
            try:
                content = response.read()
            finally:
                response.close()
        except (httpx.TransportError, OSError) as exc:
            error = _transport_failure(exc, operation, state_changing)
            self._log(operation, request_id, started, error.kind)
            raise error from None
        try:
            reply, ack = self._interpret(operation, state_changing, response, content)
        except HubError as error:
            self._log(operation, request_id, started, error.kind, response.status_code)
            raise
        self._log(operation, request_id, started, "ok", response.status_code)
        return reply, ack

    def _log(
        self, operation: str, request_id: str, started: float, outcome: str, status: int | None = None
    ) -> None:
        ms = (time.monotonic() - started) * 1000
        level = logging.INFO if outcome == "ok" else logging.WARNING
        log.log(
            level,
            "hub %s: %s %s -> %s%s in %.0f ms",
            self.name,
            operation,
            request_id,
            outcome,
            f" (HTTP {status})" if status is not None else "",
            ms,
        )

    def _interpret(
        self, operation: str, state_changing: bool, response: httpx.Response, content: bytes
    ) -> tuple[etree._Element, Acknowledge]:
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        common: dict[str, Any] = {"operation": operation, "http_status": status}
        reply: etree._Element | None = None
        fault = None
        problem: str | None = None
        if content:
            try:
                reply = payload(parse(content, max_bytes=self.max_reply_bytes))
            except SoapFault as exc:
                fault = exc.fault
            except MalformedMessage as exc:
                problem = exc.reason
        else:
            problem = "empty reply"
        if status in (503, 429):
            why = fault.string if fault else f"HTTP {status} {response.reason_phrase}".strip()
            raise HubError("unavailable", why, retryable=True, retry_after=retry_after, **common)
        if status in (401, 403) and fault is None:
            raise HubError(
                "security", f"HTTP {status} {response.reason_phrase}".strip(), retryable=False, **common
            )
        if fault is not None:
            if fault.is_security:
                retry = fault.code[1] == "MessageExpired"
                raise HubError(
                    "security",
                    fault.string or fault.code_text,
                    retryable=retry,
                    fault_code=fault.code_text,
                    **common,
                )
            raise HubError(
                "fault",
                fault.string or fault.code_text,
                retryable=not fault.is_client,
                fault_code=fault.code_text,
                **common,
            )
        if status == 200 and reply is not None:
            if reply.tag != f"{{{PROT_NS}}}{operation}Response":
                raise _undecidable(
                    f"unexpected reply element {etree.QName(reply).localname}", state_changing, **common
                )
            try:
                ack = read_acknowledge(reply)
            except ValueError as exc:
                raise _undecidable(str(exc), state_changing, **common) from None
            if not ack.complete:
                codes = ", ".join(e.code for e in ack.errors if e.code) or "no error code"
                text = "; ".join(e.description for e in ack.errors if e.description)
                raise HubError(
                    "rejected",
                    f"acknowledge incomplete ({codes})" + (f": {text}" if text else ""),
                    retryable=bool(ack.errors) and all(e.temporary for e in ack.errors),
                    errors=ack.errors,
                    **common,
                )
            return reply, ack
        if status == 200 or status >= 500:
            why = problem or f"HTTP {status} without a hubservices reply"
            raise _undecidable(f"HTTP {status}: {why}" if status != 200 else why, state_changing, **common)
        if status == 408:
            raise HubError(
                "unavailable", "HTTP 408 request timeout", retryable=True, retry_after=retry_after, **common
            )
        raise HubError("fault", f"HTTP {status} {response.reason_phrase}".strip(), retryable=False, **common)


def _undecidable(reason: str, state_changing: bool, **common: Any) -> HubError:
    """No usable reply after the request was sent: unknown for a write, retryable for a read."""
    if state_changing:
        return HubError("unknown-outcome", reason, retryable=False, **common)
    status = common.get("http_status")
    kind = "unavailable" if status is not None and status >= 500 else "bad-reply"
    return HubError(kind, reason, retryable=True, **common)  # type: ignore[arg-type]


_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    httpx.WriteError,
    httpx.WriteTimeout,
    httpx.LocalProtocolError,
)


def _transport_failure(exc: BaseException, operation: str, state_changing: bool) -> HubError:
    what = type(exc).__name__
    detail = str(exc).splitlines()[0][:200] if str(exc) else what
    if isinstance(exc, _NOT_SENT):
        # no connection, or the body was not fully written: the hub cannot have processed it
        return HubError(
            "unavailable", f"{what}: {detail} (request not sent)", retryable=True, operation=operation
        )
    if state_changing:
        return HubError(
            "unknown-outcome",
            f"{what} after the request was sent: {detail}",
            retryable=False,
            operation=operation,
        )
    return HubError("unavailable", f"{what}: {detail}", retryable=True, operation=operation)


def _security_failure(exc: BaseException, operation: str, doing: str) -> HubError:
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    retryable = bool(getattr(exc, "retryable", False))
    # a retryable failure (STS or ETK depot unreachable) means nothing reached the hub yet
    kind = "unavailable" if retryable else "security"
    return HubError(kind, f"{doing}: {reason}", retryable=retryable, operation=operation)

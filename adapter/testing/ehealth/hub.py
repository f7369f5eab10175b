"""A mock hubservices v3 hub that checks what a real hub would, for tests and demos.

``MockHub.handle(body, headers) -> (status, headers, bytes)`` is a pure request handler (serve
it with ``adapter.testing.ehealth.server``). For every request it checks, in order:

1. the SOAPAction names a supported operation and matches the Body's element;
2. the WS-Security header (``adapter.ehealth.wssecurity.verify``: the STS-signed assertion, the
   signature over Body and Timestamp with the holder-of-key certificate, timestamp freshness);
   skipped only when the hub was built with ``sts_certificates=None``;
3. the Body against the hubservices XSD of its version;
4. for PutTransaction, decrypts ``Base64EncryptedData`` with the hub's ETK key and validates the
   clear kmehrmessage against the KMEHR XSD its hub version imports.

A failed check answers a SOAP fault (``soapenv:Client``; ``wsse:InvalidSecurity`` /
``wsse:FailedAuthentication`` for security). Business refusals (no consent, unknown transaction,
invalid KMEHR) answer an acknowledge with ``iscomplete=false`` and CD-ERROR codes.

It stores transactions per patient (GetTransactionList / GetTransaction / RevokeTransaction work
on them; the message's own ids, including the LOCAL ones, are kept and listed after the hub's
id), answers GetPatientConsent and GetTherapeuticLink from fixtures, and injects faults from a
queue (``HubFault``): SOAP fault, an HTTP status such as 503 with Retry-After (an HTML page, as
a load balancer sends), a slow reply, a rejection with a chosen error code, a dropped connection
before storing (``drop``) and after storing (``drop-after``: the caller cannot know it arrived).
Every request is recorded (operation, verified caller subject, status, fault).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from lxml import etree

from adapter.hubservices import envelope as soap
from adapter.hubservices.encryption import EncryptionProblem, decrypt_folders
from adapter.hubservices.messages import (
    CORE_NS,
    KMEHR_NS,
    OPERATIONS,
    PROT_NS,
    SOAP_ACTION_PREFIX,
    KmehrId,
    as_kmehr_message,
)
from adapter.kmehr import schemas

SOAP_CLIENT = (soap.SOAP11_NS, "Client")
SOAP_SERVER = (soap.SOAP11_NS, "Server")
WSSE_INVALID = (soap.WSSE_NS, "InvalidSecurity")
WSSE_FAILED_AUTH = (soap.WSSE_NS, "FailedAuthentication")
_BRUSSELS = ZoneInfo("Europe/Brussels")
XML_HEADERS = {"Content-Type": soap.CONTENT_TYPE}


def _c(local: str) -> str:
    return f"{{{CORE_NS}}}{local}"


def _k(local: str) -> str:
    return f"{{{KMEHR_NS}}}{local}"


class DropConnection(Exception):
    """Raised by ``handle``: close the connection without sending any reply."""


@dataclass
class HubFault:
    """One injected fault. ``kind``: ``soap-fault`` | ``status`` | ``delay`` | ``reject`` |
    ``drop`` | ``drop-after``. ``operation`` limits it to one operation (others pass it by)."""

    kind: str
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    faultcode: str = "soapenv:Server"
    faultstring: str = "injected fault"
    error_code: str = "temporarily-unavailable"
    operation: str | None = None

    KINDS = ("soap-fault", "status", "delay", "reject", "drop", "drop-after")

    @classmethod
    def parse(cls, spec: str) -> HubFault:
        """``503,retry-after=2`` | ``fault[=wsse:InvalidSecurity]`` | ``delay=1.5`` | ``drop`` |
        ``drop-after`` | ``reject[=code]``, optionally ``,op=PutTransaction``."""
        fault: HubFault | None = None
        extra: dict[str, str] = {}
        for part in (p.strip() for p in spec.split(",") if p.strip()):
            name, _, value = part.partition("=")
            name = name.lower()
            if name.isdigit():
                fault = cls("status", status=int(name))
            elif name in ("fault", "soap-fault"):
                fault = cls("soap-fault", faultcode=value or "soapenv:Server")
            elif name == "delay":
                fault = fault or cls("delay")
                fault.delay = float(value)
            elif name == "drop":
                fault = cls("drop")
            elif name == "drop-after":
                fault = cls("drop-after")
            elif name == "reject":
                fault = cls("reject", error_code=value or "temporarily-unavailable")
            elif name in ("retry-after", "op", "operation", "faultstring"):
                extra[name] = value
            else:
                raise ValueError(f"unknown fault {part!r}")
        if fault is None:
            raise ValueError(f"no fault in {spec!r}")
        if "retry-after" in extra:
            fault.retry_after = extra["retry-after"]
        if "faultstring" in extra:
            fault.faultstring = extra["faultstring"]
        fault.operation = extra.get("op") or extra.get("operation")
        return fault

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> HubFault:
        if isinstance(data, str):
            return cls.parse(data)
        kind = str(data.get("kind", ""))
        if kind not in cls.KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        return cls(
            kind=kind,
            status=data.get("status"),
            retry_after=None if data.get("retry_after") is None else str(data["retry_after"]),
            delay=float(data.get("delay", 0.0)),
            faultcode=str(data.get("faultcode", "soapenv:Server")),
            faultstring=str(data.get("faultstring", "injected fault")),
            error_code=str(data.get("error_code", "temporarily-unavailable")),
            operation=data.get("operation"),
        )


@dataclass
class ConsentFixture:
    active: bool = True
    types: tuple[str, ...] = ("retrospective",)
    signdate: date | None = None
    revokedate: date | None = None


@dataclass
class LinkFixture:
    hcparty: tuple[tuple[str, str], ...]
    type: str = "gpconsultation"
    startdate: date | None = None
    enddate: date | None = None


@dataclass
class Stored:
    """One stored transaction (its own kmehrmessage: header + folder with that transaction)."""

    patient: str
    hub_id: KmehrId
    ids: tuple[KmehrId, ...]
    cds: tuple[str, ...]
    message: bytes  # standalone kmehr:kmehrmessage, clear
    recorded: datetime
    caller: str | None
    revoked: bool = False

    def all_ids(self) -> tuple[KmehrId, ...]:
        return (self.hub_id, *self.ids)

    def summary(self) -> dict[str, Any]:
        return {
            "patient": self.patient,
            "hub_id": self.hub_id.value,
            "ids": [{"S": i.s, "SL": i.sl, "value": i.value} for i in self.ids],
            "local_ids": [i.value for i in self.ids if i.s == "LOCAL"],
            "cds": list(self.cds),
            "recorded": self.recorded.isoformat(),
            "caller": self.caller,
            "revoked": self.revoked,
        }


@dataclass
class RequestRecord:
    operation: str | None
    caller: str | None
    status: int
    outcome: str
    fault: str | None
    at: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Reply(Exception):
    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or dict(XML_HEADERS)


def _fault(code: tuple[str, str], text: str, detail: str | None = None, status: int = 500) -> _Reply:
    return _Reply(status, soap.fault_envelope(code, text, detail=detail))


def _qname(text: str) -> tuple[str, str]:
    prefix, _, local = text.rpartition(":")
    ns = {"soapenv": soap.SOAP11_NS, "soap": soap.SOAP11_NS, "wsse": soap.WSSE_NS}.get(prefix, soap.SOAP11_NS)
    return ns, local or "Server"


class MockHub:
    def __init__(
        self,
        *,
        hub_version: str,
        sts_certificates: Sequence[Any] | None,
        decrypt_key: Any | None,
        decrypt_cert: Any | None,
        clock: Callable[[], datetime] | None = None,
        name: str = "mockhub",
        hub_nihii: str = "19990001000",
        default_consent: bool = False,
        require_consent: bool = True,
        page_size: int = 50,
        clock_skew: float = 300.0,
    ) -> None:
        """``sts_certificates=None`` turns WS-Security checking off (message-level tests only);
        ``decrypt_key``/``decrypt_cert`` (the hub's ETK key pair) open encrypted folders.
        ``default_consent``: what GetPatientConsent says for a patient without a fixture;
        ``require_consent``: transactions of a patient without active consent are refused."""
        if hub_version not in schemas.KMEHR_FOR_HUB:
            raise ValueError(f"unsupported hub version {hub_version!r}")
        self.hub_version = hub_version
        self.kmehr_version = schemas.KMEHR_FOR_HUB[hub_version]
        self.sts_certificates = list(sts_certificates) if sts_certificates is not None else None
        self.decrypt_key = decrypt_key
        self.decrypt_cert = decrypt_cert
        self.clock = clock or (lambda: datetime.now(UTC))
        self.name = name
        self.hub_nihii = hub_nihii
        self.default_consent = default_consent
        self.require_consent = require_consent
        self.page_size = page_size
        self.clock_skew = clock_skew
        self.hub_sl = f"{name}-transaction"
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.transactions: dict[str, list[Stored]] = {}
        self.consents: dict[str, ConsentFixture] = {}
        self.links: dict[str, list[LinkFixture]] = {}
        self.faults: deque[HubFault] = deque()
        self.requests: list[RequestRecord] = []

    # -- fixtures and control ----------------------------------------------------------------------
    def set_consent(
        self,
        inss: str,
        active: bool = True,
        *,
        types: Iterable[str] = ("retrospective",),
        signdate: date | None = None,
        revokedate: date | None = None,
    ) -> None:
        with self._lock:
            self.consents[inss] = ConsentFixture(active, tuple(types), signdate, revokedate)

    def set_therapeutic_link(
        self,
        inss: str,
        hcparty: Mapping[str, str] | Iterable[tuple[str, str]] | None,
        active: bool = True,
        *,
        type: str = "gpconsultation",
        startdate: date | None = None,
        enddate: date | None = None,
    ) -> None:
        """Add a link (``active=False`` records an ended one); ``hcparty=None`` removes all links."""
        with self._lock:
            if hcparty is None:
                self.links.pop(inss, None)
                return
            pairs = tuple(hcparty.items()) if isinstance(hcparty, Mapping) else tuple(hcparty)
            today = self._today()
            if not active and enddate is None:
                enddate = date.fromordinal(today.toordinal() - 1)
                startdate = startdate or date.fromordinal(today.toordinal() - 30)
            self.links.setdefault(inss, []).append(LinkFixture(pairs, type, startdate or today, enddate))

    def queue_faults(self, faults: Iterable[HubFault | str | Mapping[str, Any]]) -> int:
        with self._lock:
            for f in faults:
                self.faults.append(f if isinstance(f, HubFault) else HubFault.from_json(f))
            return len(self.faults)

    def reset(self) -> None:
        with self._lock:
            self.transactions.clear()
            self.consents.clear()
            self.links.clear()
            self.faults.clear()
            self.requests.clear()

    def stored(self, inss: str | None = None, *, include_revoked: bool = True) -> list[Stored]:
        with self._lock:
            items = [s for p, lst in self.transactions.items() if inss is None or p == inss for s in lst]
        return [s for s in items if include_revoked or not s.revoked]

    def request_log(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.as_dict() for r in self.requests]

    def count(self, operation: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.operation == operation)

    def _today(self) -> date:
        return self.clock().astimezone(_BRUSSELS).date()

    def _next_fault(self, operation: str | None) -> HubFault | None:
        with self._lock:
            for i, f in enumerate(self.faults):
                if f.operation is None or f.operation == operation:
                    del self.faults[i]
                    return f
        return None

    def _record(
        self, operation: str | None, caller: str | None, status: int, outcome: str, fault: HubFault | None
    ) -> None:
        with self._lock:
            self.requests.append(
                RequestRecord(operation, caller, status, outcome, fault.kind if fault else None)
            )

    # -- the handler -------------------------------------------------------------------------------
    def handle(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        operation: str | None = None
        caller: str | None = None
        fault: HubFault | None = None
        lower = {k.lower(): v for k, v in headers.items()}
        try:
            action = (lower.get("soapaction") or "").strip().strip('"')
            if (
                not action.startswith(SOAP_ACTION_PREFIX)
                or action[len(SOAP_ACTION_PREFIX) :] not in OPERATIONS
            ):
                raise _fault(SOAP_CLIENT, "unknown or missing SOAPAction")
            operation = action[len(SOAP_ACTION_PREFIX) :]
            fault = self._next_fault(operation)
            if fault is not None and fault.kind == "status":
                retry = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                page = f"<html><body><h1>{fault.status} Service Unavailable</h1></body></html>".encode()
                raise _Reply(fault.status or 503, page, {"Content-Type": "text/html", **retry})
            if fault is not None and fault.kind == "soap-fault":
                raise _fault(_qname(fault.faultcode), fault.faultstring)
            try:
                env = soap.parse(body)
                request = soap.payload(env)
            except soap.SoapFault:
                raise _fault(SOAP_CLIENT, "a request cannot be a fault") from None
            except soap.MalformedMessage as exc:
                raise _fault(SOAP_CLIENT, exc.reason) from None
            if request.tag != f"{{{PROT_NS}}}{operation}Request":
                raise _fault(SOAP_CLIENT, f"SOAPAction {operation} does not match the Body element")
            caller = self._verify(env)
            errors = schemas.problems("hub", self.hub_version, request)
            if errors:
                raise _fault(
                    SOAP_CLIENT,
                    f"{operation}Request is not valid against hubservices {self.hub_version}",
                    "; ".join(errors[:5]),
                )
            if fault is not None and fault.kind == "drop":
                raise DropConnection
            if fault is not None and fault.kind == "reject":
                raise _Reply(
                    200, self._answer(operation, request, [(fault.error_code, "injected rejection")])
                )
            reply = self._dispatch(operation, request, caller)
            if fault is not None and fault.kind == "drop-after":
                raise DropConnection
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay)
            self._record(operation, caller, 200, "ok", fault)
            return 200, dict(XML_HEADERS), reply
        except _Reply as r:
            if fault is not None and fault.kind == "delay":
                time.sleep(fault.delay)
            self._record(operation, caller, r.status, "fault" if r.status >= 400 else "rejected", fault)
            return r.status, r.headers, r.body
        except DropConnection:
            self._record(operation, caller, 0, "dropped", fault)
            raise

    def _verify(self, env: etree._Element) -> str | None:
        if self.sts_certificates is None:
            return None
        from adapter.ehealth.errors import SecurityError
        from adapter.ehealth.wssecurity import verify

        try:
            caller = verify(
                env, sts_certificates=self.sts_certificates, now=self.clock(), clock_skew=self.clock_skew
            )
        except SecurityError as exc:
            code = (
                WSSE_INVALID
                if "timestamp" in exc.reason.lower() or "expire" in exc.reason.lower()
                else WSSE_FAILED_AUTH
            )
            raise _fault(code, f"security check failed: {exc.reason}") from None
        return caller.subject

    # -- operations --------------------------------------------------------------------------------
    def _dispatch(self, operation: str, request: etree._Element, caller: str | None) -> bytes:
        handler = {
            "PutTransaction": self._put,
            "GetTransactionList": self._list,
            "GetTransaction": self._get,
            "RevokeTransaction": self._revoke,
            "GetPatientConsent": self._consent,
            "GetTherapeuticLink": self._links,
        }[operation]
        return handler(request, caller)

    def _consent_active(self, inss: str) -> bool:
        fixture = self.consents.get(inss)
        if fixture is None:
            return self.default_consent
        today = self._today()
        return fixture.active and (fixture.revokedate is None or fixture.revokedate > today)

    def _patient(self, request: etree._Element) -> str:
        return (request.findtext(f"{_c('select')}/{_c('patient')}/{_c('id')}") or "").strip()

    def _refuse_without_consent(self, operation: str, request: etree._Element, inss: str) -> None:
        if self.require_consent and not self._consent_active(inss):
            raise _Reply(
                200, self._answer(operation, request, [("no-consent", "the patient has no active consent")])
            )

    def _put(self, request: etree._Element, caller: str | None) -> bytes:
        op = "PutTransaction"
        message = as_kmehr_message(request.find(_c("kmehrmessage")))
        if message.find(_k("Base64EncryptedData")) is not None:
            if self.decrypt_key is None:
                raise _fault(SOAP_SERVER, "this hub cannot decrypt (no ETK key configured)")
            from adapter.ehealth import cms
            from adapter.ehealth.errors import SecurityError

            try:
                message = decrypt_folders(
                    message, lambda der: cms.decrypt(der, self.decrypt_key, self.decrypt_cert)
                )
            except SecurityError as exc:
                raise _Reply(200, self._answer(op, request, [("decryption-failed", exc.reason)])) from None
            except EncryptionProblem as exc:
                raise _Reply(200, self._answer(op, request, [("decryption-failed", exc.reason)])) from None
        elif message.find(_k("EncryptedData")) is not None:
            raise _Reply(
                200, self._answer(op, request, [("unsupported-encryption", "XML-Enc is not supported")])
            )
        errors = schemas.problems("kmehr", self.kmehr_version, message)
        if errors:
            raise _Reply(200, self._answer(op, request, [("invalid-kmehr", e) for e in errors[:5]]))
        folders = message.findall(_k("folder"))
        patients = {(f.findtext(f"{_k('patient')}/{_k('id')}") or "").strip() for f in folders}
        if len(patients) != 1:
            raise _Reply(
                200, self._answer(op, request, [("invalid-kmehr", "one patient per PutTransaction")])
            )
        inss = patients.pop()
        self._refuse_without_consent(op, request, inss)
        header = message.find(_k("header"))
        new: list[Stored] = []
        now = self.clock()
        for folder in folders:
            for tr in folder.findall(_k("transaction")):
                hub_id = KmehrId(f"{next(self._ids)}", "LOCAL", self.hub_sl)
                own = tuple(KmehrId.from_element(i) for i in tr.findall(_k("id")))
                cds = tuple(
                    (c.text or "").strip() for c in tr.findall(_k("cd")) if c.get("S") == "CD-TRANSACTION"
                )
                new.append(Stored(inss, hub_id, own, cds, _single(message, header, folder, tr), now, caller))
        with self._lock:
            self.transactions.setdefault(inss, []).extend(new)
        extra = etree.Element(_c("transaction"))
        for s in new[:1]:
            for tid in s.all_ids():
                _id(extra, tid)
        return self._answer(op, request, [], extra=[extra] if new else [])

    def _live(self, inss: str) -> list[Stored]:
        with self._lock:
            return [s for s in self.transactions.get(inss, []) if not s.revoked]

    def _find(self, inss: str, request: etree._Element) -> Stored | None:
        el = request.find(f"{_c('select')}/{_c('transaction')}/{_c('id')}")
        wanted = KmehrId.from_element(el) if el is not None else None
        if wanted is None:
            return None
        for s in self._live(inss):
            if any(wanted.matches(i) for i in s.all_ids()):
                return s
        return None

    def _list(self, request: etree._Element, caller: str | None) -> bytes:
        op = "GetTransactionList"
        inss = self._patient(request)
        self._refuse_without_consent(op, request, inss)
        select = request.find(_c("select"))
        tr_filter = select.find(_c("transaction")) if select is not None else None
        cds = (
            {(c.text or "").strip() for c in tr_filter.findall(_c("cd"))} if tr_filter is not None else set()
        )
        items = [s for s in self._live(inss) if not cds or cds & set(s.cds)]
        total = len(items)
        index_text = request.findtext(f"{_c('request')}/{_c('paginationinfo')}/{_c('index')}")
        start = max(int(index_text) - 1, 0) if index_text and index_text.strip().lstrip("-").isdigit() else 0
        page = items[start : start + self.page_size] if self.hub_version == "3.5" else items
        extra = []
        if page:
            header = etree.Element(_c("kmehrheader"))
            folder = etree.SubElement(header, _c("folder"))
            first = etree.fromstring(page[0].message)
            patient = first.find(f"{_k('folder')}/{_k('patient')}")
            folder.append(_retag(patient, _c("patient")))
            for s in page:
                folder.append(self._summary(s))
            extra.append(header)
        pagination = (min(self.page_size, total), total) if self.hub_version == "3.5" else None
        return self._answer(op, request, [], extra=extra, pagination=pagination)

    def _summary(self, s: Stored) -> etree._Element:
        msg = etree.fromstring(s.message)
        tr = msg.find(f"{_k('folder')}/{_k('transaction')}")
        out = etree.Element(_c("transaction"))
        for tid in s.all_ids():
            _id(out, tid)
        for cd in tr.findall(_k("cd")):
            if cd.get("S") == "CD-TRANSACTION":
                _sub(out, _c("cd"), cd.text, S="CD-TRANSACTION", SV=cd.get("SV", "1.0"))
        _sub(out, _c("date"), tr.findtext(_k("date")))
        _sub(out, _c("time"), tr.findtext(_k("time")))
        author = _sub(out, _c("author"))
        for hp in tr.findall(f"{_k('author')}/{_k('hcparty')}"):
            author.append(_copy(hp))
        _sub(out, _c("iscomplete"), tr.findtext(_k("iscomplete")) or "true")
        _sub(out, _c("isvalidated"), tr.findtext(_k("isvalidated")) or "true")
        _sub(out, _c("recorddatetime"), s.recorded.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return out

    def _get(self, request: etree._Element, caller: str | None) -> bytes:
        op = "GetTransaction"
        inss = self._patient(request)
        self._refuse_without_consent(op, request, inss)
        found = self._find(inss, request)
        if found is None:
            return self._answer(op, request, [("not-found", "no such transaction for this patient")])
        msg = _retag(etree.fromstring(found.message), _c("kmehrmessage"))
        return self._answer(op, request, [], extra=[msg])

    def _revoke(self, request: etree._Element, caller: str | None) -> bytes:
        op = "RevokeTransaction"
        inss = self._patient(request)
        self._refuse_without_consent(op, request, inss)
        found = self._find(inss, request)
        if found is None:
            return self._answer(op, request, [("not-found", "no such transaction for this patient")])
        with self._lock:
            found.revoked = True
        return self._answer(op, request, [])

    def _consent(self, request: etree._Element, caller: str | None) -> bytes:
        op = "GetPatientConsent"
        inss = self._patient(request)
        fixture = self.consents.get(inss)
        if fixture is None and self.default_consent:
            fixture = ConsentFixture()
        extra = []
        if fixture is not None and (fixture.active or fixture.revokedate is not None):
            consent = etree.Element(_c("consent"))
            _sub(_sub(consent, _c("patient")), _c("id"), inss, S="INSS", SV="1.0")
            for cd in fixture.types[:2] or ("retrospective",):
                _sub(consent, _c("cd"), cd, S="CD-CONSENTTYPE", SV="1.0")
            today = self._today()
            _sub(
                consent,
                _c("signdate"),
                (fixture.signdate or date.fromordinal(today.toordinal() - 100)).isoformat(),
            )
            revoked = fixture.revokedate or (None if fixture.active else today)
            if revoked is not None:
                _sub(consent, _c("revokedate"), revoked.isoformat())
            extra.append(consent)
        return self._answer(op, request, [], extra=extra)

    def _links(self, request: etree._Element, caller: str | None) -> bytes:
        op = "GetTherapeuticLink"
        select = request.find(_c("select"))
        inss = (select.findtext(f"{_c('patient')}/{_c('id')}") or "").strip()
        wanted = {(i.get("S"), (i.text or "").strip()) for i in select.findall(f"{_c('hcparty')}/{_c('id')}")}
        types = {(c.text or "").strip() for c in select.findall(_c("cd"))}
        with self._lock:
            fixtures = list(self.links.get(inss, []))
        lst = etree.Element(_c("therapeuticlinklist"))
        for link in fixtures:
            if wanted and not wanted & set(link.hcparty):
                continue
            if types and link.type not in types:
                continue
            tl = _sub(lst, _c("therapeuticlink"))
            _sub(_sub(tl, _c("patient")), _c("id"), inss, S="INSS", SV="1.0")
            hp = _sub(tl, _c("hcparty"))
            for scheme, value in link.hcparty:
                _sub(hp, _c("id"), value, S=scheme, SV="1.0")
            _sub(tl, _c("cd"), link.type, S="CD-THERAPEUTICLINKTYPE", SV="1.0")
            if link.startdate:
                _sub(tl, _c("startdate"), link.startdate.isoformat())
            if link.enddate:
                _sub(tl, _c("enddate"), link.enddate.isoformat())
        return self._answer(op, request, [], extra=[lst])

    # -- replies -----------------------------------------------------------------------------------
    def _answer(
        self,
        operation: str,
        request: etree._Element,
        errors: Sequence[tuple[str, str]],
        *,
        extra: Sequence[etree._Element] = (),
        pagination: tuple[int, int] | None = None,
    ) -> bytes:
        root = etree.Element(
            f"{{{PROT_NS}}}{operation}Response", nsmap={"prot": PROT_NS, None: CORE_NS, "k": KMEHR_NS}
        )
        response = _sub(root, _c("response"))
        now = self.clock().astimezone(_BRUSSELS)
        _sub(response, _c("id"), f"{self.hub_nihii}.{now:%Y%m%d%H%M%S%f}", S="ID-KMEHR", SV="1.0")
        author = _sub(response, _c("author"))
        hp = _sub(author, _k("hcparty"))
        _sub(hp, _k("id"), self.hub_nihii, S="ID-HCPARTY", SV="1.0")
        _sub(hp, _k("cd"), "hub", S="CD-HCPARTY", SV="1.1")
        _sub(hp, _k("name"), f"Mock hub {self.name}")
        _sub(response, _c("date"), now.date().isoformat())
        _sub(response, _c("time"), now.strftime("%H:%M:%S"))
        echo = request.find(_c("request"))
        if echo is not None:
            response.append(_copy(echo))
        if pagination is not None:
            info = _sub(response, _c("paginationinfo"))
            _sub(info, _c("pagesize"), str(pagination[0]))
            _sub(info, _c("totalrecordcount"), str(pagination[1]))
        ack = _sub(root, _c("acknowledge"))
        _sub(ack, _c("iscomplete"), "false" if errors else "true")
        for code, description in errors:
            err = _sub(ack, _c("error"))
            _sub(err, _k("cd"), code, S="CD-ERROR", SV="1.0")
            _sub(err, _k("description"), description[:500], L="en")
        if not errors:
            for el in extra:
                root.append(el)
        root = etree.fromstring(etree.tostring(root))  # check exactly what is sent
        problems = schemas.problems("hub", self.hub_version, root)
        if problems:  # the mock must answer what a hub would: a bug here is a bug in the mock
            raise AssertionError(f"mock hub reply is invalid: {problems[:3]}")
        return soap.response_envelope(root)


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def _id(parent: etree._Element, tid: KmehrId) -> None:
    _sub(parent, _c("id"), tid.value, S=tid.s, SV=tid.sv, SL=tid.sl)


def _copy(el: etree._Element) -> etree._Element:
    """A detached copy declaring only the namespaces it uses (see ``messages._copy``: a copied
    node's unused ``xmlns=`` can shadow the declaration lxml rewires it to when appended)."""
    copy = etree.fromstring(etree.tostring(el))
    etree.cleanup_namespaces(copy)
    return copy


def _retag(el: etree._Element, tag: str) -> etree._Element:
    copy = _copy(el)
    copy.tag = tag
    out = etree.fromstring(etree.tostring(copy))
    etree.cleanup_namespaces(out)
    return out


def _single(
    message: etree._Element, header: etree._Element, folder: etree._Element, transaction: etree._Element
) -> bytes:
    """A kmehrmessage with ``header`` and one folder holding only ``transaction``."""
    out = etree.Element(_k("kmehrmessage"), nsmap={None: KMEHR_NS})
    out.append(_copy(header))
    f = etree.SubElement(out, _k("folder"))
    for child in folder:
        if not isinstance(child.tag, str):
            continue
        if child.tag == _k("transaction"):
            if child is transaction:
                f.append(_copy(child))
        else:
            f.append(_copy(child))
    return etree.tostring(out)

"""Reading hubservices v3 replies, and the typed error every failed call ends in.

A reply is ``response`` (the hub's id/author/date/time and an echo of our request), an
``acknowledge`` (``iscomplete`` + ``error`` list of CD-ERROR code and description) and the
payload. ``HubError`` says what went wrong in terms a caller can act on:

- ``fault``: the hub answered a SOAP fault (``fault_code``/``reason`` = faultcode/faultstring);
- ``security``: the hub refused our WS-Security (wsse faults, HTTP 401/403) or we could not
  secure the request (STS, credential, ETK);
- ``rejected``: acknowledge ``iscomplete=false``; ``errors`` hold the hub's codes. Not retryable
  unless a code says the condition is temporary;
- ``unavailable``: nothing was processed (connect failure, 503/429/502 for a read, a timeout
  before the request was fully sent): retry later (``retry_after`` when the hub said);
- ``unknown-outcome``: a state-changing request was fully sent and then no usable reply came
  (dropped connection, read timeout, a gateway error). The hub may have stored it: never resend
  blindly; look the transaction up first (``HubClient.find_transaction``);
- ``invalid-request``: our body failed the hub's XSD (or an argument was unusable): a
  programming or configuration error, raised before anything was sent;
- ``bad-reply``: a read got a reply that is not a usable hubservices answer.

Reasons are masked (no INSS, no names): they end up in logs and outbox records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any, Literal

from lxml import etree

from adapter.outbox.masking import mask

from .messages import CORE_NS, KMEHR_NS, KmehrId, as_kmehr_message

HubErrorKind = Literal[
    "fault", "security", "rejected", "unavailable", "unknown-outcome", "invalid-request", "bad-reply"
]

# acknowledge error codes that say "try again later" (hubs do not publish a list; matched as
# substrings, case-insensitively, so "SERVICE.TEMPORARILY.UNAVAILABLE" counts)
TEMPORARY_MARKERS = ("temporar", "unavailable", "busy", "timeout", "overload", "retry")


def _c(local: str) -> str:
    return f"{{{CORE_NS}}}{local}"


def _k(local: str) -> str:
    return f"{{{KMEHR_NS}}}{local}"


@dataclass(frozen=True, slots=True)
class HubIssue:
    """One ``acknowledge/error`` (or one schema error of our own request)."""

    code: str
    description: str
    scheme: str = "CD-ERROR"
    url: str | None = None

    @property
    def temporary(self) -> bool:
        text = f"{self.code} {self.scheme}".lower()
        return any(m in text for m in TEMPORARY_MARKERS)


@dataclass(frozen=True, slots=True)
class Acknowledge:
    complete: bool
    errors: tuple[HubIssue, ...] = ()


_OUTCOME_CODE = {
    "fault": "exception",
    "security": "security",
    "rejected": "business-rule",
    "unavailable": "transient",
    "unknown-outcome": "timeout",
    "invalid-request": "invalid",
    "bad-reply": "exception",
}


class HubError(Exception):
    """A hubservices call that did not succeed; see the module docstring for ``kind``."""

    def __init__(
        self,
        kind: HubErrorKind,
        reason: str,
        *,
        retryable: bool,
        operation: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
        fault_code: str | None = None,
        errors: tuple[HubIssue, ...] = (),
        expression: tuple[str, ...] = (),
    ) -> None:
        self.kind = kind
        self.reason = mask(reason, limit=500)
        self.retryable = retryable
        self.operation = operation
        self.http_status = http_status
        self.retry_after = retry_after
        self.fault_code = fault_code
        self.errors = tuple(HubIssue(e.code, mask(e.description, limit=300), e.scheme, e.url) for e in errors)
        self.expression = expression
        super().__init__(f"{operation or 'hub'}: {kind}: {self.reason}")

    def __repr__(self) -> str:
        return f"HubError(kind={self.kind!r}, reason={self.reason!r}, retryable={self.retryable})"

    def to_operation_outcome(self) -> dict[str, Any]:
        """A FHIR R4 OperationOutcome: one issue for the outcome, one per hub error code."""
        severity = "error"
        code = _OUTCOME_CODE[self.kind]
        if self.kind == "unavailable" and self.http_status == 429:
            code = "throttled"
        head = f"hub {self.operation or 'call'}: {self.kind}"
        if self.fault_code:
            head += f" ({self.fault_code})"
        text = f"{head}: {self.reason}"
        if self.kind == "unknown-outcome":
            text += " (the hub may have stored it: look it up before sending again)"
        elif self.retryable:
            text += " (retryable" + (f" after {self.retry_after:g} s" if self.retry_after else "") + ")"
        first: dict[str, Any] = {
            "severity": severity,
            "code": code,
            "diagnostics": text,
            "details": {"text": f"{self.kind}: {self.reason}"},
        }
        if self.expression:
            first["expression"] = list(self.expression)
        issues = [first]
        for err in self.errors:
            issue: dict[str, Any] = {
                "severity": "error",
                "code": "processing" if self.kind != "invalid-request" else "structure",
                "details": {"text": f"{err.code}: {err.description}" if err.code else err.description},
                "diagnostics": err.description,
            }
            if err.url:
                issue["location"] = [err.url]
            if self.expression:
                issue["expression"] = list(self.expression)
            issues.append(issue)
        return {"resourceType": "OperationOutcome", "issue": issues}


class InvalidRequest(HubError):
    """Raised before sending: the body does not conform to the hub's XSD (``schema_errors``), or
    an argument cannot make a valid request. ``expression`` points at the FHIR element when the
    problem is the patient's identifier."""

    def __init__(
        self,
        reason: str,
        *,
        operation: str | None,
        schema_errors: list[str] | None = None,
        expression: tuple[str, ...] = (),
    ) -> None:
        issues = tuple(HubIssue("xsd", e, scheme="LOCAL") for e in (schema_errors or [])[:20])
        super().__init__(
            "invalid-request",
            reason,
            retryable=False,
            operation=operation,
            errors=issues,
            expression=expression,
        )
        self.schema_errors = list(schema_errors or [])


# -- parsing ---------------------------------------------------------------------------------------
def _text(el: etree._Element | None, path: str) -> str | None:
    if el is None:
        return None
    value = el.findtext(path)
    return value.strip() if value is not None else None


def _date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _time(text: str | None) -> time | None:
    if not text:
        return None
    try:
        return time.fromisoformat(text[:8])
    except ValueError:
        return None


def _datetime(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def read_acknowledge(reply: etree._Element) -> Acknowledge:
    ack = reply.find(_c("acknowledge"))
    if ack is None:
        raise ValueError("reply without acknowledge")
    complete = (_text(ack, _c("iscomplete")) or "").lower() in ("true", "1")
    errors = []
    for err in ack.findall(_c("error")):
        cds = err.findall(_k("cd"))
        code = ",".join((cd.text or "").strip() for cd in cds)
        scheme = cds[0].get("S", "CD-ERROR") if cds else "CD-ERROR"
        desc_el = err.find(_k("description"))
        desc = " ".join(t.strip() for t in desc_el.itertext() if t.strip()) if desc_el is not None else ""
        errors.append(HubIssue(code, desc, scheme, _text(err, _k("url"))))
    return Acknowledge(complete, tuple(errors))


@dataclass(frozen=True, slots=True)
class Party:
    """A summary of one ``kmehr:hcparty`` (ids as (scheme, value), CD-HCPARTY codes, name)."""

    ids: tuple[tuple[str, str], ...]
    cds: tuple[str, ...]
    name: str | None = None

    @classmethod
    def from_element(cls, hp: etree._Element) -> Party:
        ids = tuple((i.get("S", ""), (i.text or "").strip()) for i in hp.findall(_k("id")))
        cds = tuple((c.text or "").strip() for c in hp.findall(_k("cd")))
        name = _text(hp, _k("name"))
        if name is None and hp.find(_k("familyname")) is not None:
            name = f"{_text(hp, _k('firstname')) or ''} {_text(hp, _k('familyname')) or ''}".strip()
        return cls(ids, cds, name)

    def __repr__(self) -> str:  # names are personal data for persons: keep them out of reprs
        return f"Party(ids={[s for s, _ in self.ids]}, cds={list(self.cds)})"


@dataclass(frozen=True, slots=True)
class TransactionSummary:
    """One transaction as GetTransactionList lists it."""

    ids: tuple[KmehrId, ...]
    cds: tuple[str, ...]
    date: date | None
    time: time | None
    author: tuple[Party, ...]
    iscomplete: bool
    isvalidated: bool
    recorded: datetime | None

    def local_id(self, sl: str | None = "becare-transaction") -> str | None:
        """The value of the LOCAL id with ``sl`` (the becare transaction id by default)."""
        for tid in self.ids:
            if tid.s == "LOCAL" and (sl is None or tid.sl == sl):
                return tid.value
        return None

    @property
    def cd(self) -> str | None:
        return self.cds[0] if self.cds else None


@dataclass(frozen=True, slots=True)
class TransactionList:
    transactions: tuple[TransactionSummary, ...]
    page_size: int | None = None
    total: int | None = None


def read_transaction_list(reply: etree._Element) -> TransactionList:
    out = []
    header = reply.find(_c("kmehrheader"))
    folder = header.find(_c("folder")) if header is not None else None
    for tr in folder.findall(_c("transaction")) if folder is not None else []:
        out.append(
            TransactionSummary(
                ids=tuple(KmehrId.from_element(i) for i in tr.findall(_c("id"))),
                cds=tuple((c.text or "").strip() for c in tr.findall(_c("cd"))),
                date=_date(_text(tr, _c("date"))),
                time=_time(_text(tr, _c("time"))),
                author=tuple(Party.from_element(hp) for hp in tr.findall(f"{_c('author')}/{_k('hcparty')}")),
                iscomplete=(_text(tr, _c("iscomplete")) or "").lower() == "true",
                isvalidated=(_text(tr, _c("isvalidated")) or "").lower() == "true",
                recorded=_datetime(_text(tr, _c("recorddatetime"))),
            )
        )
    page = reply.find(f"{_c('response')}/{_c('paginationinfo')}")
    size = total = None
    if page is not None:
        try:
            size = int(_text(page, _c("pagesize")) or 0)
            total = int(_text(page, _c("totalrecordcount")) or 0)
        except ValueError:
            size = total = None
    return TransactionList(tuple(out), size, total)


@dataclass(frozen=True, slots=True)
class PutResult:
    """The hub's ids for the stored transaction, and any warnings of a complete acknowledge."""

    ids: tuple[KmehrId, ...]
    warnings: tuple[HubIssue, ...] = ()
    request_id: str | None = None


def read_put_transaction(reply: etree._Element, ack: Acknowledge, request_id: str | None = None) -> PutResult:
    ids = tuple(KmehrId.from_element(i) for i in reply.findall(f"{_c('transaction')}/{_c('id')}"))
    return PutResult(ids, ack.errors, request_id)


def read_kmehrmessage(reply: etree._Element) -> etree._Element | None:
    """The ``kmehrmessage`` of a GetTransaction reply as a standalone ``kmehr:kmehrmessage``."""
    msg = reply.find(_c("kmehrmessage"))
    return as_kmehr_message(msg) if msg is not None else None


@dataclass(frozen=True, slots=True)
class Consent:
    """The patient's consent at the hub. ``active``: signed, not revoked (as of ``checked_on``)."""

    active: bool
    types: tuple[str, ...] = ()
    signdate: date | None = None
    revokedate: date | None = None
    present: bool = False
    checked_on: date | None = None


def read_consent(reply: etree._Element, today: date) -> Consent:
    el = reply.find(_c("consent"))
    if el is None:
        return Consent(False, checked_on=today)
    types = tuple((c.text or "").strip() for c in el.findall(_c("cd")))
    signed = _date(_text(el, _c("signdate")))
    revoked = _date(_text(el, _c("revokedate")))
    active = (signed is None or signed <= today) and (revoked is None or revoked > today)
    return Consent(active, types, signed, revoked, True, today)


@dataclass(frozen=True, slots=True)
class TherapeuticLink:
    hcparty: tuple[tuple[str, str], ...]
    type: str | None
    startdate: date | None
    enddate: date | None
    comment: str | None = None

    def active_on(self, day: date) -> bool:
        return (self.startdate is None or self.startdate <= day) and (
            self.enddate is None or self.enddate >= day
        )


@dataclass(frozen=True, slots=True)
class TherapeuticLinks:
    """The links the hub returned; ``active`` says whether one of them holds on ``checked_on``."""

    links: tuple[TherapeuticLink, ...] = field(default_factory=tuple)
    checked_on: date | None = None

    @property
    def active(self) -> bool:
        day = self.checked_on or date.today()
        return any(link.active_on(day) for link in self.links)

    def __len__(self) -> int:
        return len(self.links)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.links)


def read_therapeutic_links(reply: etree._Element, today: date) -> TherapeuticLinks:
    links = []
    for tl in reply.findall(f"{_c('therapeuticlinklist')}/{_c('therapeuticlink')}"):
        links.append(
            TherapeuticLink(
                hcparty=tuple(
                    (i.get("S", ""), (i.text or "").strip())
                    for i in tl.findall(f"{_c('hcparty')}/{_c('id')}")
                ),
                type=_text(tl, _c("cd")),
                startdate=_date(_text(tl, _c("startdate"))),
                enddate=_date(_text(tl, _c("enddate"))),
                comment=_text(tl, _c("comment")),
            )
        )
    return TherapeuticLinks(tuple(links), today)

"""Pure builders of hubservices v3 request bodies (no I/O, no clock: the caller passes ``now``).

Each builder returns the body element (``prot:XxxRequest``) exactly as it goes into the SOAP Body;
the client checks it against the hub's XSD before anything is sent. The structure follows
``hubservices_core-3_2.xsd`` / ``-3_5.xsd``: every request starts with a ``request``
(RequestType: id, author, date, time, maxrows?, breaktheglass?) followed by the payload.

The request author is the list of ``kmehr:hcparty`` built from a sender configuration
(``adapter.kmehr``'s ``Sender``, or anything with the same attributes): the organisation (NIHII,
CBE, CD-HCPARTY, name), optionally the professional (NIHII, INSS, CD-HCPARTY, names), and the
software (``LOCAL``/``endusersoftwareinfo`` + ``application``), as the connector does.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from lxml import etree

PROT_NS = "http://www.ehealth.fgov.be/hubservices/protocol/v3"
CORE_NS = "http://www.ehealth.fgov.be/hubservices/core/v3"
KMEHR_NS = "http://www.ehealth.fgov.be/standards/kmehr/schema/v1"
SOAP_ACTION_PREFIX = "urn:be:fgov:ehealth:intrahub:protocol:v3:"

# the operations this package speaks (the XSD has 26; these are the ones becare needs)
OPERATIONS = (
    "PutTransaction",
    "GetTransactionList",
    "GetTransaction",
    "RevokeTransaction",
    "GetPatientConsent",
    "GetTherapeuticLink",
)
# operations that change the hub's state: a dropped reply leaves their outcome unknown
STATE_CHANGING = frozenset({"PutTransaction", "RevokeTransaction"})

BECARE_TRANSACTION_SL = "becare-transaction"  # SL of the LOCAL transaction id the KMEHR writer sets
SOFTWARE_SL = "endusersoftwareinfo"
_NSMAP = {"prot": PROT_NS, None: CORE_NS, "k": KMEHR_NS}
_BRUSSELS = ZoneInfo("Europe/Brussels")
_INSS = re.compile(r"\d{11}")
_counter = itertools.count()


def soap_action(operation: str) -> str:
    return SOAP_ACTION_PREFIX + operation


def _p(local: str) -> str:
    return f"{{{PROT_NS}}}{local}"


def _c(local: str) -> str:
    return f"{{{CORE_NS}}}{local}"


def _k(local: str) -> str:
    return f"{{{KMEHR_NS}}}{local}"


# -- configuration shapes (duck-typed: adapter.kmehr's Party / Sender fit) ---------------------------
class PartyLike(Protocol):
    nihii: str | None
    cbe: str | None
    inss: str | None
    cd: str | None
    name: str | None
    firstname: str | None
    familyname: str | None


class SenderLike(Protocol):
    organisation: PartyLike | None
    professional: PartyLike | None
    software_name: str
    software_version: str


@dataclass(frozen=True, slots=True)
class KmehrId:
    """An ``ID-KMEHR`` identifier (a transaction id). A plain string given to the client means the
    LOCAL id the becare KMEHR writer puts on each transaction (``SL=becare-transaction``)."""

    value: str
    s: str = "LOCAL"
    sl: str | None = BECARE_TRANSACTION_SL
    sv: str = "1.0"

    @classmethod
    def of(cls, value: str | KmehrId) -> KmehrId:
        return value if isinstance(value, KmehrId) else cls(value)

    @classmethod
    def from_element(cls, el: etree._Element) -> KmehrId:
        return cls((el.text or "").strip(), el.get("S", ""), el.get("SL"), el.get("SV", "1.0"))

    def matches(self, other: KmehrId) -> bool:
        """Same scheme, value and (when both say) SL: SV is a version, not part of the identity."""
        if self.s != other.s or self.value != other.value:
            return False
        return self.sl is None or other.sl is None or self.sl == other.sl


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What goes into every ``request`` element; ``author`` is the list of kmehr hcparty."""

    id: str
    author: tuple[etree._Element, ...]
    when: datetime
    maxrows: int | None = None
    breaktheglass: str | None = None


class InvalidArgument(ValueError):
    """A builder argument that can never make a valid request (never holds the value itself)."""


def check_inss(inss: str) -> str:
    value = (inss or "").strip()
    if not _INSS.fullmatch(value):
        raise InvalidArgument("the patient INSS must be 11 digits")
    return value


# -- kmehr building blocks -------------------------------------------------------------------------
def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    el = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        el.text = text
    return el


def kmehr_hcparty(
    ids: Iterable[tuple[str, str] | tuple[str, str, str | None]],
    cds: Iterable[str],
    *,
    name: str | None = None,
    firstname: str | None = None,
    familyname: str | None = None,
) -> etree._Element:
    """A ``kmehr:hcparty``: ids as (scheme, value[, SL]), CD-HCPARTY codes, then a name or names."""
    hp = etree.Element(_k("hcparty"), nsmap={"k": KMEHR_NS})
    for item in ids:
        scheme, value = item[0], item[1]
        sl = item[2] if len(item) > 2 else None  # type: ignore[misc]
        if value:
            _sub(hp, _k("id"), str(value), S=scheme, SV="1.0", SL=sl)
    for cd in cds:
        _sub(hp, _k("cd"), cd, S="CD-HCPARTY", SV="1.1")
    if name:
        _sub(hp, _k("name"), name)
    elif firstname and familyname:
        _sub(hp, _k("firstname"), firstname)
        _sub(hp, _k("familyname"), familyname)
    return hp


def author_hcparties(sender: SenderLike) -> tuple[etree._Element, ...]:
    """The request author: organisation, professional (if any) and the software, in that order."""
    parties: list[etree._Element] = []
    org = getattr(sender, "organisation", None)
    prof = getattr(sender, "professional", None)
    if org is not None:
        parties.append(
            kmehr_hcparty(
                [
                    ("ID-HCPARTY", getattr(org, "nihii", None) or ""),
                    ("ID-CBE", getattr(org, "cbe", None) or ""),
                ],
                [getattr(org, "cd", None) or "orghospital"],
                name=getattr(org, "name", None),
                firstname=getattr(org, "firstname", None),
                familyname=getattr(org, "familyname", None),
            )
        )
    if prof is not None:
        parties.append(
            kmehr_hcparty(
                [
                    ("ID-HCPARTY", getattr(prof, "nihii", None) or ""),
                    ("INSS", getattr(prof, "inss", None) or ""),
                ],
                [getattr(prof, "cd", None) or "persphysician"],
                name=getattr(prof, "name", None),
                firstname=getattr(prof, "firstname", None),
                familyname=getattr(prof, "familyname", None),
            )
        )
    if not parties or not any(len(p.findall(_k("id"))) for p in parties):
        raise InvalidArgument("the request author needs an organisation or a professional with an id")
    software = f"{sender.software_name} {sender.software_version}".strip() or "becare"  # as the writer
    parties.append(
        kmehr_hcparty(
            [("LOCAL", software, SOFTWARE_SL)], ["application"], name=sender.software_name or "becare"
        )
    )
    return tuple(parties)


def new_request_id(author: Sequence[etree._Element], now: datetime) -> str:
    """``<first hcparty id>.<timestamp><seq>``: the KMEHR convention for a message id."""
    first = next((el.text for hp in author for el in hp.findall(_k("id")) if el.text), "becare")
    local = _local(now)
    return f"{first}.{local:%Y%m%d%H%M%S}{local.microsecond // 1000:03d}{next(_counter) % 1000:03d}"


def _local(now: datetime) -> datetime:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return now.astimezone(_BRUSSELS)


def request_info(
    author: Sequence[etree._Element],
    now: datetime,
    *,
    request_id: str | None = None,
    maxrows: int | None = None,
    breaktheglass: str | None = None,
) -> RequestInfo:
    return RequestInfo(request_id or new_request_id(author, now), tuple(author), now, maxrows, breaktheglass)


def _request(parent: etree._Element, info: RequestInfo, *, page_index: int | None = None) -> etree._Element:
    req = _sub(parent, _c("request"))
    _sub(req, _c("id"), info.id, S="ID-KMEHR", SV="1.0")
    author = _sub(req, _c("author"))
    for hp in info.author:
        author.append(_copy(hp))
    local = _local(info.when)
    _sub(req, _c("date"), local.date().isoformat())
    _sub(req, _c("time"), local.strftime("%H:%M:%S"))
    if info.maxrows is not None:
        _sub(req, _c("maxrows"), str(int(info.maxrows)))
    if info.breaktheglass is not None:
        _sub(req, _c("breaktheglass"), info.breaktheglass)
    if page_index is not None:  # hubservices 3.5 (RequestListType) only; the 3.2 XSD refuses it
        _sub(_sub(req, _c("paginationinfo")), _c("index"), str(int(page_index)))
    return req


def _copy(el: etree._Element) -> etree._Element:
    """A detached deep copy declaring only the namespaces it uses.

    Why not ``copy.deepcopy``: a copy carries every namespace declaration in scope, and lxml,
    when it later appends it under a parent that declares one of them with another prefix, can
    rewire a node to a declaration its own ``xmlns=`` shadows: the tree validates in memory but
    serialises into the wrong namespace. Dropping unused declarations rules that out."""
    copy = etree.fromstring(etree.tostring(el))
    etree.cleanup_namespaces(copy)
    return copy


def normalised(el: etree._Element) -> etree._Element:
    """``el`` serialised and parsed again: what is validated is then exactly what is sent."""
    return etree.fromstring(etree.tostring(el))


def _root(operation: str) -> etree._Element:
    if operation not in OPERATIONS:
        raise InvalidArgument(f"unsupported operation {operation}")
    return etree.Element(_p(operation + "Request"), nsmap=_NSMAP)


def _patient(parent: etree._Element, inss: str) -> None:
    _sub(_sub(parent, _c("patient")), _c("id"), check_inss(inss), S="INSS", SV="1.0")


def _transaction_id(parent: etree._Element, tid: KmehrId) -> None:
    _sub(parent, _c("id"), tid.value, S=tid.s, SV=tid.sv, SL=tid.sl)


def _date(value: date | str | None) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else value.isoformat()


# -- the operations --------------------------------------------------------------------------------
def put_transaction(info: RequestInfo, kmehrmessage: etree._Element) -> etree._Element:
    """``kmehrmessage`` is a standalone ``kmehr:kmehrmessage`` (or already the hub's core one);
    it is copied and re-tagged into the core namespace as PutTransactionRequestType wants."""
    root = _root("PutTransaction")
    _request(root, info)
    root.append(as_core_kmehrmessage(kmehrmessage))
    return normalised(root)


def get_transaction_list(
    info: RequestInfo,
    patient_inss: str,
    *,
    cds: Sequence[str] = ("careplan",),
    author: Sequence[etree._Element] | None = None,
    begindate: date | str | None = None,
    enddate: date | str | None = None,
    searchtype: str | None = "global",
    page_index: int | None = None,
) -> etree._Element:
    root = _root("GetTransactionList")
    _request(root, info, page_index=page_index)
    select = _sub(root, _c("select"))
    _patient(select, patient_inss)
    if cds or author or begindate or enddate:
        tr = _sub(select, _c("transaction"))
        for cd in cds:
            _sub(tr, _c("cd"), cd, S="CD-TRANSACTION", SV="1.0")
        if author:
            a = _sub(tr, _c("author"))
            for hp in author:
                a.append(_copy(hp))
        if begindate is not None:
            _sub(tr, _c("begindate"), _date(begindate))
        if enddate is not None:
            _sub(tr, _c("enddate"), _date(enddate))
    if searchtype:
        _sub(select, _c("searchtype"), searchtype)
    return normalised(root)


def _select_transaction(operation: str, info: RequestInfo, patient_inss: str, tid: KmehrId) -> etree._Element:
    root = _root(operation)
    _request(root, info)
    select = _sub(root, _c("select"))
    _patient(select, patient_inss)
    _transaction_id(_sub(select, _c("transaction")), tid)
    return normalised(root)


def get_transaction(info: RequestInfo, patient_inss: str, transaction_id: str | KmehrId) -> etree._Element:
    return _select_transaction("GetTransaction", info, patient_inss, KmehrId.of(transaction_id))


def revoke_transaction(info: RequestInfo, patient_inss: str, transaction_id: str | KmehrId) -> etree._Element:
    return _select_transaction("RevokeTransaction", info, patient_inss, KmehrId.of(transaction_id))


def get_patient_consent(
    info: RequestInfo, patient_inss: str, *, consent_types: Sequence[str] = ()
) -> etree._Element:
    root = _root("GetPatientConsent")
    _request(root, info)
    select = _sub(root, _c("select"))
    _patient(select, patient_inss)
    if consent_types:
        consent = _sub(select, _c("consent"))
        for cd in consent_types:
            _sub(consent, _c("cd"), cd, S="CD-CONSENTTYPE", SV="1.0")
    return normalised(root)


def hcparty_ids(hcparty: Any) -> list[tuple[str, str]]:
    """(scheme, value) pairs for a select: from a Party-like object (nihii / inss / cbe), a mapping
    ``{"ID-HCPARTY": ..., "INSS": ...}`` or a sequence of pairs."""
    if isinstance(hcparty, dict):
        pairs = [(str(k), str(v)) for k, v in hcparty.items() if v]
    elif isinstance(hcparty, (list, tuple)):
        pairs = [(str(k), str(v)) for k, v in hcparty if v]
    else:
        pairs = [
            (scheme, str(getattr(hcparty, attr)))
            for attr, scheme in (("nihii", "ID-HCPARTY"), ("inss", "INSS"), ("cbe", "ID-CBE"))
            if getattr(hcparty, attr, None)
        ]
    if not pairs:
        raise InvalidArgument("the hcparty has no identifier (NIHII, INSS or CBE)")
    return pairs


def get_therapeutic_link(
    info: RequestInfo,
    patient_inss: str,
    hcparty: Any,
    *,
    link_types: Sequence[str] = (),
    begindate: date | str | None = None,
    enddate: date | str | None = None,
) -> etree._Element:
    root = _root("GetTherapeuticLink")
    _request(root, info)
    select = _sub(root, _c("select"))
    _patient(select, patient_inss)
    if hcparty is not None:
        hp = _sub(select, _c("hcparty"))
        for scheme, value in hcparty_ids(hcparty):
            _sub(hp, _c("id"), value, S=scheme, SV="1.0")
    for cd in link_types:
        _sub(select, _c("cd"), cd, S="CD-THERAPEUTICLINKTYPE", SV="1.0")
    if begindate is not None:
        _sub(select, _c("begindate"), _date(begindate))
    if enddate is not None:
        _sub(select, _c("enddate"), _date(enddate))
    return normalised(root)


# -- kmehrmessage namespaces -----------------------------------------------------------------------
def as_core_kmehrmessage(message: etree._Element) -> etree._Element:
    """A copy of ``message`` whose root is ``core:kmehrmessage`` (its children stay in kmehr)."""
    copy = _copy(message)
    copy.tag = _c("kmehrmessage")
    return normalised(copy)


def as_kmehr_message(message: etree._Element) -> etree._Element:
    """A standalone ``kmehr:kmehrmessage`` (what the KMEHR XSD validates) from either form."""
    copy = _copy(message)
    copy.tag = _k("kmehrmessage")
    out = normalised(copy)
    etree.cleanup_namespaces(out)
    return out


def folder_patient_ids(message: etree._Element) -> list[str]:
    """The ID-PATIENT / INSS values of every folder's patient (clear folders only)."""
    out = []
    for folder in message.findall(_k("folder")):
        for el in folder.findall(f"{_k('patient')}/{_k('id')}"):
            if el.get("S") in ("ID-PATIENT", "INSS") and el.text:
                out.append(el.text.strip())
    return out

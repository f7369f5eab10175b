"""becare Bundle -> KMEHR ``kmehrmessage`` with one ``careplan`` transaction per CarePlan (pure).

Belgian hubs file KMEHR, not FHIR, so a care situation reaches a hub viewer as a KMEHR careplan
transaction: readable items for what KMEHR has codes for, ``LOCAL`` codes (``mappings/kmehr.yaml``)
for what it has none for, a summary text in the person's language for any viewer, and the whole
Bundle attached so nothing is lost for a FHIR-aware reader.

The Bundle is read through ``adapter.mapping.to_document`` (after ``normalise``, so legacy BeCore
identifier systems are accepted): the care situation document is the one place where becare
decides what a Bundle means, and the reader can then rebuild a Bundle with ``to_bundle``. The
message is checked against the official XSD before it is returned: an invalid message is a bug.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from importlib import metadata
from typing import Any, Literal
from zoneinfo import ZoneInfo

from lxml import etree

from adapter.kmehr import schemas
from adapter.kmehr.codes import LANGUAGES, KmehrCodes, codes
from adapter.kmehr.errors import KmehrBug, KmehrError, scrub
from adapter.mapping.document import DocumentError
from adapter.mapping.model import PERSON, CareSituation, Name, Organisation, Professional, RelatedParty
from adapter.mapping.normalise import normalise
from adapter.mapping.reverse import to_document
from adapter.mapping.tables import Tables, tables

Resource = dict[str, Any]
BRUSSELS = ZoneInfo("Europe/Brussels")
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NATIONAL_NUMBER = re.compile(r"\d[\d .\-/]*\d")


def ssin_systems() -> frozenset[str]:
    """The SSIN identifier system and the legacy ones a hub's INSS may still come under."""
    fhir = tables().fhir
    current = fhir["identifier_systems"]["ssin"]
    legacy = {old for old, new in fhir["legacy_identifier_systems"].items() if new == current}
    return frozenset({current, *legacy})


def _package_version() -> str:
    try:
        return metadata.version("becare")
    except metadata.PackageNotFoundError:
        return "0.1.0"


SOFTWARE_VERSION = _package_version()


@dataclass(frozen=True, slots=True)
class Party:
    """An hcparty: an organisation or a professional, as a hub knows them (NIHII, CBE, INSS)."""

    nihii: str | None = None
    cbe: str | None = None
    inss: str | None = None
    cd: str = "orghospital"
    name: str | None = None
    firstname: str | None = None
    familyname: str | None = None


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends: the organisation (and optionally a professional) and the sending software."""

    organisation: Party | None = None
    professional: Party | None = None
    software_name: str = "becare"
    software_version: str = SOFTWARE_VERSION


def to_kmehr(
    bundle: dict[str, Any],
    *,
    version: Literal["1.19", "1.26"] = "1.26",
    lang: str | None = None,
    sender: Sender | None = None,
    recipient: Party | None = None,
    transaction_id: str | None = None,
    now: dt.datetime | None = None,
    attach_bundle: bool = True,
) -> etree._Element:
    """The ``kmehrmessage`` for ``bundle``; ``KmehrError`` when the Bundle cannot be filed."""
    if version not in schemas.KMEHR_VERSIONS:
        raise KmehrError([("version", "KMEHR version must be 1.19 or 1.26")])
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise KmehrError([("/", "the input is not a FHIR Bundle")])
    fixed = normalise(bundle).resource
    _require_inss(fixed)
    summary_lang = _language(lang, fixed)
    _drop_unknown_languages(fixed)
    docs = [_document(view) for view in _plan_views(fixed)]
    tid = transaction_id if transaction_id is not None else derive_transaction_id(bundle)
    if not tid or any(c.isspace() for c in tid):
        raise KmehrError([("transaction_id", "must be a non-empty id without spaces")])
    moment = _brussels(now)
    attachment = canonical_bytes(bundle) if attach_bundle else None
    try:
        message = _Writer(docs, version, summary_lang, sender, recipient, tid, moment, attachment).message()
    except ValueError as exc:  # lxml refuses text XML 1.0 cannot carry (control characters)
        if "XML compatible" not in str(exc):
            raise
        raise KmehrError(
            [("Bundle", "holds text with characters XML cannot carry (control characters)")]
        ) from None
    errors = schemas.problems("kmehr", version, message)
    if errors:
        raise KmehrBug(
            f"the KMEHR {version} message written is not XSD-valid: " + scrub("; ".join(errors[:3]))
        )
    return message


def to_kmehr_bytes(bundle: dict[str, Any], **kwargs: Any) -> bytes:
    """``to_kmehr`` serialised: UTF-8 with an XML declaration, as a hub's PutTransaction carries it."""
    return etree.tostring(
        to_kmehr(bundle, **kwargs), xml_declaration=True, encoding="UTF-8", pretty_print=True
    )


def transaction_ids(message: etree._Element | bytes) -> list[str]:
    """The LOCAL ``becare-transaction`` ids of the careplan transactions, in order: what the hub
    client looks a delivered message up by."""
    from adapter.kmehr.reader import parse

    root = parse(message) if isinstance(message, bytes | bytearray) else message
    ns = codes().ns
    out = []
    for tx in root.iterfind(f"{{{ns}}}folder/{{{ns}}}transaction"):
        if not any(
            cd.get("S") == "CD-TRANSACTION" and cd.text == "careplan" for cd in tx.iterfind(f"{{{ns}}}cd")
        ):
            continue
        for ident in tx.iterfind(f"{{{ns}}}id"):
            if ident.get("S") == "LOCAL" and ident.get("SL") == "becare-transaction" and ident.text:
                out.append(ident.text)
    return out


# -- input -----------------------------------------------------------------------------------------
def canonical_bytes(bundle: Resource, *, sort_keys: bool = False) -> bytes:
    """The attached form: compact JSON, UTF-8, in the Bundle's own key order (so the Bundle read
    back serialises exactly as the one sent, ``resourceType`` first). Decimals (the FHIR XML
    reader's numbers) become JSON numbers, so the attachment reads back as the same values."""
    return json.dumps(
        _plain_numbers(bundle), sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _plain_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def derive_transaction_id(bundle: Resource) -> str:
    """Bundle.identifier, else Bundle.id, else a content hash: the same Bundle always gets the
    same id, so a hub lookup by it finds an earlier put."""
    ident = bundle.get("identifier")
    value = ident.get("value") if isinstance(ident, dict) else None
    for candidate in (value, bundle.get("id")):
        if isinstance(candidate, str) and candidate:
            short = candidate.removeprefix("urn:uuid:").removeprefix("urn:oid:")
            if _SAFE_ID.fullmatch(short):
                return short
            return "id-" + hashlib.sha256(candidate.encode("utf-8")).hexdigest()[:32]
    return "sha256-" + hashlib.sha256(canonical_bytes(bundle, sort_keys=True)).hexdigest()[:32]


def _resources(bundle: Resource, rtype: str) -> list[tuple[int, Resource]]:
    out = []
    for i, entry in enumerate(bundle.get("entry") or []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == rtype:
            out.append((i, res))
    return out


def _require_inss(bundle: Resource) -> None:
    patients = _resources(bundle, "Patient")
    if not patients:
        raise KmehrError([("Bundle", "no Patient: a hub files every transaction under the patient's INSS")])
    for i, patient in patients:
        if not any(
            isinstance(ident, dict) and ident.get("system") in ssin_systems() and ident.get("value")
            for ident in patient.get("identifier") or []
        ):
            raise KmehrError(
                [
                    (
                        f"Bundle.entry[{i}].resource(Patient).identifier",
                        "the person has no INSS (SSIN identifier): a hub files every transaction under it",
                    )
                ]
            )


def _language(lang: str | None, bundle: Resource) -> str:
    """The summary's language: asked, else the person's, else the region's, else English."""
    table = codes().raw
    if lang is not None:
        short = lang.split("-")[0].lower()
        if short not in LANGUAGES:
            raise KmehrError([("lang", "the summary language must be en, fr, nl or de")])
        return short
    for _, patient in _resources(bundle, "Patient"):
        comms = [c for c in patient.get("communication") or [] if isinstance(c, dict)]
        comms.sort(key=lambda c: c.get("preferred") is not True)
        for comm in comms:
            for coding in (comm.get("language") or {}).get("coding") or []:
                code = str(coding.get("code") or "").split("-")[0].lower()
                if code in LANGUAGES:
                    return code
    region = _region(bundle, tables())
    if region:
        return str(table["region_language"][region])
    return str(table["default_language"])


def _region(bundle: Resource, t: Tables) -> str | None:
    """ext-region on an EpisodeOfCare, else the person's postal code (CONTRACT section 4)."""
    for _, ep in _resources(bundle, "EpisodeOfCare"):
        for ext in ep.get("extension") or []:
            if ext.get("url") == t.extension("region"):
                code = (ext.get("valueCoding") or {}).get("code")
                if code in t.regions:
                    return str(code)
    for _, patient in _resources(bundle, "Patient"):
        for addr in patient.get("address") or []:
            postal = str(addr.get("postalCode") or "")
            if postal.isdigit() and len(postal) == 4:
                for region, row in t.regions.items():
                    if any(lo <= int(postal) <= hi for lo, hi in row["postal_codes"]):
                        return str(region)
    return None


def _drop_unknown_languages(bundle: Resource) -> None:
    """A language becare's document does not know (Italian...) is kept in the attachment only,
    rather than making the whole situation unwritable."""
    for _, patient in _resources(bundle, "Patient"):
        comms = patient.get("communication")
        if isinstance(comms, list):
            patient["communication"] = [
                c
                for c in comms
                if any(
                    str(cd.get("code") or "").split("-")[0].lower() in LANGUAGES
                    for cd in ((c or {}).get("language") or {}).get("coding") or []
                )
            ]
            if not patient["communication"]:
                del patient["communication"]


def _plan_views(bundle: Resource) -> list[Resource]:
    """One Bundle per CarePlan, each without the other plans' goals and tasks (the care
    situation document holds one plan); the Bundle itself when it has at most one."""
    entries = [e for e in bundle.get("entry") or [] if isinstance(e, dict)]
    plans = [e for e in entries if (e.get("resource") or {}).get("resourceType") == "CarePlan"]
    if len(plans) <= 1:
        return [bundle]
    goals_of = {id(p): _refs(p["resource"].get("goal")) for p in plans}
    views = []
    for plan in plans:
        mine = _keys(plan)
        others = set().union(*(_keys(p) for p in plans if p is not plan))
        other_goals = set().union(*(goals_of[id(p)] for p in plans if p is not plan))
        keep = []
        for entry in entries:
            res = entry.get("resource") or {}
            rtype = res.get("resourceType")
            if rtype == "CarePlan" and entry is not plan:
                continue
            if rtype == "Goal" and _keys(entry) & other_goals and not _keys(entry) & goals_of[id(plan)]:
                continue
            if rtype == "Task":
                based = _refs(res.get("basedOn"))
                if based & others and not based & mine:
                    continue
            keep.append(entry)
        views.append({**bundle, "entry": keep})
    return views


def _keys(entry: Resource) -> set[str]:
    res = entry.get("resource") or {}
    out = {str(entry["fullUrl"])} if entry.get("fullUrl") else set()
    if res.get("id"):
        out.add(f"{res.get('resourceType')}/{res['id']}")
    return out


def _refs(value: Any) -> set[str]:
    items = value if isinstance(value, list) else [value]
    out = set()
    for ref in items:
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            target = ref["reference"]
            out.add(target)
            out.add("/".join(target.rstrip("/").split("/")[-2:]))
    return out


def _document(view: Resource) -> CareSituation:
    try:
        return to_document(view)
    except DocumentError as exc:
        raise KmehrError(
            [
                (f"situation{p.pointer}", f"the Bundle does not describe a care situation: {p.message}")
                for p in exc.problems
            ]
        ) from None


def _brussels(now: dt.datetime | None) -> dt.datetime:
    """Hubs are in Belgium and KMEHR times carry no offset: local Brussels time."""
    if now is None:
        return dt.datetime.now(BRUSSELS)
    return now.astimezone(BRUSSELS) if now.tzinfo is not None else now


def redact_numbers(text: str) -> str:
    """No national number (11 digits, with or without separators) in a readable text."""
    return _NATIONAL_NUMBER.sub(
        lambda m: "…" if sum(c.isdigit() for c in m.group(0)) >= 11 else m.group(0), text
    )


def full_name(name: Name) -> str:
    return " ".join([*name.given, name.family])


# -- the message -----------------------------------------------------------------------------------
class _Writer:
    def __init__(
        self,
        docs: list[CareSituation],
        version: str,
        lang: str,
        sender: Sender | None,
        recipient: Party | None,
        tid: str,
        now: dt.datetime,
        attachment: bytes | None,
    ) -> None:
        self.docs = docs
        self.version = version
        self.lang = lang
        self.sender = sender
        self.recipient = recipient
        self.tid = tid
        self.now = now
        self.attachment = attachment
        self.c: KmehrCodes = codes()
        self.t: Tables = tables()
        self.ns = self.c.ns

    # -- element helpers ------------------------------------------------------------------------
    def el(
        self, parent: etree._Element | None, tag: str, text: str | None = None, **attrib: str
    ) -> etree._Element:
        qname = f"{{{self.ns}}}{tag}"
        node = (
            etree.Element(qname, nsmap={None: self.ns}) if parent is None else etree.SubElement(parent, qname)
        )
        for key, value in attrib.items():
            node.set(key, value)
        if text is not None:
            node.text = text
        return node

    def code(self, parent: etree._Element, tag: str, scheme: str, value: str, sl: str | None = None) -> None:
        attrib = {"S": scheme} | ({"SL": sl} if sl else {}) | {"SV": self.c.sv(scheme)}
        self.el(parent, tag, value, **attrib)

    def cd(self, parent: etree._Element, scheme: str, value: str, sl: str | None = None) -> None:
        self.code(parent, "cd", scheme, value, sl)

    def ident(self, parent: etree._Element, scheme: str, value: str, sl: str | None = None) -> None:
        self.code(parent, "id", scheme, value, sl)

    def date_time(self, parent: etree._Element) -> None:
        self.el(parent, "date", self.now.date().isoformat())
        self.el(parent, "time", self.now.strftime("%H:%M:%S"))

    # -- hcparties -------------------------------------------------------------------------------
    def hcparty(
        self,
        parent: etree._Element,
        ids: Iterable[tuple[str, str | None]],
        cd: str,
        *,
        name: str | None = None,
        first_family: tuple[str, str] | None = None,
        telecoms: Iterable[tuple[str, str, str]] = (),
    ) -> etree._Element:
        hc = self.el(parent, "hcparty")
        for scheme, value in ids:
            if value:
                self.ident(hc, scheme, value)
        self.cd(hc, "CD-HCPARTY", cd)
        if first_family is not None:
            self.el(hc, "firstname", first_family[0])
            self.el(hc, "familyname", first_family[1])
        elif name:
            self.el(hc, "name", name)
        self.telecoms(hc, telecoms)
        return hc

    def telecoms(self, parent: etree._Element, telecoms: Iterable[tuple[str, str, str]]) -> None:
        for where, device, number in telecoms:
            tel = self.el(parent, "telecom")
            self.cd(tel, "CD-ADDRESS", where)
            self.cd(tel, "CD-TELECOM", device)
            self.el(tel, "telecomnumber", number)

    def party(self, parent: etree._Element, party: Party) -> None:
        first_family = (party.firstname or "", party.familyname) if party.familyname else None
        self.hcparty(
            parent,
            [("ID-HCPARTY", party.nihii), ("ID-CBE", party.cbe), ("INSS", party.inss)],
            party.cd,
            name=party.name,
            first_family=first_family,
        )

    def software(self, parent: etree._Element) -> None:
        sw = self.c.raw["software_hcparty"]
        name = self.sender.software_name if self.sender else "becare"
        version = self.sender.software_version if self.sender else SOFTWARE_VERSION
        hc = self.el(parent, "hcparty")
        self.ident(hc, sw["id_scheme"], f"{name} {version}", sw["id_sl"])
        self.cd(hc, "CD-HCPARTY", sw["cd"])
        self.el(hc, "name", name)

    def professional(self, parent: etree._Element, pro: Professional, *, telecom: bool = True) -> None:
        tel = []
        if telecom and pro.phone:
            tel.append(("work", "phone", pro.phone))
        if telecom and pro.email:
            tel.append(("work", "email", pro.email))
        self.hcparty(
            parent,
            [("ID-HCPARTY", pro.nihdi)],
            pro.profession,
            first_family=(" ".join(pro.name.given), pro.name.family),
            telecoms=tel,
        )

    def organisation(self, parent: etree._Element, org: Organisation) -> None:
        self.hcparty(
            parent,
            [("ID-HCPARTY", org.nihdi), ("ID-CBE", org.cbe)],
            self.c.raw["organisation_hcparty"],
            name=org.name,
        )

    def author_parties(self, doc: CareSituation) -> list[Callable[[etree._Element], None]]:
        """Organisations, then professionals, then the software: the sender's own parties, the
        plan's author, the episodes' managing organisations and leads; each party once (the same
        NIHII or CBE number is the same party)."""
        orgs: dict[tuple[str, str], Callable[[etree._Element], None]] = {}
        pros: dict[tuple[str, str], Callable[[etree._Element], None]] = {}
        if self.sender and self.sender.organisation:
            org_party = self.sender.organisation
            orgs[("nr", org_party.nihii or org_party.cbe or "sender")] = lambda p: self.party(p, org_party)
        if self.sender and self.sender.professional:
            pro_party = self.sender.professional
            pros[("nr", pro_party.nihii or pro_party.inss or "sender")] = lambda p: self.party(p, pro_party)
        by_org = {o.id: o for o in doc.organisations}
        by_pro = {p.id: p for p in doc.professionals}
        keys = [doc.care_plan.author] if doc.care_plan and doc.care_plan.author else []
        for ep in doc.episodes:
            keys += [ep.managing_organisation, ep.case_manager or ep.coordinator]
        for key in keys:
            if key in by_org:
                org = by_org[key]
                numbers = [("nr", n) for n in (org.nihdi, org.cbe) if n] or [("key", key)]
                if not any(n in orgs for n in numbers):
                    orgs[numbers[0]] = lambda p, x=org: self.organisation(p, x)
            elif key in by_pro:
                pro = by_pro[key]
                number = ("nr", pro.nihdi) if pro.nihdi else ("key", key)
                if number not in pros:
                    pros[number] = lambda p, x=pro: self.professional(p, x, telecom=False)
        return [*orgs.values(), *pros.values(), self.software]

    # -- message ---------------------------------------------------------------------------------
    def message(self) -> etree._Element:
        root = self.el(None, "kmehrmessage")
        header = self.el(root, "header")
        standard = self.el(header, "standard")
        self.cd(standard, "CD-STANDARD", schemas.STANDARD_FOR_KMEHR[self.version])
        self.ident(header, "ID-KMEHR", f"{self.sender_id()}.{self.tid}.{self.now:%Y%m%d%H%M%S}")
        self.date_time(header)
        sender = self.el(header, "sender")
        if self.sender and (self.sender.organisation or self.sender.professional):
            for party in (self.sender.organisation, self.sender.professional):
                if party is not None:
                    self.party(sender, party)
            self.software(sender)
        else:
            for write in self.author_parties(self.docs[0]):
                write(sender)
        recipient = self.el(header, "recipient")
        if self.recipient is not None:
            self.party(recipient, self.recipient)
        else:
            self.hcparty(recipient, [], self.c.raw["default_recipient"]["cd"])
        folder = self.el(root, "folder")
        self.ident(folder, "ID-KMEHR", "1")
        self.patient(folder, self.docs[0])
        for i, doc in enumerate(self.docs, start=1):
            _Transaction(self, doc, i).write(folder)
        return root

    def sender_id(self) -> str:
        """KMEHR: the message id starts with the first sender hcparty's id."""
        for party in (self.sender.organisation, self.sender.professional) if self.sender else ():
            if party is not None and (party.nihii or party.cbe):
                return str(party.nihii or party.cbe)
        doc = self.docs[0]
        for org in doc.organisations:
            if any(ep.managing_organisation == org.id for ep in doc.episodes) and (org.nihdi or org.cbe):
                return str(org.nihdi or org.cbe)
        return "becare"

    def patient(self, folder: etree._Element, doc: CareSituation) -> None:
        person = doc.person
        pat = self.el(folder, "patient")
        self.ident(pat, "ID-PATIENT", person.ssin)
        self.person_names(pat, person.name)
        if person.birth_date:
            self.el(self.el(pat, "birthdate"), "date", person.birth_date.isoformat())
        self.sex(pat, person.gender)
        if person.address:
            addr = self.el(pat, "address")
            self.cd(addr, "CD-ADDRESS", "home")
            self.code(self.el(addr, "country"), "cd", "CD-FED-COUNTRY", person.address.country.lower())
            self.el(addr, "zip", person.address.postal_code)
            if person.address.city:
                self.el(addr, "city", person.address.city)
            if person.address.lines:
                self.el(addr, "street", person.address.lines[0])
            for line in person.address.lines[1:]:
                self.el(addr, "text", line, L=self.lang)
        if person.phone:
            self.telecoms(pat, [("home", "phone", person.phone)])
        if person.language:
            self.el(pat, "usuallanguage", person.language)

    def person_names(self, parent: etree._Element, name: Name) -> None:
        # firstname is required: a person with no given name gets an empty one (valid xsd:string)
        for given in name.given or [""]:
            self.el(parent, "firstname", given)
        self.el(parent, "familyname", name.family)

    def sex(self, parent: etree._Element, gender: str | None) -> None:
        self.cd(self.el(parent, "sex"), "CD-SEX", self.c.raw["sex"][gender or "missing"])

    def related_person(self, parent: etree._Element, party: RelatedParty, system: str) -> None:
        person = self.el(parent, "person")
        if party.ssin:
            self.ident(person, "INSS", party.ssin)
        else:  # personType requires an id: the sending system's own
            self.ident(person, "LOCAL", party.id, system)
        self.person_names(person, party.name)
        self.sex(person, None)
        if party.phone:
            self.telecoms(person, [("home", "phone", party.phone)])


class _Transaction:
    """One careplan transaction: the items of one care situation document."""

    def __init__(self, w: _Writer, doc: CareSituation, index: int) -> None:
        self.w = w
        self.doc = doc
        self.index = index
        self.items = 0
        self.headings = 0
        self.system = doc.identifier_system

    def write(self, folder: etree._Element) -> None:
        w, doc = self.w, self.doc
        tx = w.el(folder, "transaction")
        w.ident(tx, "ID-KMEHR", str(self.index))
        w.ident(tx, "LOCAL", f"{w.tid}.{self.index}", "becare-transaction")
        w.cd(tx, "CD-TRANSACTION", w.c.transaction_code(w.version))
        w.date_time(tx)
        author = w.el(tx, "author")
        for write in w.author_parties(doc):
            write(author)
        w.el(tx, "iscomplete", "true" if w.c.raw["transaction"]["iscomplete"] else "false")
        w.el(tx, "isvalidated", "true" if w.c.raw["transaction"]["isvalidated"] else "false")
        w.el(tx, "text", summary(doc, w.lang, w.c), L=w.lang)
        for ep in doc.episodes:
            self.episode(tx, ep)
        if doc.care_plan:
            self.care_plan(tx)
        members = {m.party: m.roles for m in doc.care_team.members}
        self.team(tx, members)
        for key in self.party_keys():
            if key not in members and key != PERSON:
                self.party(tx, key, None)
        for goal in doc.care_plan.goals if doc.care_plan else []:
            self.goal(tx, goal)
        for task in doc.tasks:
            self.task(tx, task)
        for consent in doc.consents:
            self.consent(tx, consent)
        for assessment in doc.assessments:
            self.assessment(tx, assessment)
        if w.attachment is not None:
            att = w.c.raw["attachment"]
            lnk = w.el(tx, "lnk", TYPE=att["type"], MEDIATYPE=att["mediatype"], SIZE=str(len(w.attachment)))
            lnk.text = base64.b64encode(w.attachment).decode("ascii")

    def party_keys(self) -> list[str]:
        doc = self.doc
        keys = [doc.representative.id] if doc.representative else []
        keys += [p.id for p in doc.informal_caregivers]
        keys += [o.id for o in doc.organisations]
        keys += [p.id for p in doc.professionals]
        return keys

    # -- items -----------------------------------------------------------------------------------
    def item(
        self, parent: etree._Element, kind: str, key: str, extra_cds: Iterable[tuple[str, str]] = ()
    ) -> etree._Element:
        w = self.w
        self.items += 1
        it = w.el(parent, "item")
        w.ident(it, "ID-KMEHR", str(self.items))
        w.ident(it, "LOCAL", key, self.system)
        w.cd(it, "CD-ITEM", w.c.item_code(kind))
        w.cd(it, "LOCAL", kind, "becare-item")
        for scheme, value in extra_cds:
            w.cd(it, scheme, value)
        return it

    def local_codes(self, item: etree._Element, sl: str, values: Iterable[str]) -> None:
        values = list(values)
        if values:
            content = self.w.el(item, "content")
            for value in values:
                self.w.cd(content, "LOCAL", value, sl)

    def ref(self, item: etree._Element, name: str, key: str | None) -> None:
        if key is not None:
            assert name in self.w.c.references, name
            self.w.ident(self.w.el(item, "content"), "LOCAL", key, f"becare-ref-{name}")

    def text(self, item: etree._Element, value: str | None) -> None:
        if value:
            self.w.el(self.w.el(item, "content"), "text", value, L=self.w.lang)

    def moments(self, item: etree._Element, begin: dt.date | None, end: dt.date | None) -> None:
        if begin is not None:
            self.w.el(self.w.el(item, "beginmoment"), "date", begin.isoformat())
        if end is not None:
            self.w.el(self.w.el(item, "endmoment"), "date", end.isoformat())

    def lifecycle(self, item: etree._Element, kind: str, status: str) -> None:
        self.w.cd(self.w.el(item, "lifecycle"), "CD-LIFECYCLE", self.w.c.lifecycle(kind)[status])

    def episode(self, tx: etree._Element, ep: Any) -> None:
        it = self.item(tx, "episode", ep.id)
        self.local_codes(it, "becare-episode-type", [ep.type])
        self.local_codes(it, "becare-region", [self.doc.region] if self.doc.region else [])
        self.local_codes(it, "becare-case-management-trigger", ep.triggers)
        self.ref(it, "coordinator", ep.coordinator)
        self.ref(it, "case-manager", ep.case_manager)
        self.ref(it, "requested-by", ep.requested_by)
        self.ref(it, "managing-organisation", ep.managing_organisation)
        self.moments(it, ep.period.start, ep.period.end)
        self.lifecycle(it, "episode", ep.status)

    def care_plan(self, tx: etree._Element) -> None:
        plan = self.doc.care_plan
        assert plan is not None
        it = self.item(tx, "care-plan", plan.id)
        self.text(it, plan.title)
        self.ref(it, "author", plan.author)
        self.moments(it, plan.period.start if plan.period else None, plan.period.end if plan.period else None)
        self.lifecycle(it, "care-plan", plan.status)

    def team(self, tx: etree._Element, members: dict[str, list[str]]) -> None:
        w, team = self.w, self.doc.care_team
        self.headings += 1
        heading = w.el(tx, "heading")
        w.ident(heading, "ID-KMEHR", str(self.headings))
        w.ident(heading, "LOCAL", team.id, self.system)
        w.cd(heading, "CD-HEADING", w.c.raw["care_team_heading"])
        w.cd(heading, "LOCAL", "care-team", "becare-heading")
        if team.name:
            w.el(heading, "text", team.name, L=w.lang)
        for key, roles in members.items():
            self.party(heading, key, roles)

    def party(self, parent: etree._Element, key: str, roles: list[str] | None) -> None:
        doc, w = self.doc, self.w
        if key == PERSON:
            it = self.item(parent, "person", PERSON)
        elif doc.representative and key == doc.representative.id:
            it = self.related(parent, doc.representative, "representative")
        elif key in {p.id for p in doc.informal_caregivers}:
            it = self.related(
                parent, next(p for p in doc.informal_caregivers if p.id == key), "informal-caregiver"
            )
        elif key in {o.id for o in doc.organisations}:
            it = self.item(parent, "organisation", key)
            w.organisation(w.el(it, "content"), next(o for o in doc.organisations if o.id == key))
        else:
            pro = next(p for p in doc.professionals if p.id == key)
            it = self.item(parent, "professional", key)
            w.professional(w.el(it, "content"), pro)
            self.ref(it, "organisation", pro.organisation)
        self.local_codes(it, "becare-care-role", roles or [])

    def related(self, parent: etree._Element, party: RelatedParty, kind: str) -> etree._Element:
        w = self.w
        it = self.item(parent, kind, party.id)
        w.related_person(w.el(it, "content"), party, self.system)
        contact = w.c.raw["contact_person"].get(party.relationship)
        if contact:
            w.cd(w.el(it, "content"), "CD-CONTACT-PERSON", contact)
        self.local_codes(it, "becare-relationship", [party.relationship])
        return it

    def goal(self, tx: etree._Element, goal: Any) -> None:
        it = self.item(tx, "goal", goal.id)
        self.local_codes(it, "becare-goal-category", [goal.category])
        self.text(it, goal.description)
        self.ref(it, "expressed-by", goal.expressed_by)
        self.moments(it, None, goal.target_date)
        self.lifecycle(it, "goal", goal.status)

    def task(self, tx: etree._Element, task: Any) -> None:
        it = self.item(tx, "task", task.id)
        self.local_codes(it, "becare-task-type", [task.type])
        self.text(it, task.description)
        self.ref(it, "owner", task.owner)
        self.ref(it, "goal", task.goal)
        self.moments(it, None, task.due)
        self.lifecycle(it, "task", task.status)

    def consent(self, tx: etree._Element, consent: Any) -> None:
        it = self.item(tx, "consent", consent.id)
        self.local_codes(it, "becare-consent-category", [consent.category])
        self.ref(it, "given-by", consent.given_by)
        self.ref(it, "grantee", consent.grantee)
        self.moments(it, consent.date, None)
        self.lifecycle(it, "consent", consent.status)

    def assessment(self, tx: etree._Element, a: Any) -> None:
        w = self.w
        parameter = w.c.raw["parameters"].get(a.instrument)
        it = self.item(tx, "assessment", a.id, [("CD-PARAMETER", parameter)] if parameter else [])
        self.local_codes(it, "becare-assessment-instrument", [a.instrument])
        if a.score is not None:
            w.el(w.el(it, "content"), "decimal", decimal_text(a.score))
        if a.evaluation_id:
            w.ident(w.el(it, "content"), "LOCAL", a.evaluation_id, "becare-belrai-evaluation")
        self.ref(it, "performer", a.performer)
        self.moments(it, a.date, None)


def decimal_text(value: float) -> str:
    """xsd:decimal has no exponent: 1e-05 is written 0.00001."""
    text = format(Decimal(repr(value)), "f")
    return text.removesuffix(".0") if text.endswith(".0") else text


def summary(doc: CareSituation, lang: str, c: KmehrCodes) -> str:
    """A few lines any hub viewer can show: episode, who leads it, goals, open tasks."""
    lab = c.labels(lang)
    names: dict[str, str] = {PERSON: str(lab["the_person"])}
    for party in [*([doc.representative] if doc.representative else []), *doc.informal_caregivers]:
        names[party.id] = full_name(party.name)
    for pro in doc.professionals:
        names[pro.id] = full_name(pro.name)
    plan = doc.care_plan
    lines = [f"{lab['care_plan']}: {plan.title}" if plan and plan.title else str(lab["care_plan"])]
    for ep in doc.episodes:
        period = f"{lab['since']} {ep.period.start.isoformat()}"
        if ep.period.end:
            period += f", {lab['until']} {ep.period.end.isoformat()}"
        line = f"{lab['episode_types'][ep.type]} ({period})."
        lead = ep.case_manager or ep.coordinator
        if lead:
            role = "case-manager" if ep.type == "case-management" else "care-coordinator"
            line += f" {lab[role]}: {names.get(lead, lead)}."
        lines.append(line)
    goals = [f"{lab['goal_categories'][g.category]}: {g.description}" for g in (plan.goals if plan else [])]
    lines.append(f"{lab['goals']}: {'; '.join(goals) if goals else lab['none']}.")
    open_statuses = set(c.raw["open_task_statuses"])
    tasks = []
    for task in doc.tasks:
        if task.status in open_statuses:
            text = str(lab["task_types"][task.type])
            if task.description:
                text += f" – {task.description}"
            if task.due:
                text += f" ({lab['due']} {task.due.isoformat()})"
            tasks.append(text)
    lines.append(f"{lab['open_tasks']}: {'; '.join(tasks) if tasks else lab['none']}.")
    return redact_numbers("\n".join(lines))

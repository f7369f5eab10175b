"""KMEHR ``kmehrmessage`` -> becare Bundles, one per ``careplan`` transaction (pure).

A message becare wrote carries the whole Bundle: that is read back as it was sent. A message
without it (a hub that drops attachments, another vendor) is read from its items, into a care
situation document first and then through ``adapter.mapping.to_bundle``, so the Bundle follows
the becare profiles exactly as a mapped document does. The input is untrusted: parsed with no
DTD, no entities and no network, checked against the XSD of the KMEHR version it declares, and
every problem is reported as an XPath-like location and a reason, without the data itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree

from adapter.fhirio.errors import DEFAULT_LIMITS, ParseError
from adapter.fhirio.xmlparse import parse_tree
from adapter.kmehr import schemas
from adapter.kmehr.codes import KmehrCodes, codes
from adapter.kmehr.errors import KmehrError
from adapter.kmehr.writer import ssin_systems
from adapter.mapping.document import DocumentError, validate
from adapter.mapping.forward import to_bundle
from adapter.mapping.model import PERSON
from adapter.mapping.tables import Tables, tables

Resource = dict[str, Any]
MAX_MESSAGE_BYTES = 50 * 1024 * 1024
FALLBACK_SYSTEM = "urn:becare:kmehr-local"
# the last CD-STANDARD value of each version's enumeration (later values fail that XSD)
_VERSION_BY_STANDARD = sorted((v, k) for k, v in schemas.STANDARD_FOR_KMEHR.items())
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SYSTEM = re.compile(r"(https?://[^\s|]+|urn:[A-Za-z0-9][A-Za-z0-9-]*:[^\s|]+)")
_PARTY_KINDS = ("person", "representative", "informal-caregiver", "professional", "organisation")


def parse(data: bytes | bytearray) -> etree._Element:
    """Hardened parsing (see ``adapter.fhirio.xmlparse``): a DOCTYPE or an entity is refused
    before lxml sees the document; no DTD, no network, no huge trees."""
    if not isinstance(data, bytes | bytearray):
        raise KmehrError([("/", "expected the KMEHR message as bytes or a parsed element")])
    if len(data) > MAX_MESSAGE_BYTES:
        raise KmehrError([("/", f"the message is larger than {MAX_MESSAGE_BYTES // (1024 * 1024)} MB")])
    try:
        return parse_tree(bytes(data), DEFAULT_LIMITS)
    except ParseError as exc:
        where = f" (line {exc.line}, column {exc.col or 0})" if exc.line else ""
        raise KmehrError([("/", f"not well-formed XML: {exc.message}{where}")]) from None


def from_kmehr(data: bytes | etree._Element) -> list[dict[str, Any]]:
    """One becare Bundle per careplan transaction; identical attached Bundles are returned once."""
    root = data if isinstance(data, etree._Element) else parse(data)
    c = codes()
    ns = c.ns
    if root.tag != f"{{{ns}}}kmehrmessage":
        raise KmehrError([(path(root), "not a KMEHR kmehrmessage (root element, KMEHR v1 namespace)")])
    version = _version(root, ns)
    _check_xsd(root, version)
    found = [
        (folder, tx)
        for folder in root.iterfind(f"{{{ns}}}folder")
        for tx in folder.iterfind(f"{{{ns}}}transaction")
        if any(
            cd.get("S") == "CD-TRANSACTION" and (cd.text or "").strip() == "careplan"
            for cd in tx.iterfind(f"{{{ns}}}cd")
        )
    ]
    if not found:
        raise KmehrError([(path(root), "the message has no careplan transaction (CD-TRANSACTION careplan)")])
    bundles: list[Resource] = []
    seen: set[bytes] = set()
    problems: list[tuple[str, str]] = []
    for folder, tx in found:
        attached = _attachments(folder, tx, c, problems)
        if attached is None:
            continue
        if attached:
            for raw, bundle in attached:
                if raw not in seen:
                    seen.add(raw)
                    bundles.append(bundle)
            continue
        try:
            bundles.append(_Items(folder, tx, c, tables()).bundle())
        except KmehrError as exc:
            problems.extend(exc.problems)
    if problems:
        raise KmehrError(problems)
    return bundles


# -- checks ----------------------------------------------------------------------------------------
def path(el: etree._Element) -> str:
    """``/kmehrmessage/folder[1]/transaction[2]/item[3]``: where a problem is, for a person."""
    parts = []
    node: etree._Element | None = el
    while node is not None:
        parent = node.getparent()
        name = etree.QName(node).localname if isinstance(node.tag, str) else "node()"
        if parent is None:
            parts.append(name)
        else:
            same = [s for s in parent if s.tag == node.tag]
            parts.append(f"{name}[{same.index(node) + 1}]")
        node = parent
    return "/" + "/".join(reversed(parts))


def _version(root: etree._Element, ns: str) -> str:
    cd = root.find(f"{{{ns}}}header/{{{ns}}}standard/{{{ns}}}cd")
    value = (cd.text or "").strip() if cd is not None else ""
    where = path(cd) if cd is not None else path(root) + "/header"
    if not (value.isdigit() and len(value) == 8):
        raise KmehrError([(where, "no CD-STANDARD date: the KMEHR version cannot be told")])
    for last, version in _VERSION_BY_STANDARD:
        if value <= last:
            return version
    raise KmehrError([(where, "the CD-STANDARD is newer than KMEHR 1.26: becare reads KMEHR 1.19 and 1.26")])


def _check_xsd(root: etree._Element, version: str) -> None:
    entries = schemas.located_problems("kmehr", version, root)
    if not entries:
        return
    tree = root.getroottree()
    problems = []
    for where, message in entries[:50]:
        try:
            hits = tree.xpath(where) if where else []
        except etree.XPathError:
            hits = []
        location = path(hits[0]) if hits and isinstance(hits[0], etree._Element) else path(root)
        problems.append((location, f"not valid against the KMEHR {version} XSD: {message}"))
    raise KmehrError(problems)


def _attachments(
    folder: etree._Element, tx: etree._Element, c: KmehrCodes, problems: list[tuple[str, str]]
) -> list[tuple[bytes, Resource]] | None:
    """The Bundles attached to ``tx`` (empty: none, read the items; None: a broken one)."""
    att = c.raw["attachment"]
    out = []
    for lnk in tx.iterfind(f"{{{c.ns}}}lnk"):
        if lnk.get("TYPE") != att["type"] or lnk.get("MEDIATYPE") != att["mediatype"]:
            continue
        where = path(lnk)
        try:
            raw = base64.b64decode("".join((lnk.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            problems.append((where, "the attached Bundle is not base64"))
            return None
        if lnk.get("SIZE") is not None and lnk.get("SIZE") != str(len(raw)):
            problems.append((where, "the attachment's SIZE does not match its content: truncated or altered"))
            return None
        try:
            bundle = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            problems.append((where, "the attachment is not UTF-8 JSON: not a FHIR Bundle"))
            return None
        reason = _bundle_problem(bundle, folder, c)
        if reason:
            problems.append((where, reason))
            return None
        out.append((raw, bundle))
    return out


def _bundle_problem(bundle: Any, folder: etree._Element, c: KmehrCodes) -> str | None:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        return "the attachment is not a FHIR Bundle"
    entries = bundle.get("entry")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and isinstance(e["resource"].get("resourceType"), str)
        for e in entries
    ):
        return "the attached Bundle's entries are not resources"
    systems = ssin_systems()
    ssins = {
        str(i.get("value"))
        for e in entries
        if e["resource"]["resourceType"] == "Patient"
        for i in e["resource"].get("identifier") or []
        if isinstance(i, dict) and i.get("system") in systems
    }
    patient = folder.find(f"{{{c.ns}}}patient")
    folder_ssins = {
        (i.text or "").strip()
        for i in (patient.iterfind(f"{{{c.ns}}}id") if patient is not None else [])
        if i.get("S") in ("ID-PATIENT", "INSS")
    }
    if not ssins & folder_ssins:
        return "the attached Bundle is not about the folder's patient (no matching INSS)"
    return None


# -- items -----------------------------------------------------------------------------------------
class _Items:
    """A careplan transaction's items as a care situation document, then a becare Bundle."""

    def __init__(self, folder: etree._Element, tx: etree._Element, c: KmehrCodes, t: Tables) -> None:
        self.folder = folder
        self.tx = tx
        self.c = c
        self.t = t
        self.ns = c.ns
        self.where: dict[str, str] = {}  # document pointer -> KMEHR path, for the problems
        self.items = [(it, self.kind(it)) for it in tx.iter(f"{{{self.ns}}}item")]
        self.system = self._system()
        self.keys: dict[int, str] = {}

    # -- small readers ---------------------------------------------------------------------------
    def q(self, tag: str) -> str:
        return f"{{{self.ns}}}{tag}"

    def kind(self, item: etree._Element) -> str | None:
        cds = list(item.iterfind(self.q("cd")))
        for cd in cds:
            if cd.get("S") == "LOCAL" and cd.get("SL") == "becare-item":
                return (cd.text or "").strip()
        item_code = next(((cd.text or "").strip() for cd in cds if cd.get("S") == "CD-ITEM"), "")
        if item_code == "contacthcparty":
            hc = item.find(f"{self.q('content')}/{self.q('hcparty')}")
            cd = hc.find(self.q("cd")) if hc is not None else None
            return "professional" if cd is not None and (cd.text or "").startswith("pers") else "organisation"
        if item_code == "contactperson":
            return "informal-caregiver"
        by_code = {v: k for k, v in self.c.raw["items"].items() if k not in _PARTY_KINDS}
        return by_code.get(item_code)

    def _system(self) -> str:
        for item, _ in self.items:
            for ident in item.iterfind(self.q("id")):
                sl = ident.get("SL") or ""
                if ident.get("S") == "LOCAL" and _SYSTEM.fullmatch(sl):
                    return sl
        return FALLBACK_SYSTEM

    def key(self, node: etree._Element, kind: str) -> str:
        for ident in node.iterfind(self.q("id")):
            value = (ident.text or "").strip()
            if ident.get("S") == "LOCAL" and ident.get("SL") == self.system and _KEY.fullmatch(value):
                return value
        number = next((i.text for i in node.iterfind(self.q("id")) if i.get("S") == "ID-KMEHR"), "") or ""
        return f"{kind}-{number.strip() or len(self.keys) + 1}"

    def contents(self, item: etree._Element, tag: str) -> list[etree._Element]:
        return list(item.iterfind(f"{self.q('content')}/{self.q(tag)}"))

    def local_codes(self, item: etree._Element, sl: str) -> list[str]:
        return [
            (cd.text or "").strip()
            for cd in self.contents(item, "cd")
            if cd.get("S") == "LOCAL" and cd.get("SL") == sl and (cd.text or "").strip()
        ]

    def local_code(self, item: etree._Element, sl: str) -> str | None:
        found = self.local_codes(item, sl)
        return found[0] if found else None

    def ref(self, item: etree._Element, name: str) -> str | None:
        for ident in self.contents(item, "id"):
            if (
                ident.get("S") == "LOCAL"
                and ident.get("SL") == f"becare-ref-{name}"
                and (ident.text or "").strip()
            ):
                return (ident.text or "").strip()
        return None

    def text(self, item: etree._Element) -> str | None:
        for node in [*self.contents(item, "text"), *item.iterfind(self.q("text"))]:
            if (node.text or "").strip():
                return (node.text or "").strip()
        return None

    def moment(self, item: etree._Element, tag: str) -> str | None:
        node = item.find(f"{self.q(tag)}/{self.q('date')}")
        return (node.text or "").strip()[:10] if node is not None and node.text else None

    def status(self, item: etree._Element, kind: str, default: str) -> str:
        node = item.find(f"{self.q('lifecycle')}/{self.q('cd')}")
        value = (node.text or "").strip() if node is not None else ""
        return self.c.lifecycle_read(kind).get(value, default)

    def put(self, target: dict[str, Any], key: str, value: Any) -> None:
        if value not in (None, [], ""):
            target[key] = value

    # -- the document ----------------------------------------------------------------------------
    def bundle(self) -> Resource:
        doc = self.document()
        try:
            return to_bundle(validate(doc), table=self.t)
        except DocumentError as exc:
            problems = []
            for p in exc.problems:
                prefix = max((k for k in self.where if p.pointer.startswith(k)), key=len, default="")
                problems.append(
                    (self.where.get(prefix, path(self.tx)), f"{p.message} (as {p.pointer or '/'})")
                )
            raise KmehrError(problems) from None

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"version": 1, "identifier_system": self.system}
        doc["person"] = self.person()
        for item, kind in self.items:
            if kind in _PARTY_KINDS:
                self.keys[id(item)] = PERSON if kind == "person" else self.key(item, kind)
        self.parties(doc)
        doc["care_team"] = self.team()
        doc["episodes"] = [self.episode(item, i, doc) for i, item in enumerate(self.of("episode"))]
        if not doc["episodes"]:
            raise KmehrError(
                [
                    (
                        path(self.tx),
                        "no episode item (becare-item episode): care coordination or case management "
                        "cannot be told",
                    )
                ]
            )
        plans = self.of("care-plan")
        goals = self.of("goal")
        if plans or goals:
            doc["care_plan"] = self.care_plan(plans[0] if plans else None, goals)
        doc["tasks"] = [self.task(item, i) for i, item in enumerate(self.of("task"))]
        doc["consents"] = [
            c for c in (self.consent(item, i) for i, item in enumerate(self.of("consent"))) if c is not None
        ]
        doc["assessments"] = [
            a
            for a in (self.assessment(item, i) for i, item in enumerate(self.of("assessment")))
            if a is not None
        ]
        return doc

    def of(self, kind: str) -> list[etree._Element]:
        return [item for item, k in self.items if k == kind]

    def names(self, node: etree._Element, *, many_given: bool) -> dict[str, Any]:
        given = [(n.text or "").strip() for n in node.iterfind(self.q("firstname")) if (n.text or "").strip()]
        family = node.find(self.q("familyname"))
        name = node.find(self.q("name"))
        out: dict[str, Any] = {"family": (family.text or "").strip() if family is not None else ""}
        if family is None and name is not None:
            out["family"] = (name.text or "").strip()
        if given:
            out["given"] = given if many_given else [" ".join(given)]
        return out

    def hcparty_name(self, hc: etree._Element) -> str:
        """An organisation's name; a person-style name joined when that is what was sent."""
        name = (hc.findtext(self.q("name")) or "").strip()
        if name:
            return name
        parts = [hc.findtext(self.q("firstname")) or "", hc.findtext(self.q("familyname")) or ""]
        return " ".join(p.strip() for p in parts if p.strip())

    def telecom(self, node: etree._Element, device: str) -> str | None:
        for tel in node.iterfind(self.q("telecom")):
            cds = {(cd.get("S"), (cd.text or "").strip()) for cd in tel.iterfind(self.q("cd"))}
            number = tel.find(self.q("telecomnumber"))
            if ("CD-TELECOM", device) in cds and number is not None and (number.text or "").strip():
                return (number.text or "").strip()
        return None

    def person(self) -> dict[str, Any]:
        patient = self.folder.find(self.q("patient"))
        assert patient is not None  # the XSD requires it
        self.where["/person"] = path(patient)
        out: dict[str, Any] = {}
        for ident in patient.iterfind(self.q("id")):
            value = (ident.text or "").strip()
            if ident.get("S") in ("ID-PATIENT", "INSS") and value.isdigit() and len(value) == 11:
                out["ssin"] = value
                break
        if "ssin" not in out:
            raise KmehrError([(path(patient), "the patient has no INSS (11 digits, ID-PATIENT or INSS)")])
        out["name"] = self.names(patient, many_given=True)
        sex = patient.find(f"{self.q('sex')}/{self.q('cd')}")
        gender = self.c.raw["sex_read"].get((sex.text or "").strip()) if sex is not None else None
        self.put(out, "gender", gender)
        self.put(out, "birth_date", self.moment(patient, "birthdate"))
        addr = patient.find(self.q("address"))
        if addr is not None and addr.find(self.q("zip")) is not None:
            address: dict[str, Any] = {"postal_code": (addr.findtext(self.q("zip")) or "").strip()}
            lines = [addr.findtext(self.q("street")) or ""] + [
                t.text or "" for t in addr.iterfind(self.q("text"))
            ]
            self.put(address, "lines", [line.strip() for line in lines if line.strip()])
            self.put(address, "city", (addr.findtext(self.q("city")) or "").strip())
            country = addr.findtext(f"{self.q('country')}/{self.q('cd')}")
            self.put(address, "country", (country or "").strip().upper())
            out["address"] = address
        self.put(out, "phone", self.telecom(patient, "phone"))
        language = (patient.findtext(self.q("usuallanguage")) or "").strip().split("-")[0].lower()
        if language in ("nl", "fr", "de", "en"):
            out["language"] = language
        return out

    def parties(self, doc: dict[str, Any]) -> None:
        doc["informal_caregivers"] = []
        doc["organisations"] = []
        doc["professionals"] = []
        reverse_contact = {}
        for rel, contact in self.c.raw["contact_person"].items():
            reverse_contact.setdefault(contact, rel)
        for item, kind in self.items:
            key = self.keys.get(id(item))
            if kind in ("representative", "informal-caregiver"):
                person = item.find(f"{self.q('content')}/{self.q('person')}")
                party: dict[str, Any] = {"id": key}
                party["name"] = self.names(person, many_given=True) if person is not None else {"family": ""}
                relationship = self.local_code(item, "becare-relationship")
                if relationship is None:
                    contact = next(
                        (cd.text for cd in self.contents(item, "cd") if cd.get("S") == "CD-CONTACT-PERSON"),
                        "",
                    )
                    relationship = reverse_contact.get((contact or "").strip(), "family-member")
                party["relationship"] = relationship
                if person is not None:
                    ssin = next((i.text for i in person.iterfind(self.q("id")) if i.get("S") == "INSS"), None)
                    self.put(party, "ssin", (ssin or "").strip())
                    self.put(party, "phone", self.telecom(person, "phone"))
                if kind == "representative" and "representative" not in doc:
                    doc["representative"] = party
                    self.where["/representative"] = path(item)
                else:
                    self.where[f"/informal_caregivers/{len(doc['informal_caregivers'])}"] = path(item)
                    doc["informal_caregivers"].append(party)
            elif kind in ("professional", "organisation"):
                hc = item.find(f"{self.q('content')}/{self.q('hcparty')}")
                ids = {}
                cd_value = ""
                if hc is not None:
                    ids = {i.get("S"): (i.text or "").strip() for i in hc.iterfind(self.q("id"))}
                    cd_value = next(
                        (
                            (cd.text or "").strip()
                            for cd in hc.iterfind(self.q("cd"))
                            if cd.get("S") == "CD-HCPARTY"
                        ),
                        "",
                    )
                if kind == "organisation":
                    org: dict[str, Any] = {"id": key}
                    org["name"] = self.hcparty_name(hc) if hc is not None else ""
                    self.put(org, "cbe", ids.get("ID-CBE"))
                    self.put(org, "nihdi", ids.get("ID-HCPARTY"))
                    self.where[f"/organisations/{len(doc['organisations'])}"] = path(item)
                    doc["organisations"].append(org)
                else:
                    pro: dict[str, Any] = {"id": key}
                    self.put(pro, "nihdi", ids.get("ID-HCPARTY"))
                    pro["name"] = self.names(hc, many_given=False) if hc is not None else {"family": ""}
                    pro["profession"] = cd_value
                    self.put(pro, "organisation", self.ref(item, "organisation"))
                    if hc is not None:
                        self.put(pro, "phone", self.telecom(hc, "phone"))
                        self.put(pro, "email", self.telecom(hc, "email"))
                    self.where[f"/professionals/{len(doc['professionals'])}"] = path(item)
                    doc["professionals"].append(pro)

    def team(self) -> dict[str, Any]:
        heading = next(
            (
                h
                for h in self.tx.iter(self.q("heading"))
                if any(
                    cd.get("SL") == "becare-heading" and cd.text == "care-team"
                    for cd in h.iterfind(self.q("cd"))
                )
            ),
            None,
        )
        defaults = {
            "person": "patient",
            "representative": "representative",
            "informal-caregiver": "informal-caregiver",
        }
        if heading is None:  # a careplan from elsewhere: the person and every contact item
            members = [{"party": PERSON, "roles": ["patient"]}]
            for item, kind in self.items:
                if kind in _PARTY_KINDS and kind != "person":
                    members.append(
                        {"party": self.keys[id(item)], "roles": [defaults.get(str(kind), "team-member")]}
                    )
            return {"id": "care-team", "members": members}
        self.where["/care_team"] = path(heading)
        team: dict[str, Any] = {"id": self.key(heading, "care-team")}
        name = next(
            ((t.text or "").strip() for t in heading.iterfind(self.q("text")) if (t.text or "").strip()), None
        )
        self.put(team, "name", name)
        members = []
        for item in heading.iter(self.q("item")):
            kind = self.kind(item)
            if kind not in _PARTY_KINDS:
                continue
            roles = self.local_codes(item, "becare-care-role") or [defaults.get(str(kind), "team-member")]
            members.append({"party": self.keys[id(item)], "roles": roles})
        team["members"] = members or [{"party": PERSON, "roles": ["patient"]}]
        return team

    def episode(self, item: etree._Element, i: int, doc: dict[str, Any]) -> dict[str, Any]:
        self.where[f"/episodes/{i}"] = path(item)
        out: dict[str, Any] = {"id": self.key(item, "episode")}
        etype = self.local_code(item, "becare-episode-type")
        if etype is None:
            raise KmehrError([(path(item), "the episode has no becare-episode-type code")])
        out["type"] = etype
        out["status"] = self.status(item, "episode", "active")
        region = self.local_code(item, "becare-region")
        if region and "region" not in doc:
            doc["region"] = region
        self.put(out, "coordinator", self.ref(item, "coordinator"))
        self.put(out, "case_manager", self.ref(item, "case-manager"))
        self.put(out, "triggers", self.local_codes(item, "becare-case-management-trigger"))
        period = {"start": self.moment(item, "beginmoment")}
        self.put(period, "end", self.moment(item, "endmoment"))
        out["period"] = period
        self.put(out, "requested_by", self.ref(item, "requested-by"))
        self.put(out, "managing_organisation", self.ref(item, "managing-organisation"))
        return out

    def care_plan(self, item: etree._Element | None, goals: list[etree._Element]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.key(item, "care-plan") if item is not None else "care-plan"}
        if item is not None:
            self.where["/care_plan"] = path(item)
            self.put(out, "title", self.text(item))
            out["status"] = self.status(item, "care-plan", "active")
            start, end = self.moment(item, "beginmoment"), self.moment(item, "endmoment")
            if start:
                out["period"] = {"start": start} | ({"end": end} if end else {})
            self.put(out, "author", self.ref(item, "author"))
        out["goals"] = []
        for i, goal in enumerate(goals):
            self.where[f"/care_plan/goals/{i}"] = path(goal)
            g: dict[str, Any] = {"id": self.key(goal, "goal")}
            g["category"] = self.local_code(goal, "becare-goal-category") or "care-goal"
            g["description"] = self.text(goal) or "-"
            g["status"] = self.status(goal, "goal", "active")
            self.put(g, "expressed_by", self.ref(goal, "expressed-by"))
            self.put(g, "target_date", self.moment(goal, "endmoment"))
            out["goals"].append(g)
        return out

    def task(self, item: etree._Element, i: int) -> dict[str, Any]:
        self.where[f"/tasks/{i}"] = path(item)
        out: dict[str, Any] = {"id": self.key(item, "task")}
        out["type"] = self.local_code(item, "becare-task-type") or "care-activity"
        out["status"] = self.status(item, "task", "planned")
        self.put(out, "owner", self.ref(item, "owner"))
        self.put(out, "due", self.moment(item, "endmoment"))
        self.put(out, "description", self.text(item))
        self.put(out, "goal", self.ref(item, "goal"))
        return out

    def consent(self, item: etree._Element, i: int) -> dict[str, Any] | None:
        category = self.local_code(item, "becare-consent-category")
        date = self.moment(item, "beginmoment")
        if category is None or date is None:  # another system's agreement: nothing becare can file
            return None
        self.where[f"/consents/{i}"] = path(item)
        out: dict[str, Any] = {"id": self.key(item, "consent"), "category": category}
        out["status"] = self.status(item, "consent", "active")
        out["date"] = date
        out["given_by"] = self.ref(item, "given-by") or PERSON
        self.put(out, "grantee", self.ref(item, "grantee"))
        return out

    def assessment(self, item: etree._Element, i: int) -> dict[str, Any] | None:
        instrument = self.local_code(item, "becare-assessment-instrument")
        date = self.moment(item, "beginmoment")
        if instrument is None or date is None:  # a parameter of another system (weight, ...)
            return None
        self.where[f"/assessments/{i}"] = path(item)
        out: dict[str, Any] = {"id": self.key(item, "assessment"), "instrument": instrument, "date": date}
        evaluation = next(
            (
                (x.text or "").strip()
                for x in self.contents(item, "id")
                if x.get("SL") == "becare-belrai-evaluation"
            ),
            None,
        )
        self.put(out, "evaluation_id", evaluation)
        score = self.contents(item, "decimal")
        if score:
            try:
                out["score"] = float(Decimal((score[0].text or "").strip()))
            except InvalidOperation:
                raise KmehrError([(path(score[0]), "the score is not a decimal")]) from None
        self.put(out, "performer", self.ref(item, "performer"))
        return out

"""A ``ValidateRequest``'s inputs, read into what becare validates and how.

Input names (declared in ``module.py``) come from three conventions, so test cases written for
any of them work unchanged:

- the test bed's own validators: ``contentToValidate`` + ``embeddingMethod``, ``validationType``,
  ``locale``, ``addInputToReport``;
- the HL7 validator's GITB services: ``profiles``, ``contentType``, ``failOn``,
  ``includeContentInReport`` (= ``addInputToReport``);
- eHealth's fhir-itb service: ``payload`` (the content) and ``resource`` (the resource type it
  must be; content itself when it looks like JSON or XML and nothing else carries it).

Unknown inputs and ``config`` entries are ignored, as the test bed's validators do. Every
unusable value is a ``Problem`` (a message key and its values): the caller reports them as
error items of a FAILURE report, so a typo in a test case never passes as a success.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from lxml import etree

from adapter.gitb.module import DEFAULT_TYPE, LANGUAGES, REGIONS, VALIDATION_TYPES
from adapter.gitb.ns import local

CONTENT_NAMES = ("contentToValidate", "payload")
FAIL_ON = ("error", "warning", "information")
_EMBEDDINGS = {"STRING": "string", "BASE64": "base64", "URI": "uri", "URL": "uri"}
_CONTENT_TYPES = {
    "json": "json", "xml": "xml",
    "application/fhir+json": "json", "application/json": "json", "application/json+fhir": "json",
    "text/json": "json", "application/fhir+xml": "xml", "application/xml": "xml",
    "application/xml+fhir": "xml", "text/xml": "xml",
}
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_LIST_SPLIT = re.compile(r"[\s,]+")


@dataclass(frozen=True)
class Input:
    """One ``input`` (or a nested ``item``) as sent: AnyContent without interpretation."""

    name: str
    value: str | None
    embedding: str | None  # the embeddingMethod attribute as sent; None: absent (schema default BASE64)
    encoding: str | None = None
    mime_type: str | None = None
    items: tuple[Input, ...] = ()


@dataclass(frozen=True)
class Problem:
    """An input that cannot be used: a key of ``adapter.gitb.messages`` and its values."""

    key: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContentRef:
    """Where the content is: ``text`` is the string itself, its base64 form, or the URI."""

    kind: Literal["string", "base64", "uri"]
    text: str
    input_name: str
    encoding: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True)
class GitbRequest:
    content: ContentRef | None
    validation_type: str = DEFAULT_TYPE
    lang: str | None = None  # from ``locale``; None: the caller's Accept-Language
    region: str | None = None
    profiles: tuple[str, ...] = ()
    content_format: str | None = None  # json | xml, from ``contentType``; None: sniffed
    fail_on: str = "error"
    add_input: bool = True
    today: dt.date | None = None
    expected_type: str | None = None  # eHealth ``resource``: the resource type the content must be
    problems: tuple[Problem, ...] = ()

    @property
    def rulebook(self) -> bool:
        return VALIDATION_TYPES[self.validation_type].rulebook

    @property
    def effective_region(self) -> str | None:
        """``region`` if given, else the region a region-named validation type fixes."""
        return self.region or VALIDATION_TYPES[self.validation_type].region


# -- reading the XML ---------------------------------------------------------------------------------
def read_inputs(payload: etree._Element) -> tuple[Input, ...]:
    """The ``input`` children of a ValidateRequest. They are unqualified by the schema; a
    qualified ``vs:input`` (a hand-written request that fell into the namespace trap) is read
    the same, since refusing it would only hide the content from the validator."""
    return tuple(_input(child) for child in payload if local(child.tag) == "input")


def _input(element: etree._Element) -> Input:
    value = None
    items = []
    for child in element:
        name = local(child.tag)
        if name == "value":
            value = child.text or ""
        elif name == "item":
            items.append(_input(child))
    return Input(
        name=(element.get("name") or "").strip(),
        value=value,
        embedding=element.get("embeddingMethod"),
        encoding=element.get("encoding"),
        mime_type=element.get("mimeType"),
        items=tuple(items),
    )


# -- interpreting ------------------------------------------------------------------------------------
def interpret(inputs: tuple[Input, ...]) -> GitbRequest:
    """What to validate and how, with a Problem for every unusable input."""
    problems: list[Problem] = []
    by_name: dict[str, list[Input]] = {}
    for item in inputs:
        by_name.setdefault(item.name, []).append(item)

    def scalar(*names: str) -> str | None:
        found = [i for n in names for i in by_name.get(n, ())]
        if not found:
            return None
        if len(found) > 1:
            problems.append(Problem("input-repeated", {"name": found[0].name}))
        text = _text(found[0])
        if text is None:
            problems.append(Problem("input-not-text", {"name": found[0].name}))
        return text.strip() if text is not None else None

    validation_type = _validation_type(scalar("validationType"), problems)
    lang = _lang(scalar("locale"))
    region = _choice(scalar("region"), REGIONS, "region", problems)
    if region and VALIDATION_TYPES[validation_type].region not in (None, region):
        problems.append(Problem("region-conflict", {"region": region, "type": validation_type}))
    fail_on = _choice(scalar("failOn"), FAIL_ON, "failOn", problems, lower=True) or "error"
    add_input = _boolean(scalar("addInputToReport", "includeContentInReport"), problems)
    content_format = _content_format(scalar("contentType"), problems)
    today = _date(scalar("today"), problems)
    profiles = _profiles(by_name.get("profiles", ()), problems)
    content, expected_type = _content(by_name, scalar("embeddingMethod"), problems)
    return GitbRequest(
        content=content, validation_type=validation_type, lang=lang, region=region, profiles=profiles,
        content_format=content_format, fail_on=fail_on, add_input=add_input, today=today,
        expected_type=expected_type, problems=tuple(problems),
    )


def _text(item: Input) -> str | None:
    """A scalar input's text: its ``value`` (decoded when explicitly BASE64); None when it is a
    map or a list. Only the content honours the schema's BASE64 default for an absent attribute:
    ``true`` or ``fr`` sent without one are meant as text, and ``true`` is valid base64."""
    if item.value is None:
        return None
    if (item.embedding or "").upper() == "BASE64":
        try:
            return base64.b64decode(item.value, validate=True).decode(item.encoding or "utf-8")
        except (binascii.Error, ValueError, LookupError):
            return None
    return item.value


def _validation_type(value: str | None, problems: list[Problem]) -> str:
    if not value:
        return DEFAULT_TYPE
    key = value.strip().lower()
    if key in VALIDATION_TYPES:
        return key
    allowed = ", ".join(VALIDATION_TYPES)
    problems.append(Problem("bad-validation-type", {"value": value[:60], "allowed": allowed}))
    return DEFAULT_TYPE


def _lang(locale: str | None) -> str | None:
    """``fr``, ``fr-BE``, ``nl_BE``, ``de-be`` -> the language; None for anything else."""
    if not locale:
        return None
    primary = locale.replace("_", "-").split("-", 1)[0].strip().lower()
    return primary if primary in LANGUAGES else None


def _choice(value: str | None, allowed: tuple[str, ...], name: str, problems: list[Problem], *,
            lower: bool = False) -> str | None:
    if not value:
        return None
    key = value.lower() if lower else value
    if key in allowed:
        return key
    problems.append(Problem("bad-choice", {"name": name, "value": value[:60], "allowed": ", ".join(allowed)}))
    return None


def _boolean(value: str | None, problems: list[Problem]) -> bool:
    if value is None or value == "":
        return True
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    problems.append(Problem("bad-choice", {"name": "addInputToReport", "value": value[:60],
                                           "allowed": "true, false"}))
    return True


def _content_format(value: str | None, problems: list[Problem]) -> str | None:
    if not value:
        return None
    fmt = _CONTENT_TYPES.get(value.split(";", 1)[0].strip().lower())
    if fmt is None:
        problems.append(Problem("bad-choice", {"name": "contentType", "value": value[:60],
                                               "allowed": "application/fhir+json, application/fhir+xml"}))
    return fmt


def _date(value: str | None, problems: list[Problem]) -> dt.date | None:
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        problems.append(Problem("bad-today", {"value": value[:40]}))
        return None


def _profiles(found: list[Input] | tuple[Input, ...], problems: list[Problem]) -> tuple[str, ...]:
    """Canonicals from every ``profiles`` input: a comma/space separated string, or a list."""
    out: list[str] = []
    for item in found:
        texts = [_text(i) for i in item.items] if item.items else [_text(item)]
        for text in texts:
            if text is None:
                problems.append(Problem("input-not-text", {"name": "profiles"}))
                continue
            out.extend(p for p in _LIST_SPLIT.split(text) if p)
    return tuple(dict.fromkeys(out))


def _content(by_name: dict[str, list[Input]], embedding: str | None,
             problems: list[Problem]) -> tuple[ContentRef | None, str | None]:
    """The content input, and the resource type eHealth's ``resource`` input names."""
    carriers = [i for n in CONTENT_NAMES for i in by_name.get(n, ())]
    expected_type = None
    for item in by_name.get("resource", ()):
        text = (_text(item) or "").strip()
        if text[:1] in ("{", "<") and not carriers:
            carriers.append(item)  # the resource itself rather than its type
        elif _RESOURCE_TYPE.match(text):
            expected_type = text
        else:
            problems.append(Problem("bad-resource-type", {"value": text[:60]}))
    if not carriers:
        problems.append(Problem("no-content", {}))
        return None, expected_type
    if len(carriers) > 1:
        problems.append(Problem("content-repeated", {"names": ", ".join(i.name for i in carriers)}))
        return None, expected_type
    item = carriers[0]
    if item.value is None:
        problems.append(Problem("input-not-text", {"name": item.name}))
        return None, expected_type
    kind = _embedding(item, embedding, problems)
    if kind is None:
        return None, expected_type
    text = item.value.strip() if kind == "uri" else item.value
    return ContentRef(kind, text, item.name, item.encoding, item.mime_type), expected_type


Embedding = Literal["string", "base64", "uri"]


def _embedding(item: Input, override: str | None, problems: list[Problem]) -> Embedding | None:
    """``embeddingMethod`` input, else the attribute, else the schema default (BASE64), except
    that a value which cannot be base64 but reads as JSON or XML is taken as the string it is."""
    chosen = override or item.embedding
    if chosen:
        kind = _EMBEDDINGS.get(chosen.strip().upper())
        if kind is None:
            problems.append(Problem("bad-choice", {"name": "embeddingMethod", "value": chosen[:60],
                                                   "allowed": "STRING, BASE64, URI"}))
        return kind  # type: ignore[return-value]
    return "string" if (item.value or "").lstrip()[:1] in ("{", "<") else "base64"


def decode_content(ref: ContentRef) -> tuple[bytes, str]:
    """(bytes to validate, the text shown in the report) for STRING and BASE64 content.

    BASE64 bytes are decoded with ``@encoding`` (UTF-8 by default) for the report; JSON is
    re-encoded as UTF-8 (RFC 8259), XML keeps its bytes and its own declaration. Raises
    ``ContentError`` with a Problem when the value cannot be read.
    """
    if ref.kind == "string":
        return ref.text.encode("utf-8"), ref.text
    if ref.kind != "base64":
        raise ValueError("URI content is fetched, not decoded")
    try:
        raw = base64.b64decode("".join(ref.text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ContentError(Problem("bad-base64", {"name": ref.input_name})) from None
    return decode_bytes(raw, ref.encoding, ref.input_name)


def decode_bytes(raw: bytes, encoding: str | None, name: str) -> tuple[bytes, str]:
    """(bytes to validate, text for the report) from fetched or BASE64 bytes."""
    charset = (encoding or "").strip() or "utf-8"
    try:
        codecs.lookup(charset)
    except LookupError:
        raise ContentError(Problem("bad-encoding", {"name": name, "value": charset[:40]})) from None
    text = raw.decode(charset, errors="replace").lstrip("\ufeff")
    if text.lstrip()[:1] == "<":
        return raw, text
    return text.encode("utf-8"), text


class ContentError(ValueError):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.key)
        self.problem = problem


def expected_type_mismatch(resource: Any, expected: str | None) -> str | None:
    """The resource type found when eHealth's ``resource`` input named another one, else None."""
    if not expected or not isinstance(resource, dict):
        return None
    found = resource.get("resourceType")
    return str(found) if found != expected else None

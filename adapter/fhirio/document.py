"""``parse``: bytes or text in, a ``Document`` (the internal form plus parse findings) out.

The document keeps its source so that ``locate()`` / ``locate_many()`` can map issue
expressions back to a line and column. Nothing is indexed while parsing: a valid document is
never read again, and a document with issues is read only along the paths of its issues
(``adapter.fhirio.locate``).
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapter.fhirio import jsonparse, sniff
from adapter.fhirio.errors import DEFAULT_LIMITS, Limits, ParseError
from adapter.fhirio.model import core_model, resource_types
from adapter.validation.issues import Issue


@dataclass
class Document:
    resource: dict[str, Any]
    format: str  # "json" | "xml"
    issues: list[Issue] = field(default_factory=list)
    _source: Any = field(default=None, repr=False, compare=False)
    _locator: Any = field(default=None, repr=False, compare=False)

    @property
    def located(self) -> bool:
        """Whether the position index has been built (it is built on the first ``locate``)."""
        return self._locator is not None

    def locate(self, expression: str) -> tuple[int, int] | None:
        """(line, col) of ``expression`` (FHIRPath with indexes) in the source text, or of
        its deepest existing ancestor; None when the document has no source or the path
        does not start at this resource."""
        locator = self._locator
        if locator is None:
            locator = self._build_locator()
            if locator is None:
                return None
        return locator.locate(expression)  # type: ignore[no-any-return]

    def locate_many(self, expressions: Iterable[str]) -> dict[str, tuple[int, int] | None]:
        """``locate`` of each expression, in one pass over the text (what the validator uses
        to place all the issues of a report)."""
        locator = self._locator
        if locator is None:
            locator = self._build_locator()
            if locator is None:
                return dict.fromkeys(expressions)
        return locator.locate_many(expressions)  # type: ignore[no-any-return]

    def _build_locator(self) -> Any:
        from adapter.fhirio import locate

        source = self._source
        if source is None:
            return None
        if self.format == "json":
            self._locator = locate.JsonLocator(source, self.resource.get("resourceType"))
        else:
            self._locator = source.get()  # an xmllocate.LazyXmlLocator
        return self._locator


def _check_size(data: bytes | str, limits: Limits) -> None:
    if limits.max_bytes is not None and len(data) > limits.max_bytes:
        raise ParseError(
            f"The content is {len(data)} bytes, over the limit of {limits.max_bytes}", code="too-costly"
        )


def _parse_json(data: bytes | str, limits: Limits) -> Document:
    raw: Any = None
    if isinstance(data, bytes):
        text = sniff.decode(data)
        encoding, skip = sniff.bom_encoding(data)
        if encoding in (None, "utf-8"):
            raw = memoryview(data)[skip:]  # orjson reads the UTF-8 it was sent, no copy
    else:
        text = data.lstrip("\ufeff")
    value, has_duplicates = jsonparse.loads(text, limits, raw)
    if not isinstance(value, dict):
        kind = "an array" if isinstance(value, list) else f"a {type(value).__name__} value"
        raise ParseError(
            f"The JSON content is {kind}, not an object: a FHIR resource is expected",
            line=1,
            col=1,
            code="structure",
        )
    rtype = value.get("resourceType")
    doc = Document(value, "json", [], text)
    if not isinstance(rtype, str) or not rtype:
        raise ParseError(
            "The JSON object has no 'resourceType': it is not a FHIR resource",
            line=1,
            col=1,
            code="structure",
        )
    if has_duplicates:
        from adapter.fhirio.locate import JsonTreeLocator

        # the full tokenizer lists the duplicates with their paths, and locates this document
        # (where the last of duplicate keys is the one that counts)
        doc._locator = JsonTreeLocator(text, rtype)
    if rtype not in resource_types():
        where = doc.locate("resourceType") or (None, None)
        raise ParseError(f"Unknown resource type '{rtype}'", line=where[0], col=where[1], code="structure")
    if has_duplicates:
        for dup in doc._locator.duplicates:
            doc.issues.append(
                Issue(
                    severity="error",
                    code="structure",
                    expression=dup.expression,
                    message=f"Duplicate JSON property '{dup.key}' (only the last value is kept)",
                    message_id="JSON_DUPLICATE_PROPERTY",
                    line=dup.line,
                    col=dup.col,
                )
            )
    return doc


def _parse_xml(data: bytes | str, limits: Limits) -> Document:
    from adapter.fhirio import xmlparse
    from adapter.fhirio.xmllocate import LazyXmlLocator

    root = xmlparse.parse_tree(sniff.xml_bytes(data), limits)
    # Positions refer to ``data`` as sent, not to the bytes lxml was given (which lost the
    # BOM and, for text, the encoding declaration); the index is only built if asked for.
    where = LazyXmlLocator(root, data)
    resource, issues = xmlparse.convert(root, core_model(), limits, where)
    return Document(resource, "xml", issues, where, where.built)


_PAUSE = threading.Lock()
_paused = 0  # parses under way with the collector paused
_resume = False  # whether the first of them found it enabled
# Young objects (allocated less freed since the last collection) past which a pause that ends
# while others go on collects anyway: under steady concurrent load the pauses of overlapping
# requests could otherwise keep the collector off for good, and the little cyclic garbage each
# validation leaves (fhirpathpy's) would pile up. A 10,000-entry bundle is ~500,000 objects.
COLLECT_PAST = 1_000_000


@contextmanager
def collector_paused() -> Iterator[None]:
    """The garbage collector paused while a document is read. Reading builds a tree (dicts and
    lists, or lxml's) that holds no reference cycle, so the collector cannot find garbage in it;
    but its heuristics run full collections while a large tree grows, each rescanning all of it
    (a 16 MB bundle took 2.4 times as long to read with them). Pauses nest and overlap across
    threads; the collector is back on, if it was on, when the last one ends."""
    global _paused, _resume
    with _PAUSE:
        if _paused == 0:
            _resume = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        overdue = False
        with _PAUSE:
            _paused -= 1
            if _paused == 0 and _resume:
                gc.enable()
            elif _paused > 0 and _resume and gc.get_count()[0] > COLLECT_PAST:
                overdue = True
        if overdue:  # others are still paused: collect now rather than wait for them all
            gc.collect()


def parse(data: bytes | str, format: str | None = None, *, limits: Limits = DEFAULT_LIMITS) -> Document:
    """Parse a FHIR resource. ``format`` is ``json``, ``xml``, a content type, or None to
    sniff. Raises ``ParseError`` when there is no FHIR resource to work on."""
    if not isinstance(data, (bytes, bytearray, memoryview, str)):
        raise TypeError(f"parse() takes bytes or str, not {type(data).__name__}")
    if not isinstance(data, (bytes, str)):
        data = bytes(data)
    _check_size(data, limits)
    fmt = sniff.normalize_format(format) or sniff.sniff(data)
    with collector_paused():
        if fmt == "json":
            return _parse_json(data, limits)
        return _parse_xml(data, limits)


def parse_file(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Document:
    """Parse a file; the extension (``.json``/``.xml``) names the format, else it is sniffed.
    The size is checked before the file is read."""
    p = Path(path)
    size = p.stat().st_size
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise ParseError(f"The file is {size} bytes, over the limit of {limits.max_bytes}", code="too-costly")
    suffix = p.suffix.lower()
    fmt = "json" if suffix == ".json" else "xml" if suffix == ".xml" else None
    return parse(p.read_bytes(), fmt, limits=limits)

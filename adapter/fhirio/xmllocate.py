"""Source positions in FHIR XML, computed only when an issue needs one.

lxml gives each element its ``sourceline`` (the line where the start tag *ends*) and no
column, so positions come from the text instead: one regex pass finds every start tag ``<``
(skipping comments, CDATA sections and processing instructions, which may contain ``<``)
and pairs the n-th one with the n-th element of ``root.iter()``; both are in document order,
so the pairing is exact whenever the text is the one lxml parsed. Nothing here runs while
parsing: the index is built on the first position asked for, then cached.

Positions follow the JSON rule (``locate.LineIndex``): 1-based, in characters, on the
original text (before the BOM is dropped or the encoding declaration removed for lxml).
An element is located at its ``<``; an attribute (``value``, ``id``, ``url``, or an unknown
one a parse finding is about) at the first character of its name.
"""

from __future__ import annotations

import codecs
import re

from lxml import etree

from adapter.fhirio import sniff
from adapter.fhirio.locate import SKIPPED_FUNCTIONS, LineIndex, skip_root
from adapter.fhirio.paths import parse_path

_MARKUP = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!.*?>|<(?![/!?])", re.S)
_TAG_NAME = re.compile(r"<[^\s/>]+")
_ATTRIBUTE = re.compile(r"""\s+([^\s=/>]+)\s*=\s*(?:"[^"]*"|'[^']*')""")


def source_text(data: bytes | str, root: etree._Element) -> str:
    """The text the user sent, decoded as lxml decoded it (BOM, else declared encoding)."""
    if isinstance(data, str):
        return data.lstrip("\ufeff")
    encoding, skip = sniff.bom_encoding(data)
    encoding = encoding or root.getroottree().docinfo.encoding or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    # Positions are best effort: a byte lxml accepted but Python does not must not fail them.
    return data[skip:].decode(encoding, errors="replace").lstrip("\ufeff")


def _local(el: etree._Element) -> str:
    tag = el.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def _same_attribute(in_source: str, name: str) -> bool:
    """``p:lang`` in the text is ``{ns}lang`` in lxml; a plain name is itself. Namespace
    declarations are not attributes for lxml, so they never match."""
    if name[:1] == "{":
        prefix, _, local = in_source.rpartition(":")
        return prefix not in ("", "xmlns") and local == name.rpartition("}")[2]
    return in_source == name


class XmlLocator:
    def __init__(self, root: etree._Element, text: str) -> None:
        self.root = root
        self.text = text
        self.lines = LineIndex(text)
        elements = [el for el in root.iter() if isinstance(el.tag, str)]
        starts = [m.start() for m in _MARKUP.finditer(text) if m.group() == "<"]
        self.offsets: dict[etree._Element, int] = {}
        if len(starts) == len(elements):
            self.offsets = dict(zip(elements, starts, strict=True))

    def position(self, el: etree._Element, attribute: str | None = None) -> tuple[int, int]:
        """(line, col) of ``el``'s start tag, or of ``attribute`` within it when it is there."""
        offset = self.offsets.get(el)
        if offset is None:
            offset = self._guess(el)
            if offset is None:
                return (el.sourceline or 1, 1)
        if attribute is not None:
            offset = self._attribute(offset, attribute) or offset
        return self.lines(offset)

    def _attribute(self, tag_offset: int, name: str) -> int | None:
        m = _TAG_NAME.match(self.text, tag_offset)
        if m is None:
            return None
        pos = m.end()
        while (a := _ATTRIBUTE.match(self.text, pos)) is not None:
            if _same_attribute(a.group(1), name):
                return a.start(1)
            pos = a.end()
        return None

    def _guess(self, el: etree._Element) -> int | None:
        """When the text is not the one lxml parsed (so the index is off): the first start
        tag of that name on the element's line."""
        line = el.sourceline
        if not line or line > len(self.lines.starts):
            return None
        start = self.lines.starts[line - 1]
        end = self.text.find("\n", start)
        pattern = re.compile(r"<(?:[^\s:/>]+:)?" + re.escape(_local(el)) + r"(?=[\s/>])")
        m = pattern.search(self.text, start, end if end >= 0 else len(self.text))
        return m.start() if m else None

    @staticmethod
    def _children(el: etree._Element, name: str) -> list[etree._Element]:
        bare = name[1:] if name.startswith("_") else name
        exact = [c for c in el if _local(c) == bare]
        if exact:
            return exact
        return [
            c
            for c in el
            if (n := _local(c)).startswith(bare) and len(n) > len(bare) and n[len(bare)].isupper()
        ]

    def locate(self, expression: str) -> tuple[int, int] | None:
        steps = parse_path(expression)
        if steps is None:
            return None
        root_type = _local(self.root)
        if steps and steps[0].name[:1].isupper() and not steps[0].function and steps[0].name != root_type:
            return None
        el = self.root
        attribute: str | None = None
        for step in skip_root(steps, root_type):
            if step.function:
                if step.name in SKIPPED_FUNCTIONS or step.name == "first":
                    continue
                break
            found = self._children(el, step.name)
            if not found:
                inner = [c for c in el if isinstance(c.tag, str)]
                if len(inner) == 1 and _local(inner[0])[:1].isupper():  # a resource wrapper
                    if _local(inner[0]) == step.name:
                        el = inner[0]
                        continue
                    found = self._children(inner[0], step.name)
            if not found:
                # ``value``/``id``/``url`` are attributes in XML (keys in JSON, located there
                # too); anything else is missing: stay on the deepest element found.
                if not step.index and el.get(step.name) is not None:
                    attribute = step.name
                break
            i = step.index or 0
            if i >= len(found):
                break
            el = found[i]
        return self.position(el, attribute)


class LazyXmlLocator:
    """Builds the ``XmlLocator`` on first use, so that a document with no finding never
    pays for it. The converter (for its parse findings) and the ``Document`` (for validator
    issues) share one, so the index is built at most once per document."""

    def __init__(self, root: etree._Element, data: bytes | str) -> None:
        self.root = root
        self.data = data
        self.built: XmlLocator | None = None

    def get(self) -> XmlLocator:
        if self.built is None:
            self.built = XmlLocator(self.root, source_text(self.data, self.root))
            self.data = b""  # the text now lives in the locator
        return self.built

    def __call__(self, el: etree._Element, attribute: str | None = None) -> tuple[int, int]:
        return self.get().position(el, attribute)

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
from collections.abc import Iterable

from lxml import etree

from adapter.fhirio import sniff
from adapter.fhirio.locate import SKIPPED_FUNCTIONS, LineIndex, line_cols, skip_root
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
    """Positions of FHIRPath expressions (and of elements) in the text lxml parsed.

    The n-th start tag of the text is the n-th element of ``root.iter()``. Only the elements
    asked for are placed: one walk of the tree gives their document-order numbers, one sweep of
    the text (start tags counted by ``str.count`` a block at a time) finds those start tags, and
    one more sweep turns offsets into lines and columns. A text with comments, CDATA sections or
    processing instructions after the prolog (where a ``<`` need not start a tag) is indexed in
    full instead, as is any text asked for more than ``_SINGLE_LOOKUPS`` elements one at a time
    (the parser's findings), so that no caller pays a sweep per element."""

    _BLOCK = 1024  # characters counted at a time when looking for the n-th start tag
    _SINGLE_LOOKUPS = 8

    def __init__(self, root: etree._Element, text: str) -> None:
        self.root = root
        self.text = text
        self._lines: LineIndex | None = None
        self._offsets: dict[etree._Element, int] = {}  # elements placed so far
        self._full = False  # every element placed (or the text does not pair with the tree)
        self._paired: bool | None = None  # start tags and elements in the same number
        self._body: int | None = None  # offset of the root's start tag, in a text without markup
        self._singles = 0
        self._kids: dict[tuple[etree._Element, str], list[etree._Element]] = {}

    # -- offsets of start tags --------------------------------------------------------------------
    def _plain_body(self) -> int | None:
        """Where the root's start tag is, when every ``<`` from there on starts a tag or an end
        tag (no comment, CDATA section, processing instruction or declaration): else None."""
        if self._paired is None:
            text = self.text
            body = None
            for m in _MARKUP.finditer(text):
                if m.group() == "<":
                    body = m.start()
                    break
            if body is not None and text.find("<!", body) < 0 and text.find("<?", body) < 0:
                tags = text.count("<", body) - text.count("</", body)
                self._paired = tags == int(self.root.xpath("count(descendant-or-self::*)"))
                self._body = body
            else:
                self._index_all()
        return self._body if self._paired else None

    def _index_all(self) -> None:
        """Every element's offset from one scan of the text (what a text with markup needs)."""
        elements = [el for el in self.root.iter() if isinstance(el.tag, str)]
        starts = [m.start() for m in _MARKUP.finditer(self.text) if m.group() == "<"]
        self._paired = len(starts) == len(elements)
        self._offsets = dict(zip(elements, starts, strict=True)) if self._paired else {}
        self._full = True

    def _place(self, wanted: Iterable[etree._Element]) -> None:
        """Find the start tags of ``wanted`` (document-order numbers, then the n-th tags)."""
        if self._full:
            return
        body = self._plain_body()
        if body is None or self._full:
            return
        todo = {el for el in wanted if el not in self._offsets}
        if not todo:
            return
        numbers: list[tuple[int, etree._Element]] = []
        for n, el in enumerate(self.root.iter(etree.Element)):
            if el in todo:
                numbers.append((n, el))
                if len(numbers) == len(todo):
                    break
        text, block = self.text, self._BLOCK
        count, find = text.count, text.find
        pos, seen = body, 0  # ``seen`` start tags lie before ``pos``
        size = len(text)
        for n, el in numbers:
            while True:  # whole blocks while the n-th start tag lies past them
                end = min(pos + block, size)
                if end < size and text[end - 1] == "<":
                    end += 1  # never split "</" between blocks
                tags = count("<", pos, end) - count("</", pos, end)
                if seen + tags > n or end >= size:
                    break
                seen, pos = seen + tags, end
            while True:  # then tag by tag
                pos = find("<", pos)
                if pos < 0:
                    return
                if text[pos + 1 : pos + 2] != "/":
                    if seen == n:
                        self._offsets[el] = pos
                        seen, pos = seen + 1, pos + 1
                        break
                    seen += 1
                pos += 1

    def offset(self, el: etree._Element, attribute: str | None = None) -> int | None:
        """Offset of ``el``'s start tag (of ``attribute`` within it when it is there)."""
        offset = self._offsets.get(el)
        if offset is None and not self._full:
            self._singles += 1
            if self._singles > self._SINGLE_LOOKUPS:
                self._index_all()
            else:
                self._place((el,))
            offset = self._offsets.get(el)
        if offset is None:
            offset = self._guess(el)
            if offset is None:
                return None
        if attribute is not None:
            offset = self._attribute(offset, attribute) or offset
        return offset

    def position(self, el: etree._Element, attribute: str | None = None) -> tuple[int, int]:
        """(line, col) of ``el``'s start tag, or of ``attribute`` within it when it is there."""
        offset = self.offset(el, attribute)
        if offset is None:
            return (el.sourceline or 1, 1)
        return line_cols(self.text, (offset,))[offset]

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
        if self._lines is None:
            self._lines = LineIndex(self.text)
        line = el.sourceline
        if not line or line > len(self._lines.starts):
            return None
        start = self._lines.starts[line - 1]
        end = self.text.find("\n", start)
        pattern = re.compile(r"<(?:[^\s:/>]+:)?" + re.escape(_local(el)) + r"(?=[\s/>])")
        m = pattern.search(self.text, start, end if end >= 0 else len(self.text))
        return m.start() if m else None

    def _children(self, el: etree._Element, name: str) -> list[etree._Element]:
        """Children named ``name`` (else of a choice type ``nameX``), in document order; kept,
        since the issues of a bundle ask for the same ``entry`` children again and again."""
        found = self._kids.get((el, name))
        if found is None:
            bare = name[1:] if name.startswith("_") else name
            found = [c for c in el if _local(c) == bare]
            if not found:
                found = [
                    c
                    for c in el
                    if (n := _local(c)).startswith(bare) and len(n) > len(bare) and n[len(bare)].isupper()
                ]
            self._kids[(el, name)] = found
        return found

    def locate_many(self, expressions: Iterable[str]) -> dict[str, tuple[int, int] | None]:
        """(line, col) of each expression (None where it cannot be located): the elements
        first, then their start tags in one sweep, then lines and columns in another."""
        targets: dict[str, tuple[etree._Element, str | None] | None] = {}
        for expression in expressions:
            try:
                targets[expression] = self.target(expression)
            except Exception:  # locating is best effort
                targets[expression] = None
        self._place(t[0] for t in targets.values() if t is not None)
        offsets: dict[str, int | None] = {}
        fallback: dict[str, tuple[int, int]] = {}
        for expression, target in targets.items():
            if target is None:
                offsets[expression] = None
                continue
            offset = self.offset(*target)
            offsets[expression] = offset
            if offset is None:
                fallback[expression] = (target[0].sourceline or 1, 1)
        found = line_cols(self.text, (o for o in offsets.values() if o is not None))
        return {e: (found[o] if o is not None else fallback.get(e)) for e, o in offsets.items()}

    def locate(self, expression: str) -> tuple[int, int] | None:
        target = self.target(expression)
        return None if target is None else self.position(*target)

    def target(self, expression: str) -> tuple[etree._Element, str | None] | None:
        """The element (and attribute) an expression lands on: its own, or its deepest
        existing ancestor; None when the path does not start at this resource."""
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
        return el, attribute


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

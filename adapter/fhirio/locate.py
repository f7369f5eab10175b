"""Source positions for issue expressions, computed only when someone asks.

Valid documents are never located, so nothing here runs on the fast path: the JSON tokenizer
(a regex over the text building a small tree of key/value positions, no recursion) and the
XML start-tag index are built on the first ``locate()`` of a ``Document`` and then cached.

An expression that cannot be followed to the end (an element that is missing, which is
exactly what "minimum cardinality" issues are about) is located at the deepest element that
exists, as the reference validator does.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from adapter.fhirio.paths import Step, parse_path

_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.S)
_XML_MARKUP = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!.*?>|<(?![/!?])", re.S)
_SKIPPED_FUNCTIONS = frozenset({"ofType", "as", "resolve"})


class _Lines:
    """Offset -> (line, col), 1-based, by bisection over the line starts."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> tuple[int, int]:
        i = bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1


# -- JSON -------------------------------------------------------------------------------------


@dataclass(slots=True)
class JNode:
    kind: str  # "o" object, "a" array, "s" scalar
    line: int
    col: int
    fields: dict[str, tuple[int, int, JNode]] = field(default_factory=dict)
    items: list[JNode] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Duplicate:
    expression: str
    key: str
    line: int
    col: int


def _key_text(token: str) -> str:
    return json.loads(token) if "\\" in token else token[1:-1]


def tokenize_json(text: str, root_name: str) -> tuple[JNode | None, list[Duplicate]]:
    """Build the position tree of (already well-formed) JSON text; note duplicate keys."""
    pos = _Lines(text)
    root: JNode | None = None
    # stack entries: [node, path, pending key (name, line, col) or None]
    stack: list[list[Any]] = []
    duplicates: list[Duplicate] = []
    for m in _JSON_TOKEN.finditer(text):
        tok = m.group()
        c = tok[0]
        if c == "," or c == ":":
            continue
        if c == "}" or c == "]":
            if stack:
                stack.pop()
            continue
        top = stack[-1] if stack else None
        if top is not None and top[0].kind == "o" and top[2] is None:
            line, col = pos(m.start())
            top[2] = (_key_text(tok) if c == '"' else tok, line, col)
            continue
        line, col = pos(m.start())
        node = JNode("o" if c == "{" else "a" if c == "[" else "s", line, col)
        if top is None:
            root = node
            path = root_name
        elif top[0].kind == "o":
            key, kline, kcol = top[2]
            top[2] = None
            path = f"{top[1]}.{key}"
            if key in top[0].fields:
                duplicates.append(Duplicate(path, key, kline, kcol))
            top[0].fields[key] = (kline, kcol, node)
        else:
            path = f"{top[1]}[{len(top[0].items)}]"
            top[0].items.append(node)
        if node.kind != "s":
            stack.append([node, path, None])
    return root, duplicates


def _choice_key(keys: Any, name: str) -> str | None:
    for key in keys:
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            return key
    return None


def _skip_root(steps: list[Step], root_type: str | None) -> list[Step]:
    first = steps[0] if steps else None
    if first and not first.function and first.name[:1].isupper() and root_type in (None, first.name):
        return steps[1:]
    return steps


class JsonLocator:
    def __init__(self, text: str, root_type: str | None) -> None:
        self.root_type = root_type
        self.root, self.duplicates = tokenize_json(text, root_type or "$")

    def locate(self, expression: str) -> tuple[int, int] | None:
        steps = parse_path(expression)
        if self.root is None or steps is None:
            return None
        if (
            steps
            and steps[0].name[:1].isupper()
            and not steps[0].function
            and self.root_type
            not in (
                None,
                steps[0].name,
            )
        ):
            return None
        node: JNode | None = self.root
        where = (self.root.line, self.root.col)
        parent: JNode | None = None
        key: str | None = None
        index: int | None = None
        for step in _skip_root(steps, self.root_type):
            assert node is not None
            if step.function:
                if step.name in _SKIPPED_FUNCTIONS:
                    continue
                if step.name == "first" and node.kind == "a" and node.items:
                    node = node.items[0]
                    index = 0
                    where = (node.line, node.col)
                    continue
                break
            if node.kind == "a":  # no index given: the first item
                if not node.items:
                    break
                node, index = node.items[0], 0
            if (
                node.kind == "o"
                and step.name[:1].isupper()
                and step.index is None
                and "resourceType" in node.fields
                and self._is_type(node, step.name)
            ):
                continue
            if node.kind != "o":
                node = self._primitive_side(parent, key, index)
                if node is None:
                    break
            entry = node.fields.get(step.name)
            name = step.name
            if entry is None:
                choice = _choice_key(node.fields, step.name)
                if choice is None:
                    break
                name, entry = choice, node.fields[choice]
            kline, kcol, child = entry
            parent, key, index, node = node, name, None, child
            where = (kline, kcol)
            if step.index is not None:
                if child.kind == "a":
                    if step.index >= len(child.items):
                        break
                    node, index = child.items[step.index], step.index
                    where = (node.line, node.col)
                elif step.index != 0:
                    break
        return where

    @staticmethod
    def _is_type(node: JNode, name: str) -> bool:
        # The value token of resourceType is not kept; a capitalised step that is not a key
        # is taken as a type filter (``resource.Patient``), which is harmless for locating.
        return name not in node.fields

    @staticmethod
    def _primitive_side(parent: JNode | None, key: str | None, index: int | None) -> JNode | None:
        """A primitive's id/extension live in the ``_key`` sibling (same index for arrays)."""
        if parent is None or key is None or key.startswith("_"):
            return None
        entry = parent.fields.get("_" + key)
        if entry is None:
            return None
        side = entry[2]
        if side.kind == "a":
            i = index or 0
            if i >= len(side.items):
                return None
            side = side.items[i]
        return side if side.kind == "o" else None


# -- XML --------------------------------------------------------------------------------------


def _local(el: etree._Element) -> str:
    tag = el.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


class XmlLocator:
    def __init__(self, root: etree._Element, text: str) -> None:
        self.root = root
        self.elements = [el for el in root.iter() if isinstance(el.tag, str)]
        self.index = {el: i for i, el in enumerate(self.elements)}
        pos = _Lines(text)
        starts = [m.start() for m in _XML_MARKUP.finditer(text) if m.group() == "<"]
        self.positions = [pos(o) for o in starts] if len(starts) == len(self.elements) else None

    def position(self, el: etree._Element) -> tuple[int, int]:
        if self.positions is not None:
            i = self.index.get(el)
            if i is not None:
                return self.positions[i]
        return (el.sourceline or 1, 1)

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
        where = self.position(el)
        for step in _skip_root(steps, root_type):
            if step.function:
                if step.name in _SKIPPED_FUNCTIONS or step.name == "first":
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
                break  # an attribute (id, url, value) or a missing element: stay on the parent
            i = step.index or 0
            if i >= len(found):
                break
            el = found[i]
            where = self.position(el)
        return where

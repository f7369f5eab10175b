"""Source positions for issue expressions, computed only for the expressions that have issues.

Nothing here runs while parsing, and nothing indexes every node. ``JsonLocator`` reads the JSON
text lazily along the paths it is asked for: an object's members are read up to the key sought,
an array's items up to the index sought (the values in between are skipped with the stdlib's C
scanner), and what was read is kept for the next path. So a 10,000-entry bundle with one issue
reads one path of it, and a bundle with an issue in every resource reads each resource's members
once. The full tokenizer (``tokenize_json``, a regex over the whole text) only runs for a text
with duplicate keys, where it is what finds them (and where the last of duplicates is the one
located). XML has its own locator in ``xmllocate.py``; both share the offset -> (line, col) rule
below, so a position means the same in either format: 1-based, in characters (not bytes), a tab
is one column, and a CR before the LF belongs to the line it ends.

An expression that cannot be followed to the end (an element that is missing, which is
exactly what "minimum cardinality" issues are about) is located at the deepest element that
exists, as the reference validator does.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from adapter.fhirio.paths import Step, parse_path

_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+', re.S)
SKIPPED_FUNCTIONS = frozenset({"ofType", "as", "resolve"})


class LineIndex:
    """Offset -> (line, col), 1-based, by bisection over the line starts."""

    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def __call__(self, offset: int) -> tuple[int, int]:
        i = bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1


def line_cols(text: str, offsets: Iterable[int]) -> dict[int, tuple[int, int]]:
    """(line, col) of each offset, as ``LineIndex`` counts them, in one sweep over the text up to
    the last offset (newlines counted by ``str.count``, no index of every line)."""
    out: dict[int, tuple[int, int]] = {}
    line, at, line_start = 1, 0, 0
    count, rfind = text.count, text.rfind
    for offset in sorted(set(offsets)):
        newlines = count("\n", at, offset)
        if newlines:
            line += newlines
            line_start = rfind("\n", at, offset) + 1
        at = offset
        out[offset] = (line, offset - line_start + 1)
    return out


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
    pos = LineIndex(text)
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


def skip_root(steps: list[Step], root_type: str | None) -> list[Step]:
    first = steps[0] if steps else None
    if first and not first.function and first.name[:1].isupper() and root_type in (None, first.name):
        return steps[1:]
    return steps


class JsonTreeLocator:
    """The position tree of the whole text: for texts with duplicate keys, which it lists."""

    def __init__(self, text: str, root_type: str | None) -> None:
        self.root_type = root_type
        self.root, self.duplicates = tokenize_json(text, root_type or "$")

    def locate_many(self, expressions: Iterable[str]) -> dict[str, tuple[int, int] | None]:
        out: dict[str, tuple[int, int] | None] = {}
        for expression in expressions:
            try:
                out[expression] = self.locate(expression)
            except Exception:  # locating is best effort
                out[expression] = None
        return out

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
        for step in skip_root(steps, self.root_type):
            assert node is not None
            if step.function:
                if step.name in SKIPPED_FUNCTIONS:
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


# -- JSON, read lazily along the paths asked for -------------------------------------------------

_WS = re.compile(r"[ \t\n\r]*").match
_SCAN = json.JSONDecoder().scan_once  # the C scanner: (value, end) of the JSON value at an offset


class _Members:
    """An object's members, read from the text up to the key asked for: key -> (key offset,
    value offset). The value of the last member read is skipped only when reading on, so a
    path that goes into it never pays for skipping it."""

    __slots__ = ("done", "members", "pending", "pos")

    def __init__(self, offset: int) -> None:
        self.members: dict[str, tuple[int, int]] = {}
        self.pos = offset + 1  # after the "{"
        self.pending = False  # pos is at a member's value, not yet skipped
        self.done = False

    def _next(self, text: str) -> str | None:
        pos = self.pos
        if self.pending:
            pos = _SCAN(text, pos)[1]
            self.pending = False
        pos = _WS(text, pos).end()
        c = text[pos]
        if c == "}":
            self.done = True
            return None
        if c == ",":
            pos = _WS(text, pos + 1).end()
        key, end = _SCAN(text, pos)
        colon = _WS(text, end).end()
        value = _WS(text, colon + 1).end()
        self.members[key] = (pos, value)
        self.pos, self.pending = value, True
        return key  # type: ignore[no-any-return]

    def get(self, text: str, key: str) -> tuple[int, int] | None:
        found = self.members.get(key)
        while found is None and not self.done:
            if self._next(text) == key:
                found = self.members[key]
        return found

    def all(self, text: str) -> dict[str, tuple[int, int]]:
        while not self.done:
            self._next(text)
        return self.members


class _Items:
    """An array's items (value offsets), read from the text up to the index asked for."""

    __slots__ = ("done", "items", "pos")

    def __init__(self, offset: int) -> None:
        self.items: list[int] = []
        self.pos = offset + 1  # after the "["
        self.done = False

    def get(self, text: str, index: int) -> int | None:
        items = self.items
        while len(items) <= index and not self.done:
            pos = self.pos
            if items:
                pos = _SCAN(text, pos)[1]  # past the previous item
            pos = _WS(text, pos).end()
            c = text[pos]
            if c == "]":
                self.done = True
                break
            if c == ",":
                pos = _WS(text, pos + 1).end()
            items.append(pos)
            self.pos = pos
        return items[index] if index < len(items) else None


class JsonLocator:
    """Positions of FHIRPath expressions in well-formed JSON text without duplicate keys.

    A node is the offset of its value in the text; what the path needs of an object or an
    array is read on demand (``_Members``, ``_Items``) and kept, so paths that share a prefix
    read it once. ``locate`` follows the same steps as ``JsonTreeLocator.locate`` (a member
    is located at its key, an array item at its value, a missing element at its deepest
    existing ancestor), on offsets instead of a tree."""

    def __init__(self, text: str, root_type: str | None) -> None:
        self.text = text
        self.root_type = root_type
        self.root = _WS(text, 0).end()
        self._objects: dict[int, _Members] = {}
        self._arrays: dict[int, _Items] = {}

    # what a node is, read lazily
    def _kind(self, node: int) -> str:
        c = self.text[node]
        return "o" if c == "{" else "a" if c == "[" else "s"

    def _object(self, node: int) -> _Members:
        members = self._objects.get(node)
        if members is None:
            members = self._objects[node] = _Members(node)
        return members

    def _item(self, node: int, index: int) -> int | None:
        items = self._arrays.get(node)
        if items is None:
            items = self._arrays[node] = _Items(node)
        return items.get(self.text, index)

    def _field(self, node: int, key: str) -> tuple[int, int] | None:
        return self._object(node).get(self.text, key)

    def locate_many(self, expressions: Iterable[str]) -> dict[str, tuple[int, int] | None]:
        """(line, col) of each expression (None where it cannot be located), in one sweep."""
        offsets: dict[str, int | None] = {}
        for expression in expressions:
            if expression in offsets:
                continue
            try:
                offsets[expression] = self.offset(expression)
            except Exception:  # locating is best effort
                offsets[expression] = None
        found = line_cols(self.text, (o for o in offsets.values() if o is not None))
        return {e: (found[o] if o is not None else None) for e, o in offsets.items()}

    def locate(self, expression: str) -> tuple[int, int] | None:
        offset = self.offset(expression)
        return None if offset is None else line_cols(self.text, (offset,))[offset]

    def offset(self, expression: str) -> int | None:
        """Offset of the expression's element (or deepest existing ancestor) in the text."""
        steps = parse_path(expression)
        if steps is None:
            return None
        if (
            steps
            and steps[0].name[:1].isupper()
            and not steps[0].function
            and self.root_type not in (None, steps[0].name)
        ):
            return None
        text = self.text
        node: int | None = self.root
        where = self.root
        parent: int | None = None
        key: str | None = None
        index: int | None = None
        for step in skip_root(steps, self.root_type):
            assert node is not None
            kind = self._kind(node)
            if step.function:
                if step.name in SKIPPED_FUNCTIONS:
                    continue
                if step.name == "first" and kind == "a":
                    first = self._item(node, 0)
                    if first is not None:
                        node = where = first
                        index = 0
                        continue
                break
            if kind == "a":  # no index given: the first item
                first = self._item(node, 0)
                if first is None:
                    break
                node, index = first, 0
                kind = self._kind(node)
            if (
                kind == "o"
                and step.name[:1].isupper()
                and step.index is None
                and self._field(node, "resourceType") is not None
                and self._field(node, step.name) is None  # a type filter (``resource.Patient``)
            ):
                continue
            if kind != "o":
                node = self._primitive_side(parent, key, index)
                if node is None:
                    break
            name = step.name
            entry = self._field(node, name)
            if entry is None:
                choice = _choice_key(self._object(node).all(text), name)
                if choice is None:
                    break
                name, entry = choice, self._field(node, choice)
                assert entry is not None
            key_at, child = entry
            parent, key, index, node = node, name, None, child
            where = key_at
            if step.index is not None:
                if self._kind(child) == "a":
                    item = self._item(child, step.index)
                    if item is None:
                        break
                    node, index = item, step.index
                    where = item
                elif step.index != 0:
                    break
        return where

    def _primitive_side(self, parent: int | None, key: str | None, index: int | None) -> int | None:
        """A primitive's id/extension live in the ``_key`` sibling (same index for arrays)."""
        if parent is None or key is None or key.startswith("_"):
            return None
        entry = self._field(parent, "_" + key)
        if entry is None:
            return None
        side = entry[1]
        if self._kind(side) == "a":
            item = self._item(side, index or 0)
            if item is None:
                return None
            side = item
        return side if self._kind(side) == "o" else None

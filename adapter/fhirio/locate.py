"""Source positions for issue expressions, computed only when someone asks.

Valid documents are never located, so nothing here runs on the fast path: the JSON tokenizer
(a regex over the text building a small tree of key/value positions, no recursion) is built on
the first ``locate()`` of a ``Document`` and then cached. XML has its own index in
``xmllocate.py``; both share the offset -> (line, col) rule below, so a position means the same
in either format: 1-based, in characters (not bytes), a tab is one column, and a CR before the
LF belongs to the line it ends.

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

"""FHIR JSON reading: orjson first, the stdlib C parser where orjson cannot say the same thing.

orjson builds the tree about twice as fast as the stdlib with an ``object_pairs_hook``, but it
reads decimals as ``float`` (FHIR decimals keep their precision: the stdlib reads them as
``Decimal``), keeps the last of duplicate keys without saying so, and words its errors its own
way. So its result is only taken when it provably equals the stdlib's:

- one iterative walk of the containers checks the depth limit and looks for floats; a float
  means the text has a decimal, and the stdlib reads it again with ``parse_float=Decimal``;
- duplicate keys are detected by counting colons: outside strings a colon follows each key of
  the text, inside strings it is copied as is, so the text has as many colons as orjson's
  serialisation of the tree (which never escapes one) unless a key was dropped as a duplicate.
  ``\\u003a`` (an escaped colon) would upset that count, so such a text takes the exact path;
- anything orjson refuses (invalid JSON, NaN, lone surrogates, too deep) is read again by the
  exact path, whose messages and positions are the reference.

The exact path is the stdlib parser with a hook that notes duplicate keys (one ``len`` per
object); where the duplicates are is worked out by the position tokenizer, only when there is one.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

from adapter.fhirio.errors import Limits, ParseError

_STRING_OR_BRACKET = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.S)
_DELTA = {"{": 1, "[": 1, "}": -1, "]": -1}


def line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def nesting_depth(value: Any) -> int:
    """Depth of nested objects/arrays (the root object is 1), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > deepest:
            deepest = depth
        for child in node.values() if type(node) is dict else node:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
    return deepest


def deep_position(text: str, max_depth: int) -> tuple[int, int] | None:
    """Where the text first goes deeper than ``max_depth`` (only run to report the error)."""
    depth = 0
    for m in _STRING_OR_BRACKET.finditer(text):
        depth += _DELTA.get(m.group(), 0)
        if depth > max_depth:
            return line_col(text, m.start())
    return None


def _too_deep(text: str, max_depth: int) -> ParseError:
    line, col = deep_position(text, max_depth) or (None, None)
    return ParseError(f"JSON nesting deeper than {max_depth} levels", line=line, col=col, code="too-costly")


def _reject_constant(name: str) -> Any:
    raise ParseError(f"JSON number '{name}' is not allowed in FHIR", code="invalid")


class _DuplicateFlag:
    """An ``object_pairs_hook`` that builds the dict and notes whether a key repeated."""

    __slots__ = ("found",)

    def __init__(self) -> None:
        self.found = False

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            self.found = True
        return d


def _shape(value: Any, max_depth: int) -> tuple[bool, bool]:
    """(deeper than ``max_depth``, holds a float) of an orjson tree, in one iterative walk."""
    if type(value) is float:
        return False, True
    has_float = False
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > max_depth:
            return True, has_float
        for child in node.values() if type(node) is dict else node:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
            elif kind is float:
                has_float = True
    return False, has_float


def _fast(text: str, raw: bytes | None, limits: Limits) -> tuple[Any, bool] | None:
    """orjson's reading when it provably equals the exact path's; None when it may not."""
    try:
        value = orjson.loads(raw if raw is not None else text)
    except orjson.JSONDecodeError:
        return None
    if type(value) is dict or type(value) is list:
        too_deep, has_float = _shape(value, limits.max_depth)
        if too_deep:
            return None
    else:
        has_float = type(value) is float
    if "\\u003a" in text or "\\u003A" in text:
        return None
    try:
        duplicates = text.count(":") != orjson.dumps(value).count(b":")
    except orjson.JSONEncodeError:
        return None
    if duplicates:
        return None  # the exact path says where (and keeps the stdlib's order of the keys)
    if has_float:
        try:
            value = json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except Exception:  # e.g. more digits than int() takes: the exact path words it
            return None
    return value, False


def loads(text: str, limits: Limits, raw: bytes | None = None) -> tuple[Any, bool]:
    """Parse JSON text; return the value and whether any object had a duplicate key.

    ``raw``, when given, is ``text`` encoded as UTF-8 (what was received, without its BOM), so
    that orjson need not encode the text again."""
    fast = _fast(text, raw, limits)
    if fast is not None:
        return fast
    return loads_exact(text, limits)


def loads_exact(text: str, limits: Limits) -> tuple[Any, bool]:
    """The reference reading: the stdlib parser, decimals as ``Decimal``, duplicates noted."""
    flag = _DuplicateFlag()
    try:
        value = json.loads(
            text,
            parse_float=Decimal,
            parse_constant=_reject_constant,
            object_pairs_hook=flag,
        )
    except json.JSONDecodeError as exc:
        raise ParseError(f"Invalid JSON: {exc.msg}", line=exc.lineno, col=exc.colno) from None
    except ValueError as exc:  # int() refuses numbers over sys.int_max_str_digits
        raise ParseError(f"Invalid JSON number: {exc}", code="too-costly") from None
    except RecursionError:  # the C scanner guards its own recursion
        raise _too_deep(text, limits.max_depth) from None
    if isinstance(value, (dict, list)) and nesting_depth(value) > limits.max_depth:
        raise _too_deep(text, limits.max_depth)
    return value, flag.found

"""FHIR JSON writer.

Decimals must come out exactly as they were read (``1.50`` stays ``1.50``, a FHIR decimal's
precision is significant), which the stdlib encoder cannot do for ``Decimal``. Rather than a
slow pure-Python encoder, each Decimal is written as a unique placeholder string by the C
encoder and substituted afterwards; the random token makes a collision with real content
impossible in practice.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson


def decimal_text(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"cannot write the non-finite decimal {value} in FHIR")
    return str(value)


def to_json(resource: dict[str, Any], *, pretty: bool = True, sort_keys: bool = False) -> str:
    """Serialise the internal form as FHIR JSON (UTF-8 text, keys in their dict order unless
    ``sort_keys``)."""
    import secrets  # here, not at the top: it costs ~7 ms at start and only this writer needs it

    token = "\x1edec" + secrets.token_hex(8) + ":"
    decimals: list[Decimal] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            decimals.append(obj)
            return f"{token}{len(decimals) - 1}"
        raise TypeError(f"cannot write a {type(obj).__name__} in FHIR JSON")

    text = json.dumps(
        resource,
        indent=2 if pretty else None,
        separators=(",", ": ") if pretty else (",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        sort_keys=sort_keys,
        default=default,
    )
    if decimals:
        quoted = json.dumps(token, ensure_ascii=False)[:-1]  # the token as the encoder escapes it
        pattern = re.compile(re.escape(quoted) + r'(\d+)"')
        text = pattern.sub(lambda m: decimal_text(decimals[int(m.group(1))]), text)
    return text


# -- plain JSON values (reports, OperationOutcomes) at orjson's speed --------------------------------

_PLAIN = (str, int, bool, type(None))


def _orjson_writes_alike(value: Any) -> bool:
    """Whether orjson writes ``value`` byte for byte as ``json.dumps(..., ensure_ascii=False)``
    does. It does for every code point of a str (tests/test_fhirio_speed.py checks them all), for
    ints within 64 bits (orjson refuses others), bools and None; a float only when both spell it
    alike (they differ on exponents: ``1e-05`` / ``0.00001``). Any other type (a Decimal, a tuple,
    a subclass) or a non-string key: no, the stdlib decides what it does with it."""
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        kind = type(node)
        if kind is dict:
            for key, child in node.items():
                if type(key) is not str:
                    return False
                push(child)
        elif kind is list:
            stack.extend(node)
        elif kind is float:
            if json.dumps(node) != orjson.dumps(node).decode():
                return False
        elif kind not in _PLAIN:
            return False
    return True


def pretty_json(value: Any) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)``, byte for byte. With an indent the stdlib
    encodes in pure Python (about 100 ms for the OperationOutcome of 1,800 issues); orjson writes
    the same text in a few ms whenever it provably writes it alike."""
    if _orjson_writes_alike(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode("utf-8")
        except orjson.JSONEncodeError:  # a lone surrogate: the stdlib writes it as it is
            pass
    return json.dumps(value, indent=2, ensure_ascii=False)


def compact_json(value: Any) -> bytes:
    """``json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()``, byte for byte,
    by orjson where it provably writes the same."""
    if _orjson_writes_alike(value):
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

"""Checks of primitive values: JSON type, the regex of the R4 primitive type, and the few
rules the regexes do not carry (empty strings, whitespace, sizes, base64, date ranges).

The regexes are read from the primitive types' StructureDefinitions (``X.value`` carries the
``regex`` extension), so the table here is data, not hand-written patterns.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from adapter.validation.model import REGEX_EXT

_INT_TYPES = frozenset({"integer", "positiveInt", "unsignedInt"})
_STRING_MAX = 1024 * 1024
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def regex_table(primitive_sds: Iterable[dict[str, Any]]) -> dict[str, re.Pattern[str]]:
    """Compile the value regexes of the primitive StructureDefinitions, keyed by type."""
    table: dict[str, re.Pattern[str]] = {}
    for sd in primitive_sds:
        for el in (sd.get("snapshot") or {}).get("element", ()):
            if not el.get("path", "").endswith(".value"):
                continue
            for t in el.get("type", ()):
                for ext in t.get("extension", ()):
                    if ext.get("url") == REGEX_EXT and ext.get("valueString"):
                        with contextlib.suppress(re.error):
                            table[sd["type"]] = re.compile(ext["valueString"])
    return table


def check_primitive(value: Any, ftype: str, regexes: dict[str, re.Pattern[str]]) -> str | None:
    """Return why ``value`` is not a valid ``ftype``, or None."""
    if ftype == "boolean":
        return (
            None
            if isinstance(value, bool)
            else f"Error parsing JSON: the primitive value must be a boolean, not {describe_kind(value)}"
        )
    if ftype in _INT_TYPES:
        whole = isinstance(value, Decimal | float) and ftype == "integer" and value == int(value)
        if (isinstance(value, bool) or not isinstance(value, int)) and not whole:
            return (
                "Error parsing JSON: the primitive value must be a number (integer), "
                f"not {describe_kind(value)}"
            )
        ivalue = int(value)
        if not INT32_MIN <= ivalue <= INT32_MAX:
            return f"The value '{value}' is outside the range of a 32-bit integer"
        if ftype == "positiveInt" and ivalue < 1:
            return f"The value '{value}' must be a positive integer (1 or more)"
        if ftype == "unsignedInt" and ivalue < 0:
            return f"The value '{value}' must be zero or a positive integer"
        return None
    if ftype == "decimal":
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            return f"Error parsing JSON: the primitive value must be a number, not {describe_kind(value)}"
        return None
    if not isinstance(value, str):
        return f"Error parsing JSON: the primitive value must be a string, not {describe_kind(value)}"
    if value == "":
        return "@value cannot be empty"
    if ftype == "xhtml":
        return None
    if len(value) > _STRING_MAX:
        return f"The value is too long ({len(value)} characters; the maximum is {_STRING_MAX})"
    pattern = regexes.get(ftype)
    if pattern is not None and not pattern.fullmatch(value):
        return f"The value '{_clip(value)}' is not a valid {ftype}"
    if ftype == "base64Binary":
        try:
            base64.b64decode(value.replace("\n", "").replace("\r", "").replace(" ", ""), validate=True)
        except (binascii.Error, ValueError):
            return f"The value '{_clip(value)}' is not a valid Base64 value"
    if ftype in ("date", "dateTime", "instant"):
        return _check_date_ranges(value)
    return None


_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T(\d{2}):(\d{2})(?::(\d{2}))?)?")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _check_date_ranges(value: str) -> str | None:
    m = _DATE_RE.match(value)
    if not m:
        return None
    year, month, day = m.group(1), m.group(2), m.group(3)
    if month and day:
        d, mo, y = int(day), int(month), int(year)
        leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
        limit = 29 if mo == 2 and leap else (28 if mo == 2 else _MONTH_DAYS[mo - 1])
        if d > limit:
            return f"The value '{value}' is not a valid date (day {d} of month {mo})"
    if m.group(4) and int(m.group(4)) > 23:
        return f"The value '{value}' has an invalid hour"
    return None


def describe_kind(value: Any) -> str:
    """'a string', 'an array', ...: how messages name a JSON value's kind."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _clip(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 3] + "..."

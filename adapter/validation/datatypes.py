"""Datatype rules that no invariant expresses: attachment sizes and min/max values.

Quantities are compared after converting between units of one dimension, for the UCUM units
care data uses (mass, time, length, volume); other unit pairs are left unjudged.
"""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from adapter.validation.model import ElementRule

if TYPE_CHECKING:
    from adapter.validation.walker import Walker

_UCUM_FACTORS: dict[str, tuple[str, Decimal]] = {
    "ug": ("g", Decimal("0.000001")),
    "mg": ("g", Decimal("0.001")),
    "g": ("g", Decimal(1)),
    "kg": ("g", Decimal(1000)),
    "ms": ("s", Decimal("0.001")),
    "s": ("s", Decimal(1)),
    "min": ("s", Decimal(60)),
    "h": ("s", Decimal(3600)),
    "d": ("s", Decimal(86400)),
    "wk": ("s", Decimal(604800)),
    "mo": ("s", Decimal(2629746)),
    "a": ("s", Decimal(31556952)),
    "mm": ("m", Decimal("0.001")),
    "cm": ("m", Decimal("0.01")),
    "m": ("m", Decimal(1)),
    "km": ("m", Decimal(1000)),
    "mL": ("L", Decimal("0.001")),
    "dL": ("L", Decimal("0.1")),
    "L": ("L", Decimal(1)),
}


def _to_base(value: Any, unit: Any) -> tuple[str, Decimal] | None:
    if not isinstance(unit, str) or not _is_number(value):
        return None
    factor = _UCUM_FACTORS.get(unit)
    if factor is None:
        return None
    try:
        return factor[0], Decimal(str(value)) * factor[1]
    except InvalidOperation:
        return None


def _quantity_compare(actual: dict[str, Any], limit: dict[str, Any]) -> int | None:
    """-1, 0, 1 comparing two Quantities, or None when they cannot be compared."""
    av, lv = actual.get("value"), limit.get("value")
    if not _is_number(av) or not _is_number(lv):
        return None  # absent, or not a number (a shape error the walk reports)
    au = actual.get("code") or actual.get("unit")
    lu = limit.get("code") or limit.get("unit")
    if au == lu:
        a, b = Decimal(str(av)), Decimal(str(lv))
    else:
        ca, cb = _to_base(av, au), _to_base(lv, lu)
        if ca is None or cb is None or ca[0] != cb[0]:
            return None
        a, b = ca[1], cb[1]
    return (a > b) - (a < b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def _limit(rule: ElementRule, prefix: str) -> tuple[str, Any] | None:
    for key, value in rule.definition.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return key[len(prefix) :], value
    return None


def _show_quantity(q: dict[str, Any]) -> str:
    return f"{q.get('value')} {q.get('code') or q.get('unit') or ''}".strip()


def check_limits(walker: Walker, value: Any, tcode: str, rule: ElementRule, expr: str) -> None:
    for prefix, word, bad_sign in (("minValue", "less than", -1), ("maxValue", "greater than", 1)):
        limit = _limit(rule, prefix)
        if limit is None:
            continue
        _ltype, lvalue = limit
        if isinstance(value, str) and isinstance(lvalue, dict) and tcode in ("date", "dateTime", "instant"):
            bound = _relative_bound(lvalue, bad_sign)
            if bound is not None and (value[:10] > bound) - (value[:10] < bound) == bad_sign:
                walker.report(
                    "error",
                    "value",
                    expr,
                    f"The value in the instance ({value}) is {word} the specified {prefix} "
                    f"({_show_quantity(lvalue)} from today, {bound})",
                    source="profile",
                )
        elif isinstance(value, dict) and isinstance(lvalue, dict):
            cmp = _quantity_compare(value, lvalue)
            if cmp == bad_sign:
                walker.report(
                    "error",
                    "value",
                    expr,
                    f"The value in the instance ({_show_quantity(value)}) is {word} the specified "
                    f"{prefix} ({_show_quantity(lvalue)})",
                    source="profile",
                )
        else:
            cmp = None
            if isinstance(value, int | float | Decimal) and isinstance(lvalue, int | float | Decimal):
                a, b = Decimal(str(value)), Decimal(str(lvalue))
                cmp = (a > b) - (a < b)
            elif (
                isinstance(value, str)
                and isinstance(lvalue, str)
                and tcode in ("date", "dateTime", "instant", "time")
                and len(value) == len(lvalue)
            ):
                cmp = (value > lvalue) - (value < lvalue)  # same precision: text order is time order
            if cmp == bad_sign:
                walker.report(
                    "error",
                    "value",
                    expr,
                    f"The value in the instance ({value}) is {word} the specified {prefix} ({lvalue})",
                    source="profile",
                )


def _relative_bound(duration: dict[str, Any], direction: int) -> str | None:
    """Today moved by a Duration (minValueDuration looks back, maxValueDuration ahead)."""
    import datetime as _dt

    seconds = _to_base(duration.get("value"), duration.get("code") or duration.get("unit"))
    if seconds is None or seconds[0] != "s":
        return None
    delta = _dt.timedelta(seconds=float(seconds[1]))
    today = _dt.date.today()
    try:
        return (today + delta if direction > 0 else today - delta).isoformat()
    except OverflowError:
        return None


def check_attachment(walker: Walker, value: dict[str, Any], expr: str) -> None:
    data, size = value.get("data"), value.get("size")
    if not isinstance(data, str) or not isinstance(size, int) or isinstance(size, bool):
        return
    try:
        actual = len(base64.b64decode(data.replace("\n", "").replace("\r", ""), validate=True))
    except (binascii.Error, ValueError):
        return  # the base64Binary check reports it
    if actual != size:
        walker.report(
            "error",
            "structure",
            expr,
            f"Stated Attachment Size {size} does not match actual attachment size {actual}",
        )


ELE_1 = "Constraint failed: ele-1: 'All FHIR elements must have a @value or children'"


def only_id(value: Any) -> bool:
    """An element object with nothing but an ``id`` (or nothing at all): ele-1 fails on it, as
    ``children().count() > id.count()`` is false and it has no value."""
    return isinstance(value, dict) and (not value or (len(value) == 1 and "id" in value))


def primitive_at(raw: Any, index: int, in_list: bool) -> Any:
    """The value a primitive's ``_name`` object at ``index`` belongs to (None when absent)."""
    if in_list:
        return raw[index] if isinstance(raw, list) and index < len(raw) else None
    return None if isinstance(raw, list) else raw

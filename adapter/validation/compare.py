"""Fixed and pattern values: exact and partial matching of FHIR JSON values.

A pattern matches when every property it carries is present and matches in the instance; a
repeating pattern property matches when each of its items is matched by some instance item.
Decimals compare by value so ``1.0`` in a profile matches ``1.0`` parsed as Decimal or float.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def _scalar_equal(a: Any, b: Any) -> bool:
    if type(a) is str and type(b) is str:  # codes, systems, urls: the case slicing meets most
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal):
        return Decimal(str(a)) == Decimal(str(b))
    return bool(a == b)


def fixed_matches(value: Any, fixed: Any) -> bool:
    """Exact equality (extensions and ids included), arrays in order."""
    if type(fixed) is str:  # what _scalar_equal answers for a string: equal strings, nothing else
        return isinstance(value, str) and value == fixed
    if isinstance(fixed, dict):
        if not isinstance(value, dict):
            return False
        keys = {k for k in value if k != "fhir_comments"}
        if keys != set(fixed):
            return False
        return all(fixed_matches(value[k], fixed[k]) for k in fixed)
    if isinstance(fixed, list):
        if not isinstance(value, list) or len(value) != len(fixed):
            return False
        return all(fixed_matches(v, f) for v, f in zip(value, fixed, strict=True))
    return _scalar_equal(value, fixed)


def pattern_matches(value: Any, pattern: Any) -> bool:
    """Partial match: what the pattern says must be there; anything else may be too."""
    if isinstance(pattern, dict):
        if isinstance(value, list):
            return any(pattern_matches(v, pattern) for v in value)
        if not isinstance(value, dict):
            return False
        return all(k in value and pattern_matches(value[k], pv) for k, pv in pattern.items())
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(pattern_matches(v, p) for v in items) for p in pattern)
    if isinstance(value, list):
        return any(_scalar_equal(v, pattern) for v in value)
    return _scalar_equal(value, pattern)

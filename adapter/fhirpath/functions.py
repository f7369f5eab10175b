"""FHIR functions fhirpathpy lacks, and fixes of a few it has, as an invocation table.

Entries take `(ctx, data, *params)` with fhirpathpy ResourceNodes (we hand the table to the engine
unprocessed, so functions see the node types and `ctx["becare"]`, the per-evaluation state:
resolver, terminology, conformsTo callback, trace callback).
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
from collections import abc
from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction

from fhirpathpy.engine import nodes, util
from fhirpathpy.engine.invocations import invocation_registry as base
from fhirpathpy.engine.invocations import navigation
from fhirpathpy.models import models

from adapter.fhirpath import temporal
from adapter.fhirpath.patches import _child_nodes, do_eval, type_fn, type_is, type_of
from adapter.fhirpath.xhtml import html_checks
from adapter.terminology import ucum

log = logging.getLogger(__name__)
RN = nodes.ResourceNode
_TEMPORAL_TYPES = {"date", "dateTime", "instant", "time"}


def _state(ctx) -> dict:
    return ctx.get("becare") or {}


def _data(x):
    return x.data if isinstance(x, RN) else x


def _is_primitive(v) -> bool:
    return v is not None and not isinstance(v, abc.Mapping | list)


def _single(coll, name: str):
    if len(coll) > 1:
        raise ValueError(f"{name}() expects a single item, got {len(coll)}")
    return coll[0] if coll else None


# ---- existence / values -------------------------------------------------------------------------


def has_value(ctx, coll):
    if len(coll) != 1:
        return False
    return _is_primitive(_data(coll[0]))


def _with_primitive_side(ctx, coll, exclude: bool):
    out = []
    for item in coll:
        out.extend(navigation.create_reduce_children(ctx, exclude)([], item))
        data = _data(item)
        if exclude and isinstance(data, abc.Mapping):
            # a primitive child carrying only id/extension (`_family` without `family`) is a child too
            for k in data:
                if k.startswith("_") and k[1:] not in data:
                    out.extend(_child_nodes(ctx["model"], item, k[1:]))
        side = getattr(item, "_data", None)
        if isinstance(side, abc.Mapping) and not isinstance(item.data, abc.Mapping):
            out.extend(navigation.create_reduce_children(ctx, exclude)([], RN(side, "Element")))
    return out


def children(ctx, coll):
    return _with_primitive_side(ctx, coll, True)


def descendants(ctx, coll):
    res, ch = [], _with_primitive_side(ctx, coll, False)
    while ch:
        res += ch
        ch = _with_primitive_side(ctx, ch, False)
    return res


# ---- references, terminology, profiles ----------------------------------------------------------


def resolve(ctx, coll):
    state = _state(ctx)
    resolver = state.get("resolver")
    out = []
    for item in coll:
        data = _data(item)
        ref = data.get("reference") if isinstance(data, abc.Mapping) else data
        if not isinstance(ref, str) or not ref:
            continue
        target = resolver(ref, state.get("resource")) if resolver else None
        if target is None:
            target = default_resolve(ref, state.get("resource"), state.get("root_resource"))
        if target is not None:
            out.append(RN.create_node(target))
    return out


def default_resolve(ref: str, resource: dict | None, root: dict | None) -> dict | None:
    """Contained `#id` in the resource, else a Bundle entry by fullUrl or Type/id."""
    if ref.startswith("#"):
        for res in (resource, root):
            if isinstance(res, dict):
                if ref == "#":
                    return res
                for c in res.get("contained") or []:
                    if isinstance(c, dict) and c.get("id") == ref[1:]:
                        return c
        return None
    if isinstance(root, dict) and root.get("resourceType") == "Bundle":
        for entry in root.get("entry") or []:
            r = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(r, dict):
                continue
            full = entry.get("fullUrl")
            if full == ref:
                return r
            local = f"{r.get('resourceType')}/{r.get('id')}"
            if r.get("id") and (ref == local or ref.endswith("/" + local)):
                return r
    return None


def _codings(v) -> list[tuple[str | None, str, str | None]]:
    if isinstance(v, str):
        return [(None, v, None)]
    if isinstance(v, abc.Mapping):
        if "coding" in v:
            return [c for x in v.get("coding") or [] for c in _codings(x)]
        if isinstance(v.get("code"), str):
            return [(v.get("system"), v["code"], v.get("display"))]
    return []


def member_of(ctx, coll, valueset):
    term = _state(ctx).get("terminology")
    if term is None or not isinstance(valueset, str) or len(coll) != 1:
        return []
    codings = _codings(_data(coll[0]))
    if not codings:
        return []
    unknown = False
    for system, code, display in codings:
        status = getattr(term.validate_code(valueset, system, code, display), "status", "unknown")
        if status == "valid":
            return True
        unknown = unknown or status != "invalid"
    return [] if unknown else False


def fn_html_checks(ctx, coll):
    item = _single(coll, "htmlChecks")
    return [] if item is None else html_checks(_data(item))


_CORE_SD = "http://hl7.org/fhir/StructureDefinition/"


def conforms_to(ctx, coll, url):
    """Delegates to the wired validator callback. Without one, only the base-type question is
    answered (`conformsTo('.../StructureDefinition/Patient')` on a Patient): other profiles are empty."""
    item = _single(coll, "conformsTo")
    if item is None:
        return []
    if not re.match(r"^(https?://|urn:)\S+/\S+", url or ""):
        raise ValueError(f"conformsTo() needs a canonical URL, got {url!r}")
    fn = _state(ctx).get("conforms_to")
    data = _data(item)
    if fn is not None:
        res = fn(data, url)
        return [] if res is None else bool(res)
    tail = url[len(_CORE_SD) :] if url.startswith(_CORE_SD) else ""
    if re.fullmatch(r"[A-Z][A-Za-z]+", tail) and isinstance(data, abc.Mapping) and "resourceType" in data:
        return data["resourceType"] == tail
    return []


def extension(ctx, coll, url):
    """extension(url), also on primitives (their extensions live in the `_name` sibling)."""
    out = []
    for item in coll:
        data = _data(item)
        holder = data if isinstance(data, abc.Mapping) else getattr(item, "_data", None)
        if not isinstance(holder, abc.Mapping):
            continue
        for ext in holder.get("extension") or []:
            if isinstance(ext, abc.Mapping) and ext.get("url") == url:
                out.append(RN.create_node(ext, "Extension"))
    return out


def today(ctx, coll):
    v = base["today"]["fn"](ctx, coll)
    return temporal.FP_Date(str(getattr(v, "asStr", v))[:10])


def to_date_time(ctx, coll):
    if len(coll) == 1 and isinstance(_data(coll[0]), temporal.FP_Date):
        return nodes.FP_DateTime(_data(coll[0]).asStr)
    return base["toDateTime"]["fn"](ctx, coll)


def to_boolean(ctx, coll):
    if len(coll) == 1 and isinstance(_data(coll[0]), Decimal) and _data(coll[0]) in (0, 1):
        return bool(_data(coll[0]))
    return base["toBoolean"]["fn"](ctx, coll)


def converts_to_boolean(ctx, coll):
    if len(coll) != 1:
        return []
    return to_boolean(ctx, coll) not in ([], None)


# ---- numbers, dates, quantities -----------------------------------------------------------------


def _plain(x):
    """Value for arithmetic/comparison: FHIR typed strings become FP dates, Quantities FP_Quantity."""
    if isinstance(x, RN):
        info = x.get_type_info()
        if info is not None and info.name == "Quantity" and isinstance(x.data, abc.Mapping):
            q = x.data
            if q.get("value") is None:
                return None
            code = q.get("code") or q.get("unit")
            unit = nodes.FP_Quantity.timeUnitsToUCUM.get(code, f"'{code}'") if code else None
            return nodes.FP_Quantity(util.get_data(q["value"]), unit)
        if x.path in _TEMPORAL_TYPES and isinstance(x.data, str):
            cls = {"time": nodes.FP_Time, "date": temporal.FP_Date}.get(x.path, nodes.FP_DateTime)
            return cls(x.data) or x.data
        return util.get_data(x)
    return util.get_data(x)


def _boundary(ctx, coll, digits=None, *, high: bool):
    item = _single(coll, "highBoundary" if high else "lowBoundary")
    if item is None:
        return []
    digits = None if digits == [] else digits
    v = _plain(item)
    if isinstance(v, bool):
        return []
    if isinstance(v, int | Decimal):
        r = temporal.decimal_boundary(v, digits, high)
    elif isinstance(v, nodes.FP_Quantity):
        b = temporal.decimal_boundary(Decimal(v.value), digits, high)
        r = None if b is None else nodes.FP_Quantity(b, v.unit)
    else:
        r = temporal.temporal_boundary(v, digits, high)
    return [] if r is None else r


def precision(ctx, coll):
    item = _single(coll, "precision")
    if item is None:
        return []
    r = temporal.precision(_plain(item))
    return [] if r is None else r


# ---- quantities: UCUM units and the calendar duration keywords ----------------------------------
#
# FHIRPath (N1, "Time-valued Quantities"): `year`..`millisecond` are calendar durations. Weeks and
# below equal their UCUM definite durations (`7 days = 1 'wk'`, `1 second = 1 's'`); a calendar
# year or month is only *equivalent* to `'a'` / `'mo'` (a UCUM year is 365.25 days, a calendar year
# 365 or 366), so `1 year = 1 'a'` is empty while `1 year ~ 1 'a'` is true, and a calendar
# year/month against days or seconds cannot be compared at all. Other units are compared through
# their UCUM canonical form (adapter.terminology.ucum): `4 'g' = 4000 'mg'`.

_CALENDAR_UCUM = {
    "year": "a",
    "month": "mo",
    "week": "wk",
    "day": "d",
    "hour": "h",
    "minute": "min",
    "second": "s",
    "millisecond": "ms",
}
_YEAR_MONTH = frozenset({"year", "month"})


class _Incommensurable(Exception):
    """Units of different dimensions (or unknown units): not comparable."""


def _unquote(unit: str | None) -> tuple[str, bool]:
    if unit is None:
        return "1", True
    if len(unit) >= 2 and unit[0] == "'" and unit[-1] == "'":
        return unit[1:-1], True
    return unit, False


def _calendar(unit: str | None) -> str | None:
    """The calendar duration keyword of a unit (`days`, `'week'`), else None (a UCUM unit)."""
    text, _ = _unquote(unit)
    if text.endswith("s") and text[:-1] in _CALENDAR_UCUM:
        text = text[:-1]
    return text if text in _CALENDAR_UCUM else None


def _ucum_code(unit: str | None) -> str:
    """The UCUM code standing for a unit; calendar keywords map to their definite durations."""
    cal = _calendar(unit)
    return _CALENDAR_UCUM[cal] if cal else _unquote(unit)[0]


def _quoted(code: str) -> str:
    return f"'{code}'"


def _number(v) -> Decimal:
    return v if isinstance(v, Decimal) else Decimal(str(v))


def _scaled(a: nodes.FP_Quantity, b: nodes.FP_Quantity, *, equivalence: bool):
    """(value of a, value of b, factor of a's unit, factor of b's unit) ready to compare, or None
    when the pair is not comparable for this purpose (a calendar year/month against anything but
    years and months; for equality also against the UCUM `'a'` / `'mo'`)."""
    ca, cb = _calendar(a.unit), _calendar(b.unit)
    if not equivalence and (ca in _YEAR_MONTH) != (cb in _YEAR_MONTH):
        return None
    if equivalence and (
        (ca in _YEAR_MONTH and cb is not None and cb not in _YEAR_MONTH)
        or (cb in _YEAR_MONTH and ca is not None and ca not in _YEAR_MONTH)
    ):
        return None
    ua, ub = _ucum_code(a.unit), _ucum_code(b.unit)
    va, vb = _number(a.value), _number(b.value)
    if ua == ub:
        return va, vb, Fraction(1), Fraction(1)
    fa, fb = ucum.canonical(ua), ucum.canonical(ub)
    if fa is None or fb is None or not fa.commensurable(fb):
        raise _Incommensurable(f"cannot compare quantities in {a.unit} and {b.unit}")
    return va, vb, fa.factor, fb.factor


def quantity_compare(a: nodes.FP_Quantity, b: nodes.FP_Quantity) -> int | None:
    """-1/0/1, None when not comparable (calendar years/months); raises _Incommensurable."""
    scaled = _scaled(a, b, equivalence=False)
    if scaled is None:
        return None
    va, vb, fa, fb = scaled
    x, y = Fraction(va) * fa, Fraction(vb) * fb
    return (x > y) - (x < y)


def quantity_equal(a: nodes.FP_Quantity, b: nodes.FP_Quantity) -> bool | None:
    try:
        c = quantity_compare(a, b)
    except _Incommensurable:
        return None
    return None if c is None else c == 0


def quantity_equivalent(a: nodes.FP_Quantity, b: nodes.FP_Quantity) -> bool:
    """Equal after rounding both to the precision of the less precise one, in the coarser unit."""
    try:
        scaled = _scaled(a, b, equivalence=True)
    except _Incommensurable:
        return False
    if scaled is None:
        return False
    va, vb, fa, fb = scaled
    if fa < fb:
        va, vb, fa, fb = vb, va, fb, fa
    ratio = fb / fa  # b expressed in a's (coarser) unit
    places_a = -va.as_tuple().exponent
    shift = _power_of_ten(ratio)
    places = places_a if shift is None else min(places_a, -vb.as_tuple().exponent - shift)
    return _rounded(Fraction(va), places) == _rounded(Fraction(vb) * ratio, places)


def _power_of_ten(r: Fraction) -> int | None:
    """k when r == 10**k exactly."""
    k = 0
    while r.numerator % 10 == 0 and r.denominator == 1 and r != 1:
        r, k = r / 10, k + 1
    while r.denominator % 10 == 0 and r.numerator == 1:
        r, k = r * 10, k - 1
    return k if r == 1 else None


def _rounded(x: Fraction, places: int) -> Decimal:
    with localcontext() as c:
        c.prec = 60
        d = Decimal(x.numerator) / Decimal(x.denominator)
        return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def comparable(ctx, coll, other):
    a = _plain(_single(coll, "comparable")) if coll else None
    b = _plain(other[0]) if isinstance(other, list) and other else _plain(other)
    if not isinstance(a, nodes.FP_Quantity) or not isinstance(b, nodes.FP_Quantity):
        return []
    try:
        return quantity_compare(a, b) is not None
    except _Incommensurable:
        return False


def _quantity_op(a, b, op: str):
    """Quantity * / Quantity or number (either side): the value and the UCUM unit algebra."""
    qa, qb = isinstance(a, nodes.FP_Quantity), isinstance(b, nodes.FP_Quantity)
    for v in (a, b):
        if not isinstance(v, nodes.FP_Quantity) and not (util.is_number(v) and not isinstance(v, bool)):
            raise TypeError(f"cannot apply {op} to {type(v).__name__}")
    va = _number(a.value if qa else a)
    vb = _number(b.value if qb else b)
    ua = _ucum_code(a.unit) if qa else "1"
    ub = _ucum_code(b.unit) if qb else "1"
    if op == "*":
        unit = ucum.multiply(ua, ub) if qa and qb else (ua if qa else ub)
        return nodes.FP_Quantity(va * vb, _quoted(unit) if qa and qb else (a.unit if qa else b.unit))
    if vb == 0:
        return []
    if qa and not qb:
        return nodes.FP_Quantity(va / vb, a.unit)
    return nodes.FP_Quantity(va / vb, _quoted(ucum.divide(ua, ub)))


def _times(name: str):
    orig = base[name]["fn"]

    def fn(ctx, xs, ys):
        if len(xs) != 1 or len(ys) != 1:
            raise ValueError(f"operands of {name} must be single items")
        a, b = _plain(xs[0]), _plain(ys[0])
        if isinstance(a, nodes.FP_Quantity) or isinstance(b, nodes.FP_Quantity):
            return _quantity_op(a, b, name)
        for v in (a, b):
            if not util.is_number(v) or isinstance(v, bool):
                raise TypeError(f"cannot apply {name} to {type(v).__name__}")
        return orig(ctx, a, b)

    fn.__name__ = "times" if name == "*" else "divide"
    return fn


def abs_fn(ctx, coll):
    item = _single(coll, "abs")
    if item is None:
        return []
    v = _plain(item)
    if isinstance(v, nodes.FP_Quantity):
        return nodes.FP_Quantity(abs(_number(v.value)), v.unit)
    return base["abs"]["fn"](ctx, coll)


def _cmp(a, b) -> int | None:
    """Three-way compare for ordering; None = incomparable precision (empty result)."""
    if isinstance(a, nodes.FP_TimeBase) or isinstance(b, nodes.FP_TimeBase):
        return temporal.compare(a, b)
    if isinstance(a, nodes.FP_Quantity) and isinstance(b, nodes.FP_Quantity):
        try:
            return quantity_compare(a, b)
        except _Incommensurable as exc:
            raise ValueError(str(exc)) from None
    if isinstance(a, bool) or isinstance(b, bool):
        raise TypeError("booleans are not ordered")
    if (isinstance(a, str) and isinstance(b, str)) or (util.is_number(a) and util.is_number(b)):
        return (a > b) - (a < b)
    raise TypeError(f"cannot compare {type(a).__name__} with {type(b).__name__}")


def _comparison(op):
    def fn(ctx, xs, ys):
        if len(xs) != 1 or len(ys) != 1:
            raise ValueError("comparison operands must be single items")
        c = _cmp(_plain(xs[0]), _plain(ys[0]))
        return [] if c is None else op(c)

    fn.__name__ = f"cmp_{op.__name__}"
    return fn


def _lt(c):
    return c < 0


def _gt(c):
    return c > 0


def _le(c):
    return c <= 0


def _ge(c):
    return c >= 0


def _temporal_pair(xs, ys):
    if len(xs) == 1 and len(ys) == 1:
        a, b = _plain(xs[0]), _plain(ys[0])
        if (isinstance(a, nodes.FP_TimeBase) and isinstance(b, nodes.FP_TimeBase | str)) or (
            isinstance(b, nodes.FP_TimeBase) and isinstance(a, str)
        ):
            if isinstance(a, str):
                a = type(b)(a) if type(b)(a) is not None else None
            if isinstance(b, str):
                b = type(a)(b) if type(a)(b) is not None else None
            if a is None or b is None:
                return False, None
            if isinstance(a, nodes.FP_Time) != isinstance(b, nodes.FP_Time):
                return True, 1  # a date never equals a time
            return True, temporal.compare(a, b)
    return False, None


def _quantity_pair(xs, ys):
    if len(xs) == 1 and len(ys) == 1:
        a, b = _plain(xs[0]), _plain(ys[0])
        if isinstance(a, nodes.FP_Quantity) and isinstance(b, nodes.FP_Quantity):
            return a, b
    return None


def equal(ctx, xs, ys):
    handled, c = _temporal_pair(xs, ys)
    if handled:
        return [] if c is None else c == 0
    pair = _quantity_pair(xs, ys)
    if pair is not None:
        r = quantity_equal(*pair)
        return [] if r is None else r
    return base["="]["fn"](ctx, xs, ys)


def unequal(ctx, xs, ys):
    r = equal(ctx, xs, ys)
    return r if r == [] else not util.is_true(r)


def _equiv_items(ctx, a, b) -> bool:
    pair = _quantity_pair([a], [b])
    if pair is not None:
        return quantity_equivalent(*pair)
    return util.is_true(base["~"]["fn"](ctx, [a], [b]))


def equivalent(ctx, xs, ys):
    if len(xs) != len(ys):
        return False
    handled, c = _temporal_pair(xs, ys)
    if handled:
        return c == 0
    pair = _quantity_pair(xs, ys)
    if pair is not None:
        return quantity_equivalent(*pair)
    if len(xs) <= 1:
        return util.is_true(base["~"]["fn"](ctx, xs, ys)) or (not xs and not ys)
    remaining = list(ys)
    for a in xs:
        hit = next((i for i, b in enumerate(remaining) if _equiv_items(ctx, a, b)), None)
        if hit is None:
            return False
        remaining.pop(hit)
    return True


def not_equivalent(ctx, xs, ys):
    return not util.is_true(equivalent(ctx, xs, ys))


def _arith(name: str, sign: int):
    orig = base[name]["fn"]

    def fn(ctx, xs, ys):
        if len(xs) == 1 and len(ys) == 1:
            a, b = _plain(xs[0]), _plain(ys[0])
            if isinstance(b, nodes.FP_Quantity) and isinstance(a, nodes.FP_TimeBase | str):
                if isinstance(a, str):
                    a = nodes.FP_TimeBase.get_match_data(a)
                if a is not None:
                    r = temporal.add_quantity(a, sign * Decimal(b.value), b.unit)
                    if r is not None:
                        return r
            elif isinstance(a, nodes.FP_Quantity) and isinstance(b, nodes.FP_Quantity):
                return _add_quantities(a, b, sign)
        return orig(ctx, xs, ys)

    fn.__name__ = f"arith_{name}"
    return fn


def _add_quantities(a: nodes.FP_Quantity, b: nodes.FP_Quantity, sign: int) -> nodes.FP_Quantity:
    """a + b (or a - b). With different but commensurable units the result is in the finer of the
    two (`3 'm' + 2 'cm'` is `302 'cm'`, `1 year + 2 months` is `14 months`), so no digit is lost."""
    try:
        scaled = _scaled(a, b, equivalence=False)
    except _Incommensurable as exc:
        raise ValueError(str(exc)) from None
    if scaled is None:
        raise ValueError(f"cannot add {b.unit} to {a.unit}: calendar years and months are not comparable")
    va, vb, fa, fb = scaled
    if fa == fb:
        return nodes.FP_Quantity(va + sign * vb, a.unit)
    unit = a.unit if fa < fb else b.unit
    fine = min(fa, fb)
    return nodes.FP_Quantity(_in_unit(va, fa / fine) + sign * _in_unit(vb, fb / fine), unit)


def _in_unit(value: Decimal, ratio: Fraction) -> Decimal:
    """value times a ratio >= 1 between units (exact for the terminating ratios UCUM has)."""
    if ratio == 1:
        return value
    with localcontext() as c:
        c.prec = 60
        product = value * Decimal(ratio.numerator) / Decimal(ratio.denominator)
    if _power_of_ten(ratio) is None and ratio.denominator != 1:
        product = _rounded(Fraction(product), max(0, -value.as_tuple().exponent) + 8)
    return product


# ---- collections: equality-based distinctness ----------------------------------------------------
#
# union (`|`), distinct() and isDistinct() compare items by FHIRPath equality, so a FHIR code and
# a string with the same text are one item (`(Patient.gender | 'male').count()` is 1) and so are
# `1 'm'` and `100 'cm'`; the first occurrence is kept with its FHIR type.


def _eq_key(item):
    if isinstance(item, RN) and isinstance(item.data, abc.Mapping):
        # complex values are equal when all their children are (a Quantity element's comparator too)
        return ("o", json.dumps(item.data, sort_keys=True, default=str))
    v = _plain(item)
    if isinstance(v, bool):
        return ("b", v)
    if util.is_number(v):
        return ("n", _number(v))
    if isinstance(v, str):
        return ("s", v)
    if isinstance(v, nodes.FP_Quantity):
        if _calendar(v.unit) in _YEAR_MONTH:
            return ("q", Fraction(_number(v.value)) * (12 if _calendar(v.unit) == "year" else 1), "month")
        code = _ucum_code(v.unit)
        c = ucum.canonical(code)
        if c is None:
            return ("q", _number(v.value), code)
        return ("q", Fraction(_number(v.value)) * c.factor, c.dims)
    if isinstance(v, nodes.FP_TimeBase):
        return ("t", type(v).__name__, v.asStr)
    try:
        return ("o", json.dumps(v, sort_keys=True, default=str))
    except (TypeError, ValueError):
        return ("x", repr(v))


def _distinct_items(coll) -> list:
    seen: set = set()
    out = []
    for item in coll:
        key = _eq_key(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def union_op(ctx, xs, ys):
    return _distinct_items(list(xs) + list(ys))


def distinct_fn(ctx, coll):
    return _distinct_items(coll)


def is_distinct_fn(ctx, coll):
    return len(_distinct_items(coll)) == len(coll)


# ---- strings -------------------------------------------------------------------------------------


def to_string(ctx, coll):
    if len(coll) != 1:
        return []
    v = _plain(coll[0])
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, nodes.FP_Quantity):
        return f"{v.value} {v.unit}"
    if isinstance(v, nodes.FP_TimeBase):
        return v.asStr
    if isinstance(v, abc.Mapping | list) or v is None:
        return []
    return str(v)


def matches_full(ctx, coll, regex):
    s = _single(coll, "matchesFull")
    if s is None or regex == [] or regex is None:
        return []
    return re.fullmatch(regex, _data(s), re.DOTALL) is not None


def _string_fn(name: str, empty_param_result=None):
    """fhirpathpy raises on an empty argument where FHIRPath wants an empty result."""
    orig = base[name]["fn"]

    def fn(ctx, coll, *params):
        if any(p == [] or p is None for p in params):
            return []
        return orig(ctx, coll, *params)

    fn.__name__ = f"str_{name}"
    return fn


def starts_with(ctx, coll, prefix):
    s = _single(coll, "startsWith")
    if s is None or prefix == [] or prefix is None:
        return []
    v = _data(s)
    if not isinstance(v, str):
        raise TypeError("startsWith() applies to strings")
    return v.startswith(prefix)


def replace_matches(ctx, coll, regex, subst):
    s = _single(coll, "replaceMatches")
    if s is None or regex in ([], None) or subst in ([], None):
        return []
    v = _data(s)
    if regex == "":
        return v
    return re.sub(regex, re.sub(r"\$(\d+)", r"\\\1", subst), v)


def escape(ctx, coll, target):
    s = _single(coll, "escape")
    if s is None or target in ([], None):
        return []
    v = _data(s)
    if target == "html":
        return html.escape(v, quote=True).replace("&#x27;", "&#39;")
    if target == "json":
        return json.dumps(v, ensure_ascii=False)[1:-1]
    return []


def unescape(ctx, coll, target):
    s = _single(coll, "unescape")
    if s is None or target in ([], None):
        return []
    v = _data(s)
    if target == "html":
        return html.unescape(v)
    if target == "json":
        return json.loads('"' + re.sub(r'(?<!\\)"', '\\"', v) + '"')
    return []


# ---- collections and control flow ----------------------------------------------------------------


def _expr_ast(func):
    cells = dict(zip(func.__code__.co_freevars, func.__closure__ or (), strict=False))
    return cells["param"].cell_contents


def sort(ctx, coll, *exprs):
    keys = []
    for e in exprs:
        ast = _expr_ast(e)
        desc = ast.get("type") == "PolarityExpression" and ast.get("terminalNodeText", [""])[0] == "-"
        keys.append((ast["children"][0] if desc else ast, desc))

    def key_values(item):
        if not keys:
            return [(_plain(item), False)]
        out = []
        for ast, desc in keys:
            ctx["$this"] = [item]
            r = do_eval(ctx, [item], ast)
            if len(r) > 1:
                raise ValueError("sort() key must be a single value")
            out.append((_plain(r[0]) if r else None, desc))
        return out

    decorated = [(key_values(x), x) for x in coll]

    def compare(a, b):
        for (va, desc), (vb, _) in zip(a[0], b[0], strict=True):
            if va is None or vb is None:
                c = (va is not None) - (vb is not None)
                if c:
                    return c  # empty keys sort first in both directions
                continue
            c = _cmp(va, vb) or 0
            if c:
                return -c if desc else c
        return 0

    return [x for _, x in sorted(decorated, key=functools.cmp_to_key(compare))]


def iif(ctx, data, cond, ok, fail=None):
    if len(data) > 1:
        raise ValueError("iif() may not be called on a collection of more than one item")
    crit = cond(data)
    if len(crit) > 1 or (crit and not isinstance(_data(crit[0]), bool)):
        raise TypeError("iif() criterion must be a single boolean")
    if crit and _data(crit[0]) is True:
        return ok(data)
    return fail(data) if fail else []


def single(ctx, coll):
    if len(coll) > 1:
        raise ValueError(f"single() on a collection of {len(coll)} items")
    return coll


# ---- boolean logic: singleton evaluation of collections -------------------------------------------
#
# FHIRPath N1 "Singleton Evaluation of Collections": where a Boolean is expected, an empty
# collection is empty, one Boolean is itself, one item of any other type is true, and several items
# are an error. The operands are thunks ("Lazy" parameters, see patches): `and`, `or` and `implies`
# do not evaluate their right side once the left one decides (as the compiled form and the
# reference implementation do), so `false and x.single()` is false whatever x holds.


def _truth(coll, op: str) -> bool | None:
    if not coll:
        return None
    if len(coll) > 1:
        raise ValueError(f"operand of {op} has {len(coll)} items, not a single boolean")
    item = coll[0]
    v = _data(item)
    if v is None and isinstance(item, RN):
        return None  # a primitive carrying only extensions has no value
    return v if isinstance(v, bool) else True


def and_op(ctx, left, right):
    a = _truth(left(), "and")
    if a is False:
        return False
    b = _truth(right(), "and")
    if b is False:
        return False
    return [] if a is None or b is None else True


def or_op(ctx, left, right):
    a = _truth(left(), "or")
    if a is True:
        return True
    b = _truth(right(), "or")
    if b is True:
        return True
    return [] if a is None or b is None else False


def xor_op(ctx, left, right):
    a, b = _truth(left(), "xor"), _truth(right(), "xor")
    return [] if a is None or b is None else a != b


def implies_op(ctx, left, right):
    a = _truth(left(), "implies")
    if a is False:
        return True
    b = _truth(right(), "implies")
    if b is True:
        return True
    return [] if a is None or b is None else False


def not_fn(ctx, coll):
    value = _truth(coll, "not()")  # one non-Boolean item is true, so its not() is false
    return [] if value is None else not value


# ---- types ---------------------------------------------------------------------------------------
#
# `is` follows the type hierarchy (a FHIR `code` is a `string`, an `Age` is a `Quantity`), while
# `as` and `ofType` take a FHIR primitive only as its own type: `Patient.gender.as(string)` is
# empty and `Patient.gender.as(code)` is the code (the official R4 suite, testFHIRPathAsFunction*).
# A type name that is neither a FHIR nor a System type is an error, not an empty result.

_R4 = models["r4"]
FHIR_TYPES = frozenset(
    set(_R4["type2Parent"])
    | {v for v in _R4["type2Parent"].values() if v}
    | {v for v in _R4["path2Type"].values() if "." not in v}
)
FHIR_PRIMITIVES = frozenset(t for t in FHIR_TYPES if t[:1].islower())
SYSTEM_TYPES = frozenset(
    {"Any", "Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time", "Quantity"}
)


def known_type(namespace: str | None, name: str) -> bool:
    """Whether a type specifier names a type. `System.X` is always accepted (`is(System.Patient)`
    is simply false); an unqualified or `FHIR.` name must exist."""
    if namespace == "System":
        return True
    if namespace == "FHIR":
        return name in FHIR_TYPES
    return namespace is None and (name in SYSTEM_TYPES or name in FHIR_TYPES)


def _check_type(type_info) -> None:
    if not known_type(type_info.namespace, type_info.name):
        qualified = f"{type_info.namespace}.{type_info.name}" if type_info.namespace else type_info.name
        raise ValueError(f"unknown type {qualified}")


def _is_of(ctx, item, type_info, *, exact_primitive: bool) -> bool:
    model = ctx.get("model")  # passed on, not set on fhirpathpy's TypeInfo class for everyone
    actual = type_of(item, model)
    if actual is None:
        return False
    if (
        exact_primitive
        and actual.namespace == nodes.TypeInfo.FHIR
        and actual.name in FHIR_PRIMITIVES
        and type_info.namespace in (None, nodes.TypeInfo.FHIR)
        and type_info.name in FHIR_PRIMITIVES
    ):
        return actual.name == type_info.name
    return type_is(actual, type_info, model)


def is_fn(ctx, coll, type_info):
    _check_type(type_info)
    if not coll:
        return []
    if len(coll) > 1:
        raise ValueError(f"'is' needs a single item, got {len(coll)}")
    return _is_of(ctx, coll[0], type_info, exact_primitive=False)


def as_fn(ctx, coll, type_info):
    _check_type(type_info)
    if not coll:
        return []
    if len(coll) > 1:
        raise ValueError(f"'as' needs a single item, got {len(coll)}")
    return coll if _is_of(ctx, coll[0], type_info, exact_primitive=True) else []


def of_type(ctx, coll, type_info):
    _check_type(type_info)
    return [x for x in coll if _is_of(ctx, x, type_info, exact_primitive=True)]


# ---- variables -----------------------------------------------------------------------------------


def define_variable(ctx, coll, name, expr=None):
    """defineVariable(name [, expr]) (FHIRPath 2.0): %name is the value of expr evaluated on the
    input collection, or the input itself, for the rest of the invocation chain and the arguments
    within it; the input passes through unchanged. Redefining a name in scope is an error; the
    scope ends with the enclosing function argument or operand (see patches.make_param)."""
    if not isinstance(name, str) or not name:
        raise ValueError("defineVariable() needs a variable name")
    variables = ctx["vars"]
    if name in variables:
        raise ValueError(f"variable %{name} is already defined")
    variables[name] = list(expr(coll)) if expr is not None else list(coll)
    ctx.setdefault("defined", []).append(name)
    return coll


def round_fn(ctx, coll, digits=0):
    item = _single(coll, "round")
    if item is None:
        return []
    return base["round"]["fn"](ctx, coll, 0 if digits == [] else digits)


def trace(ctx, coll, label="", projection=None):
    cb = _state(ctx).get("trace")
    if cb is not None:
        cb(label, [_data(x) for x in (projection(coll) if projection else coll)])
    return coll


def _restoring(fn):
    """Macros leave ctx['$this'] pointing at their last item; restore it so later arguments see the
    right focus (`where(...).sequence.subsetOf($this.item...)`)."""

    @functools.wraps(fn)
    def wrapped(ctx, *args):
        saved = {k: ctx[k] for k in ("$this", "$index", "$total") if k in ctx}
        try:
            return fn(ctx, *args)
        finally:
            for k in ("$this", "$index", "$total"):
                ctx.pop(k, None)
            ctx.update(saved)

    return wrapped


def build_table() -> dict:
    table: dict[str, dict] = {
        "hasValue": {"fn": has_value},
        "children": {"fn": children},
        "descendants": {"fn": descendants},
        "resolve": {"fn": resolve},
        "memberOf": {"fn": member_of, "arity": {1: ["String"]}},
        "htmlChecks": {"fn": fn_html_checks},
        "htmlchecks": {"fn": fn_html_checks},
        "conformsTo": {"fn": conforms_to, "arity": {1: ["String"]}},
        "lowBoundary": {
            "fn": lambda c, d, p=None: _boundary(c, d, p, high=False),
            "arity": {0: [], 1: ["Integer"]},
        },
        "highBoundary": {
            "fn": lambda c, d, p=None: _boundary(c, d, p, high=True),
            "arity": {0: [], 1: ["Integer"]},
        },
        "precision": {"fn": precision},
        "comparable": {"fn": comparable, "arity": {1: ["Any"]}},
        "abs": {"fn": abs_fn},
        "|": {"fn": union_op, "arity": {2: ["Any", "Any"]}},
        "union": {"fn": union_op, "arity": {1: ["AnyAtRoot"]}},
        "distinct": {"fn": distinct_fn},
        "isDistinct": {"fn": is_distinct_fn},
        "*": {"fn": _times("*"), "arity": {2: ["Any", "Any"]}, "nullable": True},
        "/": {"fn": _times("/"), "arity": {2: ["Any", "Any"]}, "nullable": True},
        "and": {"fn": and_op, "arity": {2: ["Lazy", "Lazy"]}},
        "or": {"fn": or_op, "arity": {2: ["Lazy", "Lazy"]}},
        "xor": {"fn": xor_op, "arity": {2: ["Lazy", "Lazy"]}},
        "implies": {"fn": implies_op, "arity": {2: ["Lazy", "Lazy"]}},
        "type": {"fn": type_fn},
        "is": {"fn": is_fn, "arity": {1: ["TypeSpecifier"]}},
        "isOp": {"fn": is_fn, "arity": {2: ["Any", "TypeSpecifier"]}},
        "as": {"fn": as_fn, "arity": {1: ["TypeSpecifier"]}},
        "asOp": {"fn": as_fn, "arity": {2: ["Any", "TypeSpecifier"]}},
        "ofType": {"fn": of_type, "arity": {1: ["TypeSpecifier"]}},
        "defineVariable": {"fn": define_variable, "arity": {1: ["String"], 2: ["String", "Expr"]}},
        "sort": {"fn": sort, "variadic": "Expr"},
        "matchesFull": {"fn": matches_full, "arity": {1: ["String"]}, "nullable_input": True},
        "escape": {"fn": escape, "arity": {1: ["String"]}, "nullable_input": True},
        "unescape": {"fn": unescape, "arity": {1: ["String"]}, "nullable_input": True},
        "toString": {"fn": to_string},
        "startsWith": {"fn": starts_with, "arity": {1: ["String"]}, "nullable_input": True},
        "replaceMatches": {"fn": replace_matches, "arity": {2: ["String", "String"]}, "nullable_input": True},
        "indexOf": {"fn": _string_fn("indexOf"), "arity": {1: ["String"]}, "nullable_input": True},
        "replace": {"fn": _string_fn("replace"), "arity": {2: ["String", "String"]}, "nullable_input": True},
        "iif": {"fn": iif, "arity": {2: ["Expr", "Expr"], 3: ["Expr", "Expr", "Expr"]}},
        "single": {"fn": single},
        "extension": {"fn": extension, "arity": {1: ["String"]}},
        "today": {"fn": today},
        "toDateTime": {"fn": to_date_time},
        "toBoolean": {"fn": to_boolean},
        "convertsToBoolean": {"fn": converts_to_boolean},
        "not": {"fn": not_fn},
        "round": {"fn": round_fn, "arity": {0: [], 1: ["Number"]}},
        "trace": {"fn": trace, "arity": {0: [], 1: ["String"], 2: ["String", "Expr"]}},
        "=": {"fn": equal, "arity": {2: ["Any", "Any"]}, "nullable": True},
        "!=": {"fn": unequal, "arity": {2: ["Any", "Any"]}, "nullable": True},
        "~": {"fn": equivalent, "arity": {2: ["Any", "Any"]}},
        "!~": {"fn": not_equivalent, "arity": {2: ["Any", "Any"]}},
        "<": {"fn": _comparison(_lt), "arity": {2: ["Any", "Any"]}, "nullable": True},
        ">": {"fn": _comparison(_gt), "arity": {2: ["Any", "Any"]}, "nullable": True},
        "<=": {"fn": _comparison(_le), "arity": {2: ["Any", "Any"]}, "nullable": True},
        ">=": {"fn": _comparison(_ge), "arity": {2: ["Any", "Any"]}, "nullable": True},
        "+": {"fn": _arith("+", 1), "arity": {2: ["Any", "Any"]}, "nullable": True},
        "-": {"fn": _arith("-", -1), "arity": {2: ["Any", "Any"]}, "nullable": True},
    }
    for name in ("where", "select", "exists", "all", "repeat", "aggregate"):
        table[name] = {**base[name], "fn": _restoring(base[name]["fn"])}
    for name in ("sort", "iif", "defineVariable"):
        table[name]["fn"] = _restoring(table[name]["fn"])
    return table

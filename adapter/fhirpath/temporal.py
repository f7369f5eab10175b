"""Dates, times and decimals the way FHIRPath wants them (precision-aware).

fhirpathpy types every date as a dateTime, normalises offsets to UTC in arithmetic and has no
boundary/precision functions; these helpers are the cheaper fix than patching its classes deeply.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from dateutil.relativedelta import relativedelta
from fhirpathpy.engine.nodes import FP_DateTime, FP_Time


class FP_Date(FP_DateTime):
    """A date (no time part): `@2015-02-04.is(Date)` must be true, and precision rules differ."""


_DT = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?"
    r"(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?(Z|[+-]\d{2}:\d{2})?$"
)
_TM = re.compile(r"^T?(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?(Z|[+-]\d{2}:\d{2})?$")

_DT_PREC = (4, 6, 8, 10, 12, 14, 17)
_TM_PREC = (2, 4, 6, 9)


@dataclass
class Parts:
    kind: str  # "date" | "dateTime" | "time"
    fields: list[int | None]  # y, mo, d, h, mi, s (dateTime) or h, mi, s (time)
    ms: int | None
    tz: str | None

    @property
    def tz_minutes(self) -> int | None:
        if self.tz is None:
            return None
        if self.tz == "Z":
            return 0
        sign = -1 if self.tz[0] == "-" else 1
        return sign * (int(self.tz[1:3]) * 60 + int(self.tz[4:6]))

    def count(self) -> int:
        return sum(1 for f in self.fields if f is not None)


def parts_of(value, kind_hint: str | None = None) -> Parts | None:
    """Split an FP_DateTime/FP_Time (or a FHIR string typed date/dateTime/time) into its fields."""
    if isinstance(value, FP_Time):
        text, kind = value.asStr, "time"
    elif isinstance(value, FP_Date):
        text, kind = value.asStr, "date"
    elif isinstance(value, FP_DateTime):
        text, kind = value.asStr, "dateTime"
    elif isinstance(value, str):
        text, kind = value, kind_hint or "dateTime"
    else:
        return None
    if kind == "time":
        m = _TM.match(text)
        if not m:
            return None
        h, mi, s, frac, tz = m.groups()
        fields = [int(x) if x is not None else None for x in (h, mi, s)]
        return Parts("time", fields, _ms(frac), tz)
    m = _DT.match(text)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    fields = [int(x) if x is not None else None for x in (y, mo, d, h, mi, s)]
    if kind == "dateTime" and h is None and tz is None:
        kind = "date" if isinstance(value, str) and kind_hint == "date" else kind
    return Parts(kind, fields, _ms(frac), tz)


def _ms(frac: str | None) -> int | None:
    return None if frac is None else int((frac + "000")[:3])


def compare(a, b) -> int | None:
    """-1/0/1, or None when the precisions/timezones make the answer unknown (FHIRPath empty)."""
    pa, pb = parts_of(a), parts_of(b)
    if pa is None or pb is None or (pa.kind == "time") != (pb.kind == "time"):
        raise TypeError("cannot compare these temporal values")
    fa, fb = list(pa.fields), list(pb.fields)
    time_start = 0 if pa.kind == "time" else 3
    a_has_time = fa[time_start] is not None
    b_has_time = fb[time_start] is not None
    if a_has_time and b_has_time and (pa.tz is None) != (pb.tz is None) and pa.kind != "time":
        return None
    if a_has_time and b_has_time and pa.tz is not None and pb.tz is not None:
        fa, fb = _to_utc(pa), _to_utc(pb)
    for x, y in zip(fa, fb, strict=True):
        if x is None and y is None:
            return 0
        if x is None or y is None:
            return None
        if x != y:
            return -1 if x < y else 1
    ma, mb = pa.ms or 0, pb.ms or 0
    return 0 if ma == mb else (-1 if ma < mb else 1)


def _to_utc(p: Parts) -> list[int | None]:
    base = 0 if p.kind == "time" else 3
    f = p.fields
    if p.kind == "time":
        dt = datetime(2000, 1, 1, f[0] or 0, f[1] or 0, f[2] or 0)
    else:
        dt = datetime(f[0], f[1] or 1, f[2] or 1, f[3] or 0, f[4] or 0, f[5] or 0)
    dt -= timedelta(minutes=p.tz_minutes or 0)
    full = (
        [dt.hour, dt.minute, dt.second]
        if p.kind == "time"
        else [dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second]
    )
    return [full[i] if f[i] is not None else None for i in range(len(f))] if base >= 0 else full


_UNITS = {
    "year": "years",
    "years": "years",
    "month": "months",
    "months": "months",
    "week": "weeks",
    "weeks": "weeks",
    "'wk'": "weeks",
    "day": "days",
    "days": "days",
    "'d'": "days",
    "hour": "hours",
    "hours": "hours",
    "'h'": "hours",
    "minute": "minutes",
    "minutes": "minutes",
    "'min'": "minutes",
    "second": "seconds",
    "seconds": "seconds",
    "'s'": "seconds",
    "millisecond": "ms",
    "milliseconds": "ms",
    "'ms'": "ms",
}
# the calendar keywords also stand quoted, as the spec's "unit representation" ('year', 'week')
_UNITS.update({f"'{k}'": v for k, v in list(_UNITS.items()) if not k.startswith("'")})
# the finest field (index into the dateTime field list) a unit needs to be meaningful
_NEEDS = {"years": 0, "months": 1, "weeks": 2, "days": 2, "hours": 3, "minutes": 4, "seconds": 5, "ms": 5}


def add_quantity(value, amount: Decimal | int, unit: str | None):
    """value + quantity keeping the value's precision and its timezone offset; None if not handled."""
    p = parts_of(value)
    norm = _UNITS.get(unit or "")
    if p is None or norm is None:
        return None
    n = int(amount)  # FHIRPath truncates calendar quantities to whole units
    if p.kind == "time":
        if norm in ("years", "months", "weeks", "days"):
            return None
        fields = [None, None, None, *p.fields]
    else:
        fields = list(p.fields)
    finest = max(i for i, f in enumerate(fields) if f is not None)
    if _NEEDS[norm] > finest:
        return None
    dt = datetime(
        fields[0] or 2000,
        fields[1] or 1,
        fields[2] or 1,
        fields[3] or 0,
        fields[4] or 0,
        fields[5] or 0,
        (p.ms or 0) * 1000,
    )
    delta = (
        relativedelta(**{norm: n})
        if norm in ("years", "months")
        else (timedelta(milliseconds=n) if norm == "ms" else timedelta(**{norm: n}))
    )
    dt = dt + delta
    return _format(dt, p, finest)


def _format(dt: datetime, p: Parts, finest: int):
    if p.kind == "time":
        text = _fmt_time(dt, finest, p.ms is not None) + (p.tz or "")
        return FP_Time(text)
    text = f"{dt.year:04d}"
    if finest >= 1:
        text += f"-{dt.month:02d}"
    if finest >= 2:
        text += f"-{dt.day:02d}"
    if finest >= 3:
        text += "T" + _fmt_time(dt, finest, p.ms is not None)
        text += p.tz or ""
    return FP_Date(text) if p.kind == "date" or (finest < 3 and p.kind != "dateTime") else FP_DateTime(text)


def _fmt_time(dt: datetime, finest: int, with_ms: bool) -> str:
    text = f"{dt.hour:02d}"
    if finest >= 4:
        text += f":{dt.minute:02d}"
    if finest >= 5:
        text += f":{dt.second:02d}"
        if with_ms:
            text += f".{dt.microsecond // 1000:03d}"
    return text


def precision(value) -> int | None:
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        return max(0, -Decimal(value).as_tuple().exponent)
    p = parts_of(value)
    if p is None:
        return None
    if p.kind == "time":
        return _TM_PREC[p.count() - 1] if p.ms is None else 9
    if p.ms is not None:
        return 17
    return _DT_PREC[p.count() - 1]


def decimal_boundary(value: Decimal | int, digits: int | None, high: bool) -> Decimal | None:
    digits = 8 if digits is None else digits
    if digits < 0 or digits > 31:
        return None
    d = Decimal(value)
    if d < 0:
        other = decimal_boundary(-d, digits, not high)
        return None if other is None else -other
    scale = max(0, -d.as_tuple().exponent)
    half = Decimal(5).scaleb(-(scale + 1))
    q = Decimal(1).scaleb(-digits)
    if high:
        return (d + half).quantize(q, rounding=ROUND_HALF_UP)
    return (d - half).quantize(q, rounding=ROUND_FLOOR)


def temporal_boundary(value, digits: int | None, high: bool):
    p = parts_of(value)
    if p is None:
        return None
    if p.kind == "time":
        digits = 9 if digits is None else digits
        if digits not in _TM_PREC:
            return None
        keep = _TM_PREC.index(digits) + 1
        h, mi, s = (p.fields + [None] * 3)[:3]
        vals = [h, mi, s]
        fills_low, fills_high = [0, 0, 0], [23, 59, 59]
        out = [
            vals[i] if vals[i] is not None else (fills_high[i] if high else fills_low[i]) for i in range(3)
        ]
        ms = p.ms if p.ms is not None else (999 if high else 0)
        text = f"{out[0]:02d}"
        if keep >= 2:
            text += f":{out[1]:02d}"
        if keep >= 3:
            text += f":{out[2]:02d}"
        if keep >= 4:
            text += f".{ms:03d}"
        return FP_Time(text)
    default = 8 if p.kind == "date" else 17
    digits = default if digits is None else digits
    if digits not in _DT_PREC:
        return None
    keep = _DT_PREC.index(digits) + 1
    y, mo, d, h, mi, s = p.fields
    mo = mo if mo is not None else (12 if high else 1)
    if d is None:
        d = calendar.monthrange(y, mo)[1] if high else 1
    h = h if h is not None else (23 if high else 0)
    mi = mi if mi is not None else (59 if high else 0)
    s = s if s is not None else (59 if high else 0)
    ms = p.ms if p.ms is not None else (999 if high else 0)
    text = f"{y:04d}"
    if keep >= 2:
        text += f"-{mo:02d}"
    if keep >= 3:
        text += f"-{d:02d}"
    if keep >= 4:
        text += f"T{h:02d}"
        if keep >= 5:
            text += f":{mi:02d}"
        if keep >= 6:
            text += f":{s:02d}"
        if keep >= 7:
            text += f".{ms:03d}"
        text += p.tz if p.tz is not None else ("-12:00" if high else "+14:00")
        return FP_DateTime(text)
    return FP_Date(text)

"""UCUM unit expressions: a light syntactic check, and the unit algebra FHIRPath needs.

`syntax_error` cannot say a unit exists (that needs the whole UCUM atom table), but it can say a
string is not a UCUM expression at all (spaces, unbalanced brackets, stray operators), which is
the common mistake ("mg / dl", "kg m2").

`canonical` reduces a unit to a factor times a product of base dimensions, for the atoms a
clinical document meets (SI and derived units, time, the customary US/imperial ones, mmHg,
equivalents, enzyme units, arbitrary units such as [IU]); it returns None for anything else,
including the non-ratio "special" units (Cel, [degF], [pH]) that cannot be multiplied.
`multiply` / `divide` build the unit of a product or a quotient (`cm` x `m` is `cm.m`,
`m` / `m` is `1`); commensurability and conversion go through `canonical`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from fractions import Fraction

UCUM_SYSTEM = "http://unitsofmeasure.org"
_OPERATORS = "./"


def syntax_error(unit: str) -> str | None:
    """None when ``unit`` is a syntactically valid UCUM expression, else why not."""
    if not unit:
        return "empty unit"
    if any(ord(ch) < 33 or ord(ch) > 126 for ch in unit):
        return "only printable ASCII without spaces is allowed"
    parser = _Parser(unit)
    try:
        parser.main_term()
        if parser.pos != len(unit):
            raise _Fail(f"unexpected '{unit[parser.pos]}' at position {parser.pos + 1}")
    except _Fail as fail:
        return str(fail)
    return None


class _Fail(Exception):
    pass


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def main_term(self) -> None:
        if self.peek() == "/":
            self.pos += 1
        self.term()

    def term(self) -> None:
        self.component()
        while self.peek() and self.peek() in _OPERATORS:
            self.pos += 1
            self.component()

    def component(self) -> None:
        ch = self.peek()
        if ch == "(":
            self.pos += 1
            self.term()
            if self.peek() != ")":
                raise _Fail("unbalanced parenthesis")
            self.pos += 1
            self.exponent()
        elif ch == "{":
            self.annotation()
        elif ch and ch not in "./)}]":
            self.simple_unit()
            if self.peek() == "{":
                self.annotation()
        else:
            raise _Fail(f"a unit is missing at position {self.pos + 1}")

    def annotation(self) -> None:
        end = self.text.find("}", self.pos)
        if end < 0 or "{" in self.text[self.pos + 1 : end]:
            raise _Fail("unbalanced curly braces")
        self.pos = end + 1

    def exponent(self) -> None:
        start = self.pos
        if self.peek() in ("+", "-"):
            self.pos += 1
        digits = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if self.pos == digits:
            self.pos = start

    def simple_unit(self) -> None:
        start = self.pos
        while True:
            ch = self.peek()
            if ch == "[":
                end = self.text.find("]", self.pos)
                if end < 0:
                    raise _Fail("unbalanced square brackets")
                self.pos = end + 1
            elif ch and ch not in "./(){}]":
                self.pos += 1
            else:
                break
        run = self.text[start : self.pos]
        if run.isdigit():
            return  # a factor
        # Split a trailing exponent: "m2", "s-1", "10*3".
        body = run.rstrip("0123456789")
        if body.endswith(("+", "-")):
            body = body[:-1]
        if not body or body.isdigit():
            raise _Fail(f"'{run}' is not a unit")
        if any(sign in body for sign in "+-") and "[" not in body:
            raise _Fail(f"'{run}' is not a unit")


# ---- unit algebra ---------------------------------------------------------------------------------

_BASE = {"m": "L", "g": "M", "s": "T", "rad": "A", "K": "C", "C": "Q", "cd": "F"}

_PREFIXES = {
    "Y": 24, "Z": 21, "E": 18, "P": 15, "T": 12, "G": 9, "M": 6, "k": 3, "h": 2, "da": 1,
    "d": -1, "c": -2, "m": -3, "u": -6, "n": -9, "p": -12, "f": -15, "a": -18, "z": -21, "y": -24,
}  # fmt: skip

# atom: (value, definition in other units, metric i.e. takes a prefix); from the UCUM table
_ATOMS: dict[str, tuple[str, str, bool]] = {
    "10*": ("10", "1", False),
    "10^": ("10", "1", False),
    "[pi]": ("3.1415926535897932384626433832795028841971693993751058209749445923", "1", False),
    "%": ("1", "10*-2", False),
    "[ppth]": ("1", "10*-3", False),
    "[ppm]": ("1", "10*-6", False),
    "[ppb]": ("1", "10*-9", False),
    "[pptr]": ("1", "10*-12", False),
    "mol": ("6.0221367", "10*23", True),
    "sr": ("1", "rad2", True),
    "Hz": ("1", "s-1", True),
    "N": ("1", "kg.m/s2", True),
    "Pa": ("1", "N/m2", True),
    "J": ("1", "N.m", True),
    "W": ("1", "J/s", True),
    "A": ("1", "C/s", True),
    "V": ("1", "J/C", True),
    "F": ("1", "C/V", True),
    "Ohm": ("1", "V/A", True),
    "S": ("1", "Ohm-1", True),
    "Wb": ("1", "V.s", True),
    "T": ("1", "Wb/m2", True),
    "H": ("1", "Wb/A", True),
    "lm": ("1", "cd.sr", True),
    "lx": ("1", "lm/m2", True),
    "Bq": ("1", "s-1", True),
    "Gy": ("1", "J/kg", True),
    "Sv": ("1", "J/kg", True),
    "deg": ("0.01745329251994329576923690768488612713442871888541725456097191440", "rad", False),
    "gon": ("0.9", "deg", False),
    "'": ("1", "deg/60", False),
    "''": ("1", "'/60", False),
    "l": ("1", "dm3", True),
    "L": ("1", "l", True),
    "ar": ("100", "m2", True),
    "min": ("60", "s", False),
    "h": ("60", "min", False),
    "d": ("24", "h", False),
    "a_t": ("365.24219", "d", False),
    "a_j": ("365.25", "d", False),
    "a_g": ("365.2425", "d", False),
    "a": ("1", "a_j", False),
    "wk": ("7", "d", False),
    "mo_s": ("29.53059", "d", False),
    "mo_j": ("1", "a_j/12", False),
    "mo_g": ("1", "a_g/12", False),
    "mo": ("1", "mo_j", False),
    "t": ("1000", "kg", True),
    "bar": ("100000", "Pa", True),
    "u": ("1.6605402e-24", "g", True),
    "eV": ("1.60217733e-19", "J", True),
    "[e]": ("1.60217733e-19", "C", False),
    "[g]": ("9.80665", "m/s2", False),
    "atm": ("101325", "Pa", False),
    "dyn": ("1", "g.cm/s2", True),
    "erg": ("1", "dyn.cm", True),
    "P": ("1", "dyn.s/cm2", True),
    "St": ("1", "cm2/s", True),
    "Ci": ("37000000000", "Bq", True),
    "cal": ("4.184", "J", True),
    "[Cal]": ("1", "kcal", False),
    "m[Hg]": ("133.3220", "kPa", True),
    "m[H2O]": ("9.80665", "kPa", True),
    "[in_i'Hg]": ("1", "m[Hg].[in_i]/m", False),
    "[in_i]": ("2.54", "cm", False),
    "[ft_i]": ("12", "[in_i]", False),
    "[yd_i]": ("3", "[ft_i]", False),
    "[mi_i]": ("5280", "[ft_i]", False),
    "[nmi_i]": ("1852", "m", False),
    "[gr]": ("64.79891", "mg", False),
    "[lb_av]": ("7000", "[gr]", False),
    "[oz_av]": ("1", "[lb_av]/16", False),
    "[dr_av]": ("1", "[oz_av]/16", False),
    "[stone_av]": ("14", "[lb_av]", False),
    "[lbf_av]": ("1", "[lb_av].[g]", False),
    "[psi]": ("1", "[lbf_av]/[in_i]2", False),
    "[gal_us]": ("231", "[in_i]3", False),
    "[qt_us]": ("1", "[gal_us]/4", False),
    "[pt_us]": ("1", "[qt_us]/2", False),
    "[cup_us]": ("16", "[tbs_us]", False),
    "[foz_us]": ("1", "[gal_us]/128", False),
    "[tbs_us]": ("1", "[foz_us]/2", False),
    "[tsp_us]": ("1", "[tbs_us]/3", False),
    "[drp]": ("1", "ml/20", False),
    "[car_m]": ("0.2", "g", False),
    "eq": ("1", "mol", True),
    "osm": ("1", "mol", True),
    "kat": ("1", "mol/s", True),
    "U": ("1", "umol/min", True),
    "g%": ("1", "g/dl", True),
}

# arbitrary units: commensurable only with themselves (a dimension of their own)
_ARBITRARY = re.compile(
    r"^\[[A-Za-z0-9_'.]*(?:U|IU|iU|CCID_50|TCID_50|EID_50|PFU|FFU|CFU|BAU|AU|PNU|Lf|FEU|ELU|EU)\]$"
)
_ARBITRARY_METRIC = frozenset({"[IU]", "[iU]"})


@dataclass(frozen=True)
class Canonical:
    """A unit as ``factor`` (exact) times a product of base (and arbitrary) dimensions."""

    factor: Fraction
    dims: tuple[tuple[str, int], ...]

    def commensurable(self, other: Canonical) -> bool:
        return self.dims == other.dims


def _dims(d: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, v) for k, v in d.items() if v))


@functools.lru_cache(maxsize=1024)
def canonical(unit: str) -> Canonical | None:
    """The unit reduced to base dimensions, or None if it is not a unit this table knows."""
    terms = _terms(unit)
    if terms is None:
        return None
    factor, dims = Fraction(1), {}
    for symbol, exponent in terms:
        atom = _symbol(symbol)
        if atom is None:
            return None
        factor *= atom.factor**exponent
        for dim, n in atom.dims:
            dims[dim] = dims.get(dim, 0) + n * exponent
    return Canonical(factor, _dims(dims))


@functools.lru_cache(maxsize=512)
def _symbol(symbol: str) -> Canonical | None:
    """One simple unit (an atom with an optional prefix, a factor or an annotation)."""
    if symbol.startswith("{"):
        return Canonical(Fraction(1), ())
    if symbol.isdigit():
        return Canonical(Fraction(int(symbol)), ())
    atom = _atom(symbol)
    if atom is not None:
        return atom
    for prefix in sorted(_PREFIXES, key=len, reverse=True):
        if symbol.startswith(prefix) and len(symbol) > len(prefix):
            rest = symbol[len(prefix) :]
            base = _atom(rest)
            if base is not None and _metric(rest):
                return Canonical(base.factor * Fraction(10) ** _PREFIXES[prefix], base.dims)
    return None


def _metric(atom: str) -> bool:
    if atom in _BASE or atom in _ARBITRARY_METRIC:
        return True
    entry = _ATOMS.get(atom)
    return bool(entry and entry[2])


def _atom(name: str) -> Canonical | None:
    if name in _BASE:
        return Canonical(Fraction(1), ((_BASE[name], 1),))
    if name == "1":
        return Canonical(Fraction(1), ())
    entry = _ATOMS.get(name)
    if entry is not None:
        value, definition, _ = entry
        inner = canonical(definition)
        return None if inner is None else Canonical(Fraction(value) * inner.factor, inner.dims)
    if _ARBITRARY.match(name):
        return Canonical(Fraction(1), ((name, 1),))
    return None


def _terms(unit: str) -> tuple[tuple[str, int], ...] | None:
    """The unit as (simple unit, exponent) pairs, or None if it does not parse."""
    unit = unit.strip()
    if unit in ("", "1"):
        return ()
    if syntax_error(unit) is not None:
        return None
    try:
        parser = _Algebra(unit)
        out = parser.main_term()
    except _Fail:
        return None
    return tuple(out) if parser.pos == len(unit) else None


class _Algebra:
    """Reads a (syntactically valid) unit into a flat list of (symbol, exponent)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def main_term(self) -> list[tuple[str, int]]:
        if self.peek() == "/":
            self.pos += 1
            return [(s, -e) for s, e in self.term()]
        return self.term()

    def term(self) -> list[tuple[str, int]]:
        out = self.component()
        while self.peek() in (".", "/") and self.peek():
            op = self.text[self.pos]
            self.pos += 1
            part = self.component()
            out += part if op == "." else [(s, -e) for s, e in part]
        return out

    def component(self) -> list[tuple[str, int]]:
        ch = self.peek()
        if ch == "(":
            self.pos += 1
            inner = self.term()
            if self.peek() != ")":
                raise _Fail("unbalanced parenthesis")
            self.pos += 1
            exp = self.exponent()
            return [(s, e * exp) for s, e in inner]
        if ch == "{":
            end = self.text.find("}", self.pos)
            self.pos = end + 1
            return []
        start = self.pos
        while True:
            ch = self.peek()
            if ch == "[":
                self.pos = self.text.find("]", self.pos) + 1
            elif ch and ch not in "./(){}":
                self.pos += 1
            else:
                break
        run = self.text[start : self.pos]
        if self.peek() == "{":  # an annotation on a unit
            self.pos = self.text.find("}", self.pos) + 1
        if run.isdigit():
            return [(run, 1)]
        m = re.fullmatch(r"(.*?[^0-9+\-])([+-]?\d+)?", run)
        if m is None:
            raise _Fail(f"'{run}' is not a unit")
        symbol, exp = m.group(1), m.group(2)
        if symbol.endswith(("+", "-")):
            raise _Fail(f"'{run}' is not a unit")
        return [(symbol, int(exp) if exp else 1)]

    def exponent(self) -> int:
        m = re.match(r"[+-]?\d+", self.text[self.pos :])
        if m is None:
            return 1
        self.pos += m.end()
        return int(m.group(0))


def multiply(a: str, b: str) -> str:
    """The unit of a product: `cm` x `m` is `cm.m`, `m` x `m` is `m2`."""
    return _combine(a, b, 1)


def divide(a: str, b: str) -> str:
    """The unit of a quotient: `g` / `m` is `g/m`, `m` / `m` is `1`."""
    return _combine(a, b, -1)


def _combine(a: str, b: str, sign: int) -> str:
    ta, tb = _terms(a), _terms(b)
    if ta is None or tb is None or any(s.isdigit() for s, _ in (ta or ()) + (tb or ())):
        left = a if _simple(a) else f"({a})"
        right = b if _simple(b) else f"({b})"
        return f"{left}{'.' if sign > 0 else '/'}{right}"
    merged: dict[str, int] = {}
    for symbol, exp in list(ta) + [(s, e * sign) for s, e in tb]:
        merged[symbol] = merged.get(symbol, 0) + exp
    pos = [(s, e) for s, e in merged.items() if e > 0]
    neg = [(s, -e) for s, e in merged.items() if e < 0]
    text = ".".join(s + (str(e) if e != 1 else "") for s, e in pos) or "1"
    for s, e in neg:
        text += "/" + s + (str(e) if e != 1 else "")
    return text


def _simple(unit: str) -> bool:
    return not any(ch in unit for ch in "./")

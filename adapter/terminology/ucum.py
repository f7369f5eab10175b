"""A light syntactic check of UCUM unit expressions.

Without the UCUM atom table we cannot say a unit exists, but we can say a string is not a
UCUM expression at all (spaces, unbalanced brackets, stray operators), which is the common
mistake ("mg / dl", "kg m2").
"""

from __future__ import annotations

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

"""Strict FHIRPath parsing.

fhirpathpy's own `parse` installs a silent ANTLR error listener and stops at the first complete
expression, so `2 + 2 /` parses as `2 + 2`. An invariant that silently means something else is worse
than one that fails loudly, hence this wrapper: any lexer/parser error or unconsumed input raises.
"""

from __future__ import annotations

import re

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.tree.Tree import ParseTreeWalker
from fhirpathpy.parser.ASTPathListener import ASTPathListener
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser


class FhirPathError(Exception):
    """A FHIRPath expression could not be parsed or evaluated."""

    def __init__(self, message: str, expression: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class _Raise(ErrorListener):
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):
        raise FhirPathError(f"syntax error at {line}:{column}: {msg}")


# `@2015T` (a DateTime with only a date part) is valid FHIRPath that the bundled grammar rejects
_PARTIAL_DATETIME = re.compile(r"@(\d{4}(?:-\d{2}(?:-\d{2})?)?)T(?![\d])")


def parse(expression: str) -> dict:
    """Parse to fhirpathpy's AST dict, raising FhirPathError on any syntax problem."""
    if not isinstance(expression, str) or not expression.strip():
        raise FhirPathError("empty FHIRPath expression", expression if isinstance(expression, str) else None)
    listener = _Raise()
    try:
        text = _PARTIAL_DATETIME.sub(r"(@\1.toDateTime())", expression)
        lexer = FHIRPathLexer(InputStream(text))
        lexer.removeErrorListeners()
        lexer.addErrorListener(listener)
        parser = FHIRPathParser(CommonTokenStream(lexer))
        parser.buildParseTrees = True
        parser.removeErrorListeners()
        parser.addErrorListener(listener)
        tree = parser.expression()
        trailing = parser.getCurrentToken()
        if trailing is not None and trailing.type != Token.EOF:
            raise FhirPathError(f"unexpected '{trailing.text}' at {trailing.line}:{trailing.column}")
        ast = ASTPathListener()
        ParseTreeWalker().walk(ast, tree)
        return ast.parentStack[0]
    except FhirPathError as exc:
        raise FhirPathError(f"invalid FHIRPath {expression!r}: {exc.message}", expression) from None
    except Exception as exc:  # ANTLR raises assorted internal errors on garbage input
        raise FhirPathError(f"invalid FHIRPath {expression!r}: {exc}", expression) from None
